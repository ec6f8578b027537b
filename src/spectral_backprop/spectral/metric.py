r"""Eigen-decomposition of the latent metric ``M(z) = J(z)ᵀJ(z)``.

The eigenvectors of ``M`` are the right singular vectors of ``J``: the latent
directions that move the output most (top) and least (bottom) per unit step, with
``‖J v_i‖² = λ_i``. Ramesh & LeCun (2018, arXiv 1806.00499, §5) found the top ones act
as quasi-disentangled explanatory factors.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..linalg.jacobian import Generator, check_latents, jacobian, work_dtype

__all__ = ["canonical_signs", "check_rank", "latent_metric"]


def check_rank(r: int | None, k: int, name: str = "r") -> int:
    """``r`` checked to be an integer in ``[1, k]`` (``None`` means all ``k``)."""
    if r is None:
        return k
    if not isinstance(r, int) or isinstance(r, bool) or not 1 <= r <= k:
        raise ValueError(f"{name} must be an integer in [1, k={k}], got {r!r}")
    return r


def canonical_signs(V: Tensor) -> Tensor:
    """Flip each column of ``V[..., k, r]`` so that its largest-magnitude entry is positive.

    Eigenvectors are defined up to sign; a fixed convention makes results repeatable
    across runs, batch compositions and devices.
    """
    idx = V.abs().argmax(dim=-2, keepdim=True)
    sign = torch.sign(torch.gather(V, -2, idx))
    return V * torch.where(sign == 0, torch.ones_like(sign), sign)


def latent_metric(
    G: Generator,
    z: Tensor,
    *,
    top: int | None = None,
    chunk_size: int | None = None,
    check_coupling: bool = True,
) -> tuple[Tensor, Tensor]:
    """Eigenvalues and eigenvectors of ``JᵀJ`` per sample, largest first.

    Args:
        G: generator ``z[B, k] -> x[B, ...]``.
        z: latents ``[B, k]``.
        top: keep the ``r = top`` largest eigenpairs (default: all ``k``).
        chunk_size: Jacobian columns computed at once (see :func:`jacobian`).
        check_coupling: refuse a ``G`` that mixes the samples of a batch (see
            :func:`jacobian`).

    Returns:
        ``(eigenvalues[B, r], eigenvectors[B, k, r])``, eigenvalues descending, each
        eigenvector's largest entry positive (:func:`canonical_signs`); float32 for
        float16 / bfloat16 ``z`` (the eigensolver needs more digits than they carry).

    :func:`~spectral_backprop.geometry.principal_directions` is the same computation
    without a graph, with ``r`` as its third positional argument.

    Gradients flow through ``torch.linalg.eigh`` of ``M``. For the eigenvalues alone
    that backward is ``V diag(ḡ) Vᵀ``, the spectral-backprop formula, finite even at
    repeated eigenvalues; gradients of *eigenvectors* are undefined where eigenvalues
    repeat (as for any eigensolver).

    Example:
        >>> A = torch.diag(torch.tensor([3.0, 1.0]))
        >>> lam, V = latent_metric(lambda z: z @ A, torch.zeros(1, 2))
        >>> lam
        tensor([[9., 1.]])
    """
    check_latents(G, z)
    top = check_rank(top, z.shape[1], "top")
    J = jacobian(G, z, chunk_size=chunk_size, check_coupling=check_coupling)
    J = J.to(work_dtype(J.dtype))
    lam, V = torch.linalg.eigh(J.mT @ J)
    lam, V = lam.flip(-1)[:, :top], V.flip(-1)[:, :, :top]
    return lam, canonical_signs(V)
