"""Mode coverage on the 2-D mixtures (VEEGAN / PacGAN protocol)."""

from __future__ import annotations

import math

import pytest
import torch

from spectral_backprop.analysis.modes import mode_coverage
from spectral_backprop.data import load_dataset


def test_mode_coverage_metrics():
    modes = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
    samples = torch.tensor([[0.0, 0.01], [0.02, 0.0], [0.99, 0.0], [0.5, 0.0]])
    m = mode_coverage(samples, modes, std=0.01)
    assert m["modes"] == 2 and m["high_quality"] == 0.75
    p = torch.tensor([2 / 3, 1 / 3])
    assert m["reverse_kl"] == pytest.approx((p * (2 * p).log()).sum().item())
    assert mode_coverage(samples[:2], modes, 0.01)["reverse_kl"] == pytest.approx(torch.log(
        torch.tensor(2.0)).item())
    # Spread: offsets (0, .01), (.02, 0), (−.01, 0) → RMS per coordinate √(6e-4/6) = 0.01.
    assert m["spread"] == pytest.approx(1.0)


def test_mode_coverage_of_the_data_itself():
    # Samples of the mixture: every mode, almost all high quality, a near-uniform
    # histogram, and the truncated-Gaussian spread √(E[χ²₂ | χ²₂ < 9]/2).
    data = load_dataset("grid", num_samples=20_000, seed=3)
    m = mode_coverage(data.x[:2500], data.modes, data.mode_std)
    tail = math.exp(-4.5)
    assert m["modes"] == 25
    assert m["high_quality"] == pytest.approx(1 - tail, abs=4 * math.sqrt(tail / 2500))
    assert m["reverse_kl"] < 3 * 24 / (2 * 2500)  # sampling noise: E ≈ (M − 1)/(2N)
    expected = math.sqrt((2 - 9 * tail / (1 - tail)) / 2)
    # Standard error of a RMS over 2·2,500 coordinates is about spread/√(2·5000).
    assert m["spread"] == pytest.approx(expected, abs=4 * expected / math.sqrt(10_000))
    collapsed = mode_coverage(data.modes.repeat(100, 1), data.modes, data.mode_std)
    assert collapsed["high_quality"] == 1.0 and collapsed["spread"] == 0.0
