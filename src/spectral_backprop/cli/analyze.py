"""``spectral-backprop analyze CHECKPOINT --out DIR``: both findings on a trained GAN.

Calls :func:`spectral_backprop.analysis.analyze_generator` on the generator of a
training run and writes its figures, ``results.json`` and ``arrays.npz`` to ``DIR``.
Every setting is a field of :class:`~spectral_backprop.analysis.AnalysisConfig`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from spectral_backprop.cli import CLIError, writable_dir
from spectral_backprop.cli.flags import add_config_arguments, config_from_args
from spectral_backprop.runfiles import RESULTS, run_lock


def add_parser(subparsers) -> None:
    from spectral_backprop.analysis import AnalysisConfig

    p = subparsers.add_parser(
        "analyze", help="high-likelihood search, likelihood gap, eigen-directions of a GAN",
        description=__doc__.splitlines()[0].strip("`"),
    )
    p.add_argument("checkpoint", type=Path, help="a training run folder or its checkpoint.pt")
    p.add_argument("--out", type=Path, required=True, help="folder for figures and results")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    add_config_arguments(p, AnalysisConfig)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from spectral_backprop.analysis import AnalysisConfig, analyze_generator
    from spectral_backprop.train import load_gan_generator

    config = config_from_args(args, AnalysisConfig)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        G, _, data = load_gan_generator(args.checkpoint)
    except (OSError, ValueError, TypeError, ImportError) as err:
        raise CLIError(str(err)) from err
    if not data.is_image:
        raise CLIError(f"analyze needs an image generator; {args.checkpoint} was trained on "
                       f"{data.name} points of shape {data.shape}")
    out = writable_dir(args.out)
    try:
        with run_lock(out):
            results = analyze_generator(G, data.x, out, labels=data.labels, config=config)
    except ValueError as err:  # RunLockedError too
        raise CLIError(str(err)) from err
    keys = [k for k, v in results.items() if isinstance(v, float)]
    print(json.dumps({k: round(results[k], 4) for k in keys}, indent=2))
    print(f"wrote {out / RESULTS} and {len(results['figures'])} figures")
    return 0
