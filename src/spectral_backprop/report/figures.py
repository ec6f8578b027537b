"""Plots the report draws itself from saved arrays (the analysis saves the image grids).

Each function takes :class:`~.artifacts.Variant` objects and returns PNG bytes, ready to
embed, or ``None`` when no variant holds the data. Matplotlib runs with the
non-interactive ``Agg`` backend: reports are rendered on machines without a display.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..pictures import png_bytes, pyplot
from .artifacts import Variant, class_coverage_of

__all__ = ["class_coverage", "loglik_histograms", "spectra_overlay", "training_curves"]

COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:purple", "tab:brown")


def _finite(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=float).ravel()
    return x[np.isfinite(x)]


def _text(label: str) -> str:
    """A label as literal text for matplotlib (a ``$`` would start mathtext)."""
    return label.replace("$", r"\$")


def _number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _counts(value) -> np.ndarray | None:
    """A list of non-negative numbers with a positive sum as an array, else ``None``."""
    if not isinstance(value, list) or not value or not all(_number(c) for c in value):
        return None
    counts = np.asarray(value, dtype=float)
    ok = np.isfinite(counts).all() and (counts >= 0).all() and counts.sum() > 0
    return counts if ok else None


def loglik_histograms(variants: Sequence[Variant]) -> bytes | None:
    """Histograms of ``log p_G`` for typical samples, search outputs and real data.

    One panel per variant on a shared x axis, so that the gap between typical samples and
    search outputs, and the place of real digits, can be compared across variants.
    """
    sets = (("loglik_typical", "typical samples", "tab:blue"),
            ("loglik_search", "search outputs", "tab:red"),
            ("loglik_real", "real digits (inverted)", "tab:green"))
    have = [v for v in variants if any(k in v.arrays for k, _, _ in sets)]
    if not have:
        return None
    values = [_finite(v.arrays[k]) for v in have for k, _, _ in sets if k in v.arrays]
    allv = np.concatenate([x for x in values if x.size] or [np.zeros(1)])
    lo, hi = np.percentile(allv, [0.5, 99.5]) if allv.size > 1 else (allv[0] - 1, allv[0] + 1)
    bins = np.linspace(lo - 0.02 * (hi - lo + 1), hi + 0.02 * (hi - lo + 1), 40)
    plt = pyplot()
    fig, axes = plt.subplots(1, len(have), figsize=(4.6 * len(have), 3.0), squeeze=False,
                             sharex=True)
    for ax, v in zip(axes[0], have, strict=True):
        for key, name, color in sets:
            x = _finite(v.arrays[key]) if key in v.arrays else np.zeros(0)
            if x.size:
                ax.hist(np.clip(x, bins[0], bins[-1]), bins=bins, density=True, alpha=0.45,
                        color=color, label=f"{name} (n={x.size})")
                ax.axvline(x.mean(), color=color, lw=1.5)
        ax.set_title(_text(v.label), fontsize=9)
        ax.set_xlabel("log p_G(x)  (nats; vertical lines: means)")
        ax.legend(fontsize=7, loc="upper right")
    axes[0][0].set_ylabel("density")
    return png_bytes(fig)


def spectra_overlay(variants: Sequence[Variant]) -> bytes | None:
    """Median eigenvalues of ``JᵀJ`` at typical latents (solid, with the interquartile
    band) and the spectrum of the global metric ``E_z[JᵀJ]`` (dashed), per variant."""
    have = [v for v in variants if "spectra" in v.arrays and v.arrays["spectra"].ndim == 2
            and v.arrays["spectra"].size]
    if not have:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 3.4))
    for v, color in zip(have, COLORS, strict=False):
        lam = np.sort(np.asarray(v.arrays["spectra"], dtype=float), axis=-1)[:, ::-1]
        lam = np.clip(lam, 1e-30, None)
        ranks = np.arange(1, lam.shape[1] + 1)
        q1, med, q3 = np.percentile(lam, [25, 50, 75], axis=0)
        ax.fill_between(ranks, q1, q3, color=color, alpha=0.2)
        ax.semilogy(ranks, med, color=color, lw=1.8, label=f"{_text(v.label)}: local (median)")
        if "global_spectrum" in v.arrays:
            g = np.clip(np.asarray(v.arrays["global_spectrum"], dtype=float), 1e-30, None)
            ax.semilogy(np.arange(1, g.size + 1), np.sort(g)[::-1], color=color, ls="--",
                        marker="o", ms=3, label=f"{_text(v.label)}: global E[JᵀJ]")
    ax.set_xlabel("rank i")
    ax.set_ylabel("λ_i")
    ax.set_title("spectra of JᵀJ", fontsize=9)
    ax.legend(fontsize=7, loc="upper right")
    return png_bytes(fig)


def training_curves(variants: Sequence[Variant]) -> bytes | None:
    """Training figures against step: the GANs' losses and entropy estimate, the
    maximum-likelihood model's NLL and reconstruction distance."""
    have = [v for v in variants if v.metrics]
    if not have:
        return None
    panels = [("d_loss", "discriminator loss"), ("g_loss", "generator loss (adversarial)"),
              ("entropy", "entropy estimate H[p_G] (nats)"),
              ("nll", "implicit NLL of training digits (nats)"),
              ("distance", "reconstruction distance ‖x − G(E(x))‖")]
    panels = [p for p in panels if any(p[0] in m for v in have for m in v.metrics)]
    plt = pyplot()
    cols = min(3, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.0 * cols, 2.8 * rows), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    for ax, (key, title) in zip(axes.flat, panels, strict=False):
        for v, color in zip(have, COLORS, strict=False):
            pts = [(m["step"], m[key]) for m in v.metrics
                   if _number(m.get("step")) and _number(m.get(key))]
            if pts:
                s, y = zip(*pts, strict=True)
                ax.plot(s, y, color=color, lw=1.2, label=_text(v.label))
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("step")
        ax.legend(fontsize=7, loc="upper right")
    return png_bytes(fig)


def class_coverage(variants: Sequence[Variant], reference: Sequence[float] | None = None
                   ) -> bytes | None:
    """Share of generated samples a classifier assigns to each digit class, per variant.

    A collapsed generator piles its samples on few classes; ``reference`` (the real
    data's shares) is drawn as black ticks.
    """
    counts = {v.name: _counts(class_coverage_of(v.info).get("class_counts")) for v in variants}
    have = [v for v in variants if counts[v.name] is not None]
    n_cls = len(counts[have[0].name]) if have else 0
    have = [v for v in have if len(counts[v.name]) == n_cls]
    if not have:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.6, 2.9))
    width = 0.8 / len(have)
    for i, (v, color) in enumerate(zip(have, COLORS, strict=False)):
        c = counts[v.name]
        ax.bar(np.arange(n_cls) + (i - (len(have) - 1) / 2) * width, c / c.sum(),
               width=width, color=color, label=_text(v.label))
    reference = _counts(list(reference) if isinstance(reference, list | tuple) else None)
    if reference is not None and len(reference) == n_cls:
        ax.scatter(np.arange(n_cls), reference, marker="_", s=200, color="black",
                   label="real data", zorder=3)
    ax.set_xticks(np.arange(n_cls))
    ax.set_xlabel("predicted digit class")
    ax.set_ylabel("share of samples")
    ax.legend(fontsize=7, loc="upper right")
    return png_bytes(fig)
