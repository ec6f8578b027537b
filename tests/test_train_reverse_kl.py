"""Reverse-KL fitting: targets and quadrature, the estimator on a known case, a short run."""

from __future__ import annotations

import json
import math

import pytest
import torch

from spectral_backprop.models import CouplingGenerator, SplineCoupling
from spectral_backprop.train import (
    TARGETS,
    ReverseKLConfig,
    evaluate_reverse_kl,
    log_normaliser,
    read_metrics,
    train_reverse_kl,
)
from spectral_backprop.train import targets as targets_module
from spectral_backprop.train.reverse_kl import anneal_weight

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("name", list(TARGETS))
def test_targets_are_finite_and_normalisable(name):
    pts = torch.rand(1000, 2, dtype=torch.float64) * 12 - 6
    assert torch.isfinite(TARGETS[name](pts)).all()
    # The quadrature has converged and the box holds the mass.
    coarse, fine = log_normaliser(TARGETS[name], 500), log_normaliser(TARGETS[name], 1000)
    assert coarse == pytest.approx(fine, abs=1e-3)
    assert log_normaliser(TARGETS[name], 500, box=8.0) == pytest.approx(coarse, abs=1e-3)


def test_ring_normaliser_is_analytic():
    # ∫ exp(-(r-2)²/(2·0.2²)) r dr dθ ≈ 2π · 2 · 0.2 √(2π) (the tail below r=0 is nil).
    expected = math.log(2 * math.pi * 2 * 0.2 * math.sqrt(2 * math.pi))
    assert log_normaliser(TARGETS["ring"]) == pytest.approx(expected, abs=1e-6)


def test_reverse_kl_of_an_exact_fit_is_zero(monkeypatch):
    # The identity-initialised generator pushes N(0, I) to itself; against the
    # unnormalised target exp(-|x|²/2) (Z = 2π) the KL is 0 and the ESS is 1.
    monkeypatch.setitem(targets_module.TARGETS, "gauss", lambda x: -0.5 * (x**2).sum(1))
    G = CouplingGenerator(num_layers=2, hidden=8)
    figures = evaluate_reverse_kl(G, "gauss", num_samples=2000)
    assert figures["log_z"] == pytest.approx(math.log(2 * math.pi), abs=1e-6)
    assert abs(figures["reverse_kl"]) < 1e-4
    assert figures["ess"] == pytest.approx(1.0, abs=1e-6)


def test_short_reverse_kl_run_improves(tmp_path):
    config = ReverseKLConfig(target="U1", num_layers=4, hidden=32, steps=60, batch_size=128,
                             lr=3e-3, eval_samples=4000, log_every=20, ckpt_every=30,
                             progress=False)
    torch.manual_seed(config.seed)
    untrained = CouplingGenerator(2, config.num_layers, config.hidden, config.depth)
    before = evaluate_reverse_kl(untrained, "U1", 4000)["reverse_kl"]
    result = train_reverse_kl(config, tmp_path)
    after = result.metrics["reverse_kl"]
    assert after < before - 0.3
    assert 0 < result.metrics["ess"] <= 1
    assert json.loads((tmp_path / "eval.json").read_text()) == result.metrics
    assert (tmp_path / "density.png").stat().st_size > 1000
    assert [r["step"] for r in read_metrics(tmp_path)] == [20, 40, 60]


def test_unknown_target():
    with pytest.raises(ValueError, match="unknown target 'U9'; choose from U1"):
        targets_module.get_target("U9")


def test_anneal_weight_follows_rezende_mohamed_schedule():
    # β_t = min(1, β_0 + t/T): β_0 at the start, linear, then held at 1.
    start, steps = 0.01, 200
    betas = [anneal_weight(t, steps, start) for t in range(2 * steps)]
    assert betas[0] == start
    assert betas[steps // 2] == pytest.approx(start + 0.5)
    ramp = torch.tensor(betas[: int((1 - start) * steps)], dtype=torch.float64)
    torch.testing.assert_close(ramp.diff(), torch.full_like(ramp[1:], 1 / steps),
                               rtol=0, atol=1e-12)
    assert max(betas) == 1.0 and betas[-1] == 1.0
    assert all(anneal_weight(t, 0) == 1.0 for t in (0, 5, 10_000))  # T = 0: off


def test_reverse_kl_config_checks_new_fields():
    with pytest.raises(ValueError, match="transform must be"):
        ReverseKLConfig(transform="cubic")
    with pytest.raises(ValueError, match="anneal_steps must be"):
        ReverseKLConfig(anneal_steps=-1)
    with pytest.raises(ValueError, match="anneal_start must be"):
        ReverseKLConfig(anneal_start=0.0)
    with pytest.raises(ValueError, match="bins must be positive"):
        ReverseKLConfig(bins=0)


def test_short_annealed_spline_run_improves_and_logs_beta(tmp_path):
    config = ReverseKLConfig(target="U1", num_layers=2, hidden=32, transform="spline", bins=6,
                             bound=4.0, steps=60, batch_size=128, lr=3e-3, anneal_steps=40,
                             anneal_start=0.1, eval_samples=4000, log_every=20,
                             ckpt_every=60, progress=False)
    torch.manual_seed(config.seed)
    untrained = CouplingGenerator(2, config.num_layers, config.hidden, config.depth,
                                  transform="spline", bins=6, bound=4.0)
    before = evaluate_reverse_kl(untrained, "U1", 4000)["reverse_kl"]
    result = train_reverse_kl(config, tmp_path)
    assert result.metrics["reverse_kl"] < before - 0.3
    assert isinstance(result.generator.layers[0], SplineCoupling)
    logged = [r["beta"] for r in read_metrics(tmp_path)]
    assert logged == [anneal_weight(t - 1, 40, 0.1) for t in (20, 40, 60)]
