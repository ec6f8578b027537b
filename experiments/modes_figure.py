"""Scatter plots of 2,500 samples from the plain and entropy-regularised generators of a
``spectral-backprop modes`` run (one seed), for the docs.

Usage: ``python experiments/modes_figure.py runs/modes_grid --seed 0 --out docs/figures``
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from spectral_backprop.analysis.modes import NUM_EVAL_SAMPLES
from spectral_backprop.density import seeded_samples
from spectral_backprop.pictures import save_samples_png
from spectral_backprop.studies.modes import describe_terms, eval_seed
from spectral_backprop.train import load_gan_generator


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("docs/figures"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for variant in ("gan", "entropy"):
        run = args.folder / variant / f"seed{args.seed}"
        G, config, data = load_gan_generator(run)
        figures = json.loads((run / "eval.json").read_text())
        # The same latents as the evaluation.
        x = seeded_samples(G, G.latent_dim, NUM_EVAL_SAMPLES, eval_seed(config.seed))
        title = (f"{config.dataset}, {variant} ({describe_terms(config)})\n"
                 f"{config.steps} steps, seed {args.seed}: "
                 f"{figures['modes']} modes, {100 * figures['high_quality']:.1f}% HQ")
        save_samples_png(x, args.out / f"training_{args.folder.name}_{variant}.png", data.modes,
                         title)


if __name__ == "__main__":
    main()
