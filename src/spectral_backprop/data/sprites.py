"""Procedural sprites with known generative factors.

Each image holds one anisotropic Gaussian blob on a dark background,

    I(p) = b · exp(−½ (p − c)ᵀ Σ⁻¹ (p − c)),   Σ = R(θ) diag(s²·a, s²/a) R(θ)ᵀ,

with centre ``c = (x, y)``, size ``s`` (geometric-mean std in pixels), aspect ``a ≥ 1``
(ratio of std's is ``a``), orientation ``θ`` of the long axis in ``[0, π)`` and peak
brightness ``b``. Image moments recover the factors: the centroid gives ``c``, the
intensity-weighted covariance gives ``Σ`` (hence ``s``, ``a``, ``θ``), and the total
intensity ``2π s² b`` gives ``b``. Aspect is kept ≥ 1.5 so that orientation is
identifiable, and the ranges keep the blob at least 2.8 long-axis std's from every
edge, so that truncation barely biases the moments. Used to score how purely a latent
direction moves one factor (:mod:`spectral_backprop.analysis.purity`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from spectral_backprop.data.base import Dataset

FACTOR_NAMES = ("x", "y", "size", "aspect", "orientation", "brightness")


def factor_ranges(image_size: int) -> dict[str, tuple[float, float]]:
    """Uniform sampling range of each factor; positions and sizes in pixels."""
    return {
        "x": (0.35 * image_size, 0.65 * image_size),
        "y": (0.35 * image_size, 0.65 * image_size),
        "size": (0.05 * image_size, 0.08 * image_size),
        "aspect": (1.5, 2.5),
        "orientation": (0.0, math.pi),
        "brightness": (0.5, 1.0),
    }


def render_sprites(factors: Tensor, image_size: int) -> Tensor:
    """Render blobs ``[N, 1, S, S]`` in ``[-1, 1]`` from factors ``[N, 6]`` (``FACTOR_NAMES``).

    Pixel ``(row i, column j)`` sits at ``p = (j + 0.5, i + 0.5)``: x is horizontal.
    """
    f = factors.to(torch.float64)
    cx, cy, s, a, th, b = (f[:, i, None, None] for i in range(6))
    coords = torch.arange(image_size, dtype=torch.float64) + 0.5
    py, px = torch.meshgrid(coords, coords, indexing="ij")
    dx, dy = px - cx, py - cy
    # Rotate into the blob's frame: u along the long axis, v across it.
    u = dx * th.cos() + dy * th.sin()
    v = -dx * th.sin() + dy * th.cos()
    quad = u**2 / (s**2 * a) + v**2 * a / s**2
    intensity = b * torch.exp(-0.5 * quad)
    return (2.0 * intensity - 1.0).unsqueeze(1).float()


def sprites(num_samples: int = 10_000, image_size: int = 28, seed: int = 0) -> Dataset:
    """A sprite data set with its factors; ``image_size`` is 16 or 28 (any ≥ 8 works)."""
    if image_size < 8:
        raise ValueError(f"image_size must be at least 8 pixels, got {image_size}")
    g = torch.Generator().manual_seed(seed)
    ranges = factor_ranges(image_size)
    lo = torch.tensor([ranges[n][0] for n in FACTOR_NAMES], dtype=torch.float64)
    hi = torch.tensor([ranges[n][1] for n in FACTOR_NAMES], dtype=torch.float64)
    factors = lo + (hi - lo) * torch.rand(num_samples, len(FACTOR_NAMES), generator=g,
                                          dtype=torch.float64)
    x = render_sprites(factors, image_size)
    return Dataset("sprites", x, factors=factors.float(), factor_names=FACTOR_NAMES,
                   meta={"image_size": image_size, "ranges": ranges})
