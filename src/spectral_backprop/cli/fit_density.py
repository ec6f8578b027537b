"""``spectral-backprop fit-density``: fit an invertible generator to a 2-D energy by reverse KL.

Its flags are generated from :class:`~spectral_backprop.train.ReverseKLConfig`
(:mod:`.flags`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from spectral_backprop.cli import CLIError
from spectral_backprop.cli.flags import add_config_arguments, config_from_args


def run(args: argparse.Namespace) -> int:
    from spectral_backprop.train import ReverseKLConfig, train_reverse_kl

    config = config_from_args(args, ReverseKLConfig)
    try:
        result = train_reverse_kl(config, args.out, resume=args.resume)
    except ValueError as err:  # (the errors of train.RUN_ERRORS are cli.main's)
        raise CLIError(str(err)) from err
    print(json.dumps(result.metrics, indent=2))
    print(f"wrote {args.out}/eval.json, density.png, metrics.jsonl, checkpoint.pt")
    return 0


def add_parser(subparsers) -> None:
    from spectral_backprop.train import ReverseKLConfig

    p = subparsers.add_parser(
        "fit-density", help="fit a generator to an unnormalised 2-D density (reverse KL)",
        description="Train an invertible coupling generator (k = n = 2; affine or spline "
                    "couplings) by reverse KL to exp(-U), its log det from spectral "
                    "backprop. Reports the reverse KL (log Z by quadrature), the effective "
                    "sample size, and a density plot.",
    )
    p.add_argument("--out", required=True, type=Path, help="run folder")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    add_config_arguments(p, ReverseKLConfig)
    p.set_defaults(func=run)
