"""The run-folder contract: the names of the files that runs write and reports read,
and the one way they are written and read.

Every writer (training, analysis, studies) and every reader (the report, ``--resume``)
takes these names from here, so that a file is spelled once. A training run folder::

    config.json      the run's settings, written once the resume check has passed
    metrics.jsonl    one JSON object per logged step
    checkpoint.pt    the latest checkpoint (atomic)
    eval.json        final figures of a finished run (mode coverage, reverse KL)
    samples.png      samples of the trained generator
    density.png      target density beside the generator's (reverse KL)
    run.lock         present while a process writes into the folder (its pid inside)

An analysis or study folder::

    results.json     every number
    arrays.npz       per-point arrays behind the figures
    report.html      the self-contained report
    purity.json      one generator's factor-purity scores (factor study)
    log.txt          a worker process's output (parallel studies)

**Strict JSON.** Every JSON file is written by :func:`write_json` or
:func:`json_line`: standard JSON that any parser reads, with a non-finite number
(NaN, ±inf) written as ``null``. Readers treat ``null`` as a missing or NaN value
(:func:`read_metrics` turns it into NaN).

**One writer per folder.** :func:`run_lock` holds ``run.lock`` while a process writes
into a folder; a second process is refused with an error naming the first one's pid,
and a lock left by a process that has died is taken over.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = [
    "ARRAYS",
    "CHECKPOINT",
    "CONFIG",
    "DENSITY",
    "EVAL",
    "LOCK",
    "LOG",
    "METRICS",
    "PURITY",
    "REPORT",
    "RESULTS",
    "SAMPLES",
    "RunFileError",
    "RunLockedError",
    "json_line",
    "read_json",
    "read_metrics",
    "run_lock",
    "strict_json",
    "write_json",
]

CONFIG = "config.json"
METRICS = "metrics.jsonl"
CHECKPOINT = "checkpoint.pt"
EVAL = "eval.json"
SAMPLES = "samples.png"
DENSITY = "density.png"
LOCK = "run.lock"
PURITY = "purity.json"
RESULTS = "results.json"
ARRAYS = "arrays.npz"
REPORT = "report.html"
LOG = "log.txt"


class RunFileError(ValueError):
    """A file of a run folder that cannot be read or written; the message names it."""


class RunLockedError(RunFileError):
    """Another live process is writing into the folder (the message names its pid)."""


# --- strict JSON ---------------------------------------------------------------------


def strict_json(value: Any) -> Any:
    """``value`` with every non-finite float replaced by ``None`` (JSON ``null``).

    Tuples become lists; numpy and torch scalars (anything with ``.item()``) become
    Python numbers first.

    Example:
        >>> strict_json({"a": float("nan"), "b": [1.0, float("-inf")], "c": (2, "x")})
        {'a': None, 'b': [1.0, None], 'c': [2, 'x']}
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [strict_json(v) for v in value]
    if value is None or isinstance(value, str | int):
        return value
    item = getattr(value, "item", None)
    if callable(item):
        try:
            return strict_json(item())
        except (TypeError, ValueError):
            pass
    return value  # json.dumps says what it cannot write


def _dumps(value: Any, **kwargs: Any) -> str:
    return json.dumps(strict_json(value), allow_nan=False, **kwargs)


def json_line(record: dict[str, Any]) -> str:
    """One record of a JSON-lines file, strict, with its newline.

    Example:
        >>> json_line({"step": 1, "loss": float("inf")})
        '{"step": 1, "loss": null}\\n'
    """
    return _dumps(record) + "\n"


def write_json(path: str | Path, value: Any, *, sort_keys: bool = False) -> Path:
    """Write ``value`` as indented, strict JSON atomically (temporary file, then
    ``os.replace``): a reader never sees half a file, and NaN or ±inf is ``null``."""
    path = Path(path)
    text = _dumps(value, indent=2, sort_keys=sort_keys) + "\n"
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
    return path


def read_json(path: str | Path) -> Any:
    """The value of a JSON file (``NaN`` tokens of older files are read too).

    Raises:
        FileNotFoundError: no file at ``path``.
        RunFileError: the file cannot be read or is not JSON.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no file at {path}")
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RunFileError(f"cannot read {path}: {err}") from err


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """All records of a ``metrics.jsonl`` file (a folder is taken to mean its log).

    ``null`` values read as NaN. A last line cut short (a run killed while writing it:
    no newline at its end and not JSON) is left out; any other line that is not a JSON
    object is an error.

    Raises:
        OSError: the file cannot be read.
        RunFileError: (a ``ValueError``) a line before the last is not a JSON object.
    """
    path = Path(path)
    if path.is_dir():
        path = path / METRICS
    try:
        text = path.read_text()
    except UnicodeDecodeError as err:
        raise RunFileError(f"{path} is not a text file: {err}") from err
    lines = text.split("\n")
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            if number == len(lines):  # the last line, without its newline: torn
                break
            raise RunFileError(f"{path}, line {number}, is not JSON ({err})") from err
        if not isinstance(record, dict):
            raise RunFileError(f"{path}, line {number}, is not a JSON object")
        records.append({k: math.nan if v is None else v for k, v in record.items()})
    return records


# --- one writer per folder -----------------------------------------------------------


def _holder(lock: Path) -> dict[str, Any] | None:
    """The ``{"pid", "host"}`` written in a lock file (``None`` when unreadable)."""
    try:
        holder = json.loads(lock.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(holder, dict) or not isinstance(holder.get("pid"), int):
        return None
    return holder


def _alive(pid: int) -> bool:
    """Whether process ``pid`` of this machine is running (assumed so where unknown)."""
    if pid == os.getpid():
        return False  # a lock of this very process is left over from an earlier run
    if os.name == "nt":  # os.kill would end the process there
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def _refuse_live_holder(lock: Path, holder: dict[str, Any] | None) -> None:
    """Raise :class:`RunLockedError` unless the lock's writer is known to be dead."""
    if holder is None:
        return  # empty or garbled: a writer died while creating it
    host, pid = holder.get("host"), holder["pid"]
    here = socket.gethostname()
    if host == here and not _alive(pid):
        return
    where = "" if host == here else f" on host {host}"
    raise RunLockedError(
        f"{lock.parent} is in use by another process (pid {pid}{where}): wait for it to "
        f"finish or use another folder; if no such process is running, delete {lock}")


@contextlib.contextmanager
def run_lock(folder: str | Path) -> Iterator[Path]:
    """Hold ``folder/run.lock`` while the ``with`` block writes into ``folder``.

    The lock file holds the writer's pid and host. A lock whose process is running
    (here or on another host sharing the folder) raises :class:`RunLockedError`
    naming it; one left by a process of this host that has died is taken over.
    ``folder`` must exist.
    """
    lock = Path(folder) / LOCK
    mine = json.dumps({"pid": os.getpid(), "host": socket.gethostname()})
    for _ in range(3):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            _refuse_live_holder(lock, _holder(lock))
            with contextlib.suppress(FileNotFoundError):
                lock.unlink()  # stale: take it over
            continue
        except OSError as err:
            raise RunFileError(f"cannot create {lock}: {err.strerror or err}") from err
        with os.fdopen(fd, "w") as fh:
            fh.write(mine)
        break
    else:
        raise RunLockedError(f"{folder} is being locked by other processes; try again")
    try:
        yield lock
    finally:
        if _holder(lock) == json.loads(mine):
            with contextlib.suppress(OSError):
                lock.unlink()
