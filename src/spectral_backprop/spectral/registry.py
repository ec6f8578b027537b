r"""The estimator registry: one signature for every way of computing a spectral sum.

``spectral_sum(G, z, fn, method=..., **options)`` returns ``S_g(z) = Σ_i g(λ_i(JᵀJ))``
per sample, differentiable by spectral backpropagation,
``dS_g = tr(g'(JᵀJ) d(JᵀJ))`` (Ramesh & LeCun 2018, arXiv 1806.00499, §3).
``method`` picks an entry of :data:`METHODS`:

* ``"exact"``: the Jacobian, an eigendecomposition (:mod:`.exact`);
* ``"lanczos"`` / ``"chebyshev"``: matrix-free stochastic estimates (:mod:`.stochastic`);
* ``"auto"``: exact or ``"lanczos"``, whichever a cost model measured on the actual
  generator predicts to be faster (:func:`auto_choice`); exact below
  ``k = AUTO_CROSSOVER`` latents without measuring.

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
import math
import time
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import Tensor

from ..linalg.jacobian import (
    Generator,
    full_precision,
    jacobian_columns,
    metric_matvec,
    work_dtype,
)
from ..linalg.probes import probe_population, probes_to_match
from .diagnostics import warn
from .estimate import SpectralEstimate
from .exact import exact_spectral_sum
from .functions import SpectralFunction, resolve_function
from .stochastic import (
    DEFAULT_MAX_PROBES,
    DEFAULT_NUM_PROBES,
    DEFAULT_PROBES,
    RTOL_Z,
    chebyshev_spectral_sum,
    default_gradient_target,
    lanczos_spectral_sum,
    stochastic_spectral_sum,
)

__all__ = [
    "AUTO_CROSSOVER",
    "CORE_OPTIONS",
    "EXACT_OPTIONS",
    "METHODS",
    "METHOD_OPTIONS",
    "STOCHASTIC_OPTIONS",
    "AutoCosts",
    "accepts_option",
    "auto_choice",
    "auto_spectral_sum",
    "logdet_jtj",
    "register_method",
    "resolve_method",
    "spectral_sum",
]

Method = Callable[..., "Tensor | SpectralEstimate"]

# Below this latent size method="auto" is exact without measuring: the stochastic mode
# at its default budget needs at least 8 probes × 8 Lanczos steps = 64 products with M
# (each a JVP and a VJP), more than the exact mode's k < 64 JVP columns. The former fixed
# switch (k = 128) came from `benchmarks/bench_stochastic.py --crossover` (DCGAN 3×32×32,
# batch 2, 1 thread: exact/lanczos time 0.59 at k=32, 1.02 at 64, 1.50 at 128).
AUTO_CROSSOVER = 64
# Lanczos steps per probe the cost model assumes before it has seen a stochastic run of
# this generator (then it uses the steps measured): the zoo at k = 256 under the default
# stopping rule took 15–40 (benchmarks/bench_bias.py).
AUTO_STEPS_PRIOR = 30
# The per-probe relative standard deviation the cost model assumes for rtol before it has
# seen a run: sd(εᵀg(M)ε)/|tr g(M)| = √(2/k)·R with R = rms(g − ḡ)/|ḡ| over the spectrum,
# taken as R = 2 (the benchmark DCGAN at k = 512: per-probe sd 31 for a log det of 171,
# R = 2.9; the zoo at k = 32: R = 0.5–1.4).
AUTO_SPREAD_PRIOR = 2.0
# A backward pass through JVPs costs about twice their forward pass.
_BACKWARD_FACTOR = 2.0
# Near-ties are settled by measuring: where the predictions of the two paths are within
# this factor of each other, auto runs each path AUTO_TRIALS times, alternating, timing
# each call, and then keeps the one with the shorter best time — as cuDNN's benchmark
# mode settles its algorithms. Every call also scales its path's model by what it
# measured; a path not yet timed is only modelled, and the model alone was off by up to
# 1.8× on the zoo (Lanczos' bookkeeping left out, the dense algebra's k³ scaling), so
# its near-tie is wider.
AUTO_NEAR_TIE = 1.5
AUTO_NEAR_TIE_MODELLED = 2.0
AUTO_TRIALS = 2
_PATHS = ("exact", "lanczos")
# The options that change what a call costs: trials are kept per set of their values.
_COST_OPTIONS = ("num_probes", "num_matvecs", "tol", "rtol", "grad_rtol", "max_probes",
                 "probes", "deflate", "symmetric", "chunk_size", "jitter")
_DENSE_SIZE = 256  # the dense algebra is timed at k ≤ 256 and scaled by (k/256)³
# The options that decide whether a stochastic call gets the default gradient target.
_TARGET_OPTIONS = ("num_probes", "rtol", "grad_rtol", "max_probes", "deflate")


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
    """The method that runs for latent size ``k``, as far as ``k`` alone decides:
    ``"auto"`` is ``"exact"`` below :data:`AUTO_CROSSOVER` and stays ``"auto"`` (decided
    at run time by :func:`auto_choice`) from there; others are themselves.

    Example:
        >>> resolve_method("auto", 16), resolve_method("auto", 512), resolve_method("exact", 512)
        ('exact', 'auto', 'exact')
    """
    if method == "auto" and k < AUTO_CROSSOVER:
        return "exact"
    return method


@dataclass
class AutoCosts:
    """What :func:`auto_choice` measured and predicted, in seconds.

    Attributes:
        column: one Jacobian column of the batch in the exact mode's batched JVP.
        product: one Lanczos step, a batched product with ``M`` of the probes.
        dense: the exact mode's ``k × k`` algebra (Cholesky and inverse) for the batch.
        exact, stochastic: the predicted times of the two paths.
        probes, steps: the probes and Lanczos steps per probe the prediction assumed.
        trial: this call is one of a near-tie's timed trials (:data:`AUTO_NEAR_TIE`).
        measured: the best measured seconds of each path once a near-tie's trials are
            done (the backward pass added from the model when gradients are on).
    """

    column: float
    product: float
    dense: float
    exact: float = 0.0
    stochastic: float = 0.0
    probes: int = 0
    steps: float = 0.0
    trial: bool = False
    measured: dict | None = None


# Per process, per generator (weakly held) and (shape, dtype, device, probes): the
# measured unit costs, and what the last stochastic run of auto saw (steps per probe,
# relative per-probe spread).
_UNIT_COSTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_SEEN: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _cache(table: weakref.WeakKeyDictionary, G: object) -> dict:
    try:
        return table.setdefault(G, {})
    except TypeError:  # not weakly referenceable: measured every call
        return {}


def _key(z: Tensor, num_probes: int) -> tuple:
    """What the cached unit costs and the last run's figures are kept under, per ``G``."""
    return tuple(z.shape), z.dtype, z.device, num_probes


def _clock(fn: Callable[[], object], device: torch.device) -> tuple[object, float]:
    """``fn()`` and its seconds. On CUDA the device is synchronised around the call:
    kernels run asynchronously, and timing their launch alone would choose from noise."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda _: None)
    sync(device)
    start = time.perf_counter()
    out = fn()
    sync(device)
    return out, time.perf_counter() - start


def _best_time(fn: Callable[[], object], device: torch.device, repeats: int = 2) -> float:
    """The shorter of ``repeats`` timed calls (the first also warms up)."""
    return min(_clock(fn, device)[1] for _ in range(repeats))


def _measure(G: Generator, z: Tensor, num_probes: int) -> AutoCosts:
    """Time one JVP pass of ``min(k, 32)`` columns, one metric product of ``num_probes``
    vectors and a Cholesky + inverse of the batch's ``k × k`` (at ``k ≤ 256``, scaled)."""
    B, k = z.shape
    z = z.detach()
    dtype = work_dtype(z.dtype)
    with torch.no_grad():
        c = min(k, 32)
        tangents = torch.eye(k, dtype=z.dtype, device=z.device)[:c]
        column = _best_time(lambda: jacobian_columns(G, z, tangents), z.device) / c
        matvec = metric_matvec(G, z, check_coupling=False)
        # Any vectors time a product: fixed ones leave the caller's random stream alone.
        V = torch.ones(B, k, num_probes, dtype=dtype, device=z.device)
        product = _best_time(lambda: matvec(V), z.device)
        kd = min(k, _DENSE_SIZE)
        M = torch.eye(kd, dtype=dtype, device=z.device).expand(B, kd, kd) * 2

        def dense_algebra():
            L, _ = torch.linalg.cholesky_ex(M)
            return torch.cholesky_inverse(L)

        dense = _best_time(dense_algebra, z.device) * (k / kd) ** 3
    return AutoCosts(column, product, dense)


def _first_probes(options: dict, k: int) -> tuple[int, int | None]:
    """The first round's probes per sample ``p₀`` (``num_probes``, at most the population
    ``K`` of probes drawn without replacement) and ``K`` (``None`` for i.i.d. probes)."""
    deflate = options.get("deflate") or 0
    population = probe_population(options.get("probes", DEFAULT_PROBES), k,
                                  deflate if isinstance(deflate, int) else 0)
    first = options.get("num_probes") or DEFAULT_NUM_PROBES
    return min(first, population or math.inf), population


def auto_choice(G: Generator, z: Tensor, fn: SpectralFunction | str = "logdet",
                **options) -> tuple[str, AutoCosts | None]:
    r"""The path ``method="auto"`` takes for ``(G, z)``: ``("exact" | "lanczos", costs)``.

    A cost model in seconds, from unit costs measured on the actual generator, shape,
    dtype and device (once per process, cached for ``G``; ``costs`` is ``None`` below
    :data:`AUTO_CROSSOVER`, where exact is taken without measuring):

    .. math::
        T_\text{exact} = k\,t_\text{col}(1 + 2\,[\text{grad}]) + t_\text{dense}(k),
        \qquad
        T_\text{stoch} = \frac{p}{p_0}\, m\, t_\text{step}(p_0)
                        + [\text{grad}]\, p\, t_\text{col} (1 + 2),

    ``t_col`` one Jacobian column in a batched JVP, ``t_step(p₀)`` one Lanczos step (a
    product with ``M`` of the ``p₀ = num_probes`` probes), ``t_dense`` the ``k × k``
    Cholesky and inverse, a backward through JVPs taken as twice their forward pass.
    ``m``: Lanczos steps per probe, :data:`AUTO_STEPS_PRIOR` until a stochastic run of
    this ``G`` and shape was seen, then the steps it took. ``p``: ``num_probes``, or with
    ``rtol`` the probes that reach it, ``max(p₀, 1/(1/p_iid + 1/K))`` with
    ``p_iid = (z·s/rtol)²`` (``z = RTOL_Z``; ``K`` the population of probes drawn without
    replacement, :func:`~..linalg.probes.probe_population`, none for i.i.d. ones) and
    ``s`` the per-probe relative spread last seen for this ``G`` (else
    ``√(2/k)·AUTO_SPREAD_PRIOR``), capped at ``max_probes``; with the default gradient
    target (:func:`~.stochastic.default_gradient_target`), the probes the last stochastic
    run of this ``G`` and shape took (``p₀`` before one). Exact is taken whenever it is
    predicted no slower, and whenever ``rtol`` would need more probes than ``max_probes``
    (exact meets any ``rtol``).

    **What the calls measured corrects the model, and near-ties are measured.** Every
    call of ``auto`` is timed; each path's forward seconds are then scaled by the
    smallest ratio of measured to modelled seconds it has shown (at the probes and steps
    it took). Where the two predictions are within :data:`AUTO_NEAR_TIE` of each other
    (:data:`AUTO_NEAR_TIE_MODELLED` while a path was never timed), the next calls try
    the paths in turn, timed (with the model's backward pass added when gradients are
    on), until each has :data:`AUTO_TRIALS` trials (``costs.trial``); from then on the
    path with the shorter best time is taken (``costs.measured``). All of it is kept per
    ``G``, shape, dtype, device, the options that change the cost and whether gradients
    are on.
    """
    k = z.shape[1]
    if k < AUTO_CROSSOVER:
        return "exact", None
    p0, population = _first_probes(options, k)
    key = _key(z, p0)
    units = _cache(_UNIT_COSTS, G)
    if key not in units:
        units[key] = _measure(G, z, p0)
    costs = AutoCosts(**{f: getattr(units[key], f) for f in ("column", "product", "dense")})
    seen = _cache(_SEEN, G).get(key, {})
    steps = seen.get("steps", float(AUTO_STEPS_PRIOR))
    probes = p0
    rtol = options.get("rtol")
    if rtol is not None:
        spread = seen.get("spread", math.sqrt(2.0 / k) * AUTO_SPREAD_PRIOR)
        probes = max(p0, math.ceil(probes_to_match((RTOL_Z * spread / rtol) ** 2, population)))
        cap = options.get("max_probes") or max(DEFAULT_MAX_PROBES, p0)
        if probes > cap:
            costs.probes, costs.steps = probes, steps
            costs.exact, costs.stochastic = 0.0, math.inf
            return "exact", costs
    if default_gradient_target(G, **{name: options.get(name) for name in _TARGET_OPTIONS}):
        # The default gradient target's probes are known only once measured: those of the
        # last stochastic run of this G and shape (p₀ before any).
        probes = max(p0, seen.get("probes", p0))
    grad = torch.is_grad_enabled()
    trials = _trials(G, key, options)
    forward = _forward_model(costs, k, probes, steps, p0, grad)
    scale = trials["scale"]  # measured ÷ modelled forward seconds, once a path was timed
    costs.exact = scale.get("exact", 1.0) * forward["exact"] + grad * _backward(k, costs)
    costs.stochastic = (scale.get("lanczos", 1.0) * forward["lanczos"]
                        + grad * _backward(probes, costs))
    costs.probes, costs.steps = probes, steps
    model = "exact" if costs.exact <= costs.stochastic else "lanczos"
    near = AUTO_NEAR_TIE if len(scale) == len(_PATHS) else AUTO_NEAR_TIE_MODELLED
    if max(costs.exact, costs.stochastic) > near * min(costs.exact, costs.stochastic):
        return model, costs
    if min(len(trials[path]) for path in _PATHS) < AUTO_TRIALS:
        # the path with fewer trials so far (the model's on a tie): alternating
        costs.trial = True
        return min(_PATHS, key=lambda path: (len(trials[path]), path != model)), costs
    costs.measured = {path: min(trials[path]) for path in _PATHS}
    return min(_PATHS, key=costs.measured.__getitem__), costs


def _forward_model(costs: AutoCosts, k: int, probes: float, steps: float, p0: int,
                   grad: bool) -> dict[str, float]:
    """The model's seconds of each path's call itself (its backward runs later): exact,
    ``k`` JVP columns and the dense algebra; Lanczos, ``p/p₀ · m`` batched products and
    (gradients on) the surrogate's ``p`` JVP columns."""
    return {"exact": k * costs.column + costs.dense,
            "lanczos": (probes / p0) * steps * costs.product + grad * probes * costs.column}


def _backward(columns: float, costs: AutoCosts) -> float:
    """The model's backward pass through ``columns`` JVPs: twice their forward pass."""
    return _BACKWARD_FACTOR * columns * costs.column


def _trials(G: Generator, key: tuple, options: dict) -> dict:
    """For ``G``, ``key`` and the cost-relevant options (and whether gradients are on),
    kept per process like the unit costs: each path's trial seconds (``"exact"``,
    ``"lanczos"``) and ``"scale"``, each path's smallest ratio of measured to modelled
    seconds so far (1 until timed), which corrects what the unit costs leave out (on
    the zoo, Lanczos' bookkeeping and its stopping rule: ~half its time)."""
    signature = (torch.is_grad_enabled(),
                 tuple((name, repr(options.get(name))) for name in _COST_OPTIONS))
    seen = _cache(_SEEN, G).setdefault(key, {})
    return seen.setdefault("trials", {}).setdefault(
        signature, {**{path: [] for path in _PATHS}, "scale": {}})


# Options of the stochastic path that the exact answer satisfies as it is: no warning
# when auto goes exact (exact meets any rtol and draws no random numbers).
_SATISFIED_BY_EXACT = frozenset({"rtol", "grad_rtol", "max_probes", "generator"})


def auto_spectral_sum(G: Generator, z: Tensor, fn: SpectralFunction, **options):
    """``method="auto"``: exact or ``"lanczos"``, whichever :func:`auto_choice` predicts to
    be faster on this generator, shape and device (exact below ``k = AUTO_CROSSOVER``).

    ``rtol`` enters the prediction (more probes for a tighter target; ``grad_rtol`` does
    not: a gradient's spread is unknown before it is measured); when exact is chosen it
    meets both as it is, and ``rtol``, ``grad_rtol``, ``max_probes`` and ``generator`` are
    dropped silently. Any other option meant only for the path not taken (``num_probes`` when
    exact is chosen, ``chunk_size`` when ``"lanczos"`` is) is left out with a
    ``UserWarning`` that names it and the path chosen. With ``return_info=True``,
    ``info["auto"]`` holds the :class:`AutoCosts` (``None`` below the crossover). A
    near-tie (:data:`AUTO_NEAR_TIE`) is settled by timed trials of both paths over the
    next calls (:func:`auto_choice`).
    """
    valid = isinstance(z, Tensor) and z.dim() == 2
    k = z.shape[-1] if valid else 0
    path, costs = auto_choice(G, z, fn, **options) if valid else ("exact", None)
    p0 = _first_probes(options, k)[0]
    record = None if costs is None else _trials(G, _key(z, p0), options)
    stochastic = path == "lanczos"
    used, other = (STOCHASTIC_OPTIONS, EXACT_OPTIONS) if stochastic else (
        EXACT_OPTIONS, STOCHASTIC_OPTIONS)
    for name in sorted(set(options) - used):
        if name in other:
            del options[name]
            if not stochastic and name in _SATISFIED_BY_EXACT:
                continue
            rule = (f"k={k} < AUTO_CROSSOVER={AUTO_CROSSOVER}" if costs is None else
                    f"predicted {costs.exact:.3g} s for 'exact', {costs.stochastic:.3g} s "
                    "for 'lanczos'")
            warn(f"method='auto' chose {path!r} ({rule}); option {name!r} is not used by "
                 f"{path!r} and is ignored. Pass method={path!r} or the other method "
                 "explicitly to control the choice.", UserWarning)
    if not stochastic:
        out, seconds = _clock(lambda: exact_spectral_sum(G, z, fn, **options), z.device)
        if record is not None:
            _record(record, "exact", seconds, k, costs, costs.trial, k=k, probes=0, steps=0.0,
                    p0=p0)
        if isinstance(out, SpectralEstimate):
            out.info["auto"] = costs
        return out
    want_info = options.pop("return_info", False)
    est, seconds = _clock(lambda: lanczos_spectral_sum(G, z, fn, return_info=True, **options),
                          z.device)
    if record is not None:
        _remember(G, z, p0, est.info)
        probes = est.info["num_probes"]
        columns = probes * (1 if options.get("symmetric", True) else 2)
        _record(record, "lanczos", seconds, columns, costs, costs.trial, k=k, probes=probes,
                steps=float(est.info["iterations"].float().mean()), p0=p0)
    est.info["auto"] = costs
    return est if want_info else est.value


def _record(record: dict, path: str, seconds: float, columns: int, costs: AutoCosts,
            trial: bool, **model) -> None:
    """What a call of ``path`` taught: its measured over modelled seconds (at the probes
    and steps it actually took) into ``record["scale"]``, and for a trial its seconds
    plus the model's backward pass (gradients on), which runs later in the caller's
    backward."""
    grad = torch.is_grad_enabled()
    modelled = _forward_model(costs, grad=grad, **model)[path]
    if modelled > 0:
        record["scale"][path] = min(record["scale"].get(path, math.inf), seconds / modelled)
    if trial:
        record[path].append(seconds + grad * _backward(columns, costs))


def _remember(G: Generator, z: Tensor, p0: int, info: dict) -> None:
    """Keep the steps per probe and the per-probe relative spread a stochastic run saw."""
    key = _key(z, p0)
    rel = info["rel_probe_spread"]
    finite = rel[torch.isfinite(rel)]
    seen = _cache(_SEEN, G).setdefault(key, {})
    seen.update(steps=float(info["iterations"].float().mean()), probes=info["num_probes"])
    if finite.numel():
        seen["spread"] = float(finite.max())


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
            ``"chebyshev"`` (Chebyshev–Hutchinson), ``"auto"`` (exact or ``"lanczos"`` from a
            measured cost model, :func:`auto_choice`), or a registered estimator.
        **options: for every method: ``return_info``, ``jitter``, ``on_singular``
            (``"warn"``/``"raise"``), ``check_coupling`` (default ``True``: refuse a ``G``
            that mixes the samples of a batch); for ``"exact"`` also ``chunk_size``,
            ``rank_tol``;
            for the stochastic methods ``num_probes``, ``num_matvecs``, ``tol`` (default
            ``None``: the unbiased adaptive stopping rule), ``rtol``, ``grad_rtol``,
            ``max_probes``, ``probes``, ``generator``, ``deflate``, ``on_nonconvergence``,
            ``symmetric``
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
    # The metric algebra (JᵀJ, Lanczos, solves) as well as the products runs in full
    # precision whatever the caller's autocast or TF32 settings (linalg/jacobian.py).
    with full_precision(z.device if isinstance(z, Tensor) else None):
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
