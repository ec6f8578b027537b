"""The Fréchet distance of Gaussian fits against closed forms."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from spectral_backprop.analysis.frechet import (
    classifier_features,
    feature_frechet_distance,
    frechet_distance,
    gaussian_fit,
)


def _random_cov(d: int, seed: int) -> torch.Tensor:
    a = torch.randn(d, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return a @ a.T + 0.1 * torch.eye(d, dtype=torch.float64)


def test_commuting_covariances_match_closed_form():
    # C₂ = a C₁ commutes with C₁: d² = ‖Δμ‖² + tr C₁ (1 + a − 2√a).
    c1 = _random_cov(6, 0)
    mu1 = torch.randn(6, dtype=torch.float64)
    mu2 = mu1 + torch.arange(6, dtype=torch.float64)
    a = 2.5
    expected = (mu1 - mu2).pow(2).sum() + torch.trace(c1) * (1 + a - 2 * a ** 0.5)
    assert frechet_distance(mu1, c1, mu2, a * c1) == pytest.approx(expected.item(), rel=1e-10)


def test_general_covariances_match_the_eigenvalue_formula():
    # Non-commuting covariances: compare with an independent formula,
    # tr((C₁C₂)^{1/2}) as the sum of square roots of the eigenvalues of C₁C₂.
    c1, c2 = _random_cov(5, 1), _random_cov(5, 2)
    eig = torch.linalg.eigvals(c1 @ c2).real.clamp_min(0).sqrt().sum()
    mu = torch.zeros(5, dtype=torch.float64)
    expected = torch.trace(c1) + torch.trace(c2) - 2 * eig
    assert frechet_distance(mu, c1, mu, c2) == pytest.approx(expected.item(), rel=1e-8)
    assert frechet_distance(mu, c1, mu, c1) == pytest.approx(0.0, abs=1e-9)
    # symmetric in its two arguments
    assert frechet_distance(mu, c1, mu, c2) == pytest.approx(frechet_distance(mu, c2, mu, c1),
                                                             rel=1e-8)


def test_sample_fits_converge_to_the_closed_form():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(20_000, 3, generator=g, dtype=torch.float64)
    y = 2 * torch.randn(20_000, 3, generator=g, dtype=torch.float64) + 1
    d2 = frechet_distance(*gaussian_fit(x), *gaussian_fit(y))
    assert d2 == pytest.approx(3 * 1 + 3 * (1 - 2) ** 2, rel=0.05)  # ‖1‖² + Σ(σ₁ − σ₂)²


def test_features_and_errors():
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    x = torch.randn(10, 2, 2)
    assert classifier_features(model, x).shape == (10, 3)
    assert feature_frechet_distance(model, x, x) == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(ValueError, match="N >= 2"):
        gaussian_fit(torch.zeros(1, 3))
    with pytest.raises(ValueError, match="NaN"):
        gaussian_fit(torch.full((3, 2), float("nan")))
    with pytest.raises(ValueError, match="shapes"):
        frechet_distance(torch.zeros(2), torch.eye(2), torch.zeros(3), torch.eye(3))
    with pytest.raises(TypeError, match="Sequential"):
        classifier_features(nn.Linear(4, 2), x)
