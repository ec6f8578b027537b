"""``spectral-backprop demo --out DIR``: train, analyse and report on real digits."""

from __future__ import annotations

import argparse
from pathlib import Path

from . import CLIError
from .analyze import writable_dir

HELP = ("train a DCGAN with and without the entropy term on the embedded MNIST digits, "
        "run both findings of the paper and write DIR/report.html")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from ..demo import DemoConfig

    d = DemoConfig()
    p = subparsers.add_parser(
        "demo", help=HELP, description=HELP + ". About 10 minutes on 2 CPU cores; "
        "--quick takes under 2 minutes (a smoke test: the pictures are noise).")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    p.add_argument("--quick", action="store_true", help="tiny budget for smoke tests")
    p.add_argument("--steps", type=int, help=f"training steps per variant (default {d.steps})")
    p.add_argument("--entropy-weight", type=float, metavar="BETA",
                   help=f"β of the entropy term (default {d.entropy_weight})")
    p.add_argument("--latent-dim", type=int, help=f"k (default {d.latent_dim})")
    p.add_argument("--seed", type=int, help=f"seed (default {d.seed})")
    p.add_argument("--jobs", type=int, help=f"variants trained at once (default {d.jobs})")
    p.add_argument("--threads", type=int, help=f"torch threads per process (default {d.threads})")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..demo import DemoConfig, format_summary, run_demo
    from ..train.checkpoint import CheckpointError

    overrides = {k: v for k, v in {
        "steps": args.steps, "entropy_weight": args.entropy_weight,
        "latent_dim": args.latent_dim, "seed": args.seed, "jobs": args.jobs,
        "threads": args.threads}.items() if v is not None}
    overrides["progress"] = not args.no_progress
    try:
        config = DemoConfig.quick(**overrides) if args.quick else DemoConfig(**overrides)
    except ValueError as err:
        raise CLIError(str(err)) from err
    out = writable_dir(args.out)
    try:
        results = run_demo(out, config)
    except CheckpointError as err:
        raise CLIError(f"{err}\n(the folder holds a demo run with other settings: "
                       "use another --out, or delete it)") from err
    except ImportError as err:
        raise CLIError(str(err)) from err
    except OSError as err:
        raise CLIError(f"cannot write to {out}: {err}") from err
    t = results["timings"]["total_seconds"]
    print("\n" + format_summary(results))
    print(f"\ndone in {t / 60:.1f} min. Open {out / 'report.html'} in a browser; "
          f"numbers are in {out / 'results.json'}.")
    return 0
