r"""Exact spectral backpropagation.

With ``M = JᵀJ = V diag(λ) Vᵀ`` and any spectral function ``g``,

.. math::
    dS_g = \operatorname{tr}(g'(M)\, dM)
         = \sum_i g'(\lambda_i)\, v_i^\top dM\, v_i
         = d\Big[\sum_i g'(\lambda_i) \lVert J v_i \rVert^2\Big]_{\lambda, v\ \text{fixed}},

(Ramesh & LeCun 2018, arXiv 1806.00499, §3). We build ``J`` once with ``k``
forward-mode products, eigendecompose the ``k×k`` metric *outside* the graph, and
attach the gradient through the surrogate

.. math::  s = 2 \sum J \odot (\bar J\, W), \qquad W = V g'(\Lambda) V^\top,

where ``J̄`` is ``J`` detached: ``ds = 2 tr(W J̄ᵀ dJ) = tr(W dM)``. ``W`` is a
well-defined matrix function even when eigenvalues repeat, so the gradient stays
finite there, unlike autograd through ``eigh`` (whose backward divides by
``λ_i − λ_j``). The returned value is ``S + (s − s.detach())``: numerically ``S``,
with the gradient of ``s``.

With ``chunk_size`` set (and gradients enabled), each chunk of Jacobian columns is
wrapped in a non-reentrant activation checkpoint: its graph is dropped after the
forward pass and rebuilt one chunk at a time during the backward pass, so peak memory
follows ``chunk_size`` rather than ``k``, for one extra forward-mode pass.

For ``g = log`` the weights are ``W = M⁻¹`` and the value ``2 Σ log diag L`` with
``M = LLᵀ``: a Cholesky factorisation is an order of magnitude cheaper than ``eigh``
and is what an SPD metric calls for. ``eigh`` remains the arbiter whenever Cholesky
cannot certify that ``M`` is well inside the positive-definite cone.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from ..linalg.jacobian import Generator, jacobian_and_output, jacobian_columns
from .diagnostics import (
    SingularMetricWarning,
    check_singular_options,
    report_singular,
    singular_samples,
)
from .estimate import SpectralEstimate
from .functions import SPECTRAL_FUNCTIONS, SpectralFunction

__all__ = ["SingularMetricWarning", "cholesky_logdet", "exact_spectral_sum", "gram"]


def _columns_fn(G: Generator, z: Tensor, chunk_size: int | None):
    if chunk_size is None or not torch.is_grad_enabled():
        return None
    return partial(checkpoint, partial(jacobian_columns, G, z), use_reentrant=False)


def gram(J: Tensor, jitter: float = 0.0) -> Tensor:
    """``JᵀJ + jitter·I`` for ``J[B, n, k]``, outside the graph."""
    J = J.detach()
    M = J.mT @ J
    if jitter:
        M = M + jitter * torch.eye(M.shape[-1], dtype=M.dtype, device=M.device)
    return M


def cholesky_logdet(M: Tensor, rank_tol: float | None = None) -> tuple[Tensor, Tensor] | None:
    """``(log det M, M⁻¹)`` by Cholesky, or ``None`` when ``M`` may be numerically singular.

    Certifies non-singularity without eigenvalues: ``λ_min ≥ 1 / tr(M⁻¹)`` and
    ``λ_max ≤ tr M``, so ``1/tr(M⁻¹) > k·eps·tr M`` implies ``λ_min`` is above the
    numerical-rank threshold of :func:`~.diagnostics.singular_samples`. Otherwise the
    caller falls back to ``eigh``, which decides exactly as before.
    """
    L, info = torch.linalg.cholesky_ex(M)
    if (info != 0).any():
        return None
    W = torch.cholesky_inverse(L)
    k = M.shape[-1]
    lower = 1.0 / W.diagonal(dim1=-2, dim2=-1).sum(-1)
    if rank_tol is None:
        tol = k * torch.finfo(M.dtype).eps * M.diagonal(dim1=-2, dim2=-1).sum(-1)
    else:
        tol = torch.full_like(lower, rank_tol)
    if not (torch.isfinite(lower) & (lower > tol)).all():
        return None
    return 2 * L.diagonal(dim1=-2, dim2=-1).log().sum(-1), W


def exact_spectral_sum(
    G: Generator,
    z: Tensor,
    fn: SpectralFunction,
    *,
    chunk_size: int | None = None,
    jitter: float = 0.0,
    on_singular: str = "warn",
    rank_tol: float | None = None,
    return_info: bool = False,
) -> Tensor | SpectralEstimate:
    """``Σ_i g(λ_i(JᵀJ + jitter·I))`` per sample, differentiable by spectral backprop.

    ``dS = d[Σ_i g'(λ_i)‖J v_i‖²]`` with ``λ, v`` held fixed (Ramesh & LeCun 2018,
    arXiv 1806.00499, §3); see the module docstring.

    Args:
        G: generator ``z[B, k] -> x[B, ...]``.
        z: latents ``[B, k]``.
        fn: the spectral function.
        chunk_size: Jacobian columns in flight at once, forward and backward.
        jitter: added to the metric's diagonal, ``JᵀJ + jitter·I`` (opt-in regularisation
            for rank-deficient generators).
        on_singular: for ``log``/``sqrt``-type ``g`` when ``JᵀJ`` is numerically singular:
            ``"warn"`` returns ``g(0)`` (``-inf`` for log det) for those samples, warns
            with :class:`SingularMetricWarning`, and excludes them from the gradient;
            ``"raise"`` raises ``ValueError``.
        rank_tol: eigenvalues at or below it count as zero (default ``k·eps·λ_max``).
        return_info: return a :class:`SpectralEstimate` (standard error 0, ``info`` with
            ``method="exact"`` and the ``singular`` samples) instead of the value.
    """
    check_singular_options(on_singular, jitter)
    _, J = jacobian_and_output(G, z, chunk_size=chunk_size, column_fn=_columns_fn(G, z, chunk_size))
    M = gram(J, jitter)
    fast = cholesky_logdet(M, rank_tol) if fn is SPECTRAL_FUNCTIONS["logdet"] else None
    if fast is not None:
        (value, W), singular = fast, torch.zeros(M.shape[0], dtype=torch.bool, device=M.device)
    else:
        value, W, singular = _eigh_value_and_weights(M, fn, on_singular, rank_tol)
    if J.requires_grad:
        surrogate = 2 * (J * (J.detach() @ W)).sum((1, 2))
        value = value + (surrogate - surrogate.detach())
    if return_info:
        info = {"method": "exact", "singular": singular}
        return SpectralEstimate(value, torch.zeros_like(value.detach()), info)
    return value


def _eigh_value_and_weights(
    M: Tensor, fn: SpectralFunction, on_singular: str, rank_tol: float | None
) -> tuple[Tensor, Tensor, Tensor]:
    """``Σ g(λ)``, ``W = V g'(Λ) Vᵀ`` and the singular samples, from ``eigh``."""
    lam, V = torch.linalg.eigh(M)
    singular = torch.zeros(lam.shape[0], dtype=torch.bool, device=lam.device)
    if fn.needs_positive:
        singular = singular_samples(lam, rank_tol)
        report_singular(singular, lam[:, 0], fn, on_singular)
        lam = torch.where(singular[:, None], lam.clamp_min(0), lam)
    value = fn.g(lam).sum(-1)
    # Singular samples are left out of the gradient: g' is infinite there.
    weights = torch.where(singular[:, None], torch.zeros_like(lam), fn.dg(lam))
    return value, (V * weights[:, None, :]) @ V.mT, singular
