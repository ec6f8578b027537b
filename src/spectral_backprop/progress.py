"""Progress output for long work: a live bar on a terminal, clean lines in a log.

On a terminal (stderr is a TTY) this is a ``tqdm`` bar. Anywhere else (CI, ``nohup``,
a redirected log file) a redrawn bar turns into a stream of carriage returns and
duplicated lines, so :class:`LogProgress` prints one self-contained line per interval
instead::

    train: 400/1000 (40%), 12.3 s elapsed, ~18.5 s left, d_loss=1.32 g_loss=0.71

Both expose the subset of tqdm's interface the library uses: iteration, ``update``,
``set_postfix``, ``set_postfix_str``, ``n`` and ``close``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, TextIO

__all__ = ["LOG_INTERVAL", "LogProgress", "progress"]

# Seconds between two lines of a non-interactive log: often enough to see a run is
# alive, rare enough that a 10-minute job writes a screenful, not thousands of lines.
LOG_INTERVAL = 15.0


class LogProgress:
    """Line-per-interval progress for non-interactive output (see the module docstring)."""

    def __init__(self, iterable: Iterable | None = None, *, total: int | None = None,
                 desc: str = "", initial: int = 0, interval: float = LOG_INTERVAL,
                 file: TextIO | None = None):
        self.iterable = iterable
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = initial + len(iterable)  # type: ignore[arg-type]
        self.total, self.desc, self.n = total, desc, initial
        self.interval, self.file = interval, file
        self.postfix = ""
        self._start = self._last = time.perf_counter()
        self._start_n = initial
        self._closed = False

    def __iter__(self) -> Iterator:
        for item in self.iterable or ():
            yield item
            self.update(1)
        self.close()

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.perf_counter()
        if now - self._last >= self.interval:
            self._last = now
            self._print()

    def set_postfix(self, values: dict[str, Any] | None = None, refresh: bool = True,
                    **kw: Any) -> None:
        items = {**(values or {}), **kw}
        self.postfix = " ".join(f"{k}={v}" for k, v in items.items())

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        self.postfix = s

    def line(self) -> str:
        """The status line that would be printed now."""
        elapsed = time.perf_counter() - self._start
        parts = [f"{self.desc}: {self.n}" + (f"/{self.total}" if self.total else "")]
        if self.total:
            parts[0] += f" ({100 * self.n / self.total:.0f}%)"
        parts.append(f"{elapsed:.1f} s elapsed")
        done = self.n - self._start_n
        if self.total and 0 < done and self.n < self.total:
            parts.append(f"~{elapsed / done * (self.total - self.n):.1f} s left")
        text = ", ".join(parts)
        return f"{text}, {self.postfix}" if self.postfix else text

    def _print(self) -> None:
        print(self.line(), file=self.file or sys.stderr, flush=True)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._print()


def progress(iterable: Iterable | None = None, *, total: int | None = None, desc: str = "",
             initial: int = 0, disable: bool = False, position: int | None = None,
             interactive: bool | None = None):
    """A progress reporter: ``tqdm`` on a terminal, :class:`LogProgress` in a log.

    Args:
        iterable: what to iterate over (or ``None`` and call ``update``).
        total: expected number of updates (default ``len(iterable)``).
        desc: label at the start of each line.
        initial: starting count (a resumed run).
        disable: print nothing (the object still counts).
        position: line of a terminal bar, for several bars at once (ignored in a log).
        interactive: force the choice (default: whether stderr is a terminal).
    """
    if interactive is None:
        interactive = sys.stderr.isatty()
    if interactive or disable:
        from tqdm.auto import tqdm

        return tqdm(iterable, total=total, desc=desc, initial=initial, disable=disable,
                    position=position, dynamic_ncols=True)
    return LogProgress(iterable, total=total, desc=desc, initial=initial)
