"""Training by maximum implicit likelihood: short runs lower the test NLL on every data
set, runs resume bit-identically, and the command line builds and runs."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch

import spectral_backprop.train.manifold as manifold_module
from helpers import count_coupling_checks, interrupted_then_resumed, records_without
from spectral_backprop.cli import CLIError, fit_manifold
from spectral_backprop.data.manifolds import circle, npy_array, sine, sphere
from spectral_backprop.runfiles import read_metrics
from spectral_backprop.train.config import ConfigError
from spectral_backprop.train.manifold import (
    ManifoldConfig,
    likelihood_weight,
    train_manifold,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(**kw) -> ManifoldConfig:
    base = {"steps": 150, "batch_size": 128, "width": 32, "depth": 2, "lr": 3e-3,
            "eval_every": 0, "eval_samples": 500, "log_every": 50, "ckpt_every": 150,
            "progress": False, "device": "cpu", "warmup": 0.1, "ramp": 0.1}
    return ManifoldConfig.from_dict(base | kw)


@pytest.mark.parametrize(("make", "volume_points"),
                         [(lambda: circle(2000, 500), None),
                          (lambda: sine(2000, 500, ambient_dim=10), None),
                          (lambda: sphere(2000, 500), None),
                          (lambda: sphere(2000, 500), 16)],
                         ids=["circle", "sine10", "sphere", "sphere-16-volume-points"])
def test_likelihood_phase_lowers_test_nll(tmp_path, make, volume_points):
    """After a reconstruction-only half (the manifold on the data, its density arbitrary),
    the likelihood half lowers the test NLL towards the entropy, the manifold staying on
    the data. (Before the warm-up the test NLL means nothing: an untrained generator's
    tiny manifold has a huge density, and a negative NLL.)"""
    data = make()
    config = tiny(steps=600, warmup=0.5, ramp=0.05, eval_every=300, ckpt_every=600,
                  volume_points=volume_points)
    result = train_manifold(config, tmp_path, dataset=data)
    mid, end = [r for r in read_metrics(tmp_path) if "test_nll" in r]
    assert mid["step"] == 300 and end["test_nll"] < mid["test_nll"] - 0.05, (mid, end)
    assert abs(end["kl"]) < 0.5 and end["manifold_distance"] < 0.1, end
    assert result.metrics["kl"] == pytest.approx(result.metrics["test_nll"] - data.entropy)
    assert json.loads((tmp_path / "eval.json").read_text())["test_nll"] == end["test_nll"]


def test_user_array_runs_without_known_entropy(tmp_path):
    theta = np.random.default_rng(0).uniform(0, 2 * np.pi, 600)
    np.save(tmp_path / "ring.npy", np.stack([np.cos(theta), np.sin(theta)], 1) * 3)
    data = npy_array(tmp_path / "ring.npy", intrinsic_dim=1)
    result = train_manifold(tiny(steps=60, ckpt_every=60), tmp_path / "run", dataset=data)
    assert result.metrics["kl"] is None and np.isfinite(result.metrics["test_nll"])


def test_likelihood_weight_schedule_and_bad_settings():
    assert likelihood_weight(0, 10, 0.0, 0.0) == 1.0
    assert likelihood_weight(5, 10, 0.4, 0.2) == pytest.approx(0.5)
    with pytest.raises(ConfigError, match="warmup"):
        ManifoldConfig(warmup=0.6, ramp=0.5)
    with pytest.raises(ConfigError, match="method"):
        ManifoldConfig(method="bogus")
    with pytest.raises(ConfigError, match="volume_points"):
        ManifoldConfig(batch_size=16, volume_points=17)
    with pytest.raises(ValueError, match="latent_dim"):
        train_manifold(tiny(), "/nonexistent/never-written", dataset=_plain_points())


def _plain_points():
    from spectral_backprop.data.base import Dataset

    return Dataset("plain", torch.randn(50, 3))


@pytest.mark.parametrize("method", ["exact", "lanczos"])
def test_resume_continues_bit_identically(tmp_path, monkeypatch, method):
    data = circle(1000, 200)
    config = tiny(steps=60, ckpt_every=20, log_every=10, eval_every=20, method=method,
                  method_options={"num_probes": 2} if method == "lanczos" else {})
    straight = train_manifold(config, tmp_path / "straight", dataset=data)
    resumed = interrupted_then_resumed(monkeypatch, manifold_module, train_manifold, config,
                                       tmp_path / "resumed", data, at_step=40)
    for name in ("generator", "encoder"):
        a, b = getattr(straight, name).state_dict(), getattr(resumed, name).state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert records_without(tmp_path / "resumed", "train_time") == records_without(
        tmp_path / "straight", "train_time")


def test_a_finished_run_is_not_overwritten(tmp_path):
    data = circle(500, 100)
    train_manifold(tiny(steps=10, ckpt_every=10), tmp_path, dataset=data)
    with pytest.raises(FileExistsError, match="--resume"):
        train_manifold(tiny(steps=10, ckpt_every=10), tmp_path, dataset=data)


def parser():
    p = argparse.ArgumentParser()
    fit_manifold.add_parser(p.add_subparsers())
    return p


def test_cli_trains_and_writes_results(tmp_path):
    args = parser().parse_args(
        ["fit-manifold", "--data", "circle", "--steps", "30", "--seeds", "2", "--width", "16",
         "--depth", "1", "--eval-every", "0", "--no-progress", "--device", "cpu",
         "--data-option", "num_samples=500", "--data-option", "num_test=100",
         "--out", str(tmp_path)])
    assert args.func(args) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert set(results["exact"]["kl"]) == {"mean", "se"}
    assert results["exact"]["entropy"]["mean"] == pytest.approx(1.6274, abs=1e-4)
    assert (tmp_path / "seed_1" / "density.png").exists()


@pytest.mark.parametrize(
    ("argv", "match"),
    [(["--data", "torus"], "--data must be"),
     (["--data", "missing.npy"], "no such file"),
     (["--data", "mnist", "--ambient-dim", "10"], "--ambient-dim applies")],
)
def test_cli_user_errors(tmp_path, argv, match):
    args = parser().parse_args(["fit-manifold", *argv, "--out", str(tmp_path)])
    with pytest.raises(CLIError, match=match):
        args.func(args)


def test_cli_reports_a_bad_npy_file(tmp_path):
    np.save(tmp_path / "bad.npy", np.zeros((5, 2, 2)))
    args = parser().parse_args(["fit-manifold", "--data", str(tmp_path / "bad.npy"),
                                "--out", str(tmp_path / "out"), "--no-progress"])
    with pytest.raises(CLIError, match="expected 2-D"):
        args.func(args)


def test_steps_skip_the_coupling_test_check_method_ran(tmp_path, monkeypatch):
    # check_method tests the architecture for batch coupling before the first step; the
    # likelihood steps pass check_coupling=False, so the count of coupling tests does not
    # grow with the steps (each step would add one without the skip).
    counts = {}
    for steps in (4, 12):
        calls = count_coupling_checks(monkeypatch)
        config = tiny(steps=steps, warmup=0.0, ramp=0.0, log_every=steps, ckpt_every=steps,
                      eval_samples=50)
        train_manifold(config, tmp_path / str(steps), dataset=sine(500, 100))
        counts[steps] = len(calls)
        monkeypatch.undo()
    assert counts[4] >= 1 and counts[12] == counts[4], counts
