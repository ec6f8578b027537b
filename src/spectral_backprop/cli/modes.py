"""``spectral-backprop modes``: mode coverage on the ring or grid, with and without entropy."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

from spectral_backprop.cli import CLIError
from spectral_backprop.cli.train import add_gan_arguments, config_from_args, load_data


def run(args: argparse.Namespace) -> int:
    from spectral_backprop.runfiles import RESULTS
    from spectral_backprop.studies.modes import load_protocol, run_modes

    if not 0 <= args.first_seed < args.seeds:
        raise CLIError(f"need 0 <= --first-seed < --seeds, got {args.first_seed} and {args.seeds}")
    protocol = load_protocol(args.dataset)
    base = config_from_args(args, base=protocol["config"])
    beta = protocol["entropy_weight"] if args.entropy_weight is None else args.entropy_weight
    if beta <= 0:
        raise CLIError(f"--entropy-weight must be positive, got {beta}")
    data = load_data(replace(base, dataset=args.dataset))
    summary = run_modes(args.dataset, args.seeds, args.out, base, beta, resume=args.resume,
                        first_seed=args.first_seed, data=data)
    table = {v: {k: summary["variants"][v][k]
                 for k in ("modes", "high_quality", "reverse_kl", "spread")}
             for v in summary["variants"]}
    print(json.dumps(table, indent=2))
    print(f"wrote {Path(args.out) / RESULTS}")
    return 0


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "modes", help="mode coverage of a plain vs an entropy-regularised GAN",
        description="The VEEGAN/PacGAN mode-coverage protocol (2,500 samples; high quality = "
                    "within 3 std of the nearest mode; reverse KL of the captured-mode "
                    "histogram against uniform), for a plain GAN and a GAN with entropy term, "
                    "same budget, several seeds. Writes OUT/results.json (mean and standard "
                    "error per variant, plus the within-mode spread) and one run folder per "
                    "variant and seed. The settings start from the data set's protocol "
                    "(studies/configs/modes_grid.json or modes_ring.json; docs/training.md): "
                    "grid, 20,000 steps, R1 gamma 0.1 cosine-decayed over the second half, "
                    "beta 0.01 cosine-decayed over the first half; ring, 10,000 steps, beta "
                    "0.03. Any flag below overrides them (the defaults shown are "
                    "GANConfig's, under the protocol's).",
    )
    p.add_argument("--dataset", choices=["ring", "grid"], required=True)
    p.add_argument("--seeds", type=int, default=5, help="seeds per variant (default 5)")
    p.add_argument("--first-seed", type=int, default=0,
                   help="start at this seed (to split seeds over processes; default 0)")
    p.add_argument("--entropy-weight", type=float, metavar="BETA",
                   help="beta of the entropy variant (default: the protocol's)")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--resume", action="store_true",
                   help="reuse finished runs and resume unfinished ones in --out")
    add_gan_arguments(p, exclude=("dataset", "entropy.weight"))
    p.set_defaults(func=run)
