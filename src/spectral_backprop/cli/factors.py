"""``spectral-backprop factors --seeds N --out DIR``: factor purity of latent directions.

Trains ``N`` DCGANs on the procedural sprites and scores the top metric
eigen-directions (local and global) against SeFa, GANSpace and random directions with
the purity protocol (``DESIGN.md`` section 4); writes ``DIR/results.json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from spectral_backprop.cli import CLIError


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "factors", help="purity of eigen-directions vs SeFa, GANSpace, random on sprites",
        description=__doc__.splitlines()[0].strip("`"),
    )
    p.add_argument("--seeds", type=int, default=3, help="independently trained generators")
    p.add_argument("--out", type=Path, required=True, help="folder for runs and results.json")
    p.add_argument("--steps", type=int, default=3000, help="GAN training steps per seed")
    p.add_argument("--image-size", type=int, default=16, choices=[16, 28, 32])
    p.add_argument("--latent-dim", type=int, default=8)
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--directions", type=int, default=3, help="top directions scored (r)")
    p.add_argument("--latents", type=int, default=128, help="latents each direction is scored at")
    p.add_argument("--delta", type=float, default=0.5, help="half-step in latent units")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from spectral_backprop.analysis import run_factor_experiment
    from spectral_backprop.cli.analyze import writable_dir

    if args.seeds < 1 or args.steps < 1 or args.latents < 1 or args.delta <= 0:
        raise CLIError("--seeds, --steps, --latents and --delta must be positive")
    if not 1 <= args.directions <= args.latent_dim:
        raise CLIError(f"--directions must be in [1, --latent-dim={args.latent_dim}]")
    if args.threads:
        torch.set_num_threads(args.threads)
    out = writable_dir(args.out)
    try:
        results = run_factor_experiment(
            args.seeds, out, steps=args.steps, image_size=args.image_size,
            latent_dim=args.latent_dim, width=args.width, r=args.directions,
            n_latents=args.latents, delta=args.delta, progress=not args.no_progress,
        )
    except (ValueError, FileExistsError, RuntimeError) as err:
        raise CLIError(str(err)) from err
    print(json.dumps(results["purity"], indent=2))
    print(f"wrote {out / 'results.json'}")
    return 0
