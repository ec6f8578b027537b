r"""Batched conjugate gradients for ``M x = b`` with ``M`` symmetric positive definite.

Hestenes & Stiefel (1952): from ``x_0``, ``r_0 = p_0 = b − M x_0``,

.. math::
    \alpha_j = \frac{r_j^\top r_j}{p_j^\top M p_j},\quad
    x_{j+1} = x_j + \alpha_j p_j,\quad r_{j+1} = r_j - \alpha_j M p_j,\quad
    p_{j+1} = r_{j+1} + \frac{r_{j+1}^\top r_{j+1}}{r_j^\top r_j} p_j .

Only four vectors per right-hand side are kept, whatever the number of iterations.
All right-hand sides ``b[B, k, c]`` advance in lock step (one batched product per
iteration); a column is frozen once ``‖r‖ ≤ tol·‖b‖``. Used for ``u = M^{-1} ε`` in
stochastic log-determinant gradients (``g'(x) = 1/x``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["CGResult", "conjugate_gradient"]


@dataclass
class CGResult:
    """Solution and per-column diagnostics of :func:`conjugate_gradient`.

    Attributes:
        solution: ``x[B, k, c]``.
        iterations: ``[B, c]`` products with ``M`` each column used.
        residual: ``[B, c]`` relative residual ``‖b − Mx‖/‖b‖`` (by the recurrence).
        converged: ``[B, c]`` ``residual ≤ tol``.
        matvecs: products with ``M`` executed per sample (columns × iterations run,
            frozen columns included: they still go through the batched product).
    """

    solution: Tensor
    iterations: Tensor
    residual: Tensor
    converged: Tensor
    matvecs: int


def conjugate_gradient(
    matvec: Callable[[Tensor], Tensor],
    b: Tensor,
    *,
    max_iters: int,
    tol: float,
    x0: Tensor | None = None,
) -> CGResult:
    """Solve ``M x = b`` for every column of ``b[B, k, c]``.

    The Hestenes–Stiefel (1952) recurrences of the module docstring, stopped at
    ``‖b − Mx‖ ≤ tol‖b‖``.

    Args:
        matvec: ``V[B, k, c] ↦ M V`` (SPD per sample, no autograd graph).
        b: right-hand sides.
        max_iters: iteration budget per column.
        tol: relative residual target.
        x0: optional initial guess.

    Returns:
        A :class:`CGResult`; zero right-hand sides give zero solutions.

    Example:
        >>> A = torch.diag(torch.tensor([1.0, 2.0, 4.0]))[None]
        >>> res = conjugate_gradient(lambda V: A @ V, torch.ones(1, 3, 1), max_iters=3, tol=1e-6)
        >>> res.solution[0, :, 0]
        tensor([1.0000, 0.5000, 0.2500])
    """
    if not isinstance(max_iters, int) or max_iters < 1:
        raise ValueError(f"max_iters must be a positive integer, got {max_iters!r}")
    if tol < 0:
        raise ValueError(f"tol must be >= 0, got {tol}")
    tiny = torch.finfo(b.dtype).tiny
    b_norm = torch.linalg.vector_norm(b, dim=1)
    x = torch.zeros_like(b) if x0 is None else x0.clone()
    r = b - matvec(x) if x0 is not None else b.clone()
    p = r.clone()
    rr = (r * r).sum(1)
    iterations = torch.zeros(b.shape[0], b.shape[2], dtype=torch.long, device=b.device)
    rel = rr.sqrt() / b_norm.clamp_min(tiny)
    active = (rel > tol) & (b_norm > 0)
    matvecs = 0 if x0 is None else b.shape[2]
    for _ in range(max_iters):
        if not active.any():
            break
        Mp = matvec(p)
        matvecs += b.shape[2]
        pMp = (p * Mp).sum(1)
        step = torch.where(active, rr / pMp.clamp_min(tiny), torch.zeros_like(rr))
        x = x + step[:, None] * p
        r = r - step[:, None] * Mp
        rr_new = (r * r).sum(1)
        p = r + torch.where(active, rr_new / rr.clamp_min(tiny), torch.zeros_like(rr))[:, None] * p
        rr = torch.where(active, rr_new, rr)
        iterations += active.long()
        rel = rr.sqrt() / b_norm.clamp_min(tiny)
        active = active & (rel > tol)
    rel = torch.where(b_norm > 0, rel, torch.zeros_like(rel))
    return CGResult(x, iterations, rel, rel <= tol, matvecs)
