"""``spectral-backprop report DIR``: re-render the HTML report from saved artifacts."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..runfiles import REPORT
from . import CLIError

HELP = "re-render DIR/report.html from the saved artifacts of a demo or analyze run"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "report", help=HELP, description=HELP + ". Needs no model and no training: only "
        "results.json, arrays.npz, metrics.jsonl and the PNGs in DIR.")
    p.add_argument("dir", metavar="DIR", help="output folder of 'demo' or 'analyze'")
    p.add_argument("--out", metavar="FILE", default=None,
                   help="where to write the HTML (default: DIR/report.html)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..report import ReportError, write_report

    try:
        path = write_report(args.dir, args.out)
    except ReportError as err:
        raise CLIError(str(err)) from err
    except OSError as err:
        target = args.out or Path(args.dir) / REPORT
        raise CLIError(f"cannot write {target}: {err.strerror or err}") from err
    print(f"report written to {path}")
    return 0
