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
between steps. The quadrature must also settle: ``|q_m − q_{m−1}| ≤ tol Σ_i S_{1i}²|g(θ_i)|``.
The extreme Ritz values ``θ_i`` of the runs are returned too: a Ritz value never lies
below ``λ_min(M)``, so a ``θ_min`` at the numerical-rank cut-off proves a singular metric.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ..linalg.lanczos import lanczos, lanczos_function, lanczos_quadrature
from .functions import SpectralFunction
from .quadratic import QuadraticForms

__all__ = ["lanczos_forms"]


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


def lanczos_forms(
    matvec: Callable[[Tensor], Tensor],
    X: Tensor,
    fn: SpectralFunction,
    *,
    num_matvecs: int,
    tol: float,
    vector_fn: Fn | None = None,
    solve: bool = False,
) -> QuadraticForms:
    """Lanczos quadrature for every column of ``X[B, k, c]``, stopping at ``tol``.

    ``xᵀg(M)x ≈ ‖x‖² Σ_i S_{1i}² g(θ_i)`` and ``h(M)x ≈ ‖x‖ Q_m h(T_m) e_1`` (Golub &
    Meurant 1994; Ubaru, Chen & Saad 2017).

    Args:
        matvec: ``V ↦ MV`` without a graph.
        X: vectors (probes and deflation vectors).
        fn: spectral function ``g``.
        num_matvecs: maximum Lanczos steps per column.
        tol: relative tolerance of the stopping test (see the module docstring).
        vector_fn: ``h``, to also return ``h(M) x`` (``None``: value only).
        solve: ``h = 1/x``: stop on the true CG residual.
    """

    def stop(alpha: Tensor, beta: Tensor, steps: Tensor) -> Tensor:
        return _residuals(alpha, beta, steps, fn.g, vector_fn, solve)[1] <= tol

    decomp = lanczos(matvec, X, num_matvecs, stop=stop)
    # The one eigendecomposition of the final T_m: value, vectors and Ritz range use it.
    eig = lanczos_quadrature(decomp.alpha, decomp.beta, decomp.steps, eigenvectors=True)
    q, measure = _residuals(decomp.alpha, decomp.beta, decomp.steps, fn.g, vector_fn, solve,
                            eig)
    measure = torch.where(decomp.breakdown | (decomp.norm == 0), torch.zeros_like(measure), measure)
    values = decomp.norm**2 * q
    vectors = None if vector_fn is None else lanczos_function(decomp, vector_fn,
                                                              (eig[0], eig[2]))
    return QuadraticForms(
        values=values,
        vectors=vectors,
        iterations=decomp.steps,
        residual=measure,
        converged=measure <= tol,
        matvecs=decomp.alpha.shape[-1] * X.shape[-1],
        extra={"breakdown": decomp.breakdown, "ritz_range": _ritz_range(decomp, eig[0])},
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
