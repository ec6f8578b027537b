r"""Stochastic spectral backpropagation: matrix-free ``tr g(JᵀJ)`` and its gradient.

For probes ``ε`` with ``E[εεᵀ] = I`` and ``M = JᵀJ`` (Ramesh & LeCun 2018,
arXiv 1806.00499, §3; DESIGN.md §1):

.. math::
    S_g = \operatorname{tr} g(M) = E_\varepsilon[\varepsilon^\top g(M)\, \varepsilon], \qquad
    dS_g = \operatorname{tr}(g'(M)\, dM) = E_\varepsilon\big[d\,(J u)\cdot(J \varepsilon)\big],
    \quad u = g'(M)\,\varepsilon \text{ held fixed}.

The value comes from a kernel (:mod:`.slq` for ``method="lanczos"``,
:mod:`.chebyshev_hutchinson` for ``method="chebyshev"``) that also returns
``u = g'(M)ε``, all without an autograd graph, through ``Mv = Jᵀ(Jv)`` (one JVP and
one VJP). The gradient is attached through a surrogate built from one batched JVP
with a graph per vector, so peak memory is set by the number of probes, never by the
number of Lanczos/CG steps or the polynomial degree. The value returned is
``estimate + (surrogate − surrogate.detach())``, as in the exact mode.

**Variance reduction 1: the symmetric split** (default, needs ``g' ≥ 0``: log det,
trace, nuclear norm). With ``w = g'(M)^{1/2} ε`` held fixed,
``tr(g'(M) dM) = tr(g'^{1/2} dM g'^{1/2}) = E[d ‖J w‖²]``. In the eigenbasis of ``M``
the plain estimator ``uᵀ dM ε`` weighs the pair ``(i, j)`` of its variance by
``((g'(λ_i) + g'(λ_j))/2)²`` and the split one by ``g'(λ_i) g'(λ_j)``, never more
(AM–GM); for log det and an eigenvalue spread ``κ`` the worst pair gains
``(1+κ)²/4κ``. ``w`` comes from the same Lanczos run as the value (``√g'`` of the
tridiagonal matrix, or its Chebyshev series), and the surrogate ``Σ_j ω_j ‖J w_j‖²``
needs one JVP per probe instead of two. ``symmetric=False`` gives the plain
``Σ_j ω_j (J u_j)·(J ε_j)`` with ``u = g'(M) ε`` (CG for log det with ``"chebyshev"``).

**Variance reduction 2: deflation** (``deflate=r``). A Lanczos sketch
(:mod:`.deflation`) finds Ritz vectors ``V`` where ``|g'|`` is largest (for log det
the smallest eigenpairs, which dominate ``M^{-1}``). With ``P = I − VVᵀ``,
``tr A = Σ_i v_iᵀ A v_i + E[εᵀ P A P ε]``: the columns of ``V`` enter with weight 1
and the probes are drawn in the complement, weight ``1/p``. Unbiased for any ``V``.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..linalg.jacobian import Generator, check_latents, jacobian_columns, metric_matvec
from ..linalg.probes import PROBE_KINDS, sample_probes
from .chebyshev_hutchinson import chebyshev_forms
from .deflation import SpectrumSketch, sketch_spectrum
from .exact import (
    check_singular_options,
    exact_spectral_sum,
    report_singular,
    singular_samples,
)
from .functions import SpectralFunction
from .quadratic import NonConvergenceError, NonConvergenceWarning, QuadraticForms, is_reciprocal
from .slq import lanczos_forms

__all__ = [
    "AUTO_CROSSOVER",
    "DEFAULT_NUM_MATVECS",
    "DEFAULT_NUM_PROBES",
    "SpectralEstimate",
    "auto_spectral_sum",
    "chebyshev_spectral_sum",
    "lanczos_spectral_sum",
    "stochastic_spectral_sum",
]

DEFAULT_NUM_PROBES = 8
DEFAULT_NUM_MATVECS = 64  # Lanczos steps per probe (an upper bound; tol stops earlier)
# On the benchmark DCGAN (k=512) tol=1e-2 leaves a bias far below the probe noise
# (cosine to the exact gradient unchanged from 3e-2 to 1e-2) at half the steps of 1e-3.
DEFAULT_TOL = 1e-2
# Lanczos steps of the spectrum sketch (bounds and deflation). On the benchmark DCGAN a
# 12-step sketch left the deflated Ritz vectors too rough to speed up the probes' own
# Lanczos runs (14 steps per probe instead of 9 after a 30-step sketch).
SKETCH_STEPS = 30
SKETCH_STEPS_PER_VECTOR = 4
# Latent size at and above which method="auto" goes stochastic. Measured with
# `benchmarks/bench_stochastic.py --crossover` (DCGAN 3×32×32, batch 2, 1 thread, CPU):
# exact/lanczos time 0.59 at k=32, 1.02 at 64, 1.50 at 128, 3.3 at 256, 4.9 at 512.
# Below 128 the exact answer costs about as much as the estimate, so auto keeps it.
AUTO_CROSSOVER = 128


@dataclass
class SpectralEstimate:
    """A stochastic estimate with its standard error and diagnostics.

    Attributes:
        value: ``Tensor[B]``, differentiable by stochastic spectral backpropagation.
        std_error: ``Tensor[B]`` standard error of the probe average (``nan`` with one
            probe; conservative for orthogonal probes, which are negatively correlated).
        info: diagnostics: ``method``, ``num_probes``, ``probes``, ``matvecs`` (products
            with ``M`` per sample, sketch included), ``iterations``/``residual``/
            ``converged`` per vector ``[B, c]`` (deflation vectors first), ``deflated``
            Ritz values, ``interval`` and ``degree`` (Chebyshev), ``singular`` samples.
    """

    value: Tensor
    std_error: Tensor
    info: dict = field(default_factory=dict)


def _check_options(num_probes, num_matvecs, tol, probes, generator, deflate, on_nonconvergence,
                   on_singular, jitter) -> None:
    if isinstance(num_probes, bool) or not isinstance(num_probes, int) or num_probes < 1:
        raise ValueError(f"num_probes must be a positive integer, got {num_probes!r}")
    if num_matvecs is not None and (
        isinstance(num_matvecs, bool) or not isinstance(num_matvecs, int) or num_matvecs < 1
    ):
        raise ValueError(f"num_matvecs must be a positive integer or None, got {num_matvecs!r}")
    if not isinstance(tol, (int, float)) or not tol >= 0:
        raise ValueError(f"tol must be a number >= 0, got {tol!r}")
    if probes not in PROBE_KINDS:
        raise ValueError(f"probes must be one of {', '.join(PROBE_KINDS)}; got {probes!r}")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    if deflate is not None and (isinstance(deflate, bool) or not isinstance(deflate, int)
                                or deflate < 0):
        raise ValueError(f"deflate must be an integer >= 0 or None, got {deflate!r}")
    if on_nonconvergence not in ("warn", "raise"):
        raise ValueError(f"on_nonconvergence must be 'warn' or 'raise', got {on_nonconvergence!r}")
    check_singular_options(on_singular, jitter)


def _report(forms: QuadraticForms, method: str, budget: object, tol: float, mode: str,
            skip: Tensor) -> None:
    # Samples in `skip` (singular metrics) have been reported already.
    failed = ~forms.converged & ~skip[:, None]
    if not bool(failed.any()):
        return
    bad = failed.any(-1).nonzero().flatten().tolist()
    worst = forms.residual[failed].max().item()
    msg = (
        f"method={method!r} did not reach tol={tol:g} within num_matvecs={budget} for samples "
        f"{bad} ({int(failed.sum())} of {forms.converged.numel()} vectors; worst "
        f"residual {worst:.3g}): the value and gradient are biased. Raise num_matvecs or tol."
    )
    _warn_or_raise(msg, mode, NonConvergenceError, NonConvergenceWarning)


def _warn_or_raise(msg: str, mode: str, error: type[Exception], warning: type[Warning]) -> None:
    if mode == "raise":
        raise error(msg)
    warnings.warn(msg, warning, stacklevel=5)


def _singular_samples(sketch: SpectrumSketch, fn: SpectralFunction, mode: str) -> Tensor:
    """Samples whose sketch shows a numerically singular metric (log/sqrt-type ``g`` only)."""
    values = sketch.values
    singular = torch.zeros(values.shape[0], dtype=torch.bool, device=values.device)
    if not fn.needs_positive:
        return singular
    # The numerical-rank cut-off of the exact mode, k·eps·λ_max, on the Ritz values.
    k = sketch.vectors.shape[1]
    top = torch.where(torch.isfinite(values), values, -torch.inf).amax(-1)
    lam = torch.stack([values[:, 0], top], -1)
    singular = singular_samples(lam, k * torch.finfo(values.dtype).eps * top.clamp_min(0))
    report_singular(singular, values[:, 0], fn, mode, stacklevel=5)
    return singular


def _surrogate(G: Generator, z: Tensor, U: Tensor, X: Tensor | None, weights: Tensor) -> Tensor:
    """``Σ_j ω_j (J u_j)·(J x_j)`` per sample (``x_j = u_j`` when ``X`` is ``None``).

    The graph runs through the JVPs only: ``u`` and ``x`` are constants.
    """
    tangents = U if X is None else torch.cat([U, X], dim=-1)
    _, JT = jacobian_columns(G, z, tangents.permute(2, 0, 1))  # [B, n, c or 2c]
    c = U.shape[-1]
    other = JT if X is None else JT[..., c:]
    return ((JT[..., :c] * other).sum(1) * weights).sum(-1)


def _sqrt_derivative(fn: SpectralFunction):
    def h(x: Tensor) -> Tensor:
        d = fn.dg(x)
        if bool((d < 0).any()):
            raise ValueError(
                f"symmetric=True needs g' >= 0 on the spectrum, but {fn.name}' is negative at "
                f"{x[d < 0].min().item():.3g}: pass symmetric=False (for log det or sqrt this "
                "means a numerically singular metric: pass jitter=... instead)"
            )
        return d.sqrt()

    return h


def stochastic_spectral_sum(
    G: Generator,
    z: Tensor,
    fn: SpectralFunction,
    *,
    method: str = "lanczos",
    num_probes: int = DEFAULT_NUM_PROBES,
    num_matvecs: int | None = None,
    tol: float = DEFAULT_TOL,
    probes: str = "rademacher",
    generator: torch.Generator | None = None,
    deflate: int | None = 0,
    jitter: float = 0.0,
    on_nonconvergence: str = "warn",
    on_singular: str = "warn",
    symmetric: bool = True,
    return_info: bool = False,
) -> Tensor | SpectralEstimate:
    """Stochastic ``Σ_i g(λ_i(JᵀJ + jitter·I))`` per sample, with its gradient.

    ``tr g(M) ≈ Σ_j ω_j x_jᵀ g(M) x_j`` and ``dS ≈ Σ_j ω_j d‖J w_j‖²`` with
    ``w = g'(M)^{1/2} x`` (or ``(J u)·(J x)``, ``u = g'(M)x``); Ramesh & LeCun 2018,
    arXiv 1806.00499, §3; see the module docstring.

    Args:
        G: generator ``z[B, k] -> x[B, ...]``.
        z: latents ``[B, k]``.
        fn: the spectral function.
        method: ``"lanczos"`` (stochastic Lanczos quadrature) or ``"chebyshev"``
            (Chebyshev–Hutchinson).
        num_probes: random probes per sample (``p``).
        num_matvecs: per vector: maximum Lanczos steps (``"lanczos"``, default 64; ``tol``
            stops earlier), or the polynomial degree and CG budget (``"chebyshev"``;
            default: degree from ``tol`` and the condition number, CG budget ``k``).
        tol: relative tolerance of the iterative parts (see :mod:`.slq`,
            :mod:`.chebyshev_hutchinson`).
        probes: ``"rademacher"``, ``"gaussian"`` or ``"orthogonal"`` (exact for
            ``num_probes = k − deflate``).
        generator: ``torch.Generator`` on ``z``'s device, for repeatable probes.
        deflate: Ritz vectors of a Lanczos sketch treated exactly (default 0: on the
            benchmark DCGAN, ``deflate=2`` saved a quarter of the products at the same
            gradient error but ran slower, the sketch being one sequential column).
        jitter: added to the metric's diagonal.
        on_nonconvergence: ``"warn"`` (:class:`NonConvergenceWarning`) or ``"raise"``
            (:class:`NonConvergenceError`) when the budget is not enough.
        on_singular: ``"warn"`` or ``"raise"`` when the sketch finds a numerically singular
            metric for ``log``/``sqrt``-type ``g`` (only detected when a sketch runs:
            ``method="chebyshev"`` or ``deflate > 0``).
        symmetric: gradient from ``w = g'(M)^{1/2}ε`` (lower variance, needs ``g' ≥ 0``);
            ``False``: from ``u = g'(M)ε`` and ``ε``.
        return_info: return a :class:`SpectralEstimate` instead of the value.

    Returns:
        ``Tensor[B]`` (or a :class:`SpectralEstimate`).
    """
    if method not in ("lanczos", "chebyshev"):
        raise ValueError(f"method must be 'lanczos' or 'chebyshev', got {method!r}")
    _check_options(num_probes, num_matvecs, tol, probes, generator, deflate, on_nonconvergence,
                   on_singular, jitter)
    check_latents(G, z)
    B, k = z.shape
    dtype, device = z.dtype, z.device
    deflate = 0 if deflate is None else deflate
    if deflate >= k:
        raise ValueError(f"deflate={deflate} must be smaller than k={k}")
    base = metric_matvec(G, z)
    matvec = base if not jitter else (lambda V: base(V) + jitter * V)
    budget = DEFAULT_NUM_MATVECS if (method == "lanczos" and num_matvecs is None) else num_matvecs

    info: dict = {"method": method, "num_probes": num_probes, "probes": probes, "matvecs": 0}
    V, ritz = z.new_zeros(B, k, 0), z.new_zeros(B, 0)
    sketch = None
    if method == "chebyshev" or deflate > 0:
        steps = min(k, max(SKETCH_STEPS, SKETCH_STEPS_PER_VECTOR * deflate))
        sketch = sketch_spectrum(matvec, B, k, steps, generator=generator, dtype=dtype,
                                 device=device)
        info["matvecs"] += sketch.matvecs
        r = min(deflate, int(torch.isfinite(sketch.values).sum(-1).min()))
        V, ritz = sketch.deflation_basis(r, fn.dg)

    singular = torch.zeros(B, dtype=torch.bool, device=device)
    if sketch is not None:
        singular = _singular_samples(sketch, fn, on_singular)
    info["singular"] = singular

    eps = sample_probes(B, k, num_probes, probes, basis=V if V.shape[-1] else None,
                        generator=generator, dtype=dtype, device=device)
    X = torch.cat([V, eps], dim=-1)
    r = V.shape[-1]
    weights = torch.cat([torch.ones(r, dtype=dtype, device=device),
                         torch.full((num_probes,), 1.0 / num_probes, dtype=dtype, device=device)])
    need_grad = torch.is_grad_enabled()
    if not need_grad:
        vector_fn, solve = None, False
    elif symmetric:
        vector_fn, solve = _sqrt_derivative(fn), False
    else:
        vector_fn, solve = fn.dg, is_reciprocal(fn)
    if singular.any():
        # Keep the solvers away from the null space: those samples are reported and
        # excluded below, so their matvec may be anything finite and SPD.
        shift = torch.where(singular, torch.ones_like(singular, dtype=dtype), 0)[:, None, None]
        solve_mv = lambda W: matvec(W) + shift * W  # noqa: E731
    else:
        solve_mv = matvec
    if method == "lanczos":
        forms = lanczos_forms(solve_mv, X, fn, num_matvecs=budget, tol=tol, vector_fn=vector_fn,
                              solve=solve)
    else:
        assert sketch is not None
        forms = chebyshev_forms(solve_mv, X, fn, bounds=sketch.bounds(), num_matvecs=budget,
                                tol=tol, vector_fn=vector_fn, solve=solve,
                                cg_iters=k if budget is None else budget)
        info["interval"] = forms.extra["interval"]
        info["degree"] = forms.extra["degree"]
    info["matvecs"] += forms.matvecs
    if r:
        info["deflated"] = ritz  # from the sketch: no extra product with M
    info.update(iterations=forms.iterations, residual=forms.residual, converged=forms.converged)
    _report(forms, method, budget if budget is not None else "auto", tol, on_nonconvergence,
            singular)

    value = (forms.values * weights).sum(-1)
    std_error = (
        forms.values[:, r:].std(-1) / math.sqrt(num_probes)
        if num_probes > 1
        else torch.full_like(value, float("nan"))
    )
    if singular.any():
        value = torch.where(singular, fn.g(torch.zeros_like(value)), value)
    if need_grad and forms.vectors is not None:
        w = weights * (~singular).to(dtype)[:, None]
        s = _surrogate(G, z, forms.vectors, None if symmetric else X, w)
        if s.requires_grad:
            value = value + (s - s.detach())
    if return_info:
        return SpectralEstimate(value, std_error, info)
    return value


def lanczos_spectral_sum(G: Generator, z: Tensor, fn: SpectralFunction, **options):
    """``method="lanczos"``: stochastic Lanczos quadrature (see :func:`stochastic_spectral_sum`)."""
    return stochastic_spectral_sum(G, z, fn, method="lanczos", **options)


def chebyshev_spectral_sum(G: Generator, z: Tensor, fn: SpectralFunction, **options):
    """``method="chebyshev"``: Chebyshev–Hutchinson (see :func:`stochastic_spectral_sum`)."""
    return stochastic_spectral_sum(G, z, fn, method="chebyshev", **options)


_EXACT_OPTIONS = ("chunk_size", "jitter", "on_singular", "rank_tol")


def auto_spectral_sum(G: Generator, z: Tensor, fn: SpectralFunction, **options):
    """``method="auto"``: exact below ``k = AUTO_CROSSOVER = 128`` latents, else ``"lanczos"``.

    The crossover was measured with ``benchmarks/bench_stochastic.py --crossover``
    (docs/stochastic.md): on a DCGAN with 3×32×32 output the stochastic value and
    gradient at the default budget took as long as the exact ones at ``k = 64``, 1.5×
    less at 128 and 4.9× less at 512. Options meant for the other path are ignored.
    """
    k = z.shape[-1] if isinstance(z, Tensor) and z.dim() == 2 else 0
    return_info = options.pop("return_info", False)
    if k >= AUTO_CROSSOVER:
        options.pop("chunk_size", None)
        options.pop("rank_tol", None)
        return lanczos_spectral_sum(G, z, fn, return_info=return_info, **options)
    value = exact_spectral_sum(G, z, fn, **{o: options[o] for o in _EXACT_OPTIONS if o in options})
    if return_info:
        return SpectralEstimate(value, torch.zeros_like(value.detach()), {"method": "exact"})
    return value
