"""Every picture the library draws: image grids, scatter plots, heat maps, curves.

One home for matplotlib. It is imported only when a figure is drawn (so that
``import spectral_backprop`` stays light), always with the non-interactive ``Agg``
backend (runs have no display), and nothing here needs torch: inputs may be tensors or
NumPy arrays, so the report can redraw figures from saved arrays alone. Each ``save_*``
/ ``plot_*`` function writes one PNG and returns its path; :func:`png_bytes` returns
the bytes instead, for embedding.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "as_array",
    "image_grid",
    "plot_search",
    "plot_spectra",
    "png_bytes",
    "pyplot",
    "save_density_png",
    "save_figure",
    "save_image_grid",
    "save_samples_png",
]

DPI = 120


def pyplot():
    """``matplotlib.pyplot`` with the Agg backend; a clear error when matplotlib is absent."""
    try:
        import matplotlib
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("figures need matplotlib: pip install 'spectral-backprop[data]'") from err
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def as_array(x: Any) -> np.ndarray:
    """A float64 NumPy copy of a tensor (any device, with or without a graph) or array."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)


def save_figure(fig, path: str | Path | io.BytesIO, *, tight: bool = True,
                dpi: int = DPI) -> Path | io.BytesIO:
    """Write ``fig`` as a PNG (to a file, or to a buffer) and close it."""
    plt = pyplot()
    target = path if isinstance(path, io.BytesIO) else Path(path)
    fig.savefig(target, format="png", dpi=dpi, bbox_inches="tight" if tight else None)
    plt.close(fig)
    return target


def png_bytes(fig, dpi: int = 110) -> bytes:
    """``fig`` as PNG bytes (closed afterwards), ready to embed in a page."""
    return save_figure(fig, io.BytesIO(), dpi=dpi).getvalue()


def image_grid(images: Any, pad: int = 1) -> np.ndarray:
    """Tile images ``[R, C, ch, H, W]`` in ``[−1, 1]`` into one array ``[H', W', ch]`` in [0, 1].

    ``[N, ch, H, W]`` is treated as one row; one-channel images give ``[H', W']``.

    Example:
        >>> image_grid(np.zeros((2, 3, 1, 4, 4))).shape  # 2 rows, 3 columns, 1 px gaps
        (11, 16)
    """
    x = as_array(images)
    if x.ndim == 4:
        x = x[None]
    if x.ndim != 5:
        raise ValueError(f"expected images [R, C, ch, H, W], got shape {x.shape}")
    R, C, ch, H, W = x.shape
    x = np.clip((x + 1) / 2, 0, 1)
    grid = np.ones((ch, R * (H + pad) + pad, C * (W + pad) + pad))
    for i in range(R):
        for j in range(C):
            top, left = pad + i * (H + pad), pad + j * (W + pad)
            grid[:, top:top + H, left:left + W] = x[i, j]
    out = grid.transpose(1, 2, 0)
    return out[..., 0] if ch == 1 else out


def save_image_grid(images: Any, path: str | Path, *, title: str | None = None,
                    row_labels: Sequence[str] | None = None, scale: float = 0.6) -> Path:
    """Write :func:`image_grid` as a PNG with an optional title and row labels."""
    plt = pyplot()
    x = as_array(images)
    arr = image_grid(x)
    rows = x.shape[0] if x.ndim == 5 else 1
    cols = x.shape[-4] if x.ndim == 5 else x.shape[0]
    fig, ax = plt.subplots(figsize=(max(2.0, scale * cols + (1.2 if row_labels else 0)),
                                    max(1.5, scale * rows + (0.4 if title else 0))))
    ax.imshow(arr, cmap="gray" if arr.ndim == 2 else None, vmin=0, vmax=1,
              interpolation="nearest")
    ax.set_xticks([])
    if row_labels:
        h = (arr.shape[0] - 1) / rows
        ax.set_yticks([h * (i + 0.5) for i in range(rows)], labels=list(row_labels), fontsize=7)
    else:
        ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=8)
    return save_figure(fig, path)


def save_samples_png(x: Any, path: str | Path, modes: Any = None, title: str = "") -> Path:
    """Scatter plot of 2-D samples (with mixture centres), or a square grid of ≤ 64 images."""
    x = as_array(x)
    if x.ndim == 2 and x.shape[1] == 2:
        plt = pyplot()
        fig, ax = plt.subplots(figsize=(4, 4))
        ax.scatter(x[:, 0], x[:, 1], s=1, alpha=0.4)
        if modes is not None:
            m = as_array(modes)
            ax.scatter(m[:, 0], m[:, 1], s=12, c="red", marker="x")
        ax.set_aspect("equal")
        if title:
            ax.set_title(title, fontsize=9)
        return save_figure(fig, path)
    n = min(64, x.shape[0])
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    # Pad the last row with white (+1) tiles.
    tiles = np.concatenate([x[:n], np.ones((rows * cols - n, *x.shape[1:]))])
    return save_image_grid(tiles.reshape(rows, cols, *x.shape[1:]), path, title=title or None,
                           scale=5 / cols)


def save_density_png(panels: list[tuple[str, Any]], extent: tuple[float, float, float, float],
                     path: str | Path, title: str = "") -> Path:
    """Side-by-side heat maps of densities evaluated on the same grid ``[H, W]``."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.2), squeeze=False)
    for ax, (name, values) in zip(axes[0], panels, strict=True):
        ax.imshow(as_array(values), origin="lower", extent=extent, cmap="viridis")
        ax.set_title(name, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path, tight=False)


def plot_spectra(eigenvalues: Any, path: str | Path, *, title: str = "spectra of JᵀJ",
                 max_curves: int = 32) -> Path:
    """Eigenvalues of ``JᵀJ`` (``[B, k]``, any order) against their rank, log scale."""
    plt = pyplot()
    lam = np.clip(-np.sort(-as_array(eigenvalues), axis=-1), 1e-30, None)
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    ranks = np.arange(1, lam.shape[1] + 1)
    for row in lam[:max_curves]:
        ax.semilogy(ranks, row, color="tab:blue", alpha=0.25, lw=0.8)
    ax.semilogy(ranks, np.median(lam, axis=0), color="black", lw=1.8, label="median")
    ax.set_xlabel("rank i")
    ax.set_ylabel("λ_i(JᵀJ)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8, loc="upper right")
    return save_figure(fig, path)


def plot_search(steps: Any, log_likelihood: Any, path: str | Path, *,
                reference: dict[str, float] | None = None) -> Path:
    """Log-likelihood along a search (``[T+1, B]`` against ``steps``), with reference lines."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    ll, s = as_array(log_likelihood), as_array(steps)
    ax.plot(s, ll, color="tab:red", alpha=0.3, lw=0.8)
    ax.plot(s, ll.mean(1), color="tab:red", lw=2, label="search (mean)")
    for (name, value), color in zip((reference or {}).items(),
                                    ("tab:blue", "tab:green", "tab:gray"), strict=False):
        ax.axhline(value, ls="--", color=color, label=name)
    ax.set_xlabel("step")
    ax.set_ylabel("log p_G (nats)")
    ax.legend(fontsize=8, loc="upper right")
    return save_figure(fig, path)
