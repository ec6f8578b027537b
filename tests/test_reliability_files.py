"""Untrusted and damaged files: checkpoints, reports, data and run folders.

Each test feeds the commands a file as a colleague (or an attacker) might send it, or a
folder as a killed or concurrent run leaves it, and checks the promise of
docs/reliability.md: no code runs, no script gets into a report, and every bad file
gives one line of error with exit code 2, before anything is written.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import pickle
import re
import socket
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import interrupted_then_resumed, records_without
from spectral_backprop.cli import main
from spectral_backprop.data import load_dataset
from spectral_backprop.runfiles import read_metrics, write_json
from spectral_backprop.train import CheckpointError, GANConfig, train_gan
from spectral_backprop.train import gan as gan_module
from test_report import tiny_png, write_demo

pytestmark = pytest.mark.usefixtures("one_thread")

TINY_GAN = ["--dataset", "ring", "--data-option", "num_samples=500", "--width", "8",
            "--depth", "1", "--batch-size", "16", "--entropy-batch", "4", "--log-every", "2",
            "--ckpt-every", "2", "--no-progress"]


def one_line_error(code: int, err: str, command: str) -> str:
    """The message of a one-line ``spectral-backprop COMMAND: error: ...`` with exit 2."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1, f"not one line:\n{err}"
    assert lines[0].startswith(f"spectral-backprop {command}: error: "), err
    return lines[0]


def tiny_config(**overrides) -> GANConfig:
    values = dict(dataset="ring", data_options={"num_samples": 500}, width=8, depth=1,
                  batch_size=16, steps=8, entropy={"batch": 4}, log_every=2, ckpt_every=4,
                  progress=False)
    return GANConfig.from_dict({**values, **overrides})


@pytest.fixture(scope="module")
def ring():
    return load_dataset("ring", num_samples=500)


# --- no code from a file -------------------------------------------------------------


class _RunsCodeWhenUnpickled:
    """A pickle payload that creates a file when unpickled (stands for any code)."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def plant_code(path: Path, marker: Path, form: str) -> None:
    """A ``checkpoint.pt`` that runs code when unpickled: inside a checkpoint-shaped
    payload (``torch.save``), or as a bare pickle."""
    path.parent.mkdir(parents=True, exist_ok=True)
    evil = _RunsCodeWhenUnpickled(marker)
    if form == "torch":
        torch.save({"format_version": 1, "kind": "GANConfig", "step": 2, "config": {},
                    "modules": {}, "optimizers": {}, "rng": {}, "extra": {"x": evil}}, path)
    else:
        path.write_bytes(pickle.dumps(evil))


ENTRY_POINTS = {
    # command line, checkpoint inside the output folder (or the analysed run)
    "train": (["train", *TINY_GAN, "--steps", "4", "--resume", "--out", "{out}"],
              "checkpoint.pt"),
    "fit-density": (["fit-density", "--num-layers", "2", "--hidden", "8", "--steps", "2",
                     "--no-progress", "--resume", "--out", "{out}"], "checkpoint.pt"),
    "modes": (["modes", "--dataset", "grid", "--seeds", "1", "--steps", "4", "--width", "8",
               "--depth", "1", "--batch-size", "32", "--entropy-batch", "4", "--no-progress",
               "--resume", "--out", "{out}"], "gan/seed0/checkpoint.pt"),
    "analyze": (["analyze", "{out}", "--out", "{out}/analysis"], "checkpoint.pt"),
    "demo": (["demo", "--quick", "--no-progress", "--out", "{out}"],
             "gan/train/checkpoint.pt"),
}


@pytest.mark.parametrize("form", ["torch", "pickle"])
@pytest.mark.parametrize("command", list(ENTRY_POINTS))
def test_no_entry_point_runs_code_from_a_checkpoint(tmp_path, capsys, command, form):
    argv, where = ENTRY_POINTS[command]
    out, marker = tmp_path / "run", tmp_path / "code_ran"
    plant_code(out / where, marker, form)
    code = main([a.replace("{out}", str(out)) for a in argv])
    message = one_line_error(code, capsys.readouterr().err, command)
    assert "checkpoint" in message and "tensors and plain data" in message
    assert not marker.exists()


def _saved_checkpoint(tmp_path: Path, ring) -> tuple[GANConfig, Path, dict]:
    from spectral_backprop.train import read_checkpoint

    config = tiny_config(steps=4)
    train_gan(config, tmp_path, dataset=ring)
    return config, tmp_path / "checkpoint.pt", read_checkpoint(tmp_path / "checkpoint.pt")


@pytest.mark.parametrize("damage, message", [
    (lambda p: {k: v for k, v in p.items() if k not in ("config", "rng")}, "lacks config, rng"),
    (lambda p: {**p, "step": "ten"}, "step is a str"),
    (lambda p: {**p, "rng": {"run": [1, 2], "torch": p["rng"]["torch"]}}, "rng.run"),
    (lambda p: {**p, "modules": {"G": [1, 2]}}, "modules.G is not a dict"),
    (lambda p: {**p, "extra": {"kind": torch.float32}}, "holds a dtype"),
    (lambda p: {**p, "extra": {"size": torch.Size([2, 3])}}, "holds a Size"),
])
def test_anything_but_a_complete_plain_checkpoint_is_refused(tmp_path, ring, damage, message):
    config, path, payload = _saved_checkpoint(tmp_path, ring)
    torch.save(damage(payload), path)
    with pytest.raises(CheckpointError, match=message):
        train_gan(config, tmp_path, resume=True, dataset=ring)


def test_a_checkpoint_missing_keys_is_a_one_line_error(tmp_path, capsys):
    torch.save({"format_version": 1, "kind": "GANConfig", "step": 2}, tmp_path / "checkpoint.pt")
    code = main(["train", *TINY_GAN, "--steps", "4", "--resume", "--out", str(tmp_path)])
    assert "lacks config" in one_line_error(code, capsys.readouterr().err, "train")


# --- no script in a report ------------------------------------------------------------

SCRIPTS = ["<script>alert(1)</script>", "<img src=x onerror=alert(2)>",
           "<svg onload=alert(3)>", "</td><script>alert(4)</script>",
           "\"><svg/onload=alert(5)>"]
# Tags the report writes itself; anything else in the page came from a file.
OWN_TAGS = {"html", "head", "meta", "title", "style", "body", "h1", "h2", "h3", "p", "nav",
            "a", "section", "table", "thead", "tbody", "tr", "th", "td", "div", "figure",
            "img", "figcaption", "pre", "sub", "sup", "ul", "li"}


def _poison(value, payloads):
    """Every string and number of a JSON value replaced by the next script payload."""
    if isinstance(value, dict):
        return {k: _poison(v, payloads) for k, v in value.items()}
    if isinstance(value, list):
        return [_poison(v, payloads) for v in value]
    payloads.append(payloads.pop(0))
    return payloads[-1]


def tamper(path: Path, keep: tuple[str, ...] = ()) -> None:
    """Replace every value of a ``results.json`` (except the top-level ``keep``) by scripts."""
    results = json.loads(path.read_text())
    payloads = list(SCRIPTS)
    poisoned = {k: v if k in keep else _poison(v, payloads) for k, v in results.items()}
    path.write_text(json.dumps(poisoned))


def assert_no_markup_from_files(page: str) -> None:
    assert "<script" not in page.lower()
    assert "<svg" not in page.lower() and "<img src=x" not in page.lower()
    # An event handler inside a tag; as escaped text ("onerror=alert" in a cell) it is inert.
    assert not re.search(r"<[a-z][^<>]*\son\w+\s*=", page, re.IGNORECASE)
    tags = {t.lower() for t in re.findall(r"</?([a-zA-Z][\w-]*)", page)}
    assert tags <= OWN_TAGS, tags - OWN_TAGS


def test_a_tampered_demo_report_holds_no_script(tmp_path):
    from spectral_backprop.report import write_report

    root = write_demo(tmp_path / "run")
    results = json.loads((root / "results.json").read_text())
    for name, entry in results["variants"].items():
        for key in ("label", "train_seconds"):
            entry[key] = SCRIPTS[hash(key) % len(SCRIPTS)] + name
        entry["class_coverage"] = {"class_entropy": SCRIPTS[0] + name,
                                   "classes_covered": SCRIPTS[1] + name,
                                   "class_counts": SCRIPTS[:3]}
    results["config"] = {"steps": SCRIPTS[0], SCRIPTS[1]: 1}
    results["real_class_shares"] = SCRIPTS
    results["findings"] = [{"key": SCRIPTS[0], "title": SCRIPTS[1], "verdict": SCRIPTS[2],
                            "measured": SCRIPTS, "paper": SCRIPTS[3]}, SCRIPTS[4]]
    (root / "results.json").write_text(json.dumps(results))
    for name in ("gan", "entropy"):  # likelihood details, flagged fraction, means, config
        tamper(root / name / "analysis" / "results.json", keep=("figures",))
    assert_no_markup_from_files(write_report(root).read_text())


def test_a_tampered_analysis_report_holds_no_script(tmp_path, capsys):
    from test_report import write_analysis

    write_analysis(tmp_path / "an")
    tamper(tmp_path / "an" / "results.json", keep=("figures",))
    assert main(["report", str(tmp_path / "an")]) == 0
    assert_no_markup_from_files((tmp_path / "an" / "report.html").read_text())


SECRET = b"\x89PNG\r\n\x1a\n" + b"SECRET-OUTSIDE-THE-RUN-FOLDER" * 4


def _outside_file(tmp_path: Path) -> Path:
    secret = tmp_path / "elsewhere" / "secret.png"
    secret.parent.mkdir()
    secret.write_bytes(SECRET)
    return secret


def _embedded(page: str) -> list[bytes]:
    import base64

    return [base64.b64decode(s) for s in re.findall(r'src="data:image/png;base64,([^"]*)"', page)]


@pytest.mark.parametrize("how", ["absolute", "dotdot", "symlink"])
def test_a_samples_figure_outside_the_folder_is_not_embedded(tmp_path, how):
    from spectral_backprop.report import write_report

    root, secret = write_demo(tmp_path / "run"), _outside_file(tmp_path)
    results = json.loads((root / "results.json").read_text())
    if how == "symlink":
        (root / "gan" / "samples.png").unlink()
        (root / "gan" / "samples.png").symlink_to(secret)
    else:
        results["variants"]["gan"]["samples_figure"] = (
            str(secret) if how == "absolute" else "../elsewhere/secret.png")
    (root / "results.json").write_text(json.dumps(results))
    page = write_report(root).read_text()
    assert all(SECRET not in png for png in _embedded(page))
    assert "left out" in page and "outside the run folder" in page


@pytest.mark.parametrize("how", ["absolute", "dotdot", "symlink"])
def test_a_listed_figure_outside_the_folder_is_not_embedded(tmp_path, how):
    from spectral_backprop.report import write_report

    root, secret = write_demo(tmp_path / "run"), _outside_file(tmp_path)
    analysis = root / "entropy" / "analysis"
    results = json.loads((analysis / "results.json").read_text())
    if how == "symlink":
        (analysis / "spectra.png").unlink()
        (analysis / "spectra.png").symlink_to(secret)
    else:
        results["figures"].append(str(secret) if how == "absolute"
                                  else "../../../elsewhere/secret.png")
    (analysis / "results.json").write_text(json.dumps(results))
    page = write_report(root).read_text()
    assert all(SECRET not in png for png in _embedded(page))


@pytest.mark.parametrize("key", ["analysis_dir", "train_dir"])
def test_a_variant_folder_outside_the_run_folder_is_refused(tmp_path, capsys, key):
    root = write_demo(tmp_path / "run")
    elsewhere = write_demo(tmp_path / "elsewhere") / "gan" / key.split("_")[0]
    results = json.loads((root / "results.json").read_text())
    results["variants"]["gan"][key] = str(elsewhere) if key == "analysis_dir" else (
        "../elsewhere/gan/train")
    (root / "results.json").write_text(json.dumps(results))
    message = one_line_error(main(["report", str(root)]), capsys.readouterr().err, "report")
    assert key in message and "inside" in message


def test_the_report_reads_null_and_a_torn_metrics_line(tmp_path):
    from spectral_backprop.report import write_report

    root = write_demo(tmp_path / "run")
    log = root / "gan" / "train" / "metrics.jsonl"
    log.write_text('{"step": 10, "d_loss": null, "g_loss": 0.5}\n{"step": 20, "d_lo')
    page = write_report(root).read_text()
    assert 'id="training"' in page


# --- training and data files -----------------------------------------------------------


def _png_file(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(tiny_png(8, 8))


def noisy_png(side: int = 32) -> bytes:
    """A grey PNG of random pixels (its image data does not compress to a few bytes)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    pixels = np.random.default_rng(0).integers(0, 256, (side, side), dtype=np.uint8)
    rows = b"".join(b"\x00" + row.tobytes() for row in pixels)
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
            + chunk(b"IEND", b""))


def _idx(path: Path, array: np.ndarray, code: int = 0x08) -> None:
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(array.dtype.newbyteorder(">")).tobytes())


def _folder_with(bad: bytes):
    def make(root: Path) -> Path:
        _png_file(root / "a" / "good.png")
        (root / "a" / "bad.png").write_bytes(bad)
        return root
    return make


def _idx_file(name: str, array: np.ndarray, code: int = 0x08, cut: int | None = None):
    def make(root: Path) -> Path:
        root.mkdir()
        _idx(root / name, array, code)
        if cut is not None:
            (root / name).write_bytes((root / name).read_bytes()[:cut])
        return root / name
    return make


def _corrupt_gz(root: Path) -> Path:
    root.mkdir()
    good = gzip.compress(b"\x00\x00\x08\x03" + struct.pack(">3I", 2, 4, 4) + bytes(32))
    (root / "images.gz").write_bytes(good[:20] + b"\xff" * 8 + good[28:])
    return root / "images.gz"


def _truncated_gz(root: Path) -> Path:
    root.mkdir()
    good = gzip.compress(b"\x00\x00\x08\x03" + struct.pack(">3I", 2, 4, 4) + bytes(32))
    (root / "images.gz").write_bytes(good[: len(good) // 2])
    return root / "images.gz"


NAN_IMAGES = np.full((3, 4, 4), 0.5, dtype=np.float32)
NAN_IMAGES[1, 2, 2] = np.nan

DATA_FILES = {
    "a non-image .png": ("folder", _folder_with(b"this is not an image"), "cannot read image"),
    "a truncated PNG": ("folder", _folder_with(noisy_png()[:600]), "image file is truncated"),
    "a cut-short IDX header": ("idx", _idx_file("img", np.zeros((2, 4, 4), np.uint8), cut=9),
                               "header of 3 sizes is cut short"),
    "a corrupt .gz": ("idx", _corrupt_gz, "cannot read"),
    "a truncated .gz": ("idx", _truncated_gz, "cannot read"),
    "an IDX with zero images": ("idx", _idx_file("img", np.zeros((0, 4, 4), np.uint8)),
                                "holds no images"),
    "NaN pixels": ("idx", _idx_file("img", NAN_IMAGES, code=0x0D), "NaN or infinite"),
}


@pytest.mark.parametrize("case", list(DATA_FILES))
def test_bad_data_files_are_one_line_errors_before_anything_is_written(tmp_path, capsys, case):
    dataset, make, expected = DATA_FILES[case]
    path = make(tmp_path / "data")
    out = tmp_path / "out"
    code = main(["train", "--dataset", dataset, "--data-path", str(path), "--steps", "2",
                 "--no-progress", "--out", str(out)])
    assert expected in one_line_error(code, capsys.readouterr().err, "train")
    assert not out.exists()


@pytest.mark.parametrize("flags, expected", [
    (["--entropy-method", "bogus"], "entropy.method must be"),
    (["--entropy-option", "bogus=1"], "bogus"),
    (["--entropy-method", "lanczos", "--entropy-option", "num_probes=-1"], "num_probes"),
    (["--entropy-method", "exact", "--entropy-option", "num_probes=8"], "num_probes"),
    (["--entropy-option", "generator=1"], "generator"),
    (["--entropy-option", "jitter=NaN"], "finite"),
])
def test_bad_estimator_settings_are_refused_before_training(tmp_path, capsys, flags, expected):
    out = tmp_path / "out"
    code = main(["train", *TINY_GAN, "--steps", "2", "--entropy-weight", "0.1", *flags,
                 "--out", str(out)])
    assert expected in one_line_error(code, capsys.readouterr().err, "train")
    assert not out.exists()


@pytest.mark.parametrize("flags, expected", [
    (["--method-option", "bogus=1"], "bogus"),
    (["--method", "lanczos", "--method-option", "num_probes=-1"], "num_probes"),
    (["--method-option", "generator=1"], "method_options cannot set generator"),
])
def test_bad_manifold_estimator_settings_are_refused_before_training(tmp_path, capsys, flags,
                                                                      expected):
    out = tmp_path / "out"
    code = main(["fit-manifold", "--data", "circle", "--data-option", "num_samples=200",
                 "--data-option", "num_test=50", "--width", "8", "--depth", "1",
                 "--steps", "20", "--no-progress", "--device", "cpu", *flags,
                 "--out", str(out)])
    assert expected in one_line_error(code, capsys.readouterr().err, "fit-manifold")
    assert not out.exists()


@pytest.mark.parametrize("command", ["train", "fit-density"])
@pytest.mark.parametrize("where", ["file", "under a file"])
def test_an_output_folder_that_cannot_be_created_is_a_one_line_error(tmp_path, capsys,
                                                                     command, where):
    (tmp_path / "file").write_text("")
    out = tmp_path / "file" if where == "file" else tmp_path / "file" / "run"
    flags = TINY_GAN if command == "train" else ["--num-layers", "2", "--hidden", "8",
                                                 "--no-progress"]
    code = main([command, *flags, "--steps", "2", "--out", str(out)])
    assert "output folder" in one_line_error(code, capsys.readouterr().err, command)


def test_a_diverged_run_stops_with_a_clear_error_and_saves_nothing(tmp_path, ring, monkeypatch,
                                                                  capsys):
    real_d_step = gan_module.d_step

    def diverging(*args):
        loss = real_d_step(*args)
        return loss * math.nan

    monkeypatch.setattr(gan_module, "d_step", diverging)
    data = tmp_path / "ring"
    code = main(["train", *TINY_GAN, "--steps", "4", "--out", str(data)])
    message = one_line_error(code, capsys.readouterr().err, "train")
    assert "diverged at step 2" in message and "d_loss = nan" in message
    assert not (data / "checkpoint.pt").exists()


# --- run folders ----------------------------------------------------------------------


def test_a_refused_resume_leaves_config_json_as_it_was(tmp_path, ring):
    train_gan(tiny_config(steps=4), tmp_path, dataset=ring)
    before = (tmp_path / "config.json").read_bytes()
    with pytest.raises(CheckpointError, match="different run.*lr_g"):
        train_gan(tiny_config(steps=4, lr_g=5e-4), tmp_path, resume=True, dataset=ring)
    assert (tmp_path / "config.json").read_bytes() == before


def test_resume_drops_a_torn_last_metrics_line(tmp_path, ring, monkeypatch):
    config = tiny_config(steps=8, log_every=2, ckpt_every=4)
    straight = train_gan(config, tmp_path / "straight", dataset=ring)

    def tear():
        with (tmp_path / "resumed" / "metrics.jsonl").open("a") as fh:
            fh.write('{"step": 6, "d_loss": 1.3')  # killed while writing

    resumed = interrupted_then_resumed(monkeypatch, gan_module, train_gan, config,
                                       tmp_path / "resumed", ring, at_step=4, before_stop=tear)
    assert all(torch.equal(a, b) for a, b in zip(straight.generator.state_dict().values(),
                                                 resumed.generator.state_dict().values(),
                                                 strict=True))
    assert records_without(tmp_path / "resumed", "time") == records_without(
        tmp_path / "straight", "time")


def test_read_metrics_refuses_a_damaged_line_before_the_last(tmp_path):
    from spectral_backprop.runfiles import RunFileError

    (tmp_path / "metrics.jsonl").write_text('{"step": 1}\n{"step": 2, "d_l\n{"step": 3}\n')
    with pytest.raises(RunFileError, match="line 2"):
        read_metrics(tmp_path)
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "x": null}\n{"step": 2, "x": 1')
    records = read_metrics(tmp_path)
    assert len(records) == 1 and math.isnan(records[0]["x"])


HOLD_LOCK = """
import sys, time
from spectral_backprop.runfiles import run_lock
with run_lock(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(120)
"""


def test_a_second_writer_is_refused_and_a_dead_ones_lock_taken_over(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(out)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = holder.stdout.readline().strip()
        assert line == "locked", holder.stderr.read()  # the holder died: say why
        code = main(["train", *TINY_GAN, "--steps", "2", "--out", str(out)])
        message = one_line_error(code, capsys.readouterr().err, "train")
        assert f"pid {holder.pid}" in message and "in use" in message
        assert not (out / "config.json").exists()
    finally:
        holder.kill()  # SIGKILL: the lock file stays behind, as after a crash
        holder.wait()
        holder.stdout.close()
        holder.stderr.close()
    assert (out / "run.lock").exists()
    assert main(["train", *TINY_GAN, "--steps", "2", "--out", str(out)]) == 0
    assert not (out / "run.lock").exists()


def test_a_lock_of_another_host_is_refused(tmp_path, ring):
    from spectral_backprop.runfiles import RunLockedError

    tmp_path.joinpath("run.lock").write_text(json.dumps({"pid": 1, "host": "elsewhere"}))
    assert socket.gethostname() != "elsewhere"
    with pytest.raises(RunLockedError, match="pid 1 on host elsewhere"):
        train_gan(tiny_config(steps=2), tmp_path, dataset=ring)


def test_a_dead_or_garbled_lock_is_taken_over(tmp_path, ring):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    pid = int(dead.stdout)
    tmp_path.joinpath("run.lock").write_text(json.dumps({"pid": pid,
                                                         "host": socket.gethostname()}))
    train_gan(tiny_config(steps=2), tmp_path, dataset=ring)
    tmp_path.joinpath("run.lock").write_text("")  # a writer died while creating it
    train_gan(tiny_config(steps=2), tmp_path, resume=True, dataset=ring)
    assert not tmp_path.joinpath("run.lock").exists()


def _strict(text: str):
    def refuse(token):
        raise ValueError(f"not JSON: {token}")

    return json.loads(text, parse_constant=refuse)


def test_json_files_are_strict_with_null_for_non_finite_numbers(tmp_path):
    from spectral_backprop.train.run import MetricsLog

    value = {"nan": math.nan, "inf": [math.inf, -math.inf], "np": np.float32("nan"),
             "torch": torch.tensor(float("inf")), "ok": 1.5}
    parsed = _strict(write_json(tmp_path / "results.json", value).read_text())
    assert parsed == {"nan": None, "inf": [None, None], "np": None, "torch": None, "ok": 1.5}
    log = MetricsLog(tmp_path / "metrics.jsonl")
    log.write({"step": 1, "entropy": -math.inf, "d_loss": 0.5})
    assert _strict((tmp_path / "metrics.jsonl").read_text()) == {
        "step": 1, "entropy": None, "d_loss": 0.5}


def test_every_writer_of_a_run_writes_strict_json(tmp_path, ring, monkeypatch):
    from spectral_backprop.train import ReverseKLConfig, train_reverse_kl
    from spectral_backprop.train import reverse_kl as rkl

    monkeypatch.setattr(rkl, "evaluate_reverse_kl", lambda *a, **k: {
        "reverse_kl": math.nan, "reverse_kl_se": math.inf, "ess": 0.5, "log_z": 1.0})
    monkeypatch.setattr(rkl, "save_density_plot", lambda *a, **k: None)
    config = ReverseKLConfig(num_layers=2, hidden=8, steps=2, log_every=1, ckpt_every=2,
                             progress=False)
    train_reverse_kl(config, tmp_path / "rkl")
    assert _strict((tmp_path / "rkl" / "eval.json").read_text())["reverse_kl"] is None
    train_gan(tiny_config(steps=2), tmp_path / "gan", dataset=ring)
    for path in (tmp_path / "rkl" / "config.json", tmp_path / "gan" / "config.json"):
        _strict(path.read_text())
    for path in (tmp_path / "rkl" / "metrics.jsonl", tmp_path / "gan" / "metrics.jsonl"):
        [_strict(line) for line in path.read_text().splitlines()]


def test_no_module_writes_json_but_through_the_strict_writer():
    import spectral_backprop

    package = Path(spectral_backprop.__file__).parent
    offenders = []
    for path in package.rglob("*.py"):
        if path.name == "runfiles.py":
            continue
        text = path.read_text()
        for pattern in (r"json\.dump\(", r"write_text\(\s*json\.dumps", r"write\(\s*json\.dumps"):
            offenders += [f"{path.relative_to(package)}: {pattern}"
                          for _ in re.finditer(pattern, text)]
    assert not offenders, offenders


def test_null_in_saved_results_reads_as_nan():
    from spectral_backprop.studies.demo import _float_keys

    assert _float_keys({"a": None, "b": 1.0, "c": "x", "d": {}}).keys() == {"a", "b"}
    assert math.isnan(_float_keys({"a": None})["a"])


def test_modes_reads_a_finished_run_with_null_and_refuses_a_damaged_one(tmp_path, capsys):
    tiny = ["modes", "--dataset", "grid", "--seeds", "1", "--steps", "2", "--width", "8",
            "--depth", "1", "--batch-size", "32", "--entropy-batch", "4", "--log-every", "2",
            "--ckpt-every", "2", "--no-progress", "--out", str(tmp_path)]
    assert main(tiny) == 0
    capsys.readouterr()
    path = tmp_path / "gan" / "seed0" / "eval.json"
    figures = json.loads(path.read_text())
    path.write_text(json.dumps({**figures, "reverse_kl": None}))
    assert main([*tiny, "--resume"]) == 0
    capsys.readouterr()
    (tmp_path / "gan" / "seed0" / "config.json").write_text("{not json")
    message = one_line_error(main([*tiny, "--resume"]), capsys.readouterr().err, "modes")
    assert "cannot be read" in message
    os.remove(tmp_path / "gan" / "seed0" / "config.json")
    message = one_line_error(main([*tiny, "--resume"]), capsys.readouterr().err, "modes")
    assert "cannot be read" in message


def test_gzip_and_zlib_errors_are_value_errors(tmp_path):
    from spectral_backprop.data import read_idx

    (tmp_path / "x.gz").write_bytes(b"\x1f\x8b" + zlib.compress(b"junk")[:5])
    with pytest.raises(ValueError, match="cannot read"):
        read_idx(tmp_path / "x.gz")
