"""The ``--quick`` demo end to end (slow: it trains two small GANs, about a minute)."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest

from spectral_backprop.cli import main
from spectral_backprop.studies.demo import PRIMARY, DemoConfig, format_summary

ANALYZE_KEYS = ("loglik_typical", "loglik_search", "loglik_real",
                "classifier_confidence_typical", "classifier_confidence_search")

_QUICK_DEMO: dict[str, object] = {}


def quick_demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Run ``demo --quick`` once per test session (the browser test reuses it).

    With ``--jobs 2``, the default of a full run: the variants train in worker processes.
    """
    if "dir" not in _QUICK_DEMO:
        out = tmp_path_factory.mktemp("demo")
        # Keep what the run prints: whichever test triggers the run first, the summary
        # can still be checked.
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            code = main(["demo", "--quick", "--jobs", "2", "--no-progress", "--out", str(out)])
        assert code == 0, printed.getvalue()
        _QUICK_DEMO["dir"], _QUICK_DEMO["printed"] = out, printed.getvalue()
    return _QUICK_DEMO["dir"]


@pytest.mark.slow
def test_quick_demo_end_to_end(tmp_path_factory, capsys):
    out = quick_demo_dir(tmp_path_factory)
    printed = _QUICK_DEMO["printed"]
    assert "report.html" in printed and "quantity" in printed  # the closing summary
    results = json.loads((out / "results.json").read_text())
    for key in ANALYZE_KEYS:
        assert isinstance(results[key], float)
    assert results["primary_variant"] == PRIMARY
    assert set(results["variants"]) == {"ml", "gan", "entropy"}
    for name, entry in results["variants"].items():
        assert sum(entry["class_coverage"]["class_counts"]) == DemoConfig.quick().quality_samples
        assert entry["fd"] > 0 and 0 <= entry["real_on_manifold_fraction"] <= 1
        assert (entry["test_nll"] is None) == (name != "ml")
        assert (out / entry["samples_figure"]).is_file()
        assert (out / entry["analysis_dir"] / "arrays.npz").is_file()
    ml = results["variants"]["ml"]
    assert isinstance(ml["test_nll"], float) and ml["reconstruction_rms_median"] > 0
    ref = results["reference"]
    assert ref["num_heldout"] == 500 and ref["num_train"] == 4500
    assert 0 < ref["fd_train_vs_heldout"] < min(e["fd"] for e in results["variants"].values())
    assert [f["key"] for f in results["findings"]] == ["quality", "search", "entropy", "ml",
                                                      "directions"]
    assert all(f["verdict"] and f["measured"] for f in results["findings"])
    assert {row["key"] for row in results["summary"]} >= {*ANALYZE_KEYS, "fd", "test_nll",
                                                         "real_on_manifold_fraction"}
    page = (out / "report.html").read_text()
    assert page.count("<img ") >= 25 and page.count("class='finding'") == 5

    # Re-running into the same folder reuses the finished training; other settings
    # are refused with a clear message instead of silently mixing two runs.
    (out / "report.html").unlink()
    assert main(["report", str(out)]) == 0
    assert (out / "report.html").is_file()
    assert main(["demo", "--quick", "--jobs", "2", "--no-progress", "--seed", "5",
                 "--out", str(out)]) == 2
    assert "different run" in capsys.readouterr().err


def test_config_validation_and_summary_text():
    with pytest.raises(ValueError, match="steps must be positive"):
        DemoConfig(steps=0)
    with pytest.raises(ValueError, match="entropy_weight"):
        DemoConfig(entropy_weight=0.0)
    with pytest.raises(ValueError, match="jobs must be positive"):
        DemoConfig(jobs=True)
    with pytest.raises(ValueError, match="n_search must not exceed n_typical"):
        DemoConfig(analysis={"n_search": 999})
    with pytest.raises(ValueError, match="heldout must leave training digits"):
        DemoConfig(heldout=5000)
    with pytest.raises(ValueError, match="ml_beta must be positive"):
        DemoConfig(ml_beta=0.0)
    assert DemoConfig.quick(steps=5).steps == 5 and DemoConfig.quick().jobs == 1
    results = {"variants": {"gan": {"label": "GAN"}, "entropy": {"label": "GAN + entropy"}},
               "summary": [{"key": "loglik_typical", "metric": "log-likelihood", "unit": "nats",
                            "gan": -45.44, "entropy": float("nan")}]}
    lines = format_summary(results).splitlines()
    assert lines[0].split() == ["quantity", "GAN", "GAN", "+", "entropy"]
    assert lines[2].split()[-2:] == ["-45.4", "—"]
