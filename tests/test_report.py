"""The HTML report and the ``report`` / ``demo`` commands, on synthetic artifacts.

No model is trained here: the folders below are written by hand in the layouts the demo
and ``analyze`` produce, which is exactly what the report promises to need.
"""

from __future__ import annotations

import base64
import json
import re
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from spectral_backprop.cli import main
from spectral_backprop.report import (
    ReportError,
    format_value,
    load_artifacts,
    summary_rows,
    write_report,
)

FIGURES = ["spectra.png", "traverse_local_0.png", "traverse_local_1.png", "traverse_global.png",
           "eigen_path.png", "search_trajectory.png", "search_loglik.png", "typical.png",
           "search_final.png", "real.png"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def tiny_png(width: int = 4, height: int = 3) -> bytes:
    """A valid grey PNG, written by hand (no image library needed)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    rows = b"".join(b"\x00" + bytes(range(0, 4 * width, 4))[:width] for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (PNG_SIGNATURE + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
            + chunk(b"IEND", b""))


def write_analysis(folder: Path, shift: float = 0.0) -> None:
    """An analysis folder as ``analyze_generator`` leaves it."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    summary = {"mean": -40.0 + shift, "se": 0.5, "median": -40.0, "bits_per_dim": 0.07,
               "count": 64}
    results = {
        "loglik_typical": -40.0 + shift, "loglik_search": 30.0 + shift,
        "loglik_real": -45.0, "loglik_real_on_manifold": float("nan"),
        "loglik_gap_search_typical": 70.0, "classifier_confidence_typical": 0.9,
        "classifier_confidence_search": 0.4, "nearest_distance_typical": 0.3,
        "details": {"typical": summary, "search": summary, "search_start": summary,
                    "real": summary, "real_flagged_fraction": 0.25},
        "figures": FIGURES, "config": {"n_typical": 64},
    }
    (folder / "results.json").write_text(json.dumps(results))
    np.savez_compressed(
        folder / "arrays.npz", loglik_typical=rng.normal(-40, 3, 64),
        loglik_search=rng.normal(30, 5, 8), loglik_real=np.append(rng.normal(-45, 3, 15), np.nan),
        spectra=np.exp(rng.normal(size=(16, 6))), global_spectrum=np.arange(6.0, 0, -1),
    )
    for name in FIGURES:
        (folder / name).write_bytes(tiny_png())


def write_demo(root: Path) -> Path:
    """A demo folder with two variants."""
    variants = {}
    for i, name in enumerate(("gan", "entropy")):
        write_analysis(root / name / "analysis", shift=-5.0 * i)
        (root / name / "train").mkdir()
        metrics = [{"step": s, "d_loss": 1.0, "g_loss": 0.8, **({"entropy": 40.0} if i else {})}
                   for s in (10, 20, 30)]
        (root / name / "train" / "metrics.jsonl").write_text(
            "".join(json.dumps(m) + "\n" for m in metrics))
        (root / name / "samples.png").write_bytes(tiny_png(8, 8))
        variants[name] = {"label": f"variant <{name}>", "train_dir": f"{name}/train",
                          "analysis_dir": f"{name}/analysis", "samples_figure":
                          f"{name}/samples.png", "train_seconds": 3.0,
                          "class_coverage": {"class_counts": [10] * 9 + [1 + 20 * i],
                                             "class_entropy": 2.2, "classes_covered": 10}}
    results = {"loglik_typical": -40.0, "variants": variants, "config": {"steps": 30},
               "real_class_shares": [0.1] * 10}
    (root / "results.json").write_text(json.dumps(results))
    return root


def embedded_images(page: str) -> list[bytes]:
    sources = re.findall(r'<img src="([^"]*)"', page)
    assert all(s.startswith("data:image/png;base64,") for s in sources), "external image"
    return [base64.b64decode(s.split(",", 1)[1]) for s in sources]


def test_demo_report_is_self_contained(tmp_path):
    root = write_demo(tmp_path / "run")
    path = write_report(root)
    assert path == root / "report.html"
    page = path.read_text(encoding="utf-8")
    for section in ("summary", "samples", "likelihood", "search", "traversals", "spectra",
                    "training", "run"):
        assert f'id="{section}"' in page
    images = embedded_images(page)
    # Per variant: samples + 8 analysis figures (typical.png gives way to samples.png);
    # real.png once; plus class coverage, histograms, spectra overlay, training curves.
    assert len(images) == 2 * 9 + 1 + 4
    assert all(img.startswith(PNG_SIGNATURE) for img in images)
    assert not re.search(r'(src|href)="(https?:|//)', page)
    assert "variant &lt;gan&gt;" in page and "<gan>" not in page  # labels are escaped


def test_analysis_folder_renders_as_one_variant(tmp_path):
    write_analysis(tmp_path / "an")
    art = load_artifacts(tmp_path / "an")
    assert art.kind == "analysis" and len(art.variants) == 1
    page = write_report(tmp_path / "an", tmp_path / "elsewhere.html").read_text()
    images = embedded_images(page)
    assert len(images) == len(FIGURES) + 2  # + histograms and spectra overlay
    assert 'id="training"' not in page  # no metrics for a foreign generator


def test_report_rerenders_identically_apart_from_timestamp(tmp_path):
    root = write_demo(tmp_path / "run")
    strip = re.compile(r"Rendered .*? from saved")
    first = strip.sub("", write_report(root).read_text())
    second = strip.sub("", write_report(root).read_text())
    assert first == second


@pytest.mark.parametrize("damage, message", [
    (lambda r: (r / "results.json").unlink(), "missing"),
    (lambda r: (r / "results.json").write_text("{not json"), "not valid JSON"),
    (lambda r: (r / "results.json").write_text("[1, 2]"), "JSON object"),
    (lambda r: (r / "results.json").write_text("{}"), "neither 'variants'"),
    (lambda r: (r / "gan" / "analysis" / "spectra.png").unlink(), "spectra.png"),
    (lambda r: (r / "entropy" / "analysis" / "arrays.npz").unlink(), "arrays.npz"),
    (lambda r: (r / "gan" / "analysis" / "arrays.npz").write_text("junk"), "cannot read"),
])
def test_damaged_folders_give_clear_errors(tmp_path, damage, message):
    root = write_demo(tmp_path / "run")
    damage(root)
    with pytest.raises(ReportError, match=message):
        write_report(root)


def test_summary_rows_skip_absent_keys_and_format():
    rows = summary_rows({"a": {"loglik_typical": -1.5}, "b": {"loglik_typical": 2.0}})
    assert [r["key"] for r in rows] == ["loglik_typical"]
    assert rows[0]["a"] == -1.5 and rows[0]["b"] == 2.0
    assert format_value(float("nan")) == "—" and format_value(None) == "—"
    assert format_value(1234.56) == "1234.6" and format_value(0.012345) == "0.0123"
    assert format_value(7) == "7"


def test_cli_report(tmp_path, capsys):
    root = write_demo(tmp_path / "run")
    assert main(["report", str(root)]) == 0
    assert "report written" in capsys.readouterr().out
    assert main(["report", str(tmp_path / "nowhere")]) == 2
    assert "no such folder" in capsys.readouterr().err
    (tmp_path / "file").write_text("")
    assert main(["report", str(root), "--out", str(tmp_path / "file" / "r.html")]) == 2
    assert "cannot write" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["report", "demo"])
def test_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert f"usage: spectral-backprop {command}" in capsys.readouterr().out


def test_cli_demo_errors(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    assert main(["demo", "--quick", "--out", str(tmp_path / "file" / "out")]) == 2
    assert "cannot write to output folder" in capsys.readouterr().err
    assert main(["demo", "--quick", "--steps", "0", "--out", str(tmp_path / "o")]) == 2
    assert "steps must be positive" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["demo"])  # --out is required: argparse exits with 2
    assert exit_info.value.code == 2
