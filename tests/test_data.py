"""Data sets: shapes, ranges, file formats and errors."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
import torch

from spectral_backprop.data import (
    FACTOR_NAMES,
    grid_modes,
    load_dataset,
    read_idx,
    render_sprites,
    ring_modes,
)
from spectral_backprop.data.sprites import factor_ranges


def _write_idx(path, array: np.ndarray, code: int = 0x08, compress: bool = False) -> None:
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    with (gzip.open if compress else open)(path, "wb") as fh:
        fh.write(payload)


@pytest.mark.parametrize("name, n_modes, std, radius", [("ring", 8, 0.01, 1.0),
                                                         ("grid", 25, 0.05, 4.0)])
def test_toy_mixtures(name, n_modes, std, radius):
    data = load_dataset(name, num_samples=20_000, seed=3)
    assert data.x.shape == (20_000, 2) and data.x.dtype == torch.float32
    assert data.modes.shape == (n_modes, 2) and data.mode_std == std
    nearest = torch.cdist(data.x, data.modes).min(dim=1)
    # Every point is within 5 std of a mode, every mode is used, the spread is std.
    assert nearest.values.max() < 5 * std
    assert len(nearest.indices.unique()) == n_modes
    residual = data.x - data.modes[nearest.indices]
    assert residual.std().item() == pytest.approx(std, rel=0.05)
    assert data.modes.abs().max().item() == pytest.approx(radius, abs=1e-6)
    assert torch.equal(data.x, load_dataset(name, num_samples=20_000, seed=3).x)


def test_mode_centres():
    assert torch.allclose(ring_modes().norm(dim=1), torch.ones(8))
    assert sorted(set(grid_modes()[:, 0].tolist())) == [-4, -2, 0, 2, 4]


@pytest.mark.parametrize("name, shape, n", [("digits", (1, 8, 8), 1797),
                                            ("mnist", (1, 28, 28), 5000)])
def test_embedded_images(name, shape, n):
    data = load_dataset(name)
    assert data.x.shape == (n, *shape) and data.x.dtype == torch.float32
    assert data.x.min().item() == -1.0 and data.x.max().item() == 1.0
    assert data.labels.shape == (n,) and set(data.labels.tolist()) == set(range(10))


@pytest.mark.parametrize("compress", [False, True])
def test_idx_round_trip(tmp_path, compress):
    images = np.random.default_rng(0).integers(0, 256, size=(5, 4, 3), dtype=np.uint8)
    labels = np.arange(5, dtype=np.uint8)
    suffix = ".gz" if compress else ""
    _write_idx(tmp_path / f"img{suffix}", images, compress=compress)
    _write_idx(tmp_path / f"lab{suffix}", labels, compress=compress)
    assert np.array_equal(read_idx(tmp_path / f"img{suffix}"), images)
    data = load_dataset("idx", path=tmp_path / f"img{suffix}",
                        labels_path=tmp_path / f"lab{suffix}")
    assert data.x.shape == (5, 1, 4, 3)
    expected = torch.from_numpy(images).float().unsqueeze(1) / 255 * 2 - 1
    assert torch.allclose(data.x, expected)
    assert data.labels.tolist() == list(range(5))


def test_idx_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no IDX file"):
        load_dataset("idx", path=tmp_path / "missing")
    (tmp_path / "junk").write_bytes(b"hello world")
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(tmp_path / "junk")
    _write_idx(tmp_path / "short", np.zeros((2, 3, 3), np.uint8))
    (tmp_path / "short").write_bytes((tmp_path / "short").read_bytes()[:-1])
    with pytest.raises(ValueError, match="header promises"):
        read_idx(tmp_path / "short")


def test_image_folder(tmp_path):
    image = pytest.importorskip("PIL.Image")
    for cls in ("cats", "dogs"):
        (tmp_path / cls).mkdir()
        for i in range(2):
            arr = np.full((10, 12, 3), 60 * i + (100 if cls == "dogs" else 0), np.uint8)
            image.fromarray(arr).save(tmp_path / cls / f"{i}.png")
    gray = load_dataset("folder", path=tmp_path, size=16)
    assert gray.x.shape == (4, 1, 16, 16) and gray.labels.tolist() == [0, 0, 1, 1]
    assert gray.x.min() >= -1 and gray.x.max() <= 1
    rgb = load_dataset("folder", path=tmp_path, size=8, channels=3)
    assert rgb.x.shape == (4, 3, 8, 8)
    with pytest.raises(FileNotFoundError, match="no image folder"):
        load_dataset("folder", path=tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images"):
        load_dataset("folder", path=tmp_path / "empty")


@pytest.mark.parametrize("size", [16, 28])
def test_sprites_factors_match_image_moments(size):
    data = load_dataset("sprites", num_samples=200, image_size=size, seed=1)
    assert data.x.shape == (200, 1, size, size) and data.factors.shape == (200, 6)
    assert data.factor_names == FACTOR_NAMES
    assert data.x.min() >= -1 and data.x.max() <= 1
    for j, (lo, hi) in enumerate(factor_ranges(size).values()):
        assert lo <= data.factors[:, j].min() and data.factors[:, j].max() <= hi
    # The intensity centroid recovers the position factor (blobs sit well inside).
    intensity = (data.x[:, 0] + 1) / 2
    coords = torch.arange(size) + 0.5
    mass = intensity.sum((1, 2))
    cx = (intensity * coords[None, None, :]).sum((1, 2)) / mass
    cy = (intensity * coords[None, :, None]).sum((1, 2)) / mass
    assert torch.allclose(cx, data.factors[:, 0], atol=0.25)
    assert torch.allclose(cy, data.factors[:, 1], atol=0.25)


def test_render_sprites_orientation():
    # A long horizontal blob spreads along columns, a vertical one along rows.
    f = torch.tensor([[14.0, 14.0, 2.0, 2.5, 0.0, 1.0], [14.0, 14.0, 2.0, 2.5, np.pi / 2, 1.0]])
    img = (render_sprites(f, 28)[:, 0] + 1) / 2
    assert (img[0].sum(0) > 0.5).sum() > (img[0].sum(1) > 0.5).sum()
    assert (img[1].sum(1) > 0.5).sum() > (img[1].sum(0) > 0.5).sum()


def test_registry_errors():
    with pytest.raises(ValueError, match="unknown data set 'nope'; choose from ring"):
        load_dataset("nope")
    with pytest.raises(TypeError, match="does not take option"):
        load_dataset("ring", size=3)
    with pytest.raises(TypeError, match="needs option"):
        load_dataset("idx")
