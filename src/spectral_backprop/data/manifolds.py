r"""Data on low-dimensional manifolds, with known densities where possible.

For maximum-likelihood training of an injective generator ``G: R^k → R^n`` the best
achievable test negative log-likelihood is the entropy of the data with respect to the
k-dimensional volume on its manifold; a model's ``test NLL − entropy`` is then a KL
divergence (when its manifold is right). Known-density sets (the benchmarks of
Caterini et al. 2021, arXiv 2106.01413, and Brehmer & Cranmer 2020, arXiv 2003.13913):

=========== ============================================================ === ===========
name        law                                                          k   entropy
=========== ============================================================ === ===========
``circle``  von Mises, κ = 1, on the unit circle in R²                    1   1.6274 nats
``sine``    x₂ = sin(πx₁/2), x₁ ~ N(0, 1), in R²                          1   1.7795 nats
``sphere``  N((−1, −1, 0), I) projected radially on S² in R³              2   1.8369 nats
=========== ============================================================ === ===========

with densities (w.r.t. arc length / surface area)

* circle: ``log p(θ) = κ cos θ − log(2π I₀(κ))``, entropy ``log(2π I₀(κ)) − κ I₁(κ)/I₀(κ)``;
* sine: ``log p(x₁) = log N(x₁; 0, 1) − ½ log(1 + (π/2)² cos²(πx₁/2))`` (the arc-length
  element is ``√(1 + x₂'(x₁)²) dx₁``);
* sphere (projected normal, d = 3): with ``t = xᵀμ``,
  ``p(x) = (2π)^{−3/2} e^{−(‖μ‖² − t²)/2} [t e^{−t²/2} + (1 + t²) √(2π) Φ(t)]``
  (``∫₀^∞ r² N(r x; μ, I) dr`` in closed form).

The entropies are computed by quadrature (:func:`true_entropy`); the tests check them by
Monte Carlo. Each set may be embedded isometrically in ``R^n`` (``ambient_dim = n``) by
the orthonormal columns ``U`` (n × d) of a fixed random orthogonal matrix (seeded by
``n`` alone; the identity when ``n`` is the native dimension): ``x ↦ U x`` changes
neither the density nor the entropy.

Every loader returns a :class:`ManifoldDataset`: the training points in ``x``, a fixed
held-out set in ``test`` (drawn by the same seeded generator, first), the intrinsic
dimension, the entropy (``None`` when unknown) and the log density on the manifold
(``None`` when unknown). :func:`npy_array` splits a user's ``[N, n]`` array by a seed;
:func:`mnist_manifold` holds out a fixed 10% of the embedded MNIST digits.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from spectral_backprop.data.base import Dataset
from spectral_backprop.data.images import mnist_embedded

__all__ = ["ManifoldDataset", "circle", "embedding", "log_density", "mnist_manifold",
           "npy_array", "sine", "sphere", "split", "true_entropy"]

KAPPA = 1.0
SPHERE_MEAN = (-1.0, -1.0, 0.0)
# Seed of the fixed embedding matrices, one per ambient dimension (not the data seed:
# every run of every seed sees the same embedded manifold).
EMBED_SEED = 20_240_601


@dataclass
class ManifoldDataset(Dataset):
    """A :class:`~spectral_backprop.data.base.Dataset` with a held-out set and, for the
    known-density sets, the truth.

    Attributes:
        test: held-out points ``[M, *shape]``.
        intrinsic_dim: k of the data's manifold (``None``: unknown, e.g. a user array).
        entropy: the data's entropy in nats w.r.t. k-dimensional volume (``None``: unknown).
        log_density: ``x [B, *shape] -> log p(x) [B]`` on the manifold (``None``: unknown).
    """

    test: Tensor | None = None
    intrinsic_dim: int | None = None
    entropy: float | None = None
    log_density: Callable[[Tensor], Tensor] | None = None


def embedding(ambient_dim: int, dim: int) -> Tensor:
    """``U`` (``ambient_dim × dim``, float64) with orthonormal columns, fixed by ``ambient_dim``.

    Example:
        >>> U = embedding(10, 2)
        >>> torch.allclose(U.T @ U, torch.eye(2, dtype=torch.float64))
        True
    """
    if ambient_dim < dim:
        raise ValueError(f"ambient_dim must be at least {dim} for this data set, got {ambient_dim}")
    g = torch.Generator().manual_seed(EMBED_SEED + ambient_dim)
    q, r = torch.linalg.qr(torch.randn(ambient_dim, ambient_dim, generator=g, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r))  # the Haar-distributed orthogonal factor
    return q[:, :dim]


def _log_ndtr(t: Tensor) -> Tensor:
    return torch.special.log_ndtr(t)


def log_density(name: str, x: Tensor) -> Tensor:
    """``log p(x)`` per point of a known-density set in its own coordinates (R² or R³),
    w.r.t. arc length (circle, sine) or surface area (sphere); float64."""
    x = x.to(torch.float64)
    if name == "circle":
        theta = torch.atan2(x[:, 1], x[:, 0])
        return KAPPA * torch.cos(theta) - math.log(2 * math.pi * _i0(KAPPA))
    if name == "sine":
        x1 = x[:, 0]
        slope = (math.pi / 2) * torch.cos(math.pi * x1 / 2)
        return -0.5 * x1**2 - 0.5 * math.log(2 * math.pi) - 0.5 * torch.log1p(slope**2)
    if name == "sphere":
        mu = torch.tensor(SPHERE_MEAN, dtype=torch.float64)
        u = x / x.norm(dim=1, keepdim=True)
        return _sphere_log_density(u @ mu, float(mu @ mu))
    raise ValueError(f"no known density for {name!r}; known: circle, sine, sphere")


def _sphere_log_density(t: Tensor, mu2: float) -> Tensor:
    # log[t e^{-t²/2} + (1+t²)√(2π)Φ(t)] computed as logaddexp of its two terms where t > 0;
    # for t ≤ 0 the first term is negative, so combine in linear space with e^{-t²/2} out.
    a = (1 + t**2).log() + 0.5 * math.log(2 * math.pi) + _log_ndtr(t) + 0.5 * t**2
    bracket = torch.log(t + torch.exp(a))  # t + (1+t²)√(2π)Φ(t)e^{t²/2} > 0 for all t
    return -1.5 * math.log(2 * math.pi) - 0.5 * mu2 + bracket


def _i0(x: float) -> float:
    return float(torch.special.i0(torch.tensor(x, dtype=torch.float64)))


def _i1(x: float) -> float:
    return float(torch.special.i1(torch.tensor(x, dtype=torch.float64)))


def true_entropy(name: str) -> float:
    """The entropy in nats of a known-density set w.r.t. its manifold's volume.

    Circle in closed form; sine by Gauss–Hermite quadrature over x₁; sphere by
    Gauss–Legendre quadrature over ``u = cos∠(x, μ)`` (the density depends on it alone,
    and the area element is ``2π du``).

    Example:
        >>> round(true_entropy("circle"), 4), round(true_entropy("sine"), 4)
        (1.6274, 1.7795)
    """
    if name == "circle":
        return math.log(2 * math.pi * _i0(KAPPA)) - KAPPA * _i1(KAPPA) / _i0(KAPPA)
    if name == "sine":
        nodes, weights = np.polynomial.hermite_e.hermegauss(200)
        x = torch.from_numpy(np.stack([nodes, np.sin(np.pi * nodes / 2)], 1))
        w = torch.from_numpy(weights / math.sqrt(2 * math.pi))
        return float(-(w * log_density("sine", x)).sum())
    if name == "sphere":
        mu2 = sum(m * m for m in SPHERE_MEAN)
        nodes, weights = np.polynomial.legendre.leggauss(400)
        lp = _sphere_log_density(torch.from_numpy(nodes) * math.sqrt(mu2), mu2)
        return float(-(2 * math.pi * torch.from_numpy(weights) * lp.exp() * lp).sum())
    raise ValueError(f"no known entropy for {name!r}; known: circle, sine, sphere")


def _sample(name: str, n: int, rng: np.random.Generator) -> np.ndarray:
    if name == "circle":
        theta = rng.vonmises(0.0, KAPPA, n)
        return np.stack([np.cos(theta), np.sin(theta)], 1)
    if name == "sine":
        x1 = rng.standard_normal(n)
        return np.stack([x1, np.sin(np.pi * x1 / 2)], 1)
    y = rng.standard_normal((n, 3)) + np.asarray(SPHERE_MEAN)
    return y / np.linalg.norm(y, axis=1, keepdims=True)


_SPEC = {"circle": (2, 1), "sine": (2, 1), "sphere": (3, 2)}


def _known(name: str, num_samples: int, num_test: int, ambient_dim: int | None,
           seed: int) -> ManifoldDataset:
    d, k = _SPEC[name]
    if num_samples < 1 or num_test < 1:
        raise ValueError(f"num_samples and num_test must be positive, got {num_samples}, "
                         f"{num_test}")
    n = d if ambient_dim is None else int(ambient_dim)
    U = torch.eye(d, dtype=torch.float64) if n == d else embedding(n, d)
    pts = torch.from_numpy(_sample(name, num_test + num_samples, np.random.default_rng(seed)))
    emb = (pts @ U.T).float()

    def density(x: Tensor) -> Tensor:
        return log_density(name, x.flatten(1).to(torch.float64) @ U.to(x.device))

    label = name if n == d else f"{name}{n}"
    return ManifoldDataset(label, emb[num_test:], test=emb[:num_test], intrinsic_dim=k,
                           entropy=true_entropy(name), log_density=density,
                           meta={"manifold": name, "ambient_dim": n, "seed": seed})


def circle(num_samples: int = 10_000, num_test: int = 2_000, ambient_dim: int | None = None,
           seed: int = 0) -> ManifoldDataset:
    """Von Mises (κ = 1) on the unit circle, optionally embedded in ``R^ambient_dim``.

    Example:
        >>> data = circle(100, 50, ambient_dim=10)
        >>> data.x.shape, data.test.shape, data.intrinsic_dim, round(data.entropy, 4)
        (torch.Size([100, 10]), torch.Size([50, 10]), 1, 1.6274)
    """
    return _known("circle", num_samples, num_test, ambient_dim, seed)


def sine(num_samples: int = 10_000, num_test: int = 2_000, ambient_dim: int | None = None,
         seed: int = 0) -> ManifoldDataset:
    """The curve x₂ = sin(πx₁/2), x₁ ~ N(0, 1), optionally embedded in ``R^ambient_dim``."""
    return _known("sine", num_samples, num_test, ambient_dim, seed)


def sphere(num_samples: int = 10_000, num_test: int = 2_000, ambient_dim: int | None = None,
           seed: int = 0) -> ManifoldDataset:
    """N((−1, −1, 0), I) projected on S², optionally embedded in ``R^ambient_dim``."""
    return _known("sphere", num_samples, num_test, ambient_dim, seed)


def split(x: Tensor, test_fraction: float = 0.1, seed: int = 0) -> tuple[Tensor, Tensor]:
    """``(train, test)``: a random permutation of ``x`` by ``seed``, the first
    ``round(test_fraction · N)`` (at least 1) rows held out."""
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    n = x.shape[0]
    m = max(1, round(test_fraction * n))
    if m >= n:
        raise ValueError(f"{n} points leave nothing to train on with test_fraction "
                         f"{test_fraction}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return x[perm[m:]], x[perm[:m]]


def npy_array(path: str | os.PathLike, test_fraction: float = 0.1, seed: int = 0,
              intrinsic_dim: int | None = None) -> ManifoldDataset:
    """A user's array ``[N, n]`` from a ``.npy`` file, split into train / test by ``seed``.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: not a numeric ``.npy`` array, not 2-D, fewer than 2 rows, or holding
            NaN or infinite values (their rows are named).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no data file at {path}")
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as err:
        raise ValueError(f"{path} is not a numeric .npy array ({err}); save a float array "
                         "of shape [N, n] with numpy.save") from err
    if not isinstance(arr, np.ndarray) or not (np.issubdtype(arr.dtype, np.number)
                                               and not np.issubdtype(arr.dtype, np.complexfloating)
                                               or arr.dtype == np.bool_):
        raise ValueError(f"{path} holds a {getattr(arr, 'dtype', type(arr))} array; expected "
                         "real numbers (float or int) of shape [N, n]")
    if arr.ndim != 2:
        raise ValueError(f"{path} holds an array of shape {arr.shape}; expected 2-D [N, n] "
                         "(one point per row; flatten images first)")
    bad = np.flatnonzero(~np.isfinite(arr.astype(np.float64)).all(1))
    if bad.size:
        raise ValueError(f"{path} has NaN or infinite values in {bad.size} row(s), e.g. rows "
                         f"{bad[:5].tolist()}; remove or impute them")
    train, test = split(torch.from_numpy(arr.astype(np.float32)), test_fraction, seed)
    return ManifoldDataset("npy", train, test=test, intrinsic_dim=intrinsic_dim,
                           meta={"path": path, "seed": seed})


def mnist_manifold(num_test: int = 500) -> ManifoldDataset:
    """The 5,000 embedded MNIST digits ``[N, 1, 28, 28]`` in ``[−1, 1]``, with a fixed
    held-out set of ``num_test`` digits (a permutation by seed 0)."""
    data = mnist_embedded()
    perm = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))
    test, train = perm[:num_test], perm[num_test:]
    return ManifoldDataset("mnist_manifold", data.x[train], labels=data.labels[train],
                           test=data.x[test], meta={"test_labels": data.labels[test]})
