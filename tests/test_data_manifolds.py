"""Known-density manifold data: entropies checked by Monte Carlo, densities normalised,
isometric embeddings, fixed splits, and clear errors for a bad user array."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from spectral_backprop.data import DATASETS
from spectral_backprop.data.base import Dataset
from spectral_backprop.data.manifolds import (
    ManifoldDataset,
    circle,
    embedding,
    log_density,
    npy_array,
    sphere,
    true_entropy,
)

KNOWN = ("circle", "sine", "sphere")


@pytest.mark.parametrize("name", KNOWN)
def test_entropy_agrees_with_monte_carlo(name):
    data = DATASETS[name](100_000, 10, ambient_dim=10, seed=3)
    lp = data.log_density(data.x).double()
    se = lp.std().item() / math.sqrt(len(lp))
    assert abs(-lp.mean().item() - data.entropy) < 4 * se, (-lp.mean().item(), data.entropy, se)


def test_entropies_are_the_published_values():
    # Circle in closed form; sine and sphere by quadrature (published to 3-4 digits).
    assert true_entropy("circle") == pytest.approx(1.6274, abs=1e-4)
    assert true_entropy("sine") == pytest.approx(1.7793, abs=5e-4)
    assert true_entropy("sphere") == pytest.approx(1.835, abs=3e-3)


def test_densities_integrate_to_one():
    theta = torch.linspace(-math.pi, math.pi, 20_001, dtype=torch.float64)[:-1]
    pts = torch.stack([theta.cos(), theta.sin()], 1)
    assert log_density("circle", pts).exp().mean().item() * 2 * math.pi == pytest.approx(1, 1e-8)
    u = torch.linspace(-1, 1, 4_001, dtype=torch.float64)      # cos(polar angle) about x₃
    phi = torch.linspace(0, 2 * math.pi, 201, dtype=torch.float64)[:-1]
    U, P = torch.meshgrid(u, phi, indexing="ij")
    r = (1 - U**2).clamp_min(0).sqrt()
    pts = torch.stack([r * P.cos(), r * P.sin(), U], -1).reshape(-1, 3)
    mass = log_density("sphere", pts).exp().mean().item() * 4 * math.pi  # area element du dφ
    assert mass == pytest.approx(1, 1e-3)


def test_embedding_is_isometric_and_keeps_the_density():
    native, embedded = sphere(500, 10, seed=1), sphere(500, 10, ambient_dim=100, seed=1)
    assert embedded.x.shape == (500, 100) and embedded.name == "sphere100"
    U = embedding(100, 3)
    torch.testing.assert_close(embedded.x.double() @ U, native.x.double(), atol=1e-6, rtol=0)
    torch.testing.assert_close(embedded.log_density(embedded.x), native.log_density(native.x),
                               atol=1e-5, rtol=0)
    assert embedded.entropy == native.entropy and embedded.intrinsic_dim == 2


def test_split_is_fixed_by_the_seed_and_held_out():
    a, b, c = circle(200, 50, seed=0), circle(200, 50, seed=0), circle(200, 50, seed=1)
    assert isinstance(a, Dataset) and isinstance(a, ManifoldDataset)
    assert torch.equal(a.x, b.x) and torch.equal(a.test, b.test)
    assert not torch.equal(a.test, c.test)
    assert not (a.test[:, None, :] == a.x[None]).all(-1).any()


def test_npy_array_is_split_by_seed(tmp_path):
    arr = np.random.default_rng(0).normal(size=(100, 4))
    np.save(tmp_path / "a.npy", arr)
    d = npy_array(tmp_path / "a.npy", test_fraction=0.2, seed=5)
    assert d.x.shape == (80, 4) and d.test.shape == (20, 4) and d.entropy is None
    again = npy_array(tmp_path / "a.npy", test_fraction=0.2, seed=5)
    assert torch.equal(d.test, again.test)
    rows = {tuple(r) for r in np.round(arr, 5)}
    assert {tuple(r) for r in np.round(d.test.double().numpy(), 5)} <= rows


@pytest.mark.parametrize(
    ("array", "match"),
    [
        (np.array([["a", "b"], ["c", "d"]]), "expected real numbers"),
        (np.array([{"a": 1}, {"b": 2}], dtype=object), "not a numeric .npy array"),
        (np.zeros((4, 2, 2)), r"shape \(4, 2, 2\); expected 2-D"),
        (np.array([[0.0, 1.0], [np.nan, 2.0], [1.0, 1.0]]), r"NaN .* rows \[1\]"),
    ],
)
def test_bad_npy_files_name_the_problem(tmp_path, array, match):
    path = tmp_path / "bad.npy"
    np.save(path, array, allow_pickle=True)
    with pytest.raises(ValueError, match=match):
        npy_array(path)


def test_missing_npy_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="no data file"):
        npy_array(tmp_path / "nope.npy")


@pytest.mark.slow  # reading the embedded MNIST takes about 10 s
def test_mnist_manifold_has_a_fixed_held_out_set():
    a = DATASETS["mnist_manifold"]()
    assert a.x.shape == (4500, 1, 28, 28) and a.test.shape == (500, 1, 28, 28)
    assert torch.equal(a.test, DATASETS["mnist_manifold"]().test)
