"""``spectral-backprop factors --seeds N --out DIR``: factor purity of latent directions.

Trains ``N`` DCGANs on the procedural sprites and scores the top metric
eigen-directions (local and global) against SeFa, GANSpace and random directions
(:mod:`spectral_backprop.studies.factors`); writes ``DIR/results.json``. Every setting
is a field of :class:`~spectral_backprop.studies.factors.FactorsConfig`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from spectral_backprop.cli import CLIError, writable_dir
from spectral_backprop.cli.flags import add_config_arguments, config_from_args
from spectral_backprop.runfiles import RESULTS


def add_parser(subparsers) -> None:
    from spectral_backprop.studies.factors import FactorsConfig

    p = subparsers.add_parser(
        "factors", help="purity of eigen-directions vs SeFa, GANSpace, random on sprites",
        description=__doc__.splitlines()[0].strip("`"),
    )
    p.add_argument("--out", type=Path, required=True, help="folder for runs and results.json")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    add_config_arguments(p, FactorsConfig)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from spectral_backprop.studies.factors import FactorsConfig, run_factor_experiment

    config = config_from_args(args, FactorsConfig)
    if args.threads:
        torch.set_num_threads(args.threads)
    out = writable_dir(args.out)
    try:
        results = run_factor_experiment(out, config)
    except ValueError as err:  # (the errors of train.RUN_ERRORS are cli.main's)
        raise CLIError(str(err)) from err
    print(json.dumps(results["purity"], indent=2))
    print(f"wrote {out / RESULTS}")
    return 0
