r"""Random probe vectors for Hutchinson-type trace estimators.

For probes ``ε`` with ``E[εεᵀ] = P`` (``P`` the orthogonal projector onto the
complement of an optional orthonormal basis ``V``, ``P = I`` without one),

.. math::  \operatorname{tr}(P A P) = E_\varepsilon[\varepsilon^\top A \varepsilon]
           \approx \frac1p \sum_{j=1}^p \varepsilon_j^\top A \varepsilon_j

(Hutchinson 1989; Girard 1989). Kinds:

* ``"rademacher"``: i.i.d. ±1 entries (then projected), the smallest variance among
  i.i.d. probes, ``2 Σ_{i≠j} A_ij²`` without a basis;
* ``"gaussian"``: i.i.d. ``N(0, 1)`` entries (then projected), variance ``2‖PAP‖_F²``;
* ``"orthogonal"``: ``√d`` times orthonormal columns of a Haar-random basis of the
  ``d``-dimensional range of ``P``; with ``p = d`` probes the estimate is exact
  (Hutchinson without replacement), and for ``p > d`` independent blocks are stacked.

Every sample of a batch gets its own probes; a ``torch.Generator`` makes them repeatable.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .memory import check_allocation

__all__ = ["PROBE_KINDS", "project_out", "sample_probes"]

PROBE_KINDS = ("rademacher", "gaussian", "orthogonal")


def project_out(X: Tensor, basis: Tensor | None) -> Tensor:
    """``(I − V Vᵀ) X`` per sample for ``X[B, k, p]`` and orthonormal ``V[B, k, r]``."""
    if basis is None or basis.shape[-1] == 0:
        return X
    return X - basis @ (basis.mT @ X)


def _orthogonal(
    batch: int, k: int, num: int, basis: Tensor | None, generator, dtype, device
) -> Tensor:
    rank = k - (0 if basis is None else basis.shape[-1])
    blocks = -(-num // rank)
    # QR of projected Gaussian blocks: Haar-distributed orthonormal bases of random
    # rank-dimensional subspaces of range(P); scaling by √rank makes E[εεᵀ] = P.
    Z = torch.randn(blocks, batch, k, rank, generator=generator, dtype=dtype, device=device)
    Q, R = torch.linalg.qr(project_out(Z, basis))
    # Fix QR's sign ambiguity so the distribution is exactly Haar.
    signs = torch.sign(torch.diagonal(R, dim1=-2, dim2=-1))
    Q = Q * torch.where(signs == 0, torch.ones_like(signs), signs)[..., None, :]
    # Project again: QR leaves rounding-size components along V.
    Q = project_out(Q, basis) * math.sqrt(rank)
    return Q.permute(1, 2, 0, 3).reshape(batch, k, blocks * rank)[..., :num]


def sample_probes(
    batch: int,
    k: int,
    num: int,
    kind: str = "rademacher",
    *,
    basis: Tensor | None = None,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Tensor:
    """Probes ``ε[B, k, num]`` with ``E[εεᵀ] = I − VVᵀ`` for each sample.

    So ``(1/p) Σ_j ε_jᵀ A ε_j`` estimates ``tr(PAP)`` without bias (Hutchinson 1989).

    Args:
        batch: number of samples ``B``.
        k: dimension.
        num: probes per sample.
        kind: ``"rademacher"``, ``"gaussian"`` or ``"orthogonal"``.
        basis: optional orthonormal ``V[B, k, r]`` whose span the probes avoid.
        generator: source of randomness (on the probes' device).
        dtype, device: of the result.

    Returns:
        ``Tensor[B, k, num]``.

    Example:
        >>> eps = sample_probes(1, 4, 4, "orthogonal", generator=torch.Generator().manual_seed(0))
        >>> torch.allclose(eps[0] @ eps[0].T / 4, torch.eye(4), atol=1e-6)
        True
    """
    if kind not in PROBE_KINDS:
        raise ValueError(f"probes must be one of {', '.join(PROBE_KINDS)}; got {kind!r}")
    if isinstance(num, bool) or not isinstance(num, int) or num < 1:
        raise ValueError(f"num_probes must be a positive integer, got {num!r}")
    if basis is not None and basis.shape[-1] >= k:
        raise ValueError(f"the deflation basis spans all k={k} dimensions: nothing left to probe")
    check_allocation(batch * k * num, dtype, device, copies=2 if kind == "orthogonal" else 1,
                     what=f"probes [B={batch}, k={k}, num_probes={num}]",
                     fix="Lower num_probes or the batch.")
    if kind == "orthogonal":
        return _orthogonal(batch, k, num, basis, generator, dtype, device)
    shape = (batch, k, num)
    if kind == "gaussian":
        eps = torch.randn(shape, generator=generator, dtype=dtype, device=device)
    else:
        bits = torch.randint(0, 2, shape, generator=generator, device=device)
        eps = (2 * bits - 1).to(dtype)
    return project_out(eps, basis)
