"""The mode-coverage study through its command: summary, resume, refusal of other settings."""

from __future__ import annotations

import json

from spectral_backprop.train import GANConfig


def test_modes_command_writes_the_documented_summary(tmp_path, capsys):
    # Tiny budget: checks the protocol's plumbing (both variants, same budget, the
    # documented results.json layout, seed splitting and reuse), not its figures.
    from spectral_backprop.cli import main

    tiny = ["--dataset", "grid", "--steps", "6", "--width", "8", "--depth", "1",
            "--batch-size", "32", "--entropy-batch", "4", "--log-every", "3",
            "--ckpt-every", "3", "--no-progress", "--out", str(tmp_path)]
    assert main(["modes", "--seeds", "1", *tiny]) == 0
    assert main(["modes", "--seeds", "2", "--first-seed", "1", *tiny]) == 0
    first = (tmp_path / "gan" / "seed0" / "eval.json").stat().st_mtime_ns
    assert main(["modes", "--seeds", "2", "--resume", *tiny]) == 0  # summary of both
    assert (tmp_path / "gan" / "seed0" / "eval.json").stat().st_mtime_ns == first
    res = json.loads((tmp_path / "results.json").read_text())
    assert res["seeds"] == 2 and set(res["variants"]) == {"gan", "entropy"}
    for variant in res["variants"].values():
        assert len(variant["per_seed"]) == 2
        for key in ("modes", "high_quality", "reverse_kl", "spread"):
            assert set(variant[key]) == {"mean", "se"}
    configs = {v: GANConfig.from_dict(json.loads(
        (tmp_path / v / "seed1" / "config.json").read_text())) for v in ("gan", "entropy")}
    assert configs["gan"].entropy.weight == 0.0
    assert configs["entropy"].entropy.weight == res["entropy_weight"] > 0
    # Same budget: the configs differ in β only.
    assert configs["entropy"].differences(configs["gan"].to_dict()) == {
        "entropy.weight": (0.0, res["entropy_weight"])}
    assert configs["gan"].r1.weight == 0.1  # the grid protocol's defaults apply
    assert main(["modes", "--seeds", "1", "--first-seed", "1", *tiny]) == 2
    assert "--first-seed" in capsys.readouterr().err


def test_modes_summary_refuses_runs_trained_under_other_settings(tmp_path, capsys):
    from spectral_backprop.cli import main

    tiny = ["--dataset", "grid", "--steps", "4", "--width", "8", "--depth", "1",
            "--batch-size", "32", "--entropy-batch", "4", "--log-every", "2",
            "--ckpt-every", "2", "--no-progress", "--out", str(tmp_path)]
    assert main(["modes", "--seeds", "1", *tiny]) == 0
    capsys.readouterr()
    # Summarising the same folder under another learning rate must not reuse those runs.
    assert main(["modes", "--seeds", "1", "--resume", "--lr-g", "5e-4", *tiny]) == 2
    err = capsys.readouterr().err
    assert "trained with other settings" in err and "lr_g: run 0.001, now 0.0005" in err
    assert main(["modes", "--seeds", "1", "--resume", *tiny]) == 0
