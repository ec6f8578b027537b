"""Figures for the analysis: image grids, spectra of ``JᵀJ``, search trajectories.

Matplotlib with the non-interactive ``Agg`` backend; every function writes one PNG and
returns its path. Inputs are plain tensors, so saved ``.npz`` artifacts can be re-plotted.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .._pyplot import pyplot as _pyplot

__all__ = ["image_grid", "plot_search", "plot_spectra", "save_image_grid"]


def image_grid(images: Tensor, pad: int = 1) -> np.ndarray:
    """Tile images ``[R, C, ch, H, W]`` in ``[−1, 1]`` into one array ``[H', W', ch]`` in [0, 1].

    ``[N, ch, H, W]`` is treated as one row; one-channel images give ``[H', W']``.
    """
    if images.dim() == 4:
        images = images[None]
    if images.dim() != 5:
        raise ValueError(f"expected images [R, C, ch, H, W], got shape {tuple(images.shape)}")
    R, C, ch, H, W = images.shape
    x = ((images.detach().double().cpu() + 1) / 2).clamp(0, 1)
    grid = torch.ones(ch, R * (H + pad) + pad, C * (W + pad) + pad, dtype=torch.float64)
    for i in range(R):
        for j in range(C):
            top, left = pad + i * (H + pad), pad + j * (W + pad)
            grid[:, top:top + H, left:left + W] = x[i, j]
    out = grid.permute(1, 2, 0).numpy()
    return out[..., 0] if ch == 1 else out


def save_image_grid(images: Tensor, path: str | Path, *, title: str | None = None,
                    row_labels: Sequence[str] | None = None, scale: float = 0.6) -> Path:
    """Write :func:`image_grid` as a PNG with optional title and row labels."""
    plt = _pyplot()
    arr = image_grid(images)
    rows = images.shape[0] if images.dim() == 5 else 1
    cols = images.shape[-4] if images.dim() == 5 else images.shape[0]
    fig, ax = plt.subplots(figsize=(max(2.0, scale * cols + (1.2 if row_labels else 0)),
                                    max(1.5, scale * rows + (0.4 if title else 0))))
    ax.imshow(arr, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks([])
    if row_labels:
        h = (arr.shape[0] - 1) / rows
        ax.set_yticks([h * (i + 0.5) for i in range(rows)], labels=list(row_labels), fontsize=7)
    else:
        ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=8)
    path = Path(path)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_spectra(eigenvalues: Tensor, path: str | Path, *, title: str = "spectra of JᵀJ",
                 max_curves: int = 32) -> Path:
    """Eigenvalues of ``JᵀJ`` (``[B, k]``, any order) against their rank, log scale."""
    plt = _pyplot()
    lam = eigenvalues.detach().double().cpu().sort(-1, descending=True).values.clamp_min(1e-30)
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    ranks = np.arange(1, lam.shape[1] + 1)
    for row in lam[:max_curves]:
        ax.semilogy(ranks, row.numpy(), color="tab:blue", alpha=0.25, lw=0.8)
    ax.semilogy(ranks, lam.median(0).values.numpy(), color="black", lw=1.8, label="median")
    ax.set_xlabel("rank i")
    ax.set_ylabel("λ_i(JᵀJ)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    path = Path(path)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_search(steps: Tensor, log_likelihood: Tensor, path: str | Path, *,
                reference: dict[str, float] | None = None) -> Path:
    """Log-likelihood along a search (``[T+1, B]`` against ``steps``), with reference lines."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    ll = log_likelihood.detach().double().cpu()
    s = steps.cpu().numpy()
    ax.plot(s, ll.numpy(), color="tab:red", alpha=0.3, lw=0.8)
    ax.plot(s, ll.mean(1).numpy(), color="tab:red", lw=2, label="search (mean)")
    for (name, value), color in zip((reference or {}).items(),
                                    ("tab:blue", "tab:green", "tab:gray"), strict=False):
        ax.axhline(value, ls="--", color=color, label=name)
    ax.set_xlabel("step")
    ax.set_ylabel("log p_G (nats)")
    ax.legend(fontsize=8)
    path = Path(path)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path
