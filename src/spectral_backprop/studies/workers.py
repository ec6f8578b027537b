"""Running independent jobs in worker processes, with progress read from their run folders.

On a small shared CPU, two single-threaded processes beat one two-threaded process
(whose threads spin waiting for each other when a core is busy), so studies run their
independent variants side by side. Workers are started with ``spawn``, not ``fork``:
forking a process that has started torch's thread pools can deadlock the child. Each
worker writes its own log; the parent shows one progress line per worker, read from
the ``metrics.jsonl`` the worker's training writes.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from ..progress import progress
from ..runfiles import read_metrics

__all__ = ["last_step", "run_in_workers"]


def last_step(metrics: Path) -> int:
    """The step of the last complete record of a ``metrics.jsonl`` (0 when there is none
    yet); a line being written is skipped (:func:`~spectral_backprop.runfiles.read_metrics`)."""
    try:
        records = read_metrics(metrics)
    except (OSError, ValueError):
        return 0
    return int(records[-1].get("step", 0)) if records else 0


def _start_then(marker: Path, fn: Callable[..., Any], *args: Any) -> Any:
    """Run ``fn(*args)`` in a worker after leaving ``marker``: a pool reports a job as
    running as soon as it is queued to a worker, not when the worker takes it."""
    marker.touch()
    return fn(*args)


def _state(fut: Future, started: bool, step: int, total: int) -> str:
    if fut.done():
        return "failed" if fut.exception() is not None else "done"
    if not started:
        return "waiting for a worker"
    return "analysing" if step >= total else "training"


def _watch(futures: dict[str, Future], markers: dict[str, Path], metrics: dict[str, Path],
           totals: dict[str, int], show: bool) -> None:
    bars = {name: progress(total=totals[name], desc=f"{name:>8} train", disable=not show,
                           position=i)
            for i, name in enumerate(futures)}
    while True:
        for name, bar in bars.items():
            step = last_step(metrics[name])
            bar.update(step - bar.n)
            bar.set_postfix_str(_state(futures[name], markers[name].exists(), step,
                                       totals[name]))
        if all(f.done() for f in futures.values()):
            break
        time.sleep(1.0)
    for bar in bars.values():
        bar.close()


def run_in_workers(fn: Callable[..., Any], jobs: dict[str, tuple], *, max_workers: int,
                   metrics: dict[str, Path], total_steps: int | dict[str, int],
                   show: bool = True,
                   on_failure: Callable[[str], None] | None = None) -> dict[str, Any]:
    """``{name: fn(*args)}`` for ``jobs = {name: args}``, in ``max_workers`` processes.

    Args:
        fn: a picklable module-level function.
        jobs: arguments per job.
        max_workers: processes at once.
        metrics: per job, the ``metrics.jsonl`` whose last step shows its progress.
        total_steps: the step at which a job's training is done (one for all, or per job).
        show: print progress.
        on_failure: called with a job's name before its exception is re-raised.
    """
    results: dict[str, Any] = {}
    totals = total_steps if isinstance(total_steps, dict) else dict.fromkeys(jobs, total_steps)
    with (tempfile.TemporaryDirectory() as tmp,
          ProcessPoolExecutor(max_workers=max_workers, mp_context=get_context("spawn")) as pool):
        markers = {name: Path(tmp) / f"started-{i}" for i, name in enumerate(jobs)}
        futures = {name: pool.submit(_start_then, markers[name], fn, *args)
                   for name, args in jobs.items()}
        _watch(futures, markers, metrics, totals, show)
        for name, fut in futures.items():
            try:
                results[name] = fut.result()
            except Exception:
                if on_failure is not None:
                    on_failure(name)
                raise
    return results
