r"""Factor purity of latent directions on the procedural sprites.

A direction ``d`` at ``z`` is scored by what it changes in the image. The sprites'
factors are estimated from image moments (:func:`sprite_factors`), the change along
``d`` is the central difference

.. math::  Δf_j = \frac{f_j(G(z + δd)) − f_j(G(z − δd))}{σ_j},

normalised by each factor's spread ``σ_j`` in the data (so that pixels of position and
radians of orientation are comparable), and

.. math::  \text{purity}(d, z) = \max_j |Δf_j| \,/\, \sum_j |Δf_j| \in [1/F, 1]

is the largest share of the change held by one factor: 1 when ``d`` moves one factor
only, ``1/F`` when it moves all ``F`` factors equally.
It is a per-direction form of the modularity score of Ridgeway & Mozer (2018, arXiv
1802.05312): a direction is pure when its effect is concentrated on one factor.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from ..linalg.jacobian import Generator, check_latents

__all__ = [
    "direction_purity",
    "factor_changes",
    "factor_spread",
    "purity_from_changes",
    "sprite_factors",
]

# Index of the orientation factor in data.sprites.FACTOR_NAMES; it is an angle mod π.
_ORIENTATION = 4


def sprite_factors(images: Tensor) -> Tensor:
    r"""Estimate ``(x, y, size, aspect, orientation, brightness)`` from image moments.

    With intensity ``I = max((image + 1) / 2, 0)`` (images in ``[−1, 1]``, background
    ``−1``), mass ``m = ΣI``, centroid ``c`` and covariance ``Σ`` of the pixel
    positions weighted by ``I``:

    * ``(x, y) = c`` (pixel centres at ``j + ½``, x horizontal);
    * ``size = (det Σ)^{1/4}``, ``aspect = √(λ_max/λ_min)`` of ``Σ``;
    * ``orientation = ½ atan2(2Σ_xy, Σ_xx − Σ_yy) mod π``, the long axis;
    * ``brightness = m / (2π size²)``, the peak of a Gaussian blob of that mass.

    These invert :func:`spectral_backprop.data.render_sprites` for blobs inside the frame.

    Args:
        images: ``[N, 1, H, W]`` (or ``[N, H, W]``).

    Returns:
        ``[N, 6]`` in the order of ``spectral_backprop.data.FACTOR_NAMES``.
    """
    if images.dim() == 4:
        if images.shape[1] != 1:
            raise ValueError(f"sprite images have one channel, got shape {tuple(images.shape)}")
        images = images[:, 0]
    if images.dim() != 3:
        raise ValueError(f"expected images [N, 1, H, W], got shape {tuple(images.shape)}")
    img = images.to(torch.float64)
    intensity = ((img + 1) / 2).clamp_min(0)
    h, w = img.shape[-2:]
    py = (torch.arange(h, dtype=torch.float64) + 0.5)[:, None]
    px = (torch.arange(w, dtype=torch.float64) + 0.5)[None, :]
    m = intensity.sum((-2, -1)).clamp_min(1e-12)

    def mean(f: Tensor) -> Tensor:
        return (intensity * f).sum((-2, -1)) / m

    cx, cy = mean(px.expand(h, w)), mean(py.expand(h, w))
    dx = px - cx[:, None, None]
    dy = py - cy[:, None, None]
    sxx, syy, sxy = mean(dx * dx), mean(dy * dy), mean(dx * dy)
    det = (sxx * syy - sxy**2).clamp_min(1e-12)
    half_tr = 0.5 * (sxx + syy)
    disc = (0.25 * (sxx - syy) ** 2 + sxy**2).sqrt()
    lmax, lmin = half_tr + disc, (half_tr - disc).clamp_min(1e-12)
    size = det.pow(0.25)
    aspect = (lmax / lmin).sqrt()
    theta = torch.remainder(0.5 * torch.atan2(2 * sxy, sxx - syy), math.pi)
    brightness = m / (2 * math.pi * size**2)
    return torch.stack([cx, cy, size, aspect, theta, brightness], dim=1)


def _factor_difference(a: Tensor, b: Tensor) -> Tensor:
    d = a - b
    # Orientation lives on a circle of period π: take the shorter way round.
    half = math.pi / 2
    d[..., _ORIENTATION] = torch.remainder(d[..., _ORIENTATION] + half, math.pi) - half
    return d


def factor_spread(images: Tensor, estimator: Callable[[Tensor], Tensor] = sprite_factors) -> Tensor:
    """Standard deviation of each estimated factor over a data set (``[F]``).

    Normalises factor changes in :func:`direction_purity`; estimated from the images
    (not the true factors) so that estimator bias cancels.
    """
    return estimator(images).std(0)


def purity_from_changes(delta: Tensor) -> Tensor:
    """``max_j |Δf_j| / Σ_j |Δf_j|`` over the last axis (``nan`` where nothing changes)."""
    a = delta.abs()
    total = a.sum(-1)
    return torch.where(total > 0, a.max(-1).values / total.clamp_min(1e-300),
                       torch.full_like(total, float("nan")))


@torch.no_grad()
def factor_changes(
    G: Generator,
    z: Tensor,
    directions: Tensor,
    spread: Tensor,
    *,
    delta: float = 0.5,
    estimator: Callable[[Tensor], Tensor] = sprite_factors,
) -> Tensor:
    r"""Normalised factor changes ``Δf_j`` along each direction at each latent.

    Args:
        G: generator producing sprite-like images.
        z: latents ``[B, k]``.
        directions: ``[k, r]`` (shared by all latents) or ``[B, k, r]`` (per latent, e.g.
            local eigenvectors); normalised to unit length here so that every method
            moves the same latent distance.
        spread: per-factor spread ``[F]`` (:func:`factor_spread` of the data).
        delta: half-step ``δ`` of the central difference, in latent units.
        estimator: images ``[N, ...]`` to factors ``[N, F]``.

    Returns:
        ``[B, r, F]``.
    """
    check_latents(G, z)
    B, k = z.shape
    if directions.dim() == 2:
        directions = directions[None].expand(B, -1, -1)
    if directions.dim() != 3 or directions.shape[:2] != (B, k):
        raise ValueError(f"directions must be [k={k}, r] or [B={B}, k, r], "
                         f"got {tuple(directions.shape)}")
    if delta <= 0:
        raise ValueError(f"delta must be positive, got {delta}")
    D = directions.to(z) / directions.norm(dim=1, keepdim=True).to(z).clamp_min(1e-30)
    r = D.shape[2]
    step = delta * D.permute(0, 2, 1)  # [B, r, k]
    zp = (z[:, None, :] + step).reshape(-1, k)
    zm = (z[:, None, :] - step).reshape(-1, k)
    change = _factor_difference(estimator(G(zp)), estimator(G(zm)))
    return (change / spread.to(change)).reshape(B, r, -1)


def direction_purity(
    G: Generator,
    z: Tensor,
    directions: Tensor,
    spread: Tensor,
    *,
    delta: float = 0.5,
    estimator: Callable[[Tensor], Tensor] = sprite_factors,
) -> Tensor:
    """Purity ``[B, r]`` of each direction at each latent, in ``[1/F, 1]``.

    :func:`purity_from_changes` of :func:`factor_changes` (same arguments).
    """
    return purity_from_changes(factor_changes(G, z, directions, spread, delta=delta,
                                              estimator=estimator))
