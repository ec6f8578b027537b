r"""Stochastic spectral backpropagation: matrix-free ``tr g(JᵀJ)`` and its gradient.

For probes ``ε`` with ``E[εεᵀ] = I`` and ``M = JᵀJ`` (Ramesh & LeCun 2018,
arXiv 1806.00499, §3):

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

The estimator reads in three steps: :func:`_prepare` (products with ``M``, the optional
spectrum sketch, probes and their weights), :func:`_kernel` (the quadratic forms and
gradient vectors, without a graph) and :func:`_estimate` (the weighted value, its
standard error ``s/√p`` over the probes — times ``(1 − p/K)^{1/2}`` for probes drawn
without replacement, and never below the kernels' estimated quadrature error — and the
surrogate).

**The probes** (``probes="hadamard"``, the default) are Rademacher vectors drawn without
replacement from ``K = 2^⌈log₂ k⌉`` (a randomly signed, column-permuted Hadamard
matrix, :mod:`~..linalg.probes`). Each alone is an ordinary Rademacher probe, but
together they are negatively correlated: the variance of the mean is
``σ²/p · (K − p)/(K − 1)``, never more than i.i.d. probes give, and zero once all ``K``
are drawn (then the trace is exact up to the quadrature; more are never drawn). The
standard error carries the finite-population factor, ``s/√p · (1 − p/K)^{1/2}``, and so
does the gradient's (:mod:`.gradient_spread`). This pays where ``p`` is a fair share of
``k``: with ``rtol`` on a sample whose log det is small against its spread, where i.i.d.
probes would need thousands.

**The stopping rule: unbiased by default.** Each probe's quadrature (or series) carries
an error that, for ``log`` and ``√``, has one sign (Gauss quadrature overestimates them),
so it survives averaging over probes: with a per-vector *relative* tolerance
(``tol=1e-2``, the former default) it left a bias of +7 to +22 nats on ``k = 256–512``
generators, whatever the number of probes. By default (``tol=None``) every vector
instead stops when the absolute error of its quadratic form is within a budget tied to
the statistical error the estimate will have (:mod:`.slq`, :mod:`.chebyshev_hutchinson`;
``σ̂/√p`` is the i.i.d. standard error, which the finite-population factor can only
lower: near ``p = K`` the quadrature's error is a larger share of the error, and the
reported standard error is then its estimate):

.. math::  |\hat e_j| \le \eta = c\,\hat\sigma/\sqrt{p}
           \quad\text{or, with rtol,}\quad \eta = c \cdot \mathrm{rtol}\,|\hat S| / z,
           \qquad c = 0.1 ,

``σ̂`` the per-probe standard deviation (the smaller of the probes' spread, less their
largest error estimate, and ``(mean_j 2‖g(M) − q̄_j I‖_F²)^{1/2}`` from each probe's Ritz
values, which bounds it for Rademacher and Gaussian probes; Avron & Toledo 2011). The
bias of the mean is then at most ``c`` standard errors (the mean squared error grows by
at most ``c² = 1%``), however many probes are used, and it falls with ``1/√p`` as the
noise does. With deflation, half of ``η`` goes to the ``r`` deflated vectors
(``η/2r`` each: they enter with weight 1). The gradient's vectors stop at a relative
change below ``min(0.01, c/√p)``. ``tol`` remains an explicit override (the relative
tolerance of the former rule).

**Accuracy on request** (``rtol``): a bound on the relative error at 95% confidence.
Probes are added in rounds, every earlier probe kept (values and gradient vectors),
until every sample's standard error is at most ``rtol·|S|/z`` (``z = RTOL_Z = 1.96``,
the normal 97.5% quantile: the mean of many probes is close to normal, so the error is
within ``rtol·|S|`` in about 95% of draws) or ``max_probes`` probes were used; each
round is sized from the spread measured so far: ``p_iid = 1.1 p (z·se/(rtol |S|))²/f``
i.i.d. probes (``f = 1 − p/K`` undoes the finite-population factor), then the
``1/(1/p_iid + 1/K)`` drawn without replacement that match them (at least half again;
at most ``K``, which ends the rounds). The gradient surrogate uses every probe.
``info`` reports ``rel_std_error``, ``rel_probe_spread``, ``quadrature_error``,
``probes``, ``matvecs``, ``rounds`` and ``met``; a budget that ran out warns with
:class:`~.diagnostics.AccuracyNotMetWarning`. ``grad_rtol`` does the same for the
relative standard error of the parameter gradient, measured from groups of probes
(:mod:`.gradient_spread`).

**The default gradient target.** A call that takes a gradient with respect to ``G``'s
parameters and fixes none of ``num_probes``, ``rtol``, ``grad_rtol``, ``max_probes``,
``deflate`` gets ``grad_rtol = DEFAULT_GRAD_RTOL = 0.45`` (cosine ≈ 0.91 to the exact
gradient) within ``DEFAULT_GRAD_MAX_PROBES = 128`` probes (:func:`default_gradient_target`):
a fixed 8 probes gave cosines from 0.23 to 0.98 on the zoo at k = 256, by generator and
batch (``benchmarks/bench_grad_rtol.py --defaults``). ``num_probes=p`` fixes the count.

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
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from ..linalg.jacobian import (
    Generator,
    check_latents,
    jacobian_columns,
    metric_matvec,
    work_dtype,
)
from ..linalg.probes import PROBE_KINDS, ProbeStream, finite_population_factor, probes_to_match
from ..stats import standard_error
from .chebyshev_hutchinson import MAX_USER_DEGREE, chebyshev_forms
from .deflation import sketch_spectrum
from .diagnostics import (
    check_singular_options,
    report_accuracy,
    report_gradient_accuracy,
    report_nonconvergence,
    report_nonfinite,
    ritz_singular_samples,
    sketch_singular_samples,
)
from .estimate import SpectralEstimate
from .functions import SpectralFunction
from .gradient_spread import GradientSpread
from .quadratic import ErrorBudget, QuadraticForms, is_reciprocal
from .slq import lanczos_forms
from .surrogate import first_order_only

__all__ = [
    "BIAS_FRACTION",
    "DEFAULT_GRAD_MAX_PROBES",
    "DEFAULT_GRAD_RTOL",
    "DEFAULT_MAX_PROBES",
    "DEFAULT_NUM_MATVECS",
    "DEFAULT_NUM_PROBES",
    "DEFAULT_PROBES",
    "DEFAULT_TOL",
    "chebyshev_spectral_sum",
    "default_gradient_target",
    "lanczos_spectral_sum",
    "stochastic_spectral_sum",
]

DEFAULT_NUM_PROBES = 8  # the first (or only) round's probes per sample
# The default gradient target: where a call takes G's parameter gradient and fixes neither
# the probes nor a target, probes are added until the gradient's relative standard error
# is at most 0.45, a cosine to the exact gradient of about 1/√(1 + 0.45²) = 0.91. Eight
# probes alone gave cosines from 0.22 (an MLP, k = 256, batch 2) to 0.93 (a DCGAN,
# k = 512, batch 16) on the zoo: a fixed count does not fit every generator and batch.
# Its budget: at 128 probes of ~25 Lanczos steps the exact mode is cheaper at every k
# these machines handle (~k columns of JVP and VJP), so the default stops there and says so.
DEFAULT_GRAD_RTOL = 0.45
DEFAULT_GRAD_MAX_PROBES = 128
# Rademacher probes drawn without replacement: never more variance than i.i.d. ones, and
# exact once all 2^⌈log₂ k⌉ are drawn (linalg.probes).
DEFAULT_PROBES = "hadamard"
DEFAULT_NUM_MATVECS = 64  # Lanczos steps per probe (an upper bound; the rule stops earlier)
# The former default relative tolerance, kept as the tolerance of the gradient's vectors
# (cosine to the exact gradient on the benchmark DCGAN unchanged from 3e-2 to 1e-2) and
# for baselines that need a fixed tolerance (Hutchinson + CG in the benchmarks). The
# value's default is the adaptive rule (module docstring): tol=None.
DEFAULT_TOL = 1e-2
# c of the stopping rule: the bias of the mean is at most c standard errors, so the
# mean squared error grows by at most c² = 1% over the probe noise alone.
BIAS_FRACTION = 0.1
DEFAULT_MAX_PROBES = 1024  # probe budget per sample with rtol or grad_rtol
# rtol bounds the relative error at 95% confidence: the standard error is driven to
# rtol/RTOL_Z (the normal 97.5% quantile), not to rtol, which would leave ~1 draw in 3
# outside it.
RTOL_Z = 1.96
# Lanczos steps of the spectrum sketch (bounds and deflation). On the benchmark DCGAN a
# 12-step sketch left the deflated Ritz vectors too rough to speed up the probes' own
# Lanczos runs (14 steps per probe instead of 9 after a 30-step sketch).
SKETCH_STEPS = 30
SKETCH_STEPS_PER_VECTOR = 4

Matvec = Callable[[Tensor], Tensor]


def _validate_options(G, z, method, num_probes, num_matvecs, tol, rtol, grad_rtol, max_probes,
                      probes, generator, deflate, jitter, on_nonconvergence, on_singular,
                      symmetric) -> int:
    """Check every option of :func:`stochastic_spectral_sum`, and return ``max_probes``
    with its default (``0`` without ``rtol`` or ``grad_rtol``)."""
    if method not in ("lanczos", "chebyshev"):
        raise ValueError(f"method must be 'lanczos' or 'chebyshev', got {method!r}")
    check_latents(G, z)
    check_singular_options(on_singular, jitter)
    k = z.shape[1]
    if isinstance(num_probes, bool) or not isinstance(num_probes, int) or num_probes < 1:
        raise ValueError(f"num_probes must be a positive integer or None, got {num_probes!r}")
    if num_matvecs is not None and (
        isinstance(num_matvecs, bool) or not isinstance(num_matvecs, int) or num_matvecs < 1
    ):
        raise ValueError(f"num_matvecs must be a positive integer or None, got {num_matvecs!r}")
    if method == "chebyshev" and num_matvecs is not None and num_matvecs > MAX_USER_DEGREE:
        raise ValueError(
            f"num_matvecs={num_matvecs} exceeds the largest Chebyshev degree, "
            f"{MAX_USER_DEGREE}: a spectrum that needs more is too ill-conditioned for a "
            "polynomial; use method='lanczos' (or jitter=...)"
        )
    if tol is not None and not _finite_number(tol, allow_zero=True):
        raise ValueError(f"tol must be a number >= 0 (and finite) or None, got {tol!r}")
    if rtol is not None and not _finite_number(rtol):
        raise ValueError(f"rtol must be None or a finite number > 0, got {rtol!r}")
    _check_grad_rtol(G, grad_rtol, deflate)
    targets = rtol is not None or grad_rtol is not None
    if max_probes is not None:
        if not targets:
            raise ValueError("max_probes is the probe budget of rtol=... or grad_rtol=...: "
                             "pass one of them too")
        if isinstance(max_probes, bool) or not isinstance(max_probes, int) or \
                max_probes < num_probes:
            raise ValueError(f"max_probes must be an integer >= num_probes={num_probes}, "
                             f"got {max_probes!r}")
    if not isinstance(probes, str) or probes not in PROBE_KINDS:
        raise ValueError(f"probes must be one of {', '.join(PROBE_KINDS)}; got {probes!r}")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    if deflate is not None and (isinstance(deflate, bool) or not isinstance(deflate, int)
                                or deflate < 0):
        raise ValueError(f"deflate must be an integer >= 0 or None, got {deflate!r}")
    if deflate is not None and deflate >= k:
        raise ValueError(f"deflate={deflate} must be smaller than k={k}")
    if not isinstance(on_nonconvergence, str) or on_nonconvergence not in ("warn", "raise"):
        raise ValueError(f"on_nonconvergence must be 'warn' or 'raise', got {on_nonconvergence!r}")
    if not isinstance(symmetric, bool):
        raise TypeError(f"symmetric must be True or False, got {symmetric!r}")
    if not targets:
        return 0
    return max(DEFAULT_MAX_PROBES, num_probes) if max_probes is None else max_probes


def _check_grad_rtol(G, grad_rtol, deflate) -> None:
    if grad_rtol is None:
        return
    if not _finite_number(grad_rtol):
        raise ValueError(f"grad_rtol must be None or a finite number > 0, got {grad_rtol!r}")
    if not torch.is_grad_enabled():
        raise ValueError("grad_rtol targets the parameter gradient, but gradients are "
                         "disabled (torch.no_grad): drop grad_rtol or enable gradients")
    if not isinstance(G, torch.nn.Module) or not _gradient_params(G):
        raise ValueError("grad_rtol targets the gradient with respect to G's parameters: G "
                         "must be a torch.nn.Module with parameters that require grad")
    if deflate:
        raise ValueError("grad_rtol is not available with deflate > 0 (the deflated part "
                         "of the gradient is not a probe mean): pass deflate=0")


def _finite_number(value: object, allow_zero: bool = False) -> bool:
    """A finite real number (not a bool), positive (or zero with ``allow_zero``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return (value >= 0 if allow_zero else value > 0) and value < float("inf")


def _gradient_params(G: torch.nn.Module) -> list[Tensor]:
    return [p for p in G.parameters() if p.requires_grad]


def default_gradient_target(G: Generator, *, num_probes: int | None = None,
                            rtol: float | None = None, grad_rtol: float | None = None,
                            max_probes: int | None = None, deflate: int | None = 0) -> bool:
    """Whether a call with these options gets the default gradient target
    (:data:`DEFAULT_GRAD_RTOL` within :data:`DEFAULT_GRAD_MAX_PROBES` probes): it takes a
    gradient with respect to ``G``'s parameters (gradients enabled, an ``nn.Module`` with
    parameters that require grad) and fixes none of ``num_probes``, ``rtol``,
    ``grad_rtol``, ``max_probes``, ``deflate``."""
    return (num_probes is None and rtol is None and grad_rtol is None and max_probes is None
            and not deflate and torch.is_grad_enabled() and isinstance(G, torch.nn.Module)
            and bool(_gradient_params(G)))


@dataclass
class _Prepared:
    """What the kernel needs, from :func:`_prepare`.

    Attributes:
        matvec: ``V ↦ (M + jitter·I) V`` without a graph; for samples with a singular
            metric shifted by ``I`` to keep the solvers off the null space (they are
            reported and excluded from the result).
        X: ``[B, k, r + p]``, the ``r`` deflation vectors, then the ``p`` probes.
        weights: ``[r + p]``, 1 for a deflation vector, ``1/p`` for a probe.
        num_deflated: ``r``.
        stream: where the probes come from (later rounds continue it).
        singular: ``[B]`` samples whose sketch shows a singular metric.
        bounds: ``(a[B], b[B])`` enclosing the spectrum (when a sketch ran).
        info: diagnostics collected so far.
    """

    matvec: Matvec
    X: Tensor
    weights: Tensor
    num_deflated: int
    stream: ProbeStream
    singular: Tensor
    bounds: tuple[Tensor, Tensor] | None
    info: dict


def _prepare(G: Generator, z: Tensor, fn: SpectralFunction, method: str, num_probes: int,
             probes: str, generator: torch.Generator | None, deflate: int, jitter: float,
             on_singular: str, check_coupling: bool) -> _Prepared:
    """Products with ``M``, the spectrum sketch (Chebyshev or deflation) and the probes.

    ``G`` and ``z`` pass the front door (:func:`~..linalg.jacobian.check_generator`)
    inside :func:`metric_matvec`; the algebra runs in ``work_dtype(z.dtype)``.
    """
    B, k = z.shape
    dtype, device = work_dtype(z.dtype), z.device
    base = metric_matvec(G, z, check_coupling=check_coupling)
    matvec = base if not jitter else (lambda V: base(V) + jitter * V)
    info: dict = {"method": method, "probe_kind": probes, "matvecs": 0}
    V, ritz, bounds = z.new_zeros(B, k, 0, dtype=dtype), z.new_zeros(B, 0, dtype=dtype), None
    singular = torch.zeros(B, dtype=torch.bool, device=device)
    if method == "chebyshev" or deflate > 0:
        steps = min(k, max(SKETCH_STEPS, SKETCH_STEPS_PER_VECTOR * deflate))
        sketch = sketch_spectrum(matvec, B, k, steps, generator=generator, dtype=dtype,
                                 device=device)
        info["matvecs"] += sketch.matvecs
        usable = int(torch.isfinite(sketch.values).sum(-1).min())  # fewer after a breakdown
        V, ritz = sketch.deflation_basis(min(deflate, usable), fn.dg)
        singular = sketch_singular_samples(sketch.values, k, fn, on_singular)
        bounds = sketch.bounds()
    r = V.shape[-1]
    if r:
        info["deflated"] = ritz  # from the sketch: no extra product with M
    stream = ProbeStream(B, k, probes, basis=V if r else None, generator=generator,
                         dtype=dtype, device=device)
    # Drawn without replacement, the whole population gives the exact trace: no more.
    num_probes = int(min(num_probes, stream.remaining))
    eps = stream.draw(num_probes)
    weights = torch.cat([torch.ones(r, dtype=dtype, device=device),
                         torch.full((num_probes,), 1.0 / num_probes, dtype=dtype, device=device)])
    if singular.any():
        # Keep the solvers off the null space: M + I for those samples (reported, excluded).
        shift = torch.where(singular, torch.ones_like(singular, dtype=dtype), 0)[:, None, None]
        solve_mv = lambda W: matvec(W) + shift * W  # noqa: E731
        if bounds is not None:  # the spectrum of M + I lies in [1, b + 1]
            a, b = bounds
            bounds = (torch.where(singular, torch.full_like(a, 0.95), a),
                      torch.where(singular, b + 1, b))
    else:
        solve_mv = matvec
    return _Prepared(solve_mv, torch.cat([V, eps], dim=-1), weights, r, stream, singular,
                     bounds, info)


def _sqrt_derivative(fn: SpectralFunction):
    def h(x: Tensor) -> Tensor:
        d = fn.dg(x)
        negative = (d < 0) & (x > 0)
        if bool(negative.any()):
            raise ValueError(
                f"symmetric=True needs g' >= 0 on the spectrum, but {fn.name}' is negative at "
                f"{x[negative].min().item():.3g}: pass symmetric=False"
            )
        # At x <= 0 (a numerically singular metric, reported after the kernel) the value
        # is irrelevant: the sample is left out of the gradient.
        return d.clamp_min(0).sqrt()

    return h


def _budget(num_deflated: int, earlier: Tensor, deflated: Tensor, rtol: float | None
            ) -> ErrorBudget:
    """The stopping rule's absolute error budget per column (module docstring).

    ``η = c σ̂/√n`` (``n`` probes in all, the ``earlier[B, n₀]`` probe values of earlier
    rounds included) or ``c·rtol·|Ŝ|/z`` (a tenth of the standard error ``rtol`` asks
    for; ``deflated[B]``: the deflated part of ``Ŝ`` from the first round); the probes
    share ``η`` (half of it with ``r > 0`` deflated vectors, which get ``η/2r``).
    """
    r = num_deflated

    def budget(values: Tensor, spread2: Tensor, error: Tensor) -> Tensor:
        probes = torch.cat([earlier, values[:, r:]], -1)
        n = probes.shape[-1]
        if rtol is None:
            sigma = spread2[:, r:].mean(-1).clamp_min(0).sqrt()
            if n >= 2:
                spread = probes.std(-1) - error[:, r:].amax(-1)
                sigma = torch.minimum(sigma, spread.nan_to_num(0.0).clamp_min(0))
            eta = BIAS_FRACTION * sigma / math.sqrt(n)
        else:
            value = values[:, :r].sum(-1) + deflated + probes.mean(-1)
            eta = BIAS_FRACTION * rtol / RTOL_Z * value.abs()
        allowed = (eta * (0.5 if r else 1.0))[:, None].expand_as(values).clone()
        if r:
            allowed[:, :r] = (eta / (2 * r))[:, None]
        return allowed

    return budget


def _vector_tol(num_probes: int) -> float:
    """Relative tolerance of the gradient's vectors: ``min(DEFAULT_TOL, c/√p)``."""
    return min(DEFAULT_TOL, BIAS_FRACTION / math.sqrt(num_probes))


def _kernel(prep: _Prepared, X: Tensor, fn: SpectralFunction, method: str,
            num_matvecs: int | None, tol: float | None, budget: ErrorBudget,
            vector_tol: float, symmetric: bool, on_nonconvergence: str, on_singular: str
            ) -> QuadraticForms:
    """``x_jᵀ g(M) x_j`` and the gradient vectors (none without autograd) for the columns
    of ``X``, reported.

    The probes' own Lanczos runs also test the metric for singularity (their Ritz values
    bound ``λ_min`` from above), so ``"lanczos"`` detects it with or without a sketch.
    """
    if not torch.is_grad_enabled():
        vector_fn, solve = None, False
    elif symmetric:
        vector_fn, solve = _sqrt_derivative(fn), False
    else:
        vector_fn, solve = fn.dg, is_reciprocal(fn)
    k = X.shape[1]
    if method == "lanczos":
        budget_steps = DEFAULT_NUM_MATVECS if num_matvecs is None else num_matvecs
        forms = lanczos_forms(prep.matvec, X, fn, num_matvecs=budget_steps, tol=tol,
                              vector_fn=vector_fn, solve=solve, budget=budget,
                              vector_tol=vector_tol)
        low, high = forms.extra["ritz_range"]
        prep.singular = ritz_singular_samples(low, high, k, fn, on_singular,
                                              reported=prep.singular) | prep.singular
    else:
        assert prep.bounds is not None
        budget_steps = num_matvecs
        cg_iters = k if num_matvecs is None else num_matvecs
        forms = chebyshev_forms(prep.matvec, X, fn, bounds=prep.bounds,
                                num_matvecs=num_matvecs, tol=tol, vector_fn=vector_fn,
                                solve=solve, cg_iters=cg_iters, budget=budget,
                                vector_tol=vector_tol)
        # A repaired (lowered) interval serves the later rtol rounds too, instead of each
        # round growing out of the sketch's interval and repairing it again.
        prep.bounds = forms.extra["interval"]
        prep.info.update(interval=prep.bounds,
                         degree=max(prep.info.get("degree", 0), forms.extra["degree"]))
    prep.info["matvecs"] += forms.matvecs
    target = tol if tol is not None else (
        f"its stopping rule (error <= {BIAS_FRACTION:g} standard error)")
    report_nonconvergence(forms.converged, forms.residual, prep.singular, method=method,
                          budget=budget_steps if budget_steps is not None else "auto",
                          tol=target, on_nonconvergence=on_nonconvergence)
    return forms


def _merge(rounds: list[QuadraticForms]) -> QuadraticForms:
    """The rounds' columns side by side (deflation vectors first, as in round one)."""
    if len(rounds) == 1:
        return rounds[0]
    cat = lambda name: torch.cat([getattr(f, name) for f in rounds], -1)  # noqa: E731
    vectors = None if rounds[0].vectors is None else cat("vectors")
    return QuadraticForms(cat("values"), vectors, cat("iterations"), cat("residual"),
                          cat("converged"), sum(f.matvecs for f in rounds), rounds[-1].extra)


def _probe_std_error(values: Tensor, stream: ProbeStream) -> Tensor:
    """The standard error of the mean of the probe values ``[B, p]``: ``s/√p``, times
    ``√(1 − p/K)`` for probes drawn without replacement from ``K``
    (:func:`~..linalg.probes.finite_population_factor`); 0 once all ``K`` are drawn."""
    factor = finite_population_factor(values.shape[-1], stream.population)
    if factor == 0.0:
        return torch.zeros_like(values[:, 0])
    return standard_error(values) * math.sqrt(factor)


QuadratureSums = tuple[Tensor, Tensor] | None


def _add_quadrature_errors(sums: QuadratureSums, forms: QuadraticForms, start: int
                           ) -> QuadratureSums:
    """Running sums of the kernels' estimated absolute errors ``|ê_j|`` of the forms:
    ``[B]`` over the ``start`` deflated columns (weight 1) and ``[B]`` over the probes;
    ``None`` when a kernel gave no estimate (a fixed ``tol``)."""
    error = forms.extra.get("error")
    if sums is None or error is None:
        return None
    error = error.abs()
    return sums[0] + error[:, :start].sum(-1), sums[1] + error[:, start:].sum(-1)


def _quadrature_error(sums: QuadratureSums, count: int) -> Tensor | None:
    """The estimated quadrature error of the weighted sum, ``Σ_deflated |ê| +
    mean_probes |ê|`` (``None`` without estimates)."""
    return None if sums is None else sums[0] + sums[1] / count


def _value_std_error(probe_values: Tensor, stream: ProbeStream, quadrature: Tensor | None
                     ) -> Tensor:
    """The value's standard error: the probes' (:func:`_probe_std_error`), never below the
    estimated ``quadrature`` error — all that is left of the error once every probe of a
    population is drawn."""
    se = _probe_std_error(probe_values, stream)
    return se if quadrature is None else torch.maximum(se, quadrature)


def _next_round_size(count: int, rel: Tensor, met: Tensor, rtol: float | None,
                     grad_rel: float | None, grad_met: bool, grad_rtol: float | None,
                     stream: ProbeStream, max_probes: int) -> int:
    """Probes of the next round, from the spread so far: ``n (z se / (rtol |S|))²`` i.i.d.
    probes with 10% to spare (the standard errors less their finite-population factor
    ``f``), then as many drawn without replacement (:func:`probes_to_match`); likewise
    ``n (r / grad_rtol)²``. At least half again the probes so far (each round is a
    sequential run), twice them where the spread is not measured yet; within
    ``max_probes`` and what the stream has left."""
    ratios = [(RTOL_Z * rel[~met] / rtol) ** 2] if rtol is not None and (~met).any() else []
    if not grad_met:
        ratios.append(torch.tensor([(grad_rel / grad_rtol) ** 2]))
    f = finite_population_factor(count, stream.population)
    iid = 1.1 * count / f * torch.cat([x.cpu().double() for x in ratios])
    need = torch.where(torch.isfinite(iid), probes_to_match(iid, stream.population),
                       2.0 * count).max().item()
    return int(min(max(math.ceil(need) - count, -(-count // 2)), max_probes - count,
                   stream.remaining))


def _gradient_spread(G: torch.nn.Module, z: Tensor, stream: ProbeStream) -> GradientSpread:
    """The spread of the probes' parameter gradients, for ``grad_rtol``: each group's
    surrogate sums its probes' terms unweighted."""
    return GradientSpread(_gradient_params(G),
                          lambda U, X: _surrogate(G, z, U, X, U.new_ones(U.shape[-1])),
                          population=stream.population)


def _add_gradients(spread: GradientSpread | None, prep: _Prepared, forms: QuadraticForms,
                   start: int, symmetric: bool, vector_tol: float) -> float | None:
    """Feed this round's probes to the gradient's spread; its relative standard error
    (``None`` without ``grad_rtol``), never below the gradient vectors' relative tolerance
    (all that is left once every probe of a population is drawn). Singular samples are
    left out, as in the estimate."""
    if spread is None or forms.vectors is None:
        return None
    U = forms.vectors[..., start:]
    # Non-finite samples are dropped from the estimate later; keep them out of the spread.
    keep = ~prep.singular & torch.isfinite(forms.values).all(-1) & torch.isfinite(U).all((1, 2))
    U = torch.where(keep[:, None, None], U, 0)
    X = None if symmetric else prep.X[..., -U.shape[-1]:]
    spread.add(U, X)
    rel = max(spread.relative_error(), vector_tol)
    prep.info["grad_rel_std_error"] = rel
    return rel


def _rounds(prep: _Prepared, fn: SpectralFunction, method: str, num_matvecs: int | None,
            tol: float | None, rtol: float | None, spread: GradientSpread | None,
            grad_rtol: float | None, max_probes: int, symmetric: bool,
            on_nonconvergence: str, on_singular: str) -> QuadraticForms:
    """Run the kernel on the first probes, then (with ``rtol`` or ``grad_rtol``) on new
    rounds of probes until the standard errors are met, ``max_probes`` is spent or the
    probe stream is exhausted (the estimate is then exact up to the quadrature); every
    round is kept."""
    B = prep.X.shape[0]
    r = prep.num_deflated
    # Every probe's value so far (earlier rounds), the deflated part of the sum, and the
    # sums of the kernels' quadrature error estimates.
    earlier, deflated = prep.X.new_zeros(B, 0), prep.X.new_zeros(B)
    sums: QuadratureSums = (deflated, deflated)
    X, rounds = prep.X, []
    while True:
        start = r if not rounds else 0
        vector_tol = _vector_tol(earlier.shape[-1] + X.shape[-1] - start)
        forms = _kernel(prep, X, fn, method, num_matvecs, tol,
                        _budget(start, earlier, deflated, rtol), vector_tol,
                        symmetric, on_nonconvergence, on_singular)
        earlier = torch.cat([earlier, forms.values[:, start:]], -1)
        deflated = deflated + forms.values[:, :start].sum(-1)
        sums = _add_quadrature_errors(sums, forms, start)
        rounds.append(forms)
        count = earlier.shape[-1]
        size = (deflated + earlier.mean(-1)).abs()
        rel = _value_std_error(earlier, prep.stream, _quadrature_error(sums, count)) / size
        prep.info["rel_std_error"] = torch.where(prep.singular, torch.nan, rel)
        # The per-probe spread, without the finite-population factor (auto's prior).
        prep.info["rel_probe_spread"] = torch.where(
            prep.singular, torch.nan, standard_error(earlier) * math.sqrt(count) / size)
        if rtol is None and spread is None:
            break
        met = ((RTOL_Z * rel <= rtol) | prep.singular if rtol is not None
               else torch.ones_like(prep.singular))
        grad_rel = _add_gradients(spread, prep, forms, start, symmetric, vector_tol)
        # Every sample singular: no gradient to estimate (the estimate leaves them out).
        grad_met = grad_rel is None or grad_rel <= grad_rtol or bool(prep.singular.all())
        if grad_rel is not None:
            prep.info["grad_met"] = grad_met
        prep.info["met"] = bool(met.all()) and grad_met
        if prep.info["met"] or count >= max_probes or not prep.stream.remaining:
            budget = (f"max_probes={max_probes}" if prep.stream.remaining else
                      f"all {count} probes of its population (exact but for the "
                      "quadrature, whose error is what is left)")
            if rtol is not None:
                report_accuracy(met, rel, rtol=rtol, target=rtol / RTOL_Z, probes=count,
                                budget=budget, method=method,
                                on_nonconvergence=on_nonconvergence)
            if not grad_met:
                report_gradient_accuracy(grad_rel, grad_rtol=grad_rtol, probes=count,
                                         budget=budget, method=method,
                                         on_nonconvergence=on_nonconvergence,
                                         default=prep.info["default_gradient_target"])
            break
        X = prep.stream.draw(_next_round_size(count, rel, met, rtol, grad_rel, grad_met,
                                              grad_rtol, prep.stream, max_probes))
        prep.X = torch.cat([prep.X, X], -1)
    prep.info["quadrature_error"] = _quadrature_error(sums, count)
    prep.info["rounds"] = len(rounds)
    prep.info["round_sizes"] = [f.values.shape[-1] - (r if i == 0 else 0)
                                for i, f in enumerate(rounds)]
    prep.info["num_probes"] = count  # all rounds
    prep.weights = torch.cat([prep.weights[:r], torch.full((count,), 1.0 / count,
                                                            dtype=prep.weights.dtype,
                                                            device=prep.weights.device)])
    forms = _merge(rounds)
    prep.info.update(iterations=forms.iterations, residual=forms.residual,
                     converged=forms.converged)
    return forms


def _surrogate(G: Generator, z: Tensor, U: Tensor, X: Tensor | None, weights: Tensor) -> Tensor:
    """``Σ_j ω_j (J u_j)·(J x_j)`` per sample (``x_j = u_j`` when ``X`` is ``None``).

    The graph runs through the JVPs only: ``u`` and ``x`` are constants. The products
    run in ``z``'s dtype, the sums in the weights' (float32 for half precision).
    """
    tangents = U if X is None else torch.cat([U, X], dim=-1)
    _, JT = jacobian_columns(G, z, tangents.permute(2, 0, 1).to(z.dtype))  # [B, n, c or 2c]
    JT = JT.to(weights.dtype)
    c = U.shape[-1]
    other = JT if X is None else JT[..., c:]
    return ((JT[..., :c] * other).sum(1) * weights).sum(-1)


def _estimate(G: Generator, z: Tensor, fn: SpectralFunction, prep: _Prepared,
              forms: QuadraticForms, symmetric: bool, on_singular: str, method: str
              ) -> tuple[Tensor, Tensor]:
    """The value ``Σ_j ω_j q_j`` with the surrogate's gradient, and its standard error.

    Singular samples get ``g(0)`` and no gradient; a value that is still not finite is
    reported by the same policy (:func:`~.diagnostics.report_nonfinite`) and excluded.
    """
    value = (forms.values * prep.weights).sum(-1)
    std_error = _value_std_error(forms.values[:, prep.num_deflated:], prep.stream,
                                 prep.info["quadrature_error"])
    singular = prep.singular
    value = torch.where(singular, fn.g(torch.zeros_like(value)), value)
    singular = singular | report_nonfinite(value, singular, fn, on_singular, method)
    prep.info["singular"] = singular
    std_error = torch.where(singular, torch.full_like(std_error, float("nan")), std_error)
    if forms.vectors is not None:
        keep = ~singular
        w = prep.weights * keep.to(value.dtype)[:, None]
        U = torch.where(keep[:, None, None], forms.vectors, torch.zeros_like(forms.vectors))
        s = _surrogate(G, z, U, None if symmetric else prep.X, w)
        if s.requires_grad:
            s = first_order_only(s)
            value = value + (s - s.detach())
    return value, std_error


def stochastic_spectral_sum(
    G: Generator,
    z: Tensor,
    fn: SpectralFunction,
    *,
    method: str = "lanczos",
    num_probes: int | None = None,
    num_matvecs: int | None = None,
    tol: float | None = None,
    rtol: float | None = None,
    grad_rtol: float | None = None,
    max_probes: int | None = None,
    probes: str = DEFAULT_PROBES,
    generator: torch.Generator | None = None,
    deflate: int | None = 0,
    jitter: float = 0.0,
    on_nonconvergence: str = "warn",
    on_singular: str = "warn",
    symmetric: bool = True,
    check_coupling: bool = True,
    return_info: bool = False,
) -> Tensor | SpectralEstimate:
    """Stochastic ``Σ_i g(λ_i(JᵀJ + jitter·I))`` per sample, with its gradient.

    ``tr g(M) ≈ Σ_j ω_j x_jᵀ g(M) x_j``, ``dS ≈ Σ_j ω_j d‖J w_j‖²``, ``w = g'(M)^{1/2} x``
    (or ``(J u)·(J x)``, ``u = g'(M)x``); Ramesh & LeCun 2018, arXiv 1806.00499, §3.

    Args:
        G: generator ``z[B, k] -> x[B, ...]``.
        z: latents ``[B, k]``.
        fn: the spectral function.
        method: ``"lanczos"`` (stochastic Lanczos quadrature) or ``"chebyshev"``
            (Chebyshev–Hutchinson).
        num_probes: probes per sample (``p``; at most ``K`` drawn without replacement).
            Default: 8, and where the call takes a gradient with respect to ``G``'s
            parameters and none of ``num_probes``, ``rtol``, ``grad_rtol``,
            ``max_probes``, ``deflate`` is given, the default gradient target: rounds
            of probes until ``grad_rtol=0.45`` (cosine ≈ 0.91) within 128 probes
            (:func:`default_gradient_target`). Pass ``num_probes`` to fix the count
            (the cheap, noisy gradients SGD tolerates).
        num_matvecs: per vector: maximum Lanczos steps (``"lanczos"``, default 64), or the
            polynomial degree and CG budget (``"chebyshev"``; default: adaptive, ``k``).
        tol: ``None`` (default): the adaptive stopping rule (module docstring), each
            vector's error within ``0.1`` standard error (or ``rtol·|S|/1.96``). A number:
            the former relative tolerance, whose bias does not fall with more probes.
        rtol: requested relative error of each sample's value, at 95% confidence: rounds
            of probes (earlier ones reused) until ``std_error ≤ rtol·|value|/1.96``.
        grad_rtol: requested relative standard error ``‖se(ĝ)‖/‖g‖`` of the gradient of
            the batch's sum with respect to ``G``'s parameters (:mod:`.gradient_spread`;
            cosine ≈ ``1/√(1 + grad_rtol²)``), met by rounds of probes likewise. Needs
            gradients and an ``nn.Module`` ``G``; one extra JVP and backward per probe.
        max_probes: probe budget with ``rtol`` or ``grad_rtol`` (default 1024; then
            :class:`~.diagnostics.AccuracyNotMetWarning`).
        probes: ``"hadamard"`` (Rademacher, without replacement from ``K = 2^⌈log₂ k⌉``:
            exact with all ``K``), ``"rademacher"``, ``"gaussian"``, ``"orthogonal"``.
        generator: ``torch.Generator`` on ``z``'s device, for repeatable probes.
        deflate: Ritz vectors of a Lanczos sketch treated exactly (default 0: fewer
            products on the benchmark DCGAN, but slower, the sketch being sequential).
        jitter: added to the metric's diagonal.
        on_nonconvergence: ``"warn"`` (:class:`~.diagnostics.NonConvergenceWarning`) or
            ``"raise"`` (:class:`~.diagnostics.NonConvergenceError`) on a spent budget.
        on_singular: ``"warn"`` or ``"raise"`` when a numerically singular metric is found
            for ``log``/``sqrt``-type ``g`` (from the Ritz values of the probes' Lanczos
            runs and of the sketch; ``"chebyshev"`` has only the sketch's), or a value is
            not finite: ``"warn"`` returns ``g(0)`` (``-inf`` for log det) for those
            samples and leaves them out of the gradient.
        symmetric: gradient from ``w = g'(M)^{1/2}ε`` (lower variance, needs ``g' ≥ 0``);
            ``False``: from ``u = g'(M)ε`` and ``ε``.
        check_coupling: test that ``G`` treats samples independently (raise otherwise;
            ``⌈log₄ B⌉ + 1`` forward-mode products, see :mod:`~..linalg.jacobian`).
        return_info: return a :class:`SpectralEstimate` instead of the value.

    Returns:
        ``Tensor[B]`` (or a :class:`SpectralEstimate`); float32 for float16 / bfloat16 ``z``.
    """
    default_target = default_gradient_target(G, num_probes=num_probes, rtol=rtol,
                                             grad_rtol=grad_rtol, max_probes=max_probes,
                                             deflate=deflate)
    if default_target:
        grad_rtol, max_probes = DEFAULT_GRAD_RTOL, DEFAULT_GRAD_MAX_PROBES
    num_probes = DEFAULT_NUM_PROBES if num_probes is None else num_probes
    max_probes = _validate_options(G, z, method, num_probes, num_matvecs, tol, rtol,
                                   grad_rtol, max_probes, probes, generator, deflate, jitter,
                                   on_nonconvergence, on_singular, symmetric)
    prep = _prepare(G, z, fn, method, num_probes, probes, generator, deflate or 0, jitter,
                    on_singular, check_coupling)
    prep.info["default_gradient_target"] = default_target
    spread = None if grad_rtol is None else _gradient_spread(G, z, prep.stream)
    forms = _rounds(prep, fn, method, num_matvecs, tol, rtol, spread, grad_rtol, max_probes,
                    symmetric, on_nonconvergence, on_singular)
    value, std_error = _estimate(G, z, fn, prep, forms, symmetric, on_singular, method)
    return SpectralEstimate(value, std_error, prep.info) if return_info else value


def lanczos_spectral_sum(G: Generator, z: Tensor, fn: SpectralFunction, **options):
    """``method="lanczos"``: stochastic Lanczos quadrature (see :func:`stochastic_spectral_sum`)."""
    return stochastic_spectral_sum(G, z, fn, method="lanczos", **options)


def chebyshev_spectral_sum(G: Generator, z: Tensor, fn: SpectralFunction, **options):
    """``method="chebyshev"``: Chebyshev–Hutchinson (see :func:`stochastic_spectral_sum`)."""
    return stochastic_spectral_sum(G, z, fn, method="chebyshev", **options)
