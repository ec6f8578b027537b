"""Reading a run folder's saved artifacts: the only input of the report.

Two layouts are understood:

* a **demo** folder (written by :func:`spectral_backprop.studies.demo.run_demo`): a top-level
  ``results.json`` whose ``variants`` maps each variant name to its entry, with an
  ``analysis_dir`` and a ``train_dir`` relative to the folder;
* an **analysis** folder (written by :func:`spectral_backprop.analysis.analyze_generator`):
  ``results.json`` with a ``figures`` list and ``arrays.npz`` beside it, shown as one
  variant.

Everything is read with ``json`` and ``numpy``: no model, no torch, so a report can be
re-rendered anywhere the folder is copied to.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..runfiles import ARRAYS, METRICS, RESULTS, read_metrics

__all__ = ["Artifacts", "ReportError", "Variant", "load_artifacts"]


class ReportError(Exception):
    """A run folder that cannot be reported on; the message says which file and why."""


@dataclass
class Variant:
    """One trained generator's artifacts.

    Attributes:
        name: short key (``gan``, ``entropy``, ...).
        label: human-readable name for headings and legends.
        analysis_dir: folder holding the analysis ``results.json``, ``arrays.npz``, PNGs.
        analysis: the analysis ``results.json``.
        arrays: the arrays of ``arrays.npz``.
        metrics: training metrics (one dict per logged step; empty when not saved).
        info: the demo's entry for this variant (empty for an analysis folder).
    """

    name: str
    label: str
    analysis_dir: Path
    analysis: dict[str, Any]
    arrays: dict[str, np.ndarray]
    metrics: list[dict[str, Any]] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    def figure(self, name: str) -> Path | None:
        """Path of a figure the analysis saved, or ``None`` when it did not save it."""
        return self.analysis_dir / name if name in self.analysis.get("figures", []) else None


@dataclass
class Artifacts:
    """Everything the report shows. ``kind`` is ``"demo"`` or ``"analysis"``."""

    root: Path
    kind: str
    results: dict[str, Any]
    variants: list[Variant]


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ReportError(f"missing {path}: is this the output folder of "
                          "'spectral-backprop demo' or 'analyze'?")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ReportError(f"{path} is not valid JSON ({err})") from err
    if not isinstance(data, dict):
        raise ReportError(f"{path} should hold a JSON object, found {type(data).__name__}")
    return data


def _read_arrays(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise ReportError(f"missing {path} (the analysis arrays)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except (OSError, ValueError) as err:
        raise ReportError(f"cannot read {path}: {err}") from err


def _read_metrics(path: Path) -> list[dict[str, Any]]:
    """Training metrics; a missing log is allowed (analysis of a foreign generator)."""
    if not path.is_file():
        return []
    try:
        return read_metrics(path)
    except json.JSONDecodeError as err:
        raise ReportError(f"{path} is not valid JSON lines ({err})") from err


def _load_variant(root: Path, name: str, info: dict[str, Any]) -> Variant:
    analysis_dir = root / info.get("analysis_dir", name)
    analysis = _read_json(analysis_dir / RESULTS)
    missing = [f for f in analysis.get("figures", []) if not (analysis_dir / f).is_file()]
    if missing:
        raise ReportError(f"{analysis_dir} lacks figure(s) listed in its {RESULTS}: "
                          f"{', '.join(missing)}")
    metrics = _read_metrics(root / info["train_dir"] / METRICS) if "train_dir" in info else []
    return Variant(name, info.get("label", name), analysis_dir, analysis,
                   _read_arrays(analysis_dir / ARRAYS), metrics, info)


def load_artifacts(run_dir: str | Path) -> Artifacts:
    """Load a demo or analysis folder.

    Raises:
        ReportError: the folder, its ``results.json``, an ``arrays.npz`` or a listed
            figure is missing or unreadable.
    """
    root = Path(run_dir)
    if not root.is_dir():
        raise ReportError(f"no such folder: {root}")
    results = _read_json(root / RESULTS)
    if isinstance(results.get("variants"), dict) and results["variants"]:
        variants = [_load_variant(root, name, info)
                    for name, info in results["variants"].items()]
        return Artifacts(root, "demo", results, variants)
    if "figures" in results:
        return Artifacts(root, "analysis", results,
                         [_load_variant(root, "generator", {"analysis_dir": "."})])
    raise ReportError(f"{root / RESULTS} has neither 'variants' (a demo folder) nor "
                      "'figures' (an analysis folder)")
