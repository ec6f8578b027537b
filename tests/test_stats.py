"""One standard error everywhere: s/√n, NaN (never 0) below two draws."""

from __future__ import annotations

import math

import torch

from spectral_backprop.stats import mean_se, standard_error


def test_standard_error_matches_the_formula_along_a_dim():
    x = torch.randn(3, 50, dtype=torch.float64)
    torch.testing.assert_close(standard_error(x, dim=1), x.std(1) / math.sqrt(50))
    assert torch.isnan(standard_error(x[:, :1], dim=1)).all()


def test_mean_se_skips_non_finite_and_never_reports_zero_for_one_value():
    assert mean_se([1.0, 3.0, float("inf")]) == {"mean": 2.0, "se": 1.0}
    one = mean_se([2.0])
    assert one["mean"] == 2.0 and math.isnan(one["se"])
    assert all(math.isnan(v) for v in mean_se([float("nan")]).values())
