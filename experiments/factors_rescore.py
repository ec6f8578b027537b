"""Re-score the generators of a ``spectral-backprop factors`` run with other settings.

Usage:
    python experiments/factors_rescore.py RUN_DIR [--r 1 3 5] [--delta 0.25 0.5 1.0]

Loads ``RUN_DIR/seed_*/checkpoint.pt`` and runs
:func:`spectral_backprop.analysis.compare_directions` for every ``(r, delta)`` pair,
printing mean ± standard error over seeds per method and writing
``RUN_DIR/rescore.json``. Every setting tried is reported, so the sensitivity of the
comparison to the protocol's free parameters is visible.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from spectral_backprop.analysis import METHODS, compare_directions
from spectral_backprop.stats import mean_se
from spectral_backprop.train import load_gan_generator


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("run_dir", type=Path)
    p.add_argument("--r", type=int, nargs="+", default=[1, 3, 5])
    p.add_argument("--delta", type=float, nargs="+", default=[0.25, 0.5, 1.0])
    p.add_argument("--latents", type=int, default=128)
    a = p.parse_args()
    torch.set_num_threads(1)
    seeds = sorted(a.run_dir.glob("seed_*/checkpoint.pt"))
    gens = [load_gan_generator(s) for s in seeds]
    data = gens[0][2]
    rows = []
    for r in a.r:
        for delta in a.delta:
            per_seed = [compare_directions(G, data.x, r=r, n_latents=a.latents, delta=delta,
                                           seed=i) for i, (G, _, _) in enumerate(gens)]
            summary = {m: mean_se([s[m]["mean"] for s in per_seed]) for m in METHODS}
            rows.append({"r": r, "delta": delta, "purity": summary, "per_seed": per_seed})
            print(f"r={r} delta={delta}: " + ", ".join(
                f"{m} {v['mean']:.3f}±{v['se']:.3f}" for m, v in summary.items()), flush=True)
    (a.run_dir / "rescore.json").write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
