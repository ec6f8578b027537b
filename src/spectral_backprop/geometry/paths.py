r"""Walking in latent space: curved eigen paths and straight traversals.

An *eigen path* keeps following the leading eigenvector of ``M(z) = JᵀJ`` (Ramesh, Choi
& LeCun 2018, "A Spectral Regularizer for Unsupervised Disentanglement"): a straight
line along a local eigenvector leaves the eigen-direction as soon as the metric rotates.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..linalg.jacobian import Generator, check_latents
from ..spectral import latent_metric

__all__ = ["EigenPath", "eigen_path", "traverse"]


@dataclass
class EigenPath:
    """A curve in latent space that follows an eigenvector of the metric.

    Attributes:
        latents: ``[T + 1, B, k]``, the start first.
        eigenvalues: ``[T + 1, B]``, the followed eigenvalue at each point.
        directions: ``[T + 1, B, k]``, the (sign-aligned) unit direction at each point.
        outputs: ``[T + 1, B, ...]``, ``G`` at each point.
    """

    latents: Tensor
    eigenvalues: Tensor
    directions: Tensor
    outputs: Tensor


@torch.no_grad()
def eigen_path(
    G: Generator,
    z: Tensor,
    *,
    steps: int = 10,
    step_size: float = 0.25,
    index: int = 0,
    direction: Tensor | None = None,
    output_step: bool = False,
    chunk_size: int | None = None,
) -> EigenPath:
    r"""Follow the ``index``-th eigenvector of ``M(z)`` with Euler steps.

    ``z_{t+1} = z_t + h_t s_t v(z_t)`` where ``v`` is the eigenvector and the sign
    ``s_t = sign(v(z_t)·d_{t−1})`` keeps the curve going the same way (eigenvectors are
    defined up to sign, so without it the path can turn back on itself); ``d_{t−1}`` is
    the previous step's direction, or ``direction`` (default ``v(z_0)``) at the start.
    With ``output_step`` the latent step is ``h_t = step_size / √λ(z_t)``, so that
    each step moves the output by about ``step_size``; otherwise ``h_t = step_size``.
    Straight lines along a local eigenvector leave the eigen-direction as soon as the
    metric rotates; the curve stays on it (Ramesh, Choi & LeCun 2018).

    Args:
        G: generator.
        z: start latents ``[B, k]``.
        steps: number of Euler steps ``T``.
        step_size: ``h`` (latent units, or output units with ``output_step``).
        index: which eigenvector (0: leading).
        direction: optional ``[B, k]`` or ``[k]`` initial orientation.
        output_step: take steps of fixed output length.
        chunk_size: Jacobian columns per forward-mode batch.

    Returns:
        :class:`EigenPath`.
    """
    check_latents(G, z)
    k = z.shape[1]
    if not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be a non-negative integer, got {steps!r}")
    if not isinstance(index, int) or not 0 <= index < k:
        raise ValueError(f"index must be in [0, k={k}), got {index!r}")
    zs, lams, dirs, outs = [z.detach()], [], [], []
    prev = None if direction is None else direction.to(z).expand_as(z)
    for t in range(steps + 1):
        lam, V = latent_metric(G, zs[-1], top=index + 1, chunk_size=chunk_size)
        lam, v = lam[:, index], V[:, :, index]
        if prev is not None:
            sign = torch.sign((v * prev).sum(-1, keepdim=True))
            v = v * torch.where(sign == 0, torch.ones_like(sign), sign)
        lams.append(lam)
        dirs.append(v)
        outs.append(G(zs[-1]))
        if t == steps:
            break
        h = step_size / lam.clamp_min(1e-30).sqrt()[:, None] if output_step else step_size
        zs.append(zs[-1] + h * v)
        prev = v
    return EigenPath(torch.stack(zs), torch.stack(lams), torch.stack(dirs), torch.stack(outs))


@torch.no_grad()
def traverse(
    G: Generator,
    z: Tensor,
    direction: Tensor,
    steps: int | Tensor = 7,
    *,
    extent: float = 3.0,
) -> Tensor:
    r"""Outputs along straight lines ``G(z + t·d)`` for offsets ``t`` (a traversal).

    Args:
        G: generator.
        z: latents ``[B, k]``.
        direction: ``[k]`` (shared) or ``[B, k]`` (one per latent), e.g. a column of
            :func:`principal_directions`. Not normalised here: pass unit vectors for
            offsets in latent units.
        steps: number of evenly spaced offsets in ``[−extent, extent]``, or a 1-D tensor
            of offsets.
        extent: largest offset when ``steps`` is an integer.

    Returns:
        ``[B, S, ...]``: row ``b`` is the traversal from ``z[b]``.
    """
    check_latents(G, z)
    if isinstance(steps, Tensor):
        offsets = steps.to(z).reshape(-1)
    else:
        if not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps must be a positive integer or a tensor, got {steps!r}")
        offsets = torch.linspace(-extent, extent, steps, dtype=z.dtype, device=z.device)
    d = direction.to(z)
    if d.shape not in (z.shape[1:], z.shape):
        raise ValueError(
            f"direction must have shape [{z.shape[1]}] or {list(z.shape)}, got {list(d.shape)}"
        )
    d = d.expand_as(z)
    zz = z[:, None, :] + offsets[None, :, None] * d[:, None, :]
    x = G(zz.reshape(-1, z.shape[1]))
    return x.reshape(z.shape[0], offsets.numel(), *x.shape[1:])
