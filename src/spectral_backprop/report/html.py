"""The HTML page: one self-contained file, every image embedded as a base64 data URI.

Nothing is fetched when the page is opened (no scripts, fonts or style sheets from
elsewhere), so it reads the same from a laptop's file browser, an e-mail attachment or
a CI artifact store.

Every value read from the folder (labels, numbers, anything a tampered
``results.json`` holds in their place, the settings, the folder's name) is written
through ``html.escape``: the only markup on the page is this module's own. Images are
embedded only from PNG files inside the run folder (:mod:`.artifacts`).
"""

from __future__ import annotations

import base64
import html
import json
import os
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path

from ..runfiles import REPORT
from . import figures
from .artifacts import Artifacts, Variant, load_artifacts
from .tables import flat_metrics, format_value, summary_rows

__all__ = ["REPORT", "render_html", "write_report"]


CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0 auto;
max-width:1320px;padding:0 24px 48px;color:#1d1d1f;line-height:1.45}
h1{margin:28px 0 4px}h2{margin-top:36px;border-bottom:1px solid #ddd;padding-bottom:4px}
p.lead{color:#444;max-width:900px}nav a{margin-right:14px}
.cols{display:grid;grid-template-columns:repeat(var(--n),minmax(0,1fr));gap:20px}
figure{margin:10px 0}figure img{max-width:100%;height:auto;image-rendering:pixelated;
border:1px solid #eee}figcaption{font-size:13px;color:#555}
table{border-collapse:collapse;font-size:14px;margin:8px 0}
th,td{padding:4px 10px;border-bottom:1px solid #e5e5e5;text-align:right}
th:first-child,td:first-child{text-align:left}thead th{background:#f6f6f6}
.note{font-size:13px;color:#555;max-width:900px}
pre{background:#f6f6f6;padding:10px;font-size:12px;overflow:auto;max-height:360px}
h3{font-size:16px;margin:12px 0 4px}
.wide img{width:100%}.wide{max-width:760px}
.finding{border-left:4px solid #4a7bd0;padding:2px 12px;margin:12px 0;max-width:1000px}
.finding .verdict{font-weight:600}.finding .paper{color:#555;font-style:italic;font-size:14px}
.finding ul{margin:4px 0 4px 18px;padding:0;font-size:14px}
"""

INTRO = (
    "The implicit likelihood of a generator, log p<sub>G</sub>(G(z)) = log p<sub>Z</sub>(z) "
    "− ½ log det J<sup>T</sup>J, made differentiable by spectral backpropagation "
    "(Ramesh &amp; LeCun 2018, arXiv 1806.00499). The paper reports that gradient ascent "
    "on it in latent space reaches outputs of very high likelihood that look like no "
    "digit, and that the top eigenvectors of J<sup>T</sup>J act as interpretable factors. "
    "What this run measured is below, each finding with its numbers and a verdict."
)


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _figure(png: bytes | None, caption: str, alt: str | None = None) -> str:
    if png is None:
        return ""
    alt_text = html.escape(alt or caption)
    return (f'<figure><img src="{_data_uri(png)}" alt="{alt_text}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def _file_figure(path: Path | None, caption: str) -> str:
    return _figure(path.read_bytes(), caption) if path is not None else ""


def _columns(cells: Iterable[str]) -> str:
    cells = [c for c in cells if c]
    if not cells:
        return ""
    return f'<div class="cols" style="--n:{len(cells)}">{"".join(cells)}</div>'


def _per_variant(variants: list[Variant], figure: str, caption: str) -> str:
    """One column per variant holding the analysis PNG ``figure``."""
    return _columns(
        f"<div><h3>{html.escape(v.label)}</h3>{_file_figure(v.figure(figure), caption)}</div>"
        for v in variants if v.figure(figure) is not None)


def _table(header: list[str], rows: list[list[str]]) -> str:
    """A table of plain-text cells (each escaped here)."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>"
                   for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _findings(art: Artifacts) -> str:
    """The run's findings (``results.json``'s ``findings``), each with its verdict."""
    found = art.results.get("findings")
    if not isinstance(found, list):
        return ""
    blocks = []
    for f in found:
        if not isinstance(f, dict):
            continue
        measured = f.get("measured") if isinstance(f.get("measured"), list) else []
        blocks.append(
            f"<div class='finding' data-key='{html.escape(str(f.get('key', '')))}'>"
            f"<h3>{html.escape(str(f.get('title', '')))}</h3>"
            f"<p class='verdict'>This run: {html.escape(str(f.get('verdict', '')))}</p><ul>"
            + "".join(f"<li>{html.escape(str(m))}</li>" for m in measured)
            + f"</ul><p class='paper'>Paper: {html.escape(str(f.get('paper', '')))}</p></div>")
    return "".join(blocks)


def _summary(art: Artifacts) -> str:
    metrics = {v.name: flat_metrics(v.analysis, v.info) for v in art.variants}
    rows = summary_rows(metrics)
    header = ["quantity", "unit"] + [v.label for v in art.variants]
    body = [[r["metric"], r["unit"]] + [format_value(r[v.name]) for v in art.variants]
            for r in rows]
    return _table(header, body)


def _likelihood_details(art: Artifacts) -> str:
    """Mean ± standard error, median and bits/dim of each scored set."""
    sets = [("typical", "typical samples"), ("search_start", "search, start"),
            ("search", "search, end"), ("real", "real digits, inverted"),
            ("real_on_manifold", "real digits, near the manifold")]
    rows = []
    for v in art.variants:
        details = v.analysis.get("details")
        details = details if isinstance(details, dict) else {}
        for key, name in sets:
            d = details.get(key)
            if isinstance(d, dict) and d.get("count"):  # skip empty sets (nothing to show)
                rows.append([v.label, name,
                             f"{format_value(d.get('mean'))} ± {format_value(d.get('se'))}",
                             format_value(d.get("median")), format_value(d.get("bits_per_dim")),
                             format_value(d.get("count"))])
    if not rows:
        return ""
    return _table(["generator", "points", "mean ± s.e. (nats)", "median", "bits/dim", "n"],
                  rows)


SAMPLES_CAPTION = ("random samples G(z), z ~ N(0, I). Look for: digits you can name, "
                   "and every class among them")
ENCODER_CAPTION = ("top: random samples G(z); middle: held-out digits x; bottom: their "
                   "reconstructions G(E(x)). Look for: the same digit in the middle and "
                   "bottom rows (the manifold reaches held-out digits) and nameable digits "
                   "on top")


def _samples(art: Artifacts) -> str:
    cells = []
    for v in art.variants:
        path = v.samples if v.samples is not None else v.figure("typical.png")
        caption = ENCODER_CAPTION if v.info.get("kind") == "maximum likelihood" else SAMPLES_CAPTION
        cells.append(f"<div><h3>{html.escape(v.label)}</h3>"
                     + _file_figure(path, caption) + "</div>")
    real = art.variants[0].figure("real.png")
    real_html = ""
    if real is not None:
        real_html = ('<div class="wide">'
                     + _file_figure(real, "real digits (held out in the demo), for "
                                          "comparison with the samples") + "</div>")
    coverage = figures.class_coverage(art.variants, art.results.get("real_class_shares"))
    text = ""
    if coverage is not None:
        text = ("<p class='note'>A classifier trained on the real digits labels generated "
                "samples; a generator that drops modes leaves classes empty.</p>"
                + _figure(coverage, "predicted class shares of generated samples. Look for: "
                          "bars near the real digits' shares; an empty class is a dropped "
                          "mode"))
    return _columns(cells) + real_html + text


def _run_info(art: Artifacts) -> str:
    keep = {k: art.results[k] for k in ("config", "timings", "environment")
            if k in art.results}
    if art.kind == "analysis":
        keep = {"config": art.results.get("config", {})}
    return f"<pre>{html.escape(json.dumps(keep, indent=2, default=str))}</pre>"


def render_html(art: Artifacts) -> str:
    """The report page for loaded artifacts (see :func:`write_report`)."""
    vs = art.variants
    labels = ", ".join(html.escape(v.label) for v in vs)
    sections = [
        ("findings", "What this run found", _findings(art)),
        ("summary", "Summary", _summary(art)
         + "<p class='note'>Log-likelihoods are densities on the generator's manifold "
           "(k-dimensional volume, pixels in [−1, 1]); they compare points under one "
           "generator, not across generators. Real digits are scored at the latent that "
           "reconstructs them best. A real digit is on the manifold when its residual is "
           "within the tolerance calibrated on training digits (a quantile of their "
           "residuals): the fraction asks whether unseen digits lie as close to the "
           "manifold as the digits it was fitted to.</p>"),
        ("samples", "Samples", _samples(art)),
        ("likelihood", "Likelihoods",
         _figure(figures.loglik_histograms(vs),
                 "implicit log-likelihood of typical samples, search outputs and real digits. "
                 "Look for: how far right the search outputs sit, and where real digits fall")
         + _per_variant(vs, "search_loglik.png", "log-likelihood along the search. Look for: "
                       "a rise that levels off, above the typical-sample line")
         + _likelihood_details(art)),
        ("search", "High-likelihood search (finding 1)",
         "<p class='note'>Gradient ascent on log p<sub>Z</sub>(z) − ½ log det "
         "J<sup>T</sup>J by spectral backpropagation, one row per chain, left to right "
         "along the search.</p>"
         + _per_variant(vs, "search_trajectory.png", "search trajectory (left: start). Look for: "
                       "whether digits stay digits as the likelihood rises")
         + _per_variant(vs, "search_final.png", "outputs at the end of the search. Look for: "
                       "blank, smeared or repeated strokes (aberrant) against clean digits")),
        ("traversals", "Eigen-direction traversals (finding 2)",
         "<p class='note'>Rows: the top eigenvectors of J<sup>T</sup>J at one latent "
         "(local), of E<sub>z</sub>[J<sup>T</sup>J] (global), and curved paths that keep "
         "following the leading eigenvector.</p>"
         + _per_variant(vs, "traverse_local_0.png", "local eigen-directions, latent 1")
         + _per_variant(vs, "traverse_local_1.png", "local eigen-directions, latent 2")
         + _per_variant(vs, "traverse_global.png", "global eigen-directions. Look for: one "
                       "attribute (slant, width, thickness) changing along a row")
         + _per_variant(vs, "eigen_path.png", "paths along the leading eigenvector")),
        ("spectra", "Spectra of JᵀJ",
         _figure(figures.spectra_overlay(vs), "eigenvalues of JᵀJ, all variants. Look for: "
                 "how fast they fall; a steep fall means few directions move the output")
         + _per_variant(vs, "spectra.png", "eigenvalues at typical latents")),
        ("training", "Training",
         _figure(figures.training_curves(vs), "training curves. Look for: losses that settle, "
                 "not ones that diverge or oscillate wildly")),
        ("run", "Run", _run_info(art)),
    ]
    sections = [(a, t, body) for a, t, body in sections if body]
    if art.notes:
        sections.append(("notes", "Left out", "<ul class='note'>" + "".join(
            f"<li>{html.escape(n)}</li>" for n in art.notes) + "</ul>"))
    nav = "".join(f'<a href="#{a}">{html.escape(t)}</a>' for a, t, _ in sections)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")  # noqa: UP017
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>spectral-backprop report: {labels}</title><style>{CSS}</style></head><body>",
        "<h1>spectral-backprop report</h1>",
        f"<p class='lead'>{INTRO}</p>",
        f"<p class='note'>Generators: {labels}. Folder: {html.escape(str(art.root))}. "
        f"Rendered {stamp} from saved artifacts.</p>",
        f"<nav>{nav}</nav>",
    ]
    parts += [f'<section id="{a}"><h2>{html.escape(t)}</h2>{body}</section>'
              for a, t, body in sections]
    parts.append("</body></html>\n")
    return "\n".join(parts)


def write_report(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Render the report of a demo or analysis folder from its saved artifacts alone.

    Args:
        run_dir: the folder (see :mod:`.artifacts` for the layouts understood).
        out: the HTML file (default ``run_dir/report.html``).

    Returns:
        The path written.

    Raises:
        ReportError: missing or unreadable artifacts.
        OSError: the HTML file cannot be written.
    """
    art = load_artifacts(run_dir)
    path = Path(out) if out is not None else art.root / REPORT
    page = render_html(art)
    # Written beside the target and moved into place, so a browser never sees half a page.
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, path)
    return path
