"""A run's folder: config, metrics as JSON lines, checkpoint, and the resume decision.

Layout of ``out_dir`` (names from :mod:`spectral_backprop.runfiles`)::

    config.json      the config, written at the start of every (re)start
    metrics.jsonl    one JSON object per logged step
    checkpoint.pt    the latest checkpoint (atomic, see :mod:`.checkpoint`)
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from spectral_backprop.runfiles import CHECKPOINT, CONFIG, METRICS, read_metrics
from spectral_backprop.train.config import _Config

__all__ = ["CHECKPOINT", "CONFIG", "METRICS", "MetricsLog", "prepare_run_dir", "read_metrics"]


def prepare_run_dir(out_dir: str | Path, config: _Config, resume: bool,
                    write: bool = True) -> Path | None:
    """Create ``out_dir`` and return the checkpoint to resume from, if any.

    Refuses to start over a previous run's checkpoint unless ``resume`` is set, so that
    a finished run is never overwritten by accident.

    Args:
        write: whether this process writes files (rank 0 of a data-parallel run).
    """
    out = Path(out_dir)
    ckpt = out / CHECKPOINT
    if ckpt.exists() and not resume:
        raise FileExistsError(f"{out} already holds a run ({ckpt}); resume it with --resume "
                              "or choose another output folder")
    if write:
        out.mkdir(parents=True, exist_ok=True)
        config.save(out / CONFIG)
    return ckpt if (resume and ckpt.exists()) else None


class MetricsLog:
    """Append-only JSON-lines log, truncated on resume to the checkpoint's step.

    Records written after the last checkpoint are dropped when resuming, because the
    resumed run writes them again: the final file is the same as an uninterrupted
    run's, with nothing lost and nothing duplicated.
    """

    def __init__(self, path: str | Path, resume_step: int | None = None, enabled: bool = True):
        self.path = Path(path)
        self.enabled = enabled
        if not enabled:
            return
        if resume_step is None:
            self.path.write_text("")
        elif self.path.exists():
            keep = [line for line in self.path.read_text().splitlines()
                    if line.strip() and json.loads(line)["step"] <= resume_step]
            tmp = self.path.with_name(f".{self.path.name}.tmp")
            tmp.write_text("".join(line + "\n" for line in keep))
            os.replace(tmp, self.path)

    def write(self, record: dict[str, Any]) -> None:
        if self.enabled:
            with self.path.open("a") as fh:
                fh.write(json.dumps(record) + "\n")

