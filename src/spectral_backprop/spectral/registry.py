r"""The estimator registry: one signature for every way of computing a spectral sum.

``spectral_sum(G, z, fn, method=..., **options)`` returns ``S_g(z) = Σ_i g(λ_i(JᵀJ))``
per sample, differentiable by spectral backpropagation,
``dS_g = tr(g'(JᵀJ) d(JᵀJ))`` (Ramesh & LeCun 2018, arXiv 1806.00499, §3).
``method`` picks an entry of :data:`METHODS`:

* ``"exact"``: the Jacobian, an eigendecomposition (:mod:`.exact`);
* ``"lanczos"`` / ``"chebyshev"``: matrix-free stochastic estimates (:mod:`.stochastic`);
* ``"auto"``: exact below ``k = AUTO_CROSSOVER`` latents, ``"lanczos"`` from there.

**The contract** (as torchdiffeq's ``odeint`` has one options dict for all its
solvers): every method accepts the core options :data:`CORE_OPTIONS`
(``return_info``, ``jitter``, ``on_singular``, ``check_coupling``) and returns a
``Tensor[B]``, or with
``return_info=True`` a :class:`~.estimate.SpectralEstimate` ``(value, std_error,
info)`` with ``info["method"]`` (``std_error`` is 0 for an exact value). An option a
method does not use raises ``TypeError`` naming the methods that do use it; ``"auto"``
warns about an option meant only for the path it did not take. Nothing is dropped
silently.

Example:
    >>> import torch
    >>> A = torch.tensor([[2.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    >>> est = spectral_sum(lambda z: z @ A.T, torch.zeros(1, 2), "logdet", return_info=True)
    >>> est.value, est.std_error, est.info["method"]  # log 4 + log 1
    (tensor([1.3863]), tensor([0.]), 'exact')
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable

from torch import Tensor

from ..linalg.jacobian import Generator
from .diagnostics import warn
from .estimate import SpectralEstimate
from .exact import exact_spectral_sum
from .functions import SpectralFunction, resolve_function
from .stochastic import chebyshev_spectral_sum, lanczos_spectral_sum, stochastic_spectral_sum

__all__ = [
    "AUTO_CROSSOVER",
    "CORE_OPTIONS",
    "EXACT_OPTIONS",
    "METHODS",
    "METHOD_OPTIONS",
    "STOCHASTIC_OPTIONS",
    "accepts_option",
    "auto_spectral_sum",
    "logdet_jtj",
    "register_method",
    "resolve_method",
    "spectral_sum",
]

Method = Callable[..., "Tensor | SpectralEstimate"]

# Latent size at and above which method="auto" goes stochastic. Measured with
# `benchmarks/bench_stochastic.py --crossover` (DCGAN 3×32×32, batch 2, 1 thread, CPU):
# exact/lanczos time 0.59 at k=32, 1.02 at 64, 1.50 at 128, 3.3 at 256, 4.9 at 512.
# Below 128 the exact answer costs about as much as the estimate, so auto keeps it.
AUTO_CROSSOVER = 128


def _keyword_options(estimator: Callable, exclude: Iterable[str] = ()) -> frozenset[str] | None:
    """The options of ``estimator(G, z, fn, *, ...)``: its keyword-only parameters.

    ``None`` when it takes ``**options`` (then it checks its options itself).
    """
    params = inspect.signature(estimator).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return frozenset(p.name for p in params if p.kind is p.KEYWORD_ONLY) - set(exclude)


CORE_OPTIONS = frozenset({"return_info", "jitter", "on_singular", "check_coupling"})
EXACT_OPTIONS: frozenset[str] = _keyword_options(exact_spectral_sum)  # type: ignore[assignment]
STOCHASTIC_OPTIONS: frozenset[str] = _keyword_options(  # type: ignore[assignment]
    stochastic_spectral_sum, exclude=["method"]
)


def resolve_method(method: str, k: int) -> str:
    """The method that runs for latent size ``k``: ``"auto"`` becomes ``"exact"`` below
    :data:`AUTO_CROSSOVER` and ``"lanczos"`` at or above it; others are themselves.

    Example:
        >>> resolve_method("auto", 16), resolve_method("auto", 512), resolve_method("exact", 512)
        ('exact', 'lanczos', 'exact')
    """
    if method == "auto":
        return "lanczos" if k >= AUTO_CROSSOVER else "exact"
    return method


def auto_spectral_sum(G: Generator, z: Tensor, fn: SpectralFunction, **options):
    """``method="auto"``: exact below ``k = AUTO_CROSSOVER = 128`` latents, else ``"lanczos"``.

    The crossover was measured with ``benchmarks/bench_stochastic.py --crossover``
    (docs/stochastic.md): on a DCGAN with 3×32×32 output the stochastic value and
    gradient at the default budget took as long as the exact ones at ``k = 64``, 1.5×
    less at 128 and 4.9× less at 512. An option meant only for the path not taken
    (``num_probes`` below the crossover, ``chunk_size`` above it, ...) is left out with a
    ``UserWarning`` that names it and the path chosen.
    """
    k = z.shape[-1] if isinstance(z, Tensor) and z.dim() == 2 else 0
    stochastic = resolve_method("auto", k) == "lanczos"
    path, used, other = (
        ("lanczos", STOCHASTIC_OPTIONS, EXACT_OPTIONS) if stochastic
        else ("exact", EXACT_OPTIONS, STOCHASTIC_OPTIONS)
    )
    for name in sorted(set(options) - used):
        if name in other:
            del options[name]
            rule = f"k={k} {'>=' if stochastic else '<'} AUTO_CROSSOVER={AUTO_CROSSOVER}"
            warn(f"method='auto' chose {path!r} ({rule}); option {name!r} is not used by "
                 f"{path!r} and is ignored. Pass method={path!r} or the other method "
                 "explicitly to control the choice.", UserWarning)
    estimator = lanczos_spectral_sum if stochastic else exact_spectral_sum
    return estimator(G, z, fn, **options)


METHODS: dict[str, Method] = {
    "exact": exact_spectral_sum,
    "lanczos": lanczos_spectral_sum,
    "chebyshev": chebyshev_spectral_sum,
    "auto": auto_spectral_sum,
}
# The options each method accepts (None: not checked here, the estimator checks them).
METHOD_OPTIONS: dict[str, frozenset[str] | None] = {
    "exact": EXACT_OPTIONS,
    "lanczos": STOCHASTIC_OPTIONS,
    "chebyshev": STOCHASTIC_OPTIONS,
    "auto": EXACT_OPTIONS | STOCHASTIC_OPTIONS,
}


def accepts_option(method: str, name: str, k: int, *, unchecked: bool = True) -> bool:
    """Whether the method that runs for latent size ``k`` (:func:`resolve_method`) takes
    option ``name``; ``unchecked`` for an estimator whose options are not listed (it takes
    ``**options`` and checks them itself).

    Example:
        >>> accepts_option("auto", "generator", 16), accepts_option("auto", "generator", 512)
        (False, True)
    """
    used = METHOD_OPTIONS.get(resolve_method(method, k))
    return unchecked if used is None else name in used


def register_method(
    name: str, estimator: Method, options: Iterable[str] | None = None
) -> None:
    """Register ``estimator(G, z, fn: SpectralFunction, **options)`` as ``method=name``.

    The estimator should keep the contract of the module docstring: accept
    :data:`CORE_OPTIONS` and return ``Tensor[B]``, or a :class:`SpectralEstimate` with
    ``return_info=True``.

    Args:
        name: the ``method=`` string.
        estimator: the callable.
        options: the option names it accepts; by default its keyword-only parameters
            (unchecked when it takes ``**options``).
    """
    METHODS[name] = estimator
    METHOD_OPTIONS[name] = frozenset(options) if options is not None else _keyword_options(
        estimator
    )


def _check_options(method: str, options: Iterable[str]) -> None:
    """``TypeError`` for an option ``method`` does not use, naming the methods that do."""
    accepted = METHOD_OPTIONS.get(method)
    if accepted is None:
        return
    for name in options:
        if name in accepted:
            continue
        users = [m for m, opts in METHOD_OPTIONS.items() if opts is not None and name in opts]
        where = (
            f"it is used by method={', '.join(map(repr, users))}" if users
            else f"no method uses it; method={method!r} takes {', '.join(sorted(accepted))}"
        )
        raise TypeError(f"option {name!r} is not used by method={method!r}: {where}")


def spectral_sum(
    G: Generator,
    z: Tensor,
    fn: str | SpectralFunction | object,
    *,
    method: str = "exact",
    **options,
) -> Tensor | SpectralEstimate:
    r"""``S_g(z) = Σ_i g(λ_i(J(z)ᵀJ(z)))`` per sample, differentiable by spectral backprop.

    Args:
        G: callable ``z[B, k] -> x[B, ...]`` (an ``nn.Module`` or a function); outputs
            are flattened to ``n >= k``.
        z: latents ``[B, k]``.
        fn: ``"logdet"`` (``Σ log λ``), ``"trace"`` (``Σ λ``), ``"nuclear"`` (``Σ √λ``),
            or an object with elementwise callables ``g`` and ``dg = g'``.
        method: ``"exact"`` (default), ``"lanczos"`` (stochastic Lanczos quadrature),
            ``"chebyshev"`` (Chebyshev–Hutchinson), ``"auto"`` (exact for small ``k``), or
            a registered estimator.
        **options: for every method: ``return_info``, ``jitter``, ``on_singular``
            (``"warn"``/``"raise"``), ``check_coupling`` (default ``True``: refuse a ``G``
            that mixes the samples of a batch); for ``"exact"`` also ``chunk_size``,
            ``rank_tol``;
            for the stochastic methods ``num_probes``, ``num_matvecs``, ``tol``,
            ``probes``, ``generator``, ``deflate``, ``on_nonconvergence``, ``symmetric``
            (see :func:`~spectral_backprop.spectral.stochastic.stochastic_spectral_sum`).
            An option the method does not use raises ``TypeError``.

    Returns:
        ``Tensor[B]`` (a :class:`SpectralEstimate` with ``return_info=True``); its
        gradient with respect to ``z`` and every tensor ``G`` uses is ``tr(g'(M) dM)``
        (Ramesh & LeCun 2018, arXiv 1806.00499).

    Example:
        >>> import torch
        >>> A = torch.tensor([[2.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
        >>> spectral_sum(lambda z: z @ A.T, torch.zeros(1, 2), "trace")
        tensor([5.])
    """
    try:
        estimator = METHODS[method]
    except KeyError:
        known = ", ".join(sorted(METHODS))
        raise ValueError(f"unknown method {method!r}; known: {known}") from None
    _check_options(method, options)
    return estimator(G, z, resolve_function(fn), **options)


def logdet_jtj(
    G: Generator, z: Tensor, *, method: str = "exact", **options
) -> Tensor | SpectralEstimate:
    r"""``log det(J(z)ᵀJ(z))`` per sample: :func:`spectral_sum` with ``fn="logdet"``.

    Example:
        >>> import torch
        >>> logdet_jtj(lambda z: 3 * z, torch.zeros(2, 4))  # 4 · log 9
        tensor([8.7889, 8.7889])
    """
    return spectral_sum(G, z, "logdet", method=method, **options)
