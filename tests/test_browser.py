"""The report in a real headless browser: every image decodes and the page renders.

Slow and optional: needs Debian's ``chromium`` (``apt-get install chromium``) and runs
the ``--quick`` demo (shared with ``test_demo.py``) to get a real report.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from spectral_backprop.report.tables import format_value
from test_studies_demo import quick_demo_dir

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser")) if p), None)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed "
                       "(apt-get install chromium) - cannot check the report in a browser"),
]

# Appended to a copy of the report: after the load event, list each image's decoded
# width in a <pre>, which --dump-dom then prints with the rest of the DOM.
PROBE = """<script>
window.addEventListener('load', () => {
  const imgs = Array.from(document.images);
  const out = document.createElement('pre');
  out.id = 'probe';
  out.textContent = 'IMAGES ' + imgs.map(i => i.complete ? i.naturalWidth : -1).join(',');
  document.body.appendChild(out);
});
</script>"""


def chromium(*args: str, user_dir: Path) -> subprocess.CompletedProcess:
    """Headless chromium with nothing that reaches the network or a profile."""
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
           "--no-first-run", "--disable-background-networking", "--disable-component-update",
           "--disable-sync", f"--user-data-dir={user_dir}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


def test_every_image_renders_and_screenshot(tmp_path_factory, tmp_path):
    report = quick_demo_dir(tmp_path_factory) / "report.html"
    page = report.read_text(encoding="utf-8")
    n_img = len(re.findall(r"<img ", page))
    assert n_img >= 20

    probed = tmp_path / "probed.html"
    probed.write_text(page.replace("</body>", PROBE + "</body>"), encoding="utf-8")
    result = chromium("--virtual-time-budget=10000", "--dump-dom", probed.as_uri(),
                      user_dir=tmp_path / "profile1")
    match = re.search(r"id=\"probe\">IMAGES ([-\d,]*)<", result.stdout)
    assert match, f"no probe output; chromium stderr:\n{result.stderr[-2000:]}"
    widths = [int(w) for w in match.group(1).split(",") if w]
    assert len(widths) == n_img
    assert all(w > 0 for w in widths), f"images that did not render: {widths}"

    # The numbers people read are the numbers in results.json: every summary cell and
    # every finding's verdict, as the browser parsed them.
    results = json.loads((report.parent / "results.json").read_text())
    dom = result.stdout
    summary = re.search(r'<section id="summary">.*?<tbody>(.*?)</tbody>', dom, re.S)
    assert summary, "no summary table in the rendered page"
    rows = [[html.unescape(c) for c in re.findall(r"<td>(.*?)</td>", tr)]
            for tr in re.findall(r"<tr>(.*?)</tr>", summary.group(1))]
    names = list(results["variants"])
    expected = [[r["metric"], r["unit"], *(format_value(r[n]) for n in names)]
                for r in results["summary"]]
    assert rows == expected
    verdicts = [html.unescape(v) for v in re.findall(r'<p class="verdict">This run: (.*?)</p>',
                                                     dom)]
    assert verdicts == [f["verdict"] for f in results["findings"]]

    shot = tmp_path / "report.png"
    chromium(f"--screenshot={shot}", "--window-size=1400,4000", "--hide-scrollbars",
             report.as_uri(), user_dir=tmp_path / "profile2")
    assert shot.is_file() and shot.stat().st_size > 50_000, "screenshot missing or blank"
    import matplotlib.image

    pixels = matplotlib.image.imread(shot)
    assert pixels.shape[:2] == (4000, 1400)
    assert pixels.std() > 0.05  # text, tables and figures, not a blank page
