"""Data-parallel check: a 2-process gloo run against a 1-process run, same global batch.

Runs ``torchrun --standalone --nproc_per_node=2 -m spectral_backprop train ...`` and the
same command without torchrun, then compares the logged loss curves step by step and
plots them. Usage::

    python experiments/ddp_curves.py --out runs/ddp --steps 200

Writes ``OUT/one/``, ``OUT/two/`` (run folders), ``OUT/curves.png`` and
``OUT/summary.json`` (largest absolute and relative differences per curve).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from spectral_backprop.pictures import pyplot as _pyplot
from spectral_backprop.train import read_metrics

KEYS = ("d_loss", "g_loss", "entropy")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/ddp"))
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()
    train = ["-m", "spectral_backprop", "train", "--dataset", "mnist", "--arch", "dcgan",
             "--width", "16", "--latent-dim", "16", "--batch-size", "64",
             "--steps", str(args.steps), "--entropy-weight", "0.01", "--entropy-batch", "4",
             "--entropy-dtype", "float32",
             "--log-every", "1", "--ckpt-every", str(args.steps), "--device", "cpu",
             "--no-progress"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    launchers = {"two": [sys.executable, "-m", "torch.distributed.run", "--standalone",
                         "--nproc_per_node=2"],
                 "one": [sys.executable]}
    for name, launcher in launchers.items():
        shutil.rmtree(args.out / name, ignore_errors=True)
        cmd = [*launcher, *train, "--out", str(args.out / name)]
        print(" ".join(cmd), flush=True)
        subprocess.run(cmd, env=env, check=True)

    curves = {name: read_metrics(args.out / name) for name in launchers}
    summary = {"command": " ".join(["spectral-backprop", *train[2:]]), "steps": args.steps}
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(KEYS), figsize=(4 * len(KEYS), 3.2))
    for ax, key in zip(axes, KEYS, strict=True):
        one = [r[key] for r in curves["one"]]
        two = [r[key] for r in curves["two"]]
        diffs = [abs(a - b) for a, b in zip(one, two, strict=True)]
        summary[key] = {"max_abs_diff": max(diffs),
                        "max_rel_diff": max(d / max(abs(a), 1e-12) for d, a in zip(diffs, one,
                                                                                   strict=True))}
        steps = [r["step"] for r in curves["one"]]
        ax.plot(steps, one, label="1 process", lw=2)
        ax.plot(steps, two, label="2 processes (gloo)", lw=1, ls="--")
        ax.set_title(f"{key} (max |diff| {summary[key]['max_abs_diff']:.1e})", fontsize=9)
        ax.set_xlabel("step")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out / "curves.png", dpi=120)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
