"""``spectral-backprop fit-density``: fit an invertible generator to a 2-D energy by reverse KL."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from spectral_backprop.cli import CLIError

_FIELDS = ("target", "num_layers", "hidden", "depth", "mixing", "transform", "bins", "bound",
           "steps", "batch_size", "lr", "anneal_steps", "anneal_start", "eval_samples", "seed",
           "log_every", "ckpt_every", "device")


def run(args: argparse.Namespace) -> int:
    from spectral_backprop.train import CheckpointError, ReverseKLConfig, train_reverse_kl

    values = {name: getattr(args, name) for name in _FIELDS if getattr(args, name) is not None}
    values["progress"] = not args.no_progress
    try:
        config = ReverseKLConfig.from_dict(values)
        result = train_reverse_kl(config, args.out, resume=args.resume)
    except (CheckpointError, FileExistsError, ValueError) as err:
        raise CLIError(str(err)) from err
    print(json.dumps(result.metrics, indent=2))
    print(f"wrote {args.out}/eval.json, density.png, metrics.jsonl, checkpoint.pt")
    return 0


def add_parser(subparsers) -> None:
    from spectral_backprop.train.targets import TARGETS

    p = subparsers.add_parser(
        "fit-density", help="fit a generator to an unnormalised 2-D density (reverse KL)",
        description="Train an invertible coupling generator (k = n = 2; affine or spline "
                    "couplings) by reverse KL to "
                    "exp(-U), its log det from spectral backprop. Reports the reverse KL "
                    "(log Z by quadrature), the effective sample size, and a density plot.",
    )
    p.add_argument("--target", required=True, choices=list(TARGETS))
    p.add_argument("--num-layers", type=int, help="coupling layers (default 8)")
    p.add_argument("--hidden", type=int, help="conditioner width (default 128)")
    p.add_argument("--depth", type=int, help="conditioner hidden layers (default 2)")
    p.add_argument("--mixing", choices=["swap", "rotation"],
                   help="between coupling layers: random rotation (default) or swap halves")
    p.add_argument("--transform", choices=["affine", "spline"],
                   help="coupling transform: rational-quadratic spline (default) or affine")
    p.add_argument("--bins", type=int, help="spline bins (default 8)")
    p.add_argument("--bound", type=float,
                   help="spline interval [-B, B], identity outside (default 5)")
    p.add_argument("--steps", type=int, help="Adam steps (default 3000)")
    p.add_argument("--batch-size", type=int, help="latents per step (default 256)")
    p.add_argument("--lr", type=float, help="initial learning rate, cosine decay (default 1e-3)")
    p.add_argument("--anneal-steps", type=int,
                   help="temper the target: beta_t = min(1, start + t/T) (default 0: off)")
    p.add_argument("--anneal-start", type=float, help="beta_0 of the annealing (default 0.01)")
    p.add_argument("--eval-samples", type=int, help="samples for KL and ESS (default 100000)")
    p.add_argument("--seed", type=int)
    p.add_argument("--log-every", type=int)
    p.add_argument("--ckpt-every", type=int)
    p.add_argument("--device", choices=["cpu", "cuda"])
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--out", required=True, type=Path, help="run folder")
    p.add_argument("--resume", action="store_true")
    p.set_defaults(func=run)
