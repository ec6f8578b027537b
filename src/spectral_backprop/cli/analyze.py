"""``spectral-backprop analyze CHECKPOINT --out DIR``: both findings on a trained GAN.

Calls :func:`spectral_backprop.analysis.analyze_generator` on the generator of a
training run and writes its figures, ``results.json`` and ``arrays.npz`` to ``DIR``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from spectral_backprop.cli import CLIError


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "analyze", help="high-likelihood search, likelihood gap, eigen-directions of a GAN",
        description=__doc__.splitlines()[0].strip("`"),
    )
    p.add_argument("checkpoint", type=Path, help="a training run folder or its checkpoint.pt")
    p.add_argument("--out", type=Path, required=True, help="folder for figures and results")
    p.add_argument("--n-typical", type=int, default=256, help="prior samples scored")
    p.add_argument("--n-search", type=int, default=16, help="search chains")
    p.add_argument("--search-steps", type=int, default=200)
    p.add_argument("--search-lr", type=float, default=0.05)
    p.add_argument("--search-objective", choices=["loglik", "logdet"], default="loglik")
    p.add_argument("--n-real", type=int, default=64, help="real data points inverted")
    p.add_argument("--invert-steps", type=int, default=300)
    p.add_argument("--residual-tol", type=float, default=0.1,
                   help="RMS reconstruction error per entry above which real points are flagged")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float64",
                   help="precision of the analysis (float64: see AnalysisConfig.dtype)")
    p.add_argument("--classifier-epochs", type=int, default=3, help="0: no classifier")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def writable_dir(path: Path) -> Path:
    """Create ``path`` and check it can be written, or raise ``CLIError``."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write_test"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise CLIError(f"cannot write to output folder {path}: {err}") from err
    return path


def run(args: argparse.Namespace) -> int:
    import torch

    from spectral_backprop.analysis import AnalysisConfig, analyze_generator
    from spectral_backprop.analysis.loading import load_gan_generator

    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        G, config, data = load_gan_generator(args.checkpoint)
    except (FileNotFoundError, ValueError, TypeError, ImportError) as err:
        raise CLIError(str(err)) from err
    if not data.is_image:
        raise CLIError(f"analyze needs an image generator; {args.checkpoint} was trained on "
                       f"{data.name} points of shape {data.shape}")
    out = writable_dir(args.out)
    try:
        cfg = AnalysisConfig(
            n_typical=args.n_typical, n_search=args.n_search, search_steps=args.search_steps,
            search_lr=args.search_lr, search_objective=args.search_objective,
            n_real=args.n_real, invert_steps=args.invert_steps, residual_tol=args.residual_tol,
            dtype=args.dtype,
            classifier_epochs=args.classifier_epochs, seed=args.seed,
            progress=not args.no_progress,
        )
        results = analyze_generator(G, data.x, out, labels=data.labels, config=cfg)
    except ValueError as err:
        raise CLIError(str(err)) from err
    keys = [k for k, v in results.items() if isinstance(v, float)]
    print(json.dumps({k: round(results[k], 4) for k in keys}, indent=2))
    print(f"wrote {out / 'results.json'} and {len(results['figures'])} figures")
    return 0
