r"""Batched Lanczos tridiagonalisation with full reorthogonalisation.

For a symmetric ``M`` (given only as a product ``V ↦ MV``) and a start vector ``x``,
``m`` steps build an orthonormal basis ``Q_m = [q_1 … q_m]`` of the Krylov space
``span{x, Mx, …, M^{m-1}x}`` with ``q_1 = x/‖x‖`` and

.. math::  M Q_m = Q_m T_m + \beta_m q_{m+1} e_m^\top,

``T_m`` tridiagonal with diagonal ``α`` and off-diagonal ``β`` (Lanczos 1950; Golub &
Van Loan, *Matrix Computations*, §10.1). From it:

* **Gauss quadrature** (Golub & Meurant 1994): with ``T_m = S diag(θ) Sᵀ``,
  ``xᵀ f(M) x ≈ ‖x‖² e_1ᵀ f(T_m) e_1 = ‖x‖² Σ_i S_{1i}² f(θ_i)``, exact for
  polynomials of degree ``2m − 1``; averaged over random ``x`` this is stochastic
  Lanczos quadrature (Ubaru, Chen & Saad 2017).
* **Matrix functions:** ``f(M) x ≈ ‖x‖ Q_m f(T_m) e_1``; for ``f = 1/x`` this is the
  conjugate-gradient iterate, with residual norm ``‖x‖ β_m |e_mᵀ T_m^{-1} e_1|``.
* **Ritz pairs** ``(θ_i, Q_m s_i)``, residual ``‖M y_i − θ_i y_i‖ = β_m |S_{mi}|``: the
  extreme eigenpairs converge first.

Every vector is orthogonalised twice against the whole basis (classical Gram–Schmidt
twice), which keeps ``Q_m`` orthonormal to working precision: the plain three-term
recurrence loses orthogonality and produces spurious copies of converged Ritz values.
All columns of a ``[B, k, c]`` block run in lock step (one batched product per step);
a column stops when it breaks down (``β ≈ 0``: an invariant subspace, so its results
are exact) or when a caller's stopping rule says so. Later entries of a stopped column
are padding that the helpers below ignore.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from .memory import check_allocation

__all__ = [
    "LanczosDecomposition",
    "lanczos",
    "lanczos_function",
    "lanczos_quadrature",
    "ritz_pairs",
    "rounding_floor",
    "tridiagonal",
]

Matvec = Callable[[Tensor], Tensor]


@dataclass
class LanczosDecomposition:
    """The result of :func:`lanczos` for ``c`` start vectors per sample.

    Attributes:
        basis: ``Q[B, c, m, k]``, orthonormal rows ``q_1 … q_m`` (zero past ``steps``).
        alpha: ``[B, c, m]`` diagonal of ``T`` (padding past ``steps`` repeats ``α_1``,
            a Rayleigh quotient, so padded nodes stay inside the spectrum; 1 for a
            zero start vector).
        beta: ``[B, c, m]``; ``beta[..., j]`` couples ``q_{j+1}`` and ``q_{j+2}``, and
            ``beta[..., steps-1]`` is the final residual norm ``β_m`` (zero after a
            breakdown). Padding entries are zero.
        norm: ``‖x‖`` per column, ``[B, c]``.
        steps: ``[B, c]`` number of Lanczos steps (products with ``M``) each column used.
        breakdown: ``[B, c]`` the column reached an invariant subspace (exact results).
    """

    basis: Tensor
    alpha: Tensor
    beta: Tensor
    norm: Tensor
    steps: Tensor
    breakdown: Tensor

    @property
    def residual(self) -> Tensor:
        """``β_m`` of each column, ``[B, c]``."""
        last = (self.steps - 1).clamp_min(0)
        return self.beta.gather(-1, last[..., None])[..., 0]


def tridiagonal(alpha: Tensor, beta: Tensor, steps: Tensor | None = None) -> Tensor:
    """``T[..., m, m]`` from ``alpha[..., m]`` and couplings ``beta[..., m]`` (last unused).

    With ``steps[...]`` the couplings at or after each column's last step are dropped
    (the last one is the residual ``β_m``, not part of ``T_m``), which decouples the
    padding from the active block: ``f(T)`` then acts on the active block unchanged.
    ``T_{jj} = α_j``, ``T_{j,j+1} = T_{j+1,j} = β_j`` (Golub & Van Loan, §10.1).
    """
    if steps is not None:
        idx = torch.arange(alpha.shape[-1], device=alpha.device)
        beta = torch.where(idx < (steps[..., None] - 1), beta, torch.zeros_like(beta))
    off = beta[..., :-1]
    return torch.diag_embed(alpha) + torch.diag_embed(off, 1) + torch.diag_embed(off, -1)


def rounding_floor(dtype: torch.dtype, k: int) -> float:
    """The relative rounding level of a fully reorthogonalised Lanczos run: ``10 √k · eps``.

    After full reorthogonalisation a vector in the Krylov space leaves a remainder of
    about ``√k · eps`` relative to ``‖M‖`` (Parlett, *The Symmetric Eigenvalue Problem*,
    1998, ch. 13). Below it a step counts as a breakdown here, and a quadrature as
    converged (:mod:`~..spectral.slq`, :mod:`~..spectral.chebyshev_hutchinson`).
    """
    return 10.0 * (k**0.5) * torch.finfo(dtype).eps


def lanczos(
    matvec: Matvec,
    start: Tensor,
    num_steps: int,
    *,
    stop: Callable[[Tensor, Tensor, Tensor], Tensor] | None = None,
) -> LanczosDecomposition:
    """Run up to ``num_steps`` Lanczos steps from each column of ``start[B, k, c]``.

    ``M Q_m = Q_m T_m + β_m q_{m+1} e_mᵀ`` with full reorthogonalisation (Lanczos 1950;
    Golub & Van Loan, §10.1); see the module docstring.

    Args:
        matvec: ``V[B, k, c] ↦ M V`` for a symmetric ``M`` per sample (no autograd graph).
        start: start vectors; a zero column yields ``norm = 0`` and no steps.
        num_steps: maximum steps per column (at most ``k`` are useful).
        stop: optional rule ``stop(alpha[B, c, j], beta[B, c, j], steps[B, c]) ->
            Tensor[bool, B, c]`` called after each step with the coefficients so far
            (stopped columns padded) and each column's step count; ``True`` freezes a column.

    Returns:
        A :class:`LanczosDecomposition` truncated to the steps actually run.
    """
    if not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError(f"num_steps must be a positive integer, got {num_steps!r}")
    B, k, c = start.shape
    m = min(num_steps, k)
    dtype, device = start.dtype, start.device
    check_allocation(B * c * m * k, dtype, device, what=f"a Lanczos basis [B={B}, "
                     f"columns={c}, steps={m}, k={k}]",
                     fix="Lower num_matvecs or num_probes, or the batch.")
    norm = torch.linalg.vector_norm(start, dim=1)  # [B, c]
    active = norm > 0
    q = torch.where(active[:, None, :], start / norm.clamp_min(torch.finfo(dtype).tiny)[:, None, :],
                    torch.zeros_like(start))
    Q = torch.zeros(B, c, m, k, dtype=dtype, device=device)
    alpha = torch.zeros(B, c, m, dtype=dtype, device=device)
    beta = torch.zeros(B, c, m, dtype=dtype, device=device)
    steps = torch.zeros(B, c, dtype=torch.long, device=device)
    breakdown = torch.zeros(B, c, dtype=torch.bool, device=device)
    scale = torch.zeros(B, c, dtype=dtype, device=device)  # running estimate of ‖M‖
    eps_break = rounding_floor(dtype, k)
    q_prev = torch.zeros_like(start)
    beta_prev = torch.zeros(B, c, dtype=dtype, device=device)
    ran = 0
    for j in range(m):
        Q[:, :, j] = q.mT
        w = matvec(q)
        a = (q * w).sum(1)
        w = w - a[:, None] * q - beta_prev[:, None] * q_prev
        basis = Q[:, :, : j + 1]  # [B, c, j+1, k]
        for _ in range(2):  # classical Gram–Schmidt, twice
            w = w - (basis.mT @ (basis @ w.mT[..., None]))[..., 0].mT
        b = torch.linalg.vector_norm(w, dim=1)
        first = alpha[:, :, :1] if j else torch.ones_like(a)[..., None]
        alpha[:, :, j] = torch.where(active, a, first[..., 0])
        steps += active.long()
        scale = torch.maximum(scale, a.abs() + b + beta_prev)
        broke = active & (b <= eps_break * scale)
        breakdown |= broke
        active = active & ~broke
        beta[:, :, j] = torch.where(active, b, torch.zeros_like(b))
        ran = j + 1
        if stop is not None and active.any():
            active = active & ~stop(alpha[:, :, :ran], beta[:, :, :ran], steps)
        if not active.any():
            break
        q_prev, beta_prev = q, torch.where(active, b, torch.zeros_like(b))
        q = torch.where(active[:, None, :], w / b.clamp_min(torch.finfo(dtype).tiny)[:, None, :],
                        torch.zeros_like(w))
    return LanczosDecomposition(
        Q[:, :, :ran], alpha[..., :ran], beta[..., :ran], norm, steps, breakdown
    )


def lanczos_quadrature(
    alpha: Tensor, beta: Tensor, steps: Tensor | None = None, *, eigenvectors: bool = False
) -> tuple[Tensor, Tensor] | tuple[Tensor, Tensor, Tensor]:
    """Gauss quadrature nodes and weights ``(θ[..., m], τ²[..., m])`` of ``T_m``.

    ``e_1ᵀ f(T_m) e_1 = Σ_i τ_i² f(θ_i)`` with ``T_m = S diag(θ) Sᵀ`` and ``τ_i = S_{1i}``
    (Golub & Meurant 1994). Padding of stopped columns gets weight zero. With
    ``eigenvectors=True`` also ``S[..., m, m]``, for ``f(T_m) e_1 = S (f(θ) ⊙ τ)``
    (:func:`lanczos_function`) and Ritz vectors (:func:`ritz_pairs`): the one
    eigendecomposition of ``T_m`` that every Lanczos result here comes from.

    Example:
        >>> alpha, beta = torch.tensor([[2.0, 2.0]]), torch.tensor([[1.0, 0.0]])
        >>> theta, weights = lanczos_quadrature(alpha, beta)  # T = [[2, 1], [1, 2]]
        >>> theta, weights
        (tensor([[1., 3.]]), tensor([[0.5000, 0.5000]]))
    """
    theta, S = torch.linalg.eigh(tridiagonal(alpha, beta, steps))
    weights = S[..., 0, :] ** 2
    return (theta, weights, S) if eigenvectors else (theta, weights)


def lanczos_function(
    decomp: LanczosDecomposition,
    f: Callable[[Tensor], Tensor],
    eig: tuple[Tensor, Tensor] | None = None,
) -> Tensor:
    """``f(M) x ≈ ‖x‖ Q_m f(T_m) e_1`` for every start column, ``[B, k, c]``.

    The Lanczos approximation of a matrix function times a vector (Higham, *Functions of
    Matrices*, 2008, ch. 13); for ``f = 1/x`` it is the CG iterate. ``eig = (θ, S)`` of
    ``T_m`` from :func:`lanczos_quadrature`, when the caller has it already.
    """
    if eig is None:
        theta, _, S = lanczos_quadrature(decomp.alpha, decomp.beta, decomp.steps,
                                         eigenvectors=True)
    else:
        theta, S = eig
    coeff = (S * f(theta)[..., None, :]) @ S[..., 0, :, None]  # f(T) e_1, [B, c, m, 1]
    return (decomp.basis.mT @ coeff)[..., 0].mT * decomp.norm[:, None, :]


def ritz_pairs(decomp: LanczosDecomposition) -> tuple[Tensor, Tensor, Tensor]:
    """Ritz values ``θ[B, c, m]`` (ascending), vectors ``Y[B, c, k, m]``, residuals ``[B, c, m]``.

    ``T_m = S diag(θ) Sᵀ``, ``y_i = Q_m s_i``, ``‖M y_i − θ_i y_i‖ = β_m |S_{mi}|``
    (Golub & Van Loan, §10.1). Padding of stopped columns is excluded by giving those
    nodes ``+inf``.
    """
    steps = decomp.steps
    theta, _, S = lanczos_quadrature(decomp.alpha, decomp.beta, steps, eigenvectors=True)
    m = theta.shape[-1]
    # A Ritz vector lives in the active block when its padding rows are zero.
    idx = torch.arange(m, device=theta.device)
    in_block = (idx[:, None] < steps[..., None, None]).to(S.dtype)  # [B, c, m, 1]
    weight_in = (S**2 * in_block).sum(-2)
    valid = weight_in > 0.5
    theta = torch.where(valid, theta, torch.full_like(theta, float("inf")))
    order = theta.argsort(-1)
    theta = theta.gather(-1, order)
    S = S.gather(-1, order[..., None, :].expand_as(S))
    Y = decomp.basis.mT @ S  # [B, c, k, m]
    last = (steps - 1).clamp_min(0)
    s_last = S.gather(-2, last[..., None, None].expand(*S.shape[:-2], 1, m))[..., 0, :]
    residual = (decomp.residual[..., None] * s_last).abs()
    return theta, Y, residual
