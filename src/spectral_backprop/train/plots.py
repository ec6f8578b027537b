"""Pictures saved next to a run's metrics: sample scatter plots, image grids, densities.

Matplotlib is imported lazily with the non-interactive Agg backend, so training never
needs a display and the core library never needs matplotlib.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import Tensor

from .._pyplot import pyplot as _pyplot


def save_samples_png(x: Tensor, path: str | Path, modes: Tensor | None = None,
                     title: str = "") -> None:
    """Scatter plot of 2-D samples (with mixture centres), or a grid of images in [-1, 1]."""
    plt = _pyplot()
    x = x.detach().cpu().float()
    if x.dim() == 2 and x.shape[1] == 2:
        fig, ax = plt.subplots(figsize=(4, 4))
        ax.scatter(x[:, 0], x[:, 1], s=1, alpha=0.4)
        if modes is not None:
            ax.scatter(modes[:, 0], modes[:, 1], s=12, c="red", marker="x")
        ax.set_aspect("equal")
    else:
        n = min(64, x.shape[0])
        cols = math.ceil(math.sqrt(n))
        rows = math.ceil(n / cols)
        c, h, w = x.shape[1:]
        canvas = torch.ones(c, rows * (h + 1) + 1, cols * (w + 1) + 1)
        for i in range(n):
            r, q = divmod(i, cols)
            canvas[:, 1 + r * (h + 1) : 1 + r * (h + 1) + h,
                   1 + q * (w + 1) : 1 + q * (w + 1) + w] = x[i]
        img = ((canvas + 1) / 2).clamp(0, 1).permute(1, 2, 0).squeeze(-1)
        fig, ax = plt.subplots(figsize=(5, 5 * rows / cols))
        ax.imshow(img.numpy(), cmap="gray" if c == 1 else None, vmin=0, vmax=1)
        ax.axis("off")
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def save_density_png(panels: list[tuple[str, Tensor]], extent: tuple[float, float, float, float],
                     path: str | Path, title: str = "") -> None:
    """Side-by-side heat maps of densities evaluated on the same grid ``[H, W]``."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.2), squeeze=False)
    for ax, (name, values) in zip(axes[0], panels, strict=True):
        ax.imshow(values.detach().cpu().numpy(), origin="lower", extent=extent, cmap="viridis")
        ax.set_title(name, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
