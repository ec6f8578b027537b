"""``spectral-backprop demo --out DIR``: train, analyse and report on real digits.

Every setting is a field of :class:`~spectral_backprop.studies.demo.DemoConfig`;
``--quick`` starts from the smoke-test budget of ``studies/configs/demo_quick.json``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from spectral_backprop.cli import CLIError, writable_dir
from spectral_backprop.cli.flags import add_config_arguments, config_from_args
from spectral_backprop.runfiles import REPORT, RESULTS

HELP = ("on the embedded MNIST digits, train a generator by maximum implicit likelihood and "
        "a DCGAN with and without the entropy term, measure them against held-out digits, "
        "test the paper's findings and write DIR/report.html")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from spectral_backprop.studies.demo import DemoConfig

    p = subparsers.add_parser(
        "demo", help=HELP, description=HELP + ". About 5 minutes on 2 CPU cores; "
        "--quick takes about half a minute (a smoke test: the pictures are noise).")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    p.add_argument("--quick", action="store_true", help="tiny budget for smoke tests")
    add_config_arguments(p, DemoConfig, exclude=("analysis",))
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from spectral_backprop.studies import load_protocol
    from spectral_backprop.studies.demo import DemoConfig, format_summary, run_demo
    from spectral_backprop.train import RUN_ERRORS

    base = load_protocol("demo_quick") if args.quick else None
    config = config_from_args(args, DemoConfig, base=base, exclude=("analysis",))
    out = writable_dir(args.out)
    try:
        results = run_demo(out, config)
    except RUN_ERRORS:
        raise  # main() reports them; some (FileExistsError) are OSErrors, not write failures
    except ImportError as err:
        raise CLIError(str(err)) from err
    except OSError as err:
        raise CLIError(f"cannot write to {out}: {err}") from err
    t = results["timings"]["total_seconds"]
    print("\n" + format_summary(results))
    print(f"\ndone in {t / 60:.1f} min. Open {out / REPORT} in a browser; "
          f"numbers are in {out / RESULTS}.")
    return 0
