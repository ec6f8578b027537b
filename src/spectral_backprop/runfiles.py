"""The run-folder contract: the names of the files that runs write and reports read.

Every writer (training, analysis, studies) and every reader (the report, ``--resume``)
takes these names from here, so that a file is spelled once. A training run folder::

    config.json      the run's settings, written at every (re)start
    metrics.jsonl    one JSON object per logged step
    checkpoint.pt    the latest checkpoint (atomic)
    eval.json        final figures of a finished run (mode coverage, reverse KL)
    samples.png      samples of the trained generator
    density.png      target density beside the generator's (reverse KL)

An analysis or study folder::

    results.json     every number
    arrays.npz       per-point arrays behind the figures
    report.html      the self-contained report
    purity.json      one generator's factor-purity scores (factor study)
    log.txt          a worker process's output (parallel studies)
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = [
    "ARRAYS",
    "CHECKPOINT",
    "CONFIG",
    "DENSITY",
    "EVAL",
    "LOG",
    "METRICS",
    "PURITY",
    "REPORT",
    "RESULTS",
    "SAMPLES",
    "read_metrics",
    "write_json",
]

CONFIG = "config.json"
METRICS = "metrics.jsonl"
CHECKPOINT = "checkpoint.pt"
EVAL = "eval.json"
SAMPLES = "samples.png"
DENSITY = "density.png"
PURITY = "purity.json"
RESULTS = "results.json"
ARRAYS = "arrays.npz"
REPORT = "report.html"
LOG = "log.txt"


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """All records of a ``metrics.jsonl`` file (a folder is taken to mean its log).

    Raises:
        OSError: the file cannot be read.
        json.JSONDecodeError: a line is not JSON.
    """
    path = Path(path)
    if path.is_dir():
        path = path / METRICS
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_json(path: str | Path, value: Any) -> Path:
    """Write ``value`` as indented JSON atomically (temporary file, then ``os.replace``).

    A reader never sees half a file, and NaN is written as ``NaN`` (Python's JSON).
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(value, indent=2, allow_nan=True) + "\n")
    os.replace(tmp, path)
    return path
