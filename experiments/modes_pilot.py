"""Pilot runs for choosing the entropy schedule of the mode-coverage protocol.

Trains only the entropy variant, on pilot seeds that the reported tables never use
(100, 101, ...), under the protocol's budget with the given overrides, and prints the
mode-coverage figures per seed and their mean. Example::

    OMP_NUM_THREADS=1 python experiments/modes_pilot.py --dataset grid --seeds 100 101 102 \\
        --beta 0.3 --set reg_schedule=cosine --set reg_decay_start=0.5 \\
        --out runs/pilot/b03_cos05
"""

from __future__ import annotations

import argparse
import json
import statistics
from dataclasses import replace
from pathlib import Path

from spectral_backprop.data import load_dataset
from spectral_backprop.train import GANConfig
from spectral_backprop.train.gan import train_gan
from spectral_backprop.train.modes import PROTOCOL, evaluate_generator


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", choices=list(PROTOCOL), default="grid")
    p.add_argument("--seeds", type=int, nargs="+", default=[100, 101, 102])
    p.add_argument("--beta", type=float, required=True)
    p.add_argument("--set", action="append", default=[], metavar="FIELD=JSON",
                   help="override a GANConfig field (JSON value or bare string)")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()

    values = dict(PROTOCOL[args.dataset]["config"], progress=False)
    for item in args.set:
        key, _, raw = item.partition("=")
        try:
            values[key] = json.loads(raw)
        except json.JSONDecodeError:
            values[key] = raw
    base = GANConfig(**values)
    data = load_dataset(args.dataset)
    rows = []
    for seed in args.seeds:
        run_dir = args.out / f"seed{seed}"
        eval_path = run_dir / "eval.json"
        if eval_path.exists():
            figures = json.loads(eval_path.read_text())
        else:
            config = replace(base, entropy_weight=args.beta, seed=seed)
            result = train_gan(config, run_dir, resume=True, dataset=data)
            figures = evaluate_generator(result.generator, result.latent_dim, data.modes,
                                         data.mode_std, seed=10_000 + seed)
            eval_path.write_text(json.dumps(figures) + "\n")
        rows.append(figures)
        print(f"seed {seed}: {figures}", flush=True)
    means = {k: statistics.fmean(r[k] for r in rows) for k in rows[0]}
    print("mean:", json.dumps(means))


if __name__ == "__main__":
    main()
