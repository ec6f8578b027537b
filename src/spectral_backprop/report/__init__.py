"""The HTML report of a demo or analysis folder, rendered from saved artifacts only.

* :mod:`.artifacts`: reading ``results.json``, ``arrays.npz``, ``metrics.jsonl`` and PNGs;
* :mod:`.tables`: the summary table (also stored by the demo in ``results.json``);
* :mod:`.figures`: histograms, spectra, training curves and class shares from arrays;
* :mod:`.html`: the self-contained page.

Example:
    >>> from spectral_backprop.report import write_report
    >>> write_report("demo_out")  # doctest: +SKIP
    PosixPath('demo_out/report.html')
"""

from .artifacts import Artifacts, ReportError, Variant, load_artifacts
from .html import REPORT, render_html, write_report
from .tables import SUMMARY_ROWS, flat_metrics, format_value, summary_rows

__all__ = [
    "REPORT",
    "SUMMARY_ROWS",
    "Artifacts",
    "ReportError",
    "Variant",
    "flat_metrics",
    "format_value",
    "load_artifacts",
    "render_html",
    "summary_rows",
    "write_report",
]
