r"""Stochastic Lanczos quadrature kernel: ``xᵀ g(M) x`` and ``h(M) x`` from one Krylov space.

For each vector ``x``, ``m`` Lanczos steps give ``T_m = S diag(θ) Sᵀ`` and basis ``Q_m``:

.. math::
    x^\top g(M)\, x \approx \lVert x\rVert^2 \sum_i S_{1i}^2\, g(\theta_i), \qquad
    h(M)\, x \approx \lVert x\rVert\, Q_m\, h(T_m)\, e_1

(Golub & Meurant 1994; Ubaru, Chen & Saad 2017, SIAM J. Matrix Anal. Appl. 38(4),
"Fast estimation of tr(f(A)) via stochastic Lanczos quadrature"). The same ``m``
products with ``M`` serve the value and the gradient vector (``h = g'`` or ``√g'``).
For ``h = 1/x`` the vector is exactly the conjugate-gradient iterate (Lanczos–CG
equivalence), and its true relative residual ``β_m |e_mᵀ T_m^{-1} e_1|`` is the
stopping test; for other ``h`` the test is the relative change of ``h(T_m) e_1``
between steps. The quadrature must also settle: ``|q_m − q_{m−1}| ≤ tol Σ_i S_{1i}²|g(θ_i)|``
(the rule with an explicit ``tol``).

**The adaptive rule** (``budget`` given; the default of the stochastic methods). A
per-vector relative ``tol`` leaves every probe's quadrature error, which for ``log``
and ``√`` has one sign (Gauss quadrature overestimates when ``g^{(2m)} < 0``; Golub &
Meurant 2010, *Matrices, Moments and Quadrature*, Thm 6.3), in the average: a bias
that more probes never remove. Instead each vector stops when the *absolute* error of
its quadrature is below a budget set from the statistics of the probes (:mod:`.stochastic`:
a small fraction of the standard error the probes can reach). The error of ``q_m`` is
estimated from the last two changes of the quadrature, as for a geometrically
converging sequence (Aitken; the remaining error is ``Σ_{i>m} Δ_i ≈ Δ_m ρ/(1 − ρ)``):

.. math::  \hat e_m = \frac{|\Delta_m|}{1 - \rho}, \quad
           \Delta_m = \lVert x\rVert^2 (q_m - q_{m-1}), \quad
           \rho = \min(|\Delta_m| / |\Delta_{m-1}|,\ 0.95),

which bounds ``Δ_m ρ/(1−ρ)`` by a factor ``1/ρ`` to spare for irregular convergence. Each
vector also reports ``2‖x‖² Σ_i τ_i²(g(θ_i) − q_m)²``, an estimate of
``2‖g(M) − q̄ I‖_F²``, which bounds the variance of a Rademacher or Gaussian probe's
quadratic form (Hutchinson 1989; Avron & Toledo 2011): the budget uses it when too few
probes are there to measure their spread. Nothing is asked beyond rounding: an error
below ``10 √k · eps`` times ``‖x‖² Σ τ²|g(θ)|`` counts as converged.
The extreme Ritz values ``θ_i`` of the runs are returned too: a Ritz value never lies
below ``λ_min(M)``, so a ``θ_min`` at the numerical-rank cut-off proves a singular metric.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ..linalg.lanczos import lanczos, lanczos_function, lanczos_quadrature, rounding_floor
from .functions import SpectralFunction
from .quadratic import ErrorBudget, QuadraticForms

__all__ = ["RHO_MAX", "lanczos_forms"]

# The largest convergence ratio the error estimate believes (module docstring): at most
# a factor 1/(1 − 0.95) = 20 between the last change and the estimated error.
RHO_MAX = 0.95


Fn = Callable[[Tensor], Tensor]


def _pad(y: Tensor, m: int) -> Tensor:
    return torch.nn.functional.pad(y, (0, m - y.shape[-1]))


Eig = tuple[Tensor, Tensor, Tensor]  # (θ, τ², S) from lanczos_quadrature


def _quadrature_state(
    alpha: Tensor, beta: Tensor, steps: Tensor, g: Fn, h: Fn | None, solve: bool,
    eig: Eig | None = None,
) -> tuple[Tensor, Tensor, Tensor | None, Tensor]:
    """``(q, Σ τ²|g(θ)|, h(T) e_1, CG residual)`` of the first ``steps`` steps per column.

    ``eig``: the eigendecomposition of that ``T``, when the caller has it already.
    """
    theta, weights, S = eig if eig is not None else lanczos_quadrature(
        alpha, beta, steps, eigenvectors=True)
    g_theta = g(theta)
    q = (weights * g_theta).sum(-1)
    q_abs = (weights * g_theta.abs()).sum(-1)
    y = None if h is None else (S * (h(theta) * S[..., 0, :])[..., None, :]).sum(-1)  # h(T) e_1
    res = torch.zeros_like(q)
    if solve and y is not None:
        last = (steps - 1).clamp_min(0)
        y_last = y.gather(-1, last[..., None])[..., 0]
        beta_m = beta.gather(-1, last[..., None])[..., 0]
        res = (beta_m * y_last).abs()
    return q, q_abs, y, res


def _residuals(
    alpha: Tensor, beta: Tensor, steps: Tensor, g: Fn, h: Fn | None, solve: bool,
    eig: Eig | None = None,
) -> tuple[Tensor, Tensor]:
    """Unscaled value ``e_1ᵀ g(T_m) e_1`` and the convergence measure of each column.

    ``eig``: the eigendecomposition of ``T_m`` (all ``steps``), when already computed.
    """
    m = alpha.shape[-1]
    q, q_abs, y, cg_res = _quadrature_state(alpha, beta, steps, g, h, solve, eig)
    prev = (steps - 1).clamp_min(1)
    q0, _, y0, _ = _quadrature_state(alpha, beta, prev, g, h, solve)
    first = steps <= 1  # nothing to compare with yet
    tiny = torch.finfo(q.dtype).tiny
    measure = (q - q0).abs() / q_abs.clamp_min(tiny)
    if y is not None:
        if solve:
            vec = cg_res
        else:
            idx = torch.arange(m, device=steps.device)
            y0 = torch.where(idx < prev[..., None], y0, torch.zeros_like(y0))
            y = torch.where(idx < steps[..., None], y, torch.zeros_like(y))
            vec = torch.linalg.vector_norm(y - _pad(y0, m), dim=-1) / torch.linalg.vector_norm(
                y, dim=-1
            ).clamp_min(tiny)
        measure = torch.maximum(measure, vec)
    measure = torch.where(first, torch.ones_like(measure), measure)
    return q, measure


class _AdaptiveStop:
    """The adaptive stopping rule of the module docstring, as a ``stop`` for :func:`lanczos`.

    Keeps the history of each column's quadrature (one eigendecomposition of ``T`` per
    step) and its last error estimate, budget and vector measure.
    """

    def __init__(self, X: Tensor, fn: SpectralFunction, vector_fn: Fn | None, solve: bool,
                 budget: ErrorBudget, vector_tol: float, steps: int):
        B, k, c = X.shape
        self.fn, self.vector_fn, self.solve, self.budget = fn, vector_fn, solve, budget
        self.floor = rounding_floor(X.dtype, k)
        self.vector_tol = max(vector_tol, self.floor)
        self.norm2 = X.pow(2).sum(1)
        self.hist = X.new_zeros(B, c, steps)
        self.last = torch.zeros(B, c, dtype=torch.long, device=X.device)
        self.y_prev: Tensor | None = None
        inf = torch.full_like(self.norm2, torch.inf)
        self.error, self.allowed, self.vector = inf, inf.clone(), inf.clone()
        self.ok = torch.zeros_like(self.norm2, dtype=torch.bool)
        self.last_eig: tuple[Tensor, Eig] | None = None  # (steps, eig) of the last call

    def __call__(self, alpha: Tensor, beta: Tensor, steps: Tensor) -> Tensor:
        eig = lanczos_quadrature(alpha, beta, steps, eigenvectors=True)
        self.last_eig = (steps.clone(), eig)
        theta, tau2, _ = eig
        q, q_abs, y, cg_residual = _quadrature_state(alpha, beta, steps, self.fn.g,
                                                     self.vector_fn, self.solve, eig)
        spread2 = 2 * self.norm2 * (tau2 * (self.fn.g(theta) - q[..., None]) ** 2).sum(-1)
        j = alpha.shape[-1]
        idx = (steps - 1).clamp_min(0)
        self.hist[..., :j].scatter_(-1, idx[..., None], q[..., None])
        q1 = self.hist.gather(-1, (idx - 1).clamp_min(0)[..., None])[..., 0]
        q2 = self.hist.gather(-1, (idx - 2).clamp_min(0)[..., None])[..., 0]
        d1, d2 = (q - q1).abs() * self.norm2, (q1 - q2).abs() * self.norm2
        tiny = torch.finfo(q.dtype).tiny
        rho = torch.where(d1 > 0, d1 / d2.clamp_min(tiny), torch.zeros_like(d1))
        error = d1 / (1 - rho.clamp(max=RHO_MAX))
        error = torch.where(steps < 3, torch.full_like(error, torch.inf), error)
        allowed = self.budget(self.norm2 * q, spread2, error)
        value_ok = (error <= allowed) | (error <= self.floor * self.norm2 * q_abs)
        vector = torch.zeros_like(error)
        changed = steps != self.last
        if y is not None:  # h(T) e_1
            m = torch.arange(j, device=steps.device)
            y = torch.where(m < steps[..., None], y, torch.zeros_like(y))
            if self.solve:  # the true CG residual β_m |e_mᵀ T_m⁻¹ e_1|
                vector = cg_residual
            else:
                prev = torch.zeros_like(y) if self.y_prev is None else _pad(self.y_prev, j)
                vector = torch.linalg.vector_norm(y - prev, dim=-1) / torch.linalg.vector_norm(
                    y, dim=-1).clamp_min(tiny)
                vector = torch.where(steps < 2, torch.full_like(vector, torch.inf), vector)
            self.y_prev = torch.where(changed[..., None], y,
                                      _pad(self.y_prev, j) if self.y_prev is not None else y)
        ok = value_ok & (vector <= self.vector_tol)
        self.error = torch.where(changed, error, self.error)
        self.allowed = torch.where(changed, allowed, self.allowed)
        self.vector = torch.where(changed, vector, self.vector)
        self.ok = torch.where(changed, ok, self.ok)
        self.last = steps.clone()
        return ok

    def measure(self) -> Tensor:
        """Each column's distance to its targets: ``max(ê/budget, vector/vector_tol)``."""
        tiny = torch.finfo(self.error.dtype).tiny
        value = torch.where(self.error <= self.allowed, torch.zeros_like(self.error),
                            self.error / self.allowed.clamp_min(tiny))
        return torch.maximum(value, self.vector / self.vector_tol)


def lanczos_forms(
    matvec: Callable[[Tensor], Tensor],
    X: Tensor,
    fn: SpectralFunction,
    *,
    num_matvecs: int,
    tol: float | None,
    vector_fn: Fn | None = None,
    solve: bool = False,
    budget: ErrorBudget | None = None,
    vector_tol: float = 1e-2,
) -> QuadraticForms:
    """Lanczos quadrature for every column of ``X[B, k, c]``, stopping at ``tol`` or by
    the adaptive rule (``budget``; module docstring).

    ``xᵀg(M)x ≈ ‖x‖² Σ_i S_{1i}² g(θ_i)`` and ``h(M)x ≈ ‖x‖ Q_m h(T_m) e_1`` (Golub &
    Meurant 1994; Ubaru, Chen & Saad 2017).

    Args:
        matvec: ``V ↦ MV`` without a graph.
        X: vectors (probes and deflation vectors).
        fn: spectral function ``g``.
        num_matvecs: maximum Lanczos steps per column.
        tol: relative tolerance of the stopping test (see the module docstring); ``None``
            with a ``budget``: the adaptive rule.
        vector_fn: ``h``, to also return ``h(M) x`` (``None``: value only).
        solve: ``h = 1/x``: stop on the true CG residual.
        budget: the adaptive rule's absolute error budget per column
            (:data:`~.quadratic.ErrorBudget`); used when ``tol`` is ``None``.
        vector_tol: the adaptive rule's relative tolerance of ``h(M)x``.

    Returns:
        :class:`QuadraticForms`; with the adaptive rule ``residual`` is the distance to
        the targets (``≤ 1``: converged) and ``extra["error"]`` the estimated absolute
        error of each quadratic form.
    """
    adaptive = None
    if tol is None:
        if budget is None:
            raise ValueError("lanczos_forms needs tol or a budget")
        adaptive = _AdaptiveStop(X, fn, vector_fn, solve, budget, vector_tol,
                                 min(num_matvecs, X.shape[1]))
        stop = adaptive
    else:
        def stop(alpha: Tensor, beta: Tensor, steps: Tensor) -> Tensor:
            return _residuals(alpha, beta, steps, fn.g, vector_fn, solve)[1] <= tol

    decomp = lanczos(matvec, X, num_matvecs, stop=stop)
    # The one eigendecomposition of the final T_m: value, vectors and Ritz range use it
    # (the adaptive rule's last call has it already unless a breakdown ended the run).
    last = adaptive.last_eig if adaptive is not None else None
    if last is not None and last[1][0].shape[-1] == decomp.alpha.shape[-1] and torch.equal(
            last[0], decomp.steps):
        eig = last[1]
    else:
        eig = lanczos_quadrature(decomp.alpha, decomp.beta, decomp.steps, eigenvectors=True)
    exact = decomp.breakdown | (decomp.norm == 0)
    extra = {"breakdown": decomp.breakdown, "ritz_range": _ritz_range(decomp, eig[0])}
    if adaptive is None:
        q, measure = _residuals(decomp.alpha, decomp.beta, decomp.steps, fn.g, vector_fn,
                                solve, eig)
        measure = torch.where(exact, torch.zeros_like(measure), measure)
        converged = measure <= tol
    else:
        q = (eig[1] * fn.g(eig[0])).sum(-1)
        measure = torch.where(exact, torch.zeros_like(adaptive.error), adaptive.measure())
        converged = exact | adaptive.ok
        extra["error"] = torch.where(exact, torch.zeros_like(adaptive.error), adaptive.error)
    values = decomp.norm**2 * q
    vectors = None if vector_fn is None else lanczos_function(decomp, vector_fn,
                                                              (eig[0], eig[2]))
    return QuadraticForms(
        values=values,
        vectors=vectors,
        iterations=decomp.steps,
        residual=measure,
        converged=converged,
        matvecs=decomp.alpha.shape[-1] * X.shape[-1],
        extra=extra,
    )


def _ritz_range(decomp, theta: Tensor) -> tuple[Tensor, Tensor]:
    """Each sample's smallest and largest Ritz value ``θ[B, c, m]`` over its columns.

    Returns ``([B], [B])``. Padding nodes repeat ``α_1``, a Rayleigh quotient inside the
    range; columns of a zero start vector (no steps) are left out.
    """
    ran = (decomp.norm > 0)[..., None]
    low = torch.where(ran, theta, torch.inf).amin((-2, -1))
    high = torch.where(ran, theta, -torch.inf).amax((-2, -1))
    return low, high
