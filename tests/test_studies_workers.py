"""Worker processes of the studies: results, failures and the progress states."""

from __future__ import annotations

from concurrent.futures import Future

import pytest

from spectral_backprop.studies.workers import _state, run_in_workers


def square(x: int) -> int:
    return x * x


def fail(x: int) -> int:
    raise RuntimeError(f"job {x} failed")


def test_jobs_run_in_workers_and_failures_reach_the_caller(tmp_path):
    metrics = {n: tmp_path / f"{n}.jsonl" for n in ("a", "b", "c")}
    out = run_in_workers(square, {"a": (2,), "b": (3,), "c": (4,)}, max_workers=2,
                         metrics=metrics, total_steps={"a": 1, "b": 2, "c": 3}, show=False)
    assert out == {"a": 4, "b": 9, "c": 16}
    failed = []
    with pytest.raises(RuntimeError, match="job 5 failed"):
        run_in_workers(fail, {"x": (5,)}, max_workers=1, metrics={"x": metrics["a"]},
                       total_steps=1, show=False, on_failure=failed.append)
    assert failed == ["x"]


def test_progress_states():
    pending, done = Future(), Future()
    done.set_result(1)
    assert _state(pending, False, 0, 10) == "waiting for a worker"  # queued, not started
    assert _state(pending, True, 3, 10) == "training"
    assert _state(pending, True, 10, 10) == "analysing"
    assert _state(done, True, 10, 10) == "done"
    failed = Future()
    failed.set_exception(ValueError("x"))
    assert _state(failed, True, 0, 10) == "failed"
