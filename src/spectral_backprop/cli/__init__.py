"""Command line: ``spectral-backprop SUBCOMMAND ...``.

Thin by design: each subcommand lives in its own module of this package, parses its
arguments and calls library functions. A subcommand module defines
``add_parser(subparsers)``, which registers the subcommand and sets ``func`` (a
callable taking the parsed ``argparse.Namespace`` and returning an exit code).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

# One line per subcommand module, in the order shown by --help.
_SUBCOMMANDS = [
    "train",
    "modes",
    "fit_density",
    "fit_manifold",
    "analyze",
    "factors",
    "report",
    "demo",
]


class CLIError(Exception):
    """An error meant for a person: printed without a traceback, exit code 2."""


def one_line(message: str) -> str:
    """``message`` on one line (a value read from a file may hold line breaks).

    Example:
        >>> one_line("cannot read x:\\n  bad header\\n")
        'cannot read x: bad header'
    """
    return " ".join(part.strip() for part in message.splitlines() if part.strip())


def writable_dir(path: Path) -> Path:
    """Create ``path`` and check it can be written, or raise :class:`CLIError`."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write_test"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise CLIError(f"cannot write to output folder {path}: {err}") from err
    return path


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every subcommand of ``_SUBCOMMANDS`` registered."""
    parser = argparse.ArgumentParser(
        prog="spectral-backprop",
        description="Implicit likelihoods of generator networks by spectral backpropagation.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in _SUBCOMMANDS:
        importlib.import_module(f"{__name__}.{name}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``spectral-backprop``; user errors (:class:`CLIError` and the errors of a run,
    :data:`spectral_backprop.train.RUN_ERRORS`) print one line and return exit code 2."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CLIError as err:
        return _error(args.command, err)
    except Exception as err:
        from spectral_backprop.train import RUN_ERRORS  # only now: torch is slow to import

        if not isinstance(err, RUN_ERRORS):
            raise
        return _error(args.command, err)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _error(command: str, err: Exception) -> int:
    print(f"spectral-backprop {command}: error: {one_line(str(err))}", file=sys.stderr)
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
