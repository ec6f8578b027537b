r"""Stochastic Lanczos quadrature kernel: ``xᵀ g(M) x`` and ``g'(M) x`` from one Krylov space.

For each vector ``x``, ``m`` Lanczos steps give ``T_m = S diag(θ) Sᵀ`` and basis ``Q_m``:

.. math::
    x^\top g(M)\, x \approx \lVert x\rVert^2 \sum_i S_{1i}^2\, g(\theta_i), \qquad
    g'(M)\, x \approx \lVert x\rVert\, Q_m\, g'(T_m)\, e_1

(Golub & Meurant 1994; Ubaru, Chen & Saad 2017, SIAM J. Matrix Anal. Appl. 38(4),
"Fast estimation of tr(f(A)) via stochastic Lanczos quadrature"). The same ``m``
products with ``M`` serve the value and the gradient vector. For log det
(``g' = 1/x``) the vector is exactly the conjugate-gradient iterate (Lanczos–CG
equivalence), and its true relative residual ``β_m |e_mᵀ T_m^{-1} e_1|`` is the
stopping test; for other ``g`` the test is the relative change of ``g'(T_m) e_1``
between steps. The quadrature must also settle: ``|q_m − q_{m−1}| ≤ tol Σ_i S_{1i}²|g(θ_i)|``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ..linalg.lanczos import lanczos, lanczos_function, tridiagonal
from .functions import SpectralFunction
from .quadratic import QuadraticForms, is_reciprocal

__all__ = ["lanczos_forms"]


def _pad(y: Tensor, m: int) -> Tensor:
    return torch.nn.functional.pad(y, (0, m - y.shape[-1]))


def _quadrature_state(
    alpha: Tensor, beta: Tensor, steps: Tensor, fn: SpectralFunction, reciprocal: bool
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(q, Σ τ²|g(θ)|, g'(T) e_1, CG residual)`` of the first ``steps`` steps per column."""
    theta, S = torch.linalg.eigh(tridiagonal(alpha, beta, steps))
    w = S[..., 0, :]
    g = fn.g(theta)
    q = (w**2 * g).sum(-1)
    q_abs = (w**2 * g.abs()).sum(-1)
    y = (S * (fn.dg(theta) * w)[..., None, :]).sum(-1)  # g'(T) e_1, [B, c, m]
    res = torch.zeros_like(q)
    if reciprocal:
        last = (steps - 1).clamp_min(0)
        y_last = y.gather(-1, last[..., None])[..., 0]
        beta_m = beta.gather(-1, last[..., None])[..., 0]
        res = (beta_m * y_last).abs()
    return q, q_abs, y, res


def _residuals(
    alpha: Tensor, beta: Tensor, steps: Tensor, fn: SpectralFunction, need_vectors: bool
) -> tuple[Tensor, Tensor]:
    """Unscaled value ``e_1ᵀ g(T_m) e_1`` and the convergence measure of each column."""
    reciprocal = is_reciprocal(fn)
    m = alpha.shape[-1]
    q, q_abs, y, cg_res = _quadrature_state(alpha, beta, steps, fn, reciprocal)
    prev = (steps - 1).clamp_min(1)
    q0, _, y0, _ = _quadrature_state(alpha, beta, prev, fn, reciprocal)
    first = steps <= 1  # nothing to compare with yet
    tiny = torch.finfo(q.dtype).tiny
    measure = (q - q0).abs() / q_abs.clamp_min(tiny)
    if need_vectors:
        if reciprocal:
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


def lanczos_forms(
    matvec: Callable[[Tensor], Tensor],
    X: Tensor,
    fn: SpectralFunction,
    *,
    num_matvecs: int,
    tol: float,
    need_vectors: bool,
) -> QuadraticForms:
    """Lanczos quadrature for every column of ``X[B, k, c]``, stopping at ``tol``.

    Args:
        matvec: ``V ↦ MV`` without a graph.
        X: vectors (probes and deflation vectors).
        fn: spectral function ``g`` with derivative ``g'``.
        num_matvecs: maximum Lanczos steps per column.
        tol: relative tolerance of the stopping test (see the module docstring).
        need_vectors: also return ``g'(M) x``.
    """

    def stop(alpha: Tensor, beta: Tensor) -> Tensor:
        steps = torch.full(alpha.shape[:-1], alpha.shape[-1], device=alpha.device)
        return _residuals(alpha, beta, steps, fn, need_vectors)[1] <= tol

    decomp = lanczos(matvec, X, num_matvecs, stop=stop)
    q, measure = _residuals(decomp.alpha, decomp.beta, decomp.steps, fn, need_vectors)
    measure = torch.where(decomp.breakdown | (decomp.norm == 0), torch.zeros_like(measure), measure)
    values = decomp.norm**2 * q
    vectors = lanczos_function(decomp, fn.dg) if need_vectors else None
    return QuadraticForms(
        values=values,
        vectors=vectors,
        iterations=decomp.steps,
        residual=measure,
        converged=measure <= tol,
        matvecs=decomp.alpha.shape[-1] * X.shape[-1],
        extra={"breakdown": decomp.breakdown},
    )
