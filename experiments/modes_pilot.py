"""Pilot runs for choosing the entropy schedule of the mode-coverage protocol.

Trains only the entropy variant, on pilot seeds that the reported tables never use
(100, 101, ...), under the protocol's budget with the given overrides, and prints the
mode-coverage figures per seed and their mean. Example::

    OMP_NUM_THREADS=1 python experiments/modes_pilot.py --dataset grid --seeds 100 101 102 \\
        --beta 0.3 --set r1.decay.shape=cosine --set r1.decay.start=0.5 \\
        --out runs/pilot/b03_cos05
    python experiments/modes_pilot.py --summary runs/pilot/*    # markdown table of all pilots
"""

from __future__ import annotations

import argparse
import json
import statistics
from dataclasses import replace
from pathlib import Path

from spectral_backprop.data import load_dataset
from spectral_backprop.studies.modes import describe_terms, load_protocol, train_and_evaluate
from spectral_backprop.train import GANConfig


def describe(values: dict) -> str:
    """The settings that differ between pilots (old flat config files are read too)."""
    config = GANConfig.from_dict(values)
    protocol = GANConfig.from_dict(load_protocol(config.dataset)["config"])
    parts = [f"G {config.g_activation or 'relu'} width {config.width}", describe_terms(config)]
    if config.steps != protocol.steps:
        parts.append(f"{config.steps} steps")
    if config.entropy.batch != protocol.entropy.batch:
        parts.append(f"entropy batch {config.entropy.batch}")
    return ", ".join(parts)


def summarise(folders: list[Path]) -> None:
    print("| pilot | seed: modes / high quality / reverse KL / spread |")
    print("|---|---|")
    for folder in sorted(folders):
        cells, config = [], None
        for run in sorted(folder.glob("seed*")):
            if not (run / "eval.json").exists():
                continue  # stopped early: not reported
            config = json.loads((run / "config.json").read_text())
            r = json.loads((run / "eval.json").read_text())
            # Pilots saved under older config field names were not re-evaluated.
            spread = f"{r['spread']:.2f}" if "spread" in r else "—"
            cells.append(f"{run.name[4:]}: {r['modes']} / {100 * r['high_quality']:.1f}% / "
                         f"{r['reverse_kl']:.3f} / {spread}")
        if cells:
            print(f"| {describe(config)} | {'; '.join(cells)} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", choices=["grid", "ring"], default="grid")
    p.add_argument("--seeds", type=int, nargs="+", default=[100, 101, 102])
    p.add_argument("--beta", type=float)
    p.add_argument("--set", action="append", default=[], metavar="FIELD=JSON",
                   help="override a GANConfig field, dotted for nested ones "
                        "(r1.decay.start=0.5; JSON value or bare string)")
    p.add_argument("--out", type=Path)
    p.add_argument("--summary", type=Path, nargs="+", metavar="DIR",
                   help="print a table of finished pilot folders instead of training")
    args = p.parse_args()
    if args.summary:
        summarise(args.summary)
        return
    if args.beta is None or args.out is None:
        p.error("--beta and --out are required for training")

    overrides: dict = {"progress": False}
    for item in args.set:
        key, _, raw = item.partition("=")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        *parents, leaf = key.split(".")
        node = overrides
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    base = GANConfig.from_layers(load_protocol(args.dataset)["config"], overrides)
    data = load_dataset(args.dataset)
    rows = []
    for seed in args.seeds:
        config = replace(base, entropy=replace(base.entropy, weight=args.beta), seed=seed)
        figures = train_and_evaluate(config, args.out / f"seed{seed}", data, resume=True)
        rows.append(figures)
        print(f"seed {seed}: {figures}", flush=True)
    means = {k: statistics.fmean(r[k] for r in rows) for k in rows[0]}
    print("mean:", json.dumps(means))


if __name__ == "__main__":
    main()
