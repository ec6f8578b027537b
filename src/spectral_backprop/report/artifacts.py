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

**A folder is untrusted input.** A report is meant to be shared, so nothing outside the
run folder gets into it: an ``analysis_dir`` or ``train_dir`` that resolves outside the
folder (absolute, through ``..`` or a symbolic link) is refused with
:class:`ReportError`, and a figure file that does (or that is not a PNG image) is left
out of the page with a note. ``arrays.npz`` is read without pickles, and only numeric
arrays are kept. Values are shown as text and escaped by :mod:`.html`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..runfiles import ARRAYS, METRICS, RESULTS, RunFileError, read_json, read_metrics

__all__ = ["Artifacts", "ReportError", "Variant", "class_coverage_of", "inside", "load_artifacts"]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class ReportError(Exception):
    """A run folder that cannot be reported on; the message says which file and why."""


def class_coverage_of(info: Mapping | None) -> Mapping:
    """A demo entry's ``class_coverage`` (empty when missing or not a mapping: the report
    shows what a folder has and never fails on a hand-edited file)."""
    coverage = (info or {}).get("class_coverage")
    return coverage if isinstance(coverage, Mapping) else {}


@dataclass
class Variant:
    """One trained generator's artifacts.

    Attributes:
        name: short key (``gan``, ``entropy``, ...).
        label: human-readable name for headings and legends.
        analysis_dir: folder holding the analysis ``results.json``, ``arrays.npz``, PNGs.
        analysis: the analysis ``results.json``.
        arrays: the numeric arrays of ``arrays.npz``.
        metrics: training metrics (one dict per logged step; empty when not saved).
        info: the demo's entry for this variant (empty for an analysis folder).
        figures: the PNG files of the listed figures, by name, each checked to lie
            inside the run folder.
        samples: the demo's sample grid (checked likewise), if any.
    """

    name: str
    label: str
    analysis_dir: Path
    analysis: dict[str, Any]
    arrays: dict[str, np.ndarray]
    metrics: list[dict[str, Any]] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    figures: dict[str, Path] = field(default_factory=dict)
    samples: Path | None = None

    def figure(self, name: str) -> Path | None:
        """Path of a figure the analysis saved, or ``None`` when it did not save it."""
        return self.figures.get(name)


@dataclass
class Artifacts:
    """Everything the report shows. ``kind`` is ``"demo"`` or ``"analysis"``; ``notes``
    say what was left out of the page and why."""

    root: Path
    kind: str
    results: dict[str, Any]
    variants: list[Variant]
    notes: list[str] = field(default_factory=list)


def inside(root: Path, path: str | Path) -> Path | None:
    """``root / path`` resolved (symbolic links followed), or ``None`` when it lies
    outside ``root`` (an absolute path, ``..``, or a link that leads out)."""
    base = root.resolve()
    try:
        resolved = (base / path).resolve()
    except (OSError, RuntimeError, ValueError):  # a link loop, a NUL byte
        return None
    return resolved if resolved.is_relative_to(base) else None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = read_json(path)
    except FileNotFoundError:
        raise ReportError(f"missing {path}: is this the output folder of "
                          "'spectral-backprop demo' or 'analyze'?") from None
    except RunFileError as err:
        raise ReportError(f"{path} is not valid JSON ({err.__cause__ or err})") from err
    if not isinstance(data, dict):
        raise ReportError(f"{path} should hold a JSON object, found {type(data).__name__}")
    return data


def _read_arrays(path: Path, notes: list[str]) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise ReportError(f"missing {path} (the analysis arrays)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, EOFError) as err:
        raise ReportError(f"cannot read {path}: {err}") from err
    odd = sorted(k for k, a in arrays.items() if a.dtype.kind not in "biuf")
    if odd:
        notes.append(f"{path}: left out arrays that are not numeric: {', '.join(odd)}")
    return {k: a for k, a in arrays.items() if k not in odd}


def _read_metrics(path: Path) -> list[dict[str, Any]]:
    """Training metrics; a missing log is allowed (analysis of a foreign generator)."""
    if not path.is_file():
        return []
    try:
        return read_metrics(path)
    except (OSError, ValueError) as err:
        raise ReportError(f"{path} is not valid JSON lines ({err})") from err


def _png(root: Path, path: str | Path, what: str, notes: list[str]) -> Path | None:
    """A PNG file inside ``root``, or ``None`` with a note saying why it is left out."""
    found = inside(root, path) if isinstance(path, str | Path) else None
    if found is None:
        notes.append(f"{what} {str(path)!r} left out: it lies outside the run folder")
        return None
    try:
        with found.open("rb") as fh:
            head = fh.read(len(PNG_SIGNATURE))
    except OSError:
        notes.append(f"{what} {str(path)!r} left out: no such file")
        return None
    if head != PNG_SIGNATURE:
        notes.append(f"{what} {str(path)!r} left out: not a PNG image")
        return None
    return found


def _folder(root: Path, info: dict[str, Any], key: str, default: str, name: str) -> Path:
    """A variant's folder named by ``info[key]``, which must lie inside ``root``."""
    rel = info.get(key, default)
    found = inside(root, rel) if isinstance(rel, str) else None
    if found is None:
        raise ReportError(f"variant {name!r}: {key} {rel!r} is not a folder inside "
                          f"{root}; refusing to read files from elsewhere")
    return found


def _figures(root: Path, analysis_dir: Path, analysis: dict[str, Any], notes: list[str]
             ) -> dict[str, Path]:
    """The listed figures that are PNG files inside ``root``, by name."""
    listed = analysis.get("figures", [])
    if not isinstance(listed, list) or not all(isinstance(f, str) for f in listed):
        raise ReportError(f"{analysis_dir / RESULTS}: 'figures' should be a list of "
                          "file names")
    missing = [f for f in listed if (found := inside(root, analysis_dir / f)) is not None
               and not found.is_file()]
    if missing:
        raise ReportError(f"{analysis_dir} lacks figure(s) listed in its {RESULTS}: "
                          f"{', '.join(missing)}")
    figures = {f: _png(root, analysis_dir / f, "figure", notes) for f in listed}
    return {f: path for f, path in figures.items() if path is not None}


def _load_variant(root: Path, name: str, info: Any, notes: list[str]) -> Variant:
    if not isinstance(info, dict):
        raise ReportError(f"{root / RESULTS}: variant {name!r} should be an object")
    analysis_dir = _folder(root, info, "analysis_dir", name, name)
    analysis = _read_json(analysis_dir / RESULTS)
    figures = _figures(root, analysis_dir, analysis, notes)
    metrics = []
    if "train_dir" in info:
        metrics = _read_metrics(_folder(root, info, "train_dir", "", name) / METRICS)
    samples = None
    if info.get("samples_figure") is not None:
        samples = _png(root, info["samples_figure"], f"{name}: samples figure", notes)
    return Variant(name, str(info.get("label", name)), analysis_dir, analysis,
                   _read_arrays(analysis_dir / ARRAYS, notes), metrics, info, figures,
                   samples)


def load_artifacts(run_dir: str | Path) -> Artifacts:
    """Load a demo or analysis folder.

    Raises:
        ReportError: the folder, its ``results.json``, an ``arrays.npz`` or a listed
            figure is missing or unreadable, or a variant's folder lies outside it.
    """
    root = Path(run_dir)
    if not root.is_dir():
        raise ReportError(f"no such folder: {root}")
    results = _read_json(root / RESULTS)
    notes: list[str] = []
    if isinstance(results.get("variants"), dict) and results["variants"]:
        variants = [_load_variant(root, str(name), info, notes)
                    for name, info in results["variants"].items()]
        return Artifacts(root, "demo", results, variants, notes)
    if "figures" in results:
        variant = _load_variant(root, "generator", {"analysis_dir": "."}, notes)
        return Artifacts(root, "analysis", results, [variant], notes)
    raise ReportError(f"{root / RESULTS} has neither 'variants' (a demo folder) nor "
                      "'figures' (an analysis folder)")
