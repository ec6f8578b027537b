"""Progress output: a bar on a terminal, one clean line per interval in a log."""

from __future__ import annotations

import io

from spectral_backprop.progress import LogProgress, progress


def test_log_progress_prints_one_line_per_interval_not_per_update():
    out = io.StringIO()
    bar = LogProgress(total=1000, desc="train", interval=3600.0, file=out)
    for _ in range(1000):
        bar.update(1)
    bar.set_postfix({"loss": "0.500"})
    bar.close()
    bar.close()  # closing twice prints once
    lines = out.getvalue().splitlines()
    assert len(lines) == 1 and "\r" not in out.getvalue()
    assert lines[0].startswith("train: 1000/1000 (100%)") and lines[0].endswith("loss=0.500")


def test_log_progress_reports_time_left_while_running():
    out = io.StringIO()
    bar = LogProgress(range(10), desc="x", interval=0.0, file=out, initial=0)
    it = iter(bar)
    next(it), next(it)  # the first item's update prints a line (interval 0)
    first = out.getvalue().splitlines()[0]
    assert first.startswith("x: 1/10 (10%)") and "s left" in first


def test_progress_picks_by_terminal():
    log = progress(range(3), desc="a", interactive=False)
    assert isinstance(log, LogProgress) and list(log) == [0, 1, 2]
    bar = progress(range(3), desc="a", interactive=True, disable=True)
    assert not isinstance(bar, LogProgress) and list(bar) == [0, 1, 2]
