"""A run's folder: the resume decision, config, metrics as JSON lines, one writer at a time.

Layout of ``out_dir`` (names from :mod:`spectral_backprop.runfiles`)::

    config.json      the config, written at every (re)start once the resume check passed
    metrics.jsonl    one JSON object per logged step
    checkpoint.pt    the latest checkpoint (atomic, see :mod:`.checkpoint`)
    run.lock         held while a process trains into the folder

A run starts in two phases. :func:`check_run_dir` decides everything and writes
nothing: a checkpoint left by an earlier run is refused without ``resume``, read
safely and checked against the config with it, and the metrics log is read. Only then
does :func:`open_run_dir` create the folder, take its lock (a second writer is refused)
and write ``config.json``; so a refused run leaves the folder as it found it.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from spectral_backprop.runfiles import (
    CHECKPOINT,
    CONFIG,
    METRICS,
    RunFileError,
    json_line,
    read_metrics,
    run_lock,
)
from spectral_backprop.train.checkpoint import check_checkpoint
from spectral_backprop.train.config import _Config

__all__ = ["CHECKPOINT", "CONFIG", "METRICS", "MetricsLog", "TrainingError", "check_finite",
           "check_run_dir", "open_run_dir", "read_metrics"]


class TrainingError(RuntimeError):
    """Training cannot go on: a loss became NaN or infinite (the message says which, when)."""


def check_finite(values: dict[str, float], names: tuple[str, ...], step: int) -> None:
    """Stop a run whose loss ``names`` in ``values`` is not finite at ``step``.

    Raised before the step is logged or checkpointed, so the last checkpoint is the
    last finite state.
    """
    bad = {k: values[k] for k in names if k in values and not math.isfinite(values[k])}
    if bad:
        what = ", ".join(f"{k} = {v}" for k, v in bad.items())
        raise TrainingError(f"training diverged at step {step}: {what}. Nothing of this "
                            "step was saved; lower the learning rates, or check the data")


def _metrics_records(path: Path) -> list[dict[str, Any]]:
    """The records of a metrics log to resume, each with an integer ``step``."""
    try:
        records = read_metrics(path)
    except OSError as err:
        raise RunFileError(f"cannot read {path}: {err.strerror or err}") from err
    for number, record in enumerate(records, start=1):
        step = record.get("step")
        if not isinstance(step, int) or isinstance(step, bool):
            raise RunFileError(f"{path}: record {number} has no integer 'step'")
    return records


def check_run_dir(out_dir: str | Path, config: _Config, resume: bool) -> dict[str, Any] | None:
    """Decide how a run starts in ``out_dir``, writing nothing; returns the checkpoint
    payload to resume from (checked against ``config``), or ``None`` to start afresh.

    Refuses to start over a previous run's checkpoint unless ``resume`` is set, so that
    a finished run is never overwritten by accident.

    Raises:
        FileExistsError: a checkpoint is there and ``resume`` is not set.
        CheckpointError: the checkpoint is unreadable or from another run.
        RunFileError: ``out_dir`` is not a folder, or its metrics log is unreadable.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise RunFileError(f"output folder {out} is a file, not a folder")
    ckpt = out / CHECKPOINT
    if ckpt.exists() and not resume:
        raise FileExistsError(f"{out} already holds a run ({ckpt}); resume it with --resume "
                              "or choose another output folder")
    if not (resume and ckpt.exists()):
        return None
    payload = check_checkpoint(ckpt, config)
    if (out / METRICS).exists():
        _metrics_records(out / METRICS)
    return payload


@contextlib.contextmanager
def open_run_dir(out_dir: str | Path, config: _Config, write: bool = True) -> Iterator[Path]:
    """Create ``out_dir``, hold its lock and write ``config.json`` for the ``with`` block.

    Args:
        write: whether this process writes files (rank 0 of a data-parallel run); other
            processes only enter the block.

    Raises:
        RunFileError: the folder cannot be created or written.
        RunLockedError: another live process writes into the folder.
    """
    out = Path(out_dir)
    if not write:
        yield out
        return
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise RunFileError(f"cannot create output folder {out}: {err.strerror or err}"
                           ) from err
    with run_lock(out):
        try:
            config.save(out / CONFIG)
        except OSError as err:
            raise RunFileError(f"cannot write to output folder {out}: {err.strerror or err}"
                               ) from err
        yield out


class MetricsLog:
    """Append-only JSON-lines log, truncated on resume to the checkpoint's step.

    Records written after the last checkpoint are dropped when resuming, because the
    resumed run writes them again: the final file is the same as an uninterrupted
    run's, with nothing lost and nothing duplicated. A last line cut short by a killed
    run is dropped too. Records are strict JSON (a non-finite number is ``null``).
    """

    def __init__(self, path: str | Path, resume_step: int | None = None, enabled: bool = True):
        self.path = Path(path)
        self.enabled = enabled
        if not enabled:
            return
        if resume_step is None:
            self.path.write_text("")
        elif self.path.exists():
            keep = [r for r in _metrics_records(self.path) if r["step"] <= resume_step]
            write_lines(self.path, keep)

    def write(self, record: dict[str, Any]) -> None:
        if self.enabled:
            with self.path.open("a") as fh:
                fh.write(json_line(record))


def write_lines(path: Path, records: list[dict[str, Any]]) -> None:
    """Replace a JSON-lines file atomically with ``records``."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text("".join(json_line(r) for r in records))
    os.replace(tmp, path)
