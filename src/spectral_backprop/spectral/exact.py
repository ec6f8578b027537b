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
"""

from __future__ import annotations

import warnings
from functools import partial

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from ..linalg.jacobian import Generator, jacobian_and_output, jacobian_columns
from .functions import SpectralFunction

__all__ = ["SingularMetricWarning", "exact_spectral_sum", "metric_eigh"]


class SingularMetricWarning(UserWarning):
    """The latent metric ``JᵀJ`` is singular (rank-deficient Jacobian) for some samples."""


def _columns_fn(G: Generator, z: Tensor, chunk_size: int | None):
    if chunk_size is None or not torch.is_grad_enabled():
        return None
    return partial(checkpoint, partial(jacobian_columns, G, z), use_reentrant=False)


def metric_eigh(J: Tensor, jitter: float = 0.0) -> tuple[Tensor, Tensor]:
    """Ascending eigenpairs of ``JᵀJ + jitter·I`` for ``J[B, n, k]``, outside the graph."""
    J = J.detach()
    M = J.mT @ J
    if jitter:
        M = M + jitter * torch.eye(M.shape[-1], dtype=M.dtype, device=M.device)
    return torch.linalg.eigh(M)


def singular_samples(lam: Tensor, rank_tol: float | None = None) -> Tensor:
    """Boolean mask of samples whose smallest eigenvalue is numerically zero.

    The default threshold ``k · eps · λ_max`` is the usual numerical-rank cut-off
    (as in ``numpy.linalg.matrix_rank``): below it an eigenvalue of ``JᵀJ`` carries
    no information in the working precision.
    """
    k = lam.shape[-1]
    lam_max = lam[..., -1].clamp_min(0)
    tol = rank_tol if rank_tol is not None else k * torch.finfo(lam.dtype).eps * lam_max
    return lam[..., 0] <= tol


def exact_spectral_sum(
    G: Generator,
    z: Tensor,
    fn: SpectralFunction,
    *,
    chunk_size: int | None = None,
    jitter: float = 0.0,
    on_singular: str = "warn",
    rank_tol: float | None = None,
) -> Tensor:
    """``Σ_i g(λ_i(JᵀJ + jitter·I))`` per sample, differentiable by spectral backprop.

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
    """
    if on_singular not in ("warn", "raise"):
        raise ValueError(f"on_singular must be 'warn' or 'raise', got {on_singular!r}")
    if jitter < 0:
        raise ValueError(f"jitter must be >= 0, got {jitter}")
    _, J = jacobian_and_output(G, z, chunk_size=chunk_size, column_fn=_columns_fn(G, z, chunk_size))
    lam, V = metric_eigh(J, jitter)

    if fn.needs_positive:
        singular = singular_samples(lam, rank_tol)
        if singular.any():
            idx = singular.nonzero().flatten().tolist()
            msg = (
                f"JᵀJ is numerically singular for samples {idx} (smallest eigenvalue "
                f"{lam[singular, 0].min().item():.3g}); {fn.name} is not finite there. "
                "Pass jitter=... to regularise, or check that G is an immersion at z."
            )
            if on_singular == "raise":
                raise ValueError(msg)
            warnings.warn(msg, SingularMetricWarning, stacklevel=3)
        lam = torch.where(singular[:, None], lam.clamp_min(0), lam)
    else:
        singular = torch.zeros(lam.shape[0], dtype=torch.bool, device=lam.device)

    value = fn.g(lam).sum(-1)
    if not J.requires_grad:
        return value
    weights = torch.where(singular[:, None], torch.zeros_like(lam), fn.dg(lam))
    W = (V * weights[:, None, :]) @ V.mT
    surrogate = 2 * (J * (J.detach() @ W)).sum((1, 2))
    return value + (surrogate - surrogate.detach())
