"""Two-dimensional Gaussian mixtures for the mode-coverage protocol.

Ring: 8 Gaussians on the unit circle, std 0.01. Grid: 25 Gaussians at
``{-4, -2, 0, 2, 4}^2``, std 0.05. These are the settings of VEEGAN (Srivastava et al.
2017, arXiv 1705.07761) and PacGAN (Lin et al. 2018, arXiv 1712.04086).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from spectral_backprop.data.base import Dataset

RING_STD = 0.01
GRID_STD = 0.05


def ring_modes(num_modes: int = 8, radius: float = 1.0) -> Tensor:
    """Centres ``radius * (cos 2πi/M, sin 2πi/M)``, ``i = 0..M-1``."""
    angles = torch.arange(num_modes, dtype=torch.float64) * (2 * math.pi / num_modes)
    return (radius * torch.stack([angles.cos(), angles.sin()], dim=1)).float()


def grid_modes(side: int = 5, spacing: float = 2.0) -> Tensor:
    """Centres of a ``side x side`` grid with the given spacing, centred at the origin."""
    coords = (torch.arange(side, dtype=torch.float32) - (side - 1) / 2) * spacing
    gx, gy = torch.meshgrid(coords, coords, indexing="ij")
    return torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=1)


def sample_mixture(modes: Tensor, std: float, num_samples: int, seed: int = 0) -> Tensor:
    """Equal-weight isotropic Gaussian mixture samples ``[num_samples, 2]`` (float32)."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(len(modes), (num_samples,), generator=g)
    return modes[idx] + std * torch.randn(num_samples, modes.shape[1], generator=g)


def ring(num_samples: int = 100_000, seed: int = 0) -> Dataset:
    """The 8-mode ring (100,000 training points in the protocol)."""
    modes = ring_modes()
    x = sample_mixture(modes, RING_STD, num_samples, seed)
    return Dataset("ring", x, modes=modes, mode_std=RING_STD)


def grid(num_samples: int = 100_000, seed: int = 0) -> Dataset:
    """The 25-mode grid (100,000 training points in the protocol)."""
    modes = grid_modes()
    x = sample_mixture(modes, GRID_STD, num_samples, seed)
    return Dataset("grid", x, modes=modes, mode_std=GRID_STD)
