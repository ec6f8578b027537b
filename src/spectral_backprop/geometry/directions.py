r"""Metric eigen-directions: local (per latent) and global (averaged over the prior).

The metric ``M(z) = J(z)ᵀJ(z)`` measures how far the output moves per latent step:
``‖G(z + εv) − G(z)‖² ≈ ε² vᵀM(z)v``. Its top eigenvectors (the right singular vectors
of ``J``) are the latent directions that move the output most; Ramesh & LeCun (2018,
arXiv 1806.00499, §5) found them to act as quasi-disentangled explanatory factors.
The *global* metric ``E_z[M(z)]`` gives one set of directions for the whole latent
space: the average of the local geometry, where SeFa uses the first layer's weights.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..linalg.jacobian import Generator, check_latents, jacobian, work_dtype
from ..spectral import canonical_signs, latent_metric
from ._util import check_rank, infer_latent_dim, param_dtype

__all__ = ["global_directions", "global_metric", "principal_directions"]


@torch.no_grad()
def principal_directions(
    G: Generator,
    z: Tensor,
    r: int | None = None,
    *,
    chunk_size: int | None = None,
    check_coupling: bool = True,
) -> tuple[Tensor, Tensor]:
    r"""Local eigen-directions: the top ``r`` eigenpairs of ``M(z) = JᵀJ`` at each latent.

    An alias of :func:`~spectral_backprop.spectral.latent_metric` ``(G, z, top=r)``,
    evaluated without an autograd graph and with ``r`` positional. ``v_i`` maximises
    ``‖J v‖`` among unit vectors orthogonal to ``v_1 … v_{i−1}``, and ``‖J v_i‖² = λ_i``;
    ``√λ_i`` is the output distance moved per unit latent step.

    Args:
        G: generator ``z[B, k] -> x[B, ...]``.
        z: latents ``[B, k]``.
        r: number of directions (default ``k``).
        chunk_size: Jacobian columns per forward-mode batch.
        check_coupling: refuse a ``G`` that mixes the samples of a batch.

    Returns:
        ``(eigenvalues[B, r], directions[B, k, r])``: eigenvalues descending, directions
        orthonormal columns with the sign convention of
        :func:`~spectral_backprop.spectral.canonical_signs`.

    Example:
        >>> A = torch.tensor([[1.0, 0.0], [0.0, 3.0], [0.0, 0.0]])
        >>> lam, V = principal_directions(lambda z: z @ A.T, torch.zeros(1, 2), 1)
        >>> lam, V[0, :, 0]
        (tensor([[9.]]), tensor([0., 1.]))
    """
    # A z that is not [B, k] is left to latent_metric's check_latents (a clear error).
    top = check_rank(r, z.shape[1]) if isinstance(z, Tensor) and z.dim() == 2 else r
    return latent_metric(G, z, top=top, chunk_size=chunk_size, check_coupling=check_coupling)


@torch.no_grad()
def global_metric(
    G: Generator,
    n_samples: int = 256,
    *,
    latent_dim: int | None = None,
    batch_size: int = 64,
    z: Tensor | None = None,
    generator: torch.Generator | None = None,
    chunk_size: int | None = None,
) -> Tensor:
    r"""Monte Carlo average of the metric, ``Ḿ = E_{z∼N(0,I)}[J(z)ᵀJ(z)]`` (``[k, k]``).

    ``vᵀḾv = E_z‖J(z)v‖²`` is the mean squared output speed along a *fixed* latent
    direction ``v``, so the eigenvectors of ``Ḿ`` are the fixed directions that move
    outputs most on average.

    Args:
        G: generator.
        n_samples: number of prior samples (ignored when ``z`` is given).
        latent_dim: k (default ``G.latent_dim``).
        batch_size: latents per Jacobian evaluation.
        z: optional latents ``[N, k]`` to average over instead of prior samples.
        generator: random number generator for the prior samples.
        chunk_size: Jacobian columns per forward-mode batch.
    """
    if z is None:
        if not isinstance(n_samples, int) or n_samples < 1:
            raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}")
        k = infer_latent_dim(G, latent_dim)
        dtype = param_dtype(G)
        z = torch.randn(n_samples, k, generator=generator, dtype=dtype)
    check_latents(G, z)
    total = torch.zeros(z.shape[1], z.shape[1], dtype=work_dtype(z.dtype), device=z.device)
    for i, zb in enumerate(z.split(batch_size)):
        # The coupling check on the first batch; the other batches' own checks still run.
        J = jacobian(G, zb, chunk_size=chunk_size, check_coupling=(i == 0)).to(total.dtype)
        total += torch.einsum("bni,bnj->ij", J, J)
    return total / z.shape[0]


def global_directions(
    G: Generator, r: int | None = None, n_samples: int = 256, **options
) -> tuple[Tensor, Tensor]:
    r"""Eigenpairs of the global metric ``E_z[JᵀJ]`` (see :func:`global_metric`).

    Args:
        G: generator.
        r: number of directions (default all ``k``).
        n_samples: prior samples in the average.
        **options: passed to :func:`global_metric` (``latent_dim``, ``z``, ``generator``...).

    Returns:
        ``(eigenvalues[r], directions[k, r])``, eigenvalues descending, orthonormal columns.
    """
    M = global_metric(G, n_samples, **options)
    r = check_rank(r, M.shape[0])
    lam, V = torch.linalg.eigh(M)
    lam, V = lam.flip(-1)[:r], V.flip(-1)[:, :r]
    return lam, canonical_signs(V)
