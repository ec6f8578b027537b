"""The summary table: one row per measured quantity, one column per variant.

Defined once here and used twice: the demo stores the rows in ``results.json`` for
machines, the report renders them for people.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from .artifacts import class_coverage_of

__all__ = ["SUMMARY_ROWS", "flat_metrics", "format_value", "summary_rows"]

# (key in a variant's flat metrics, label, unit). Keys absent from every variant are
# left out, so the same table serves a demo and a bare analysis.
SUMMARY_ROWS: tuple[tuple[str, str, str], ...] = (
    ("fd", "feature Fréchet distance of samples to held-out digits (lower is better)", "FD"),
    ("classifier_confidence_ratio", "classifier confidence on samples ÷ on held-out digits",
     "ratio"),
    ("classes_covered", "digit classes with ≥ 5% of samples", "of 10"),
    ("class_entropy", "entropy of predicted digit classes (max ln 10 = 2.303)", "nats"),
    ("test_nll", "test NLL of held-out digits on the learned manifold", "nats"),
    ("reconstruction_rms_median", "reconstruction error of held-out digits (median)",
     "RMS/pixel"),
    ("real_on_manifold_fraction", "held-out digits on the manifold (calibrated tolerance)",
     "fraction"),
    ("loglik_typical", "log-likelihood, typical samples (= −entropy of p_G)", "nats"),
    ("loglik_search", "log-likelihood, high-likelihood search outputs", "nats"),
    ("loglik_real", "log-likelihood, real digits (inverted; held out in the demo)", "nats"),
    ("loglik_gap_search_typical", "likelihood gap, search − typical", "nats"),
    ("bits_per_dim_typical", "negative log-likelihood, typical samples", "bits/dim"),
    ("classifier_confidence_typical", "classifier confidence, typical samples", "prob."),
    ("classifier_confidence_search", "classifier confidence, search outputs", "prob."),
    ("classifier_confidence_real", "classifier confidence, real digits", "prob."),
    ("nearest_distance_typical", "distance to nearest training digit, typical", "RMS/pixel"),
    ("nearest_distance_search", "distance to nearest training digit, search", "RMS/pixel"),
    ("train_seconds", "training time", "s"),
)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def flat_metrics(analysis: Mapping[str, Any], info: Mapping[str, Any] | None = None
                 ) -> dict[str, float]:
    """Numbers of one variant under the keys of :data:`SUMMARY_ROWS`.

    Only numbers are taken: a value of another type (a string, ``null``) counts as
    missing.

    Args:
        analysis: an analysis ``results.json`` (top-level means plus ``details``).
        info: the demo's entry for the variant (class coverage, timings), if any.
    """
    out = {k: v for k, v in analysis.items() if _number(v)}
    details = analysis.get("details", {})
    details = details if isinstance(details, Mapping) else {}
    typical = details.get("typical")
    if isinstance(typical, Mapping):
        value = typical.get("bits_per_dim", math.nan)
        out["bits_per_dim_typical"] = value if _number(value) else math.nan
    coverage = class_coverage_of(info)
    for key in ("class_entropy", "classes_covered"):
        if _number(coverage.get(key)):
            out[key] = coverage[key]
    for key in ("fd", "classifier_confidence_ratio", "test_nll", "reconstruction_rms_median",
                "train_seconds"):
        if info and _number(info.get(key)):
            out[key] = info[key]
    return out


def summary_rows(metrics: Mapping[str, Mapping[str, float]]) -> list[dict[str, Any]]:
    """Rows ``{"key", "metric", "unit", <variant>: value, ...}`` for ``{variant: metrics}``."""
    rows = []
    for key, label, unit in SUMMARY_ROWS:
        if not any(key in m for m in metrics.values()):
            continue
        row: dict[str, Any] = {"key": key, "metric": label, "unit": unit}
        row.update({name: m.get(key) for name, m in metrics.items()})
        rows.append(row)
    return rows


def format_value(value: Any) -> str:
    """Three significant figures for floats, '—' for missing or non-finite values.

    Returns plain text, never markup: anything that is not a number (a value read from a
    file may be of any type) is shown as its text, cut to 60 characters, and a page must
    escape it like any other text.
    """
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.1f}" if abs(value) >= 100 else f"{value:.3g}"
    text = str(value)
    return text if len(text) <= 60 else text[:59] + "…"
