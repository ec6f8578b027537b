"""Pictures: grids tile correctly, every writer makes a PNG from tensors or arrays."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spectral_backprop import pictures

PNG = b"\x89PNG\r\n\x1a\n"


def test_image_grid_places_each_tile():
    images = np.full((2, 3, 1, 4, 4), -1.0)  # black tiles
    images[1, 2] = 1.0  # one white tile: row 1, column 2
    grid = pictures.image_grid(images)
    assert grid.shape == (2 * 5 + 1, 3 * 5 + 1)
    assert grid[6:10, 11:15].min() == 1.0 and grid[1:5, 1:5].max() == 0.0
    with pytest.raises(ValueError, match="expected images"):
        pictures.image_grid(np.zeros((3, 4)))


@pytest.mark.parametrize("draw", [
    lambda p: pictures.save_image_grid(torch.rand(2, 3, 1, 8, 8) * 2 - 1, p, title="t",
                                       row_labels=["a", "b"]),
    lambda p: pictures.save_samples_png(torch.randn(100, 2), p, modes=torch.zeros(1, 2)),
    lambda p: pictures.save_samples_png(torch.rand(10, 1, 8, 8), p, title="images"),
    lambda p: pictures.save_density_png([("a", np.ones((5, 5))), ("b", torch.rand(5, 5))],
                                        (-1, 1, -1, 1), p),
    lambda p: pictures.plot_spectra(torch.rand(4, 6), p),
    lambda p: pictures.plot_search(torch.arange(5), torch.randn(5, 3), p,
                                   reference={"typical": 0.0}),
])
def test_writers_make_pngs(tmp_path, draw):
    path = draw(tmp_path / "f.png")
    assert path.read_bytes().startswith(PNG)
