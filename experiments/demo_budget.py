"""How many DCGAN steps the demo needs: sample quality against steps and seconds.

Trains the demo's DCGAN (plain, or with the entropy term) on the 4,500 training digits of
:func:`~spectral_backprop.data.manifolds.mnist_manifold` in stages (the learning rate is
constant, so a run resumed to ``S`` steps equals a run of ``S`` steps), and after each
stage measures on 1,000 samples against the 500 held-out digits: the classifier's mean
confidence (ratio to its confidence on the held-out digits), the classes with ≥ 5% of
samples, and the feature FD. One torch thread. Usage::

    OMP_NUM_THREADS=1 .venv/bin/python experiments/demo_budget.py --variant entropy \
        --stages 1000 2000 3000 4000 6000 --out /tmp/budget_entropy
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from spectral_backprop.analysis.aberrance import classifier_scores, train_classifier
from spectral_backprop.analysis.coverage import sample_quality
from spectral_backprop.data.base import Dataset
from spectral_backprop.data.manifolds import mnist_manifold
from spectral_backprop.train import GANConfig, train_gan
from spectral_backprop.train.config import Decay, EntropyTerm


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--variant", choices=["gan", "entropy", "ml"], default="entropy")
    p.add_argument("--dtype", default="float32", help="ML only: training precision")
    p.add_argument("--ml-batch", type=int, default=64)
    p.add_argument("--volume-points", type=int, default=8, help="ML only")
    p.add_argument("--stages", type=int, nargs="+", default=[1000, 2000, 3000, 4000, 6000])
    p.add_argument("--beta", type=float, default=0.05)
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--latent-dim", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--clf-epochs", type=int, default=10)
    p.add_argument("--lr-schedule", default="constant",
                   help="cosine: give one stage (the decay spans the run's steps)")
    p.add_argument("--entropy-decay", default="constant", help="shape of β's decay")
    p.add_argument("--ema", type=float, default=0.0, help="weight average decay")
    p.add_argument("--entropy-end", type=float, default=1.0, help="β is 0 from this fraction")
    p.add_argument("--out", required=True)
    a = p.parse_args()
    torch.set_num_threads(1)
    split = mnist_manifold()
    train = Dataset("mnist", split.x, labels=split.labels)
    clf, acc = train_classifier(split.x, split.labels, epochs=a.clf_epochs, seed=a.seed,
                                holdout=0.0)
    real_conf = classifier_scores(clf, split.test)["confidence"].mean().item()
    def quality(G: torch.nn.Module) -> dict:
        q = sample_quality(G, clf, split.test, a.latent_dim, num_samples=1000, seed=7)
        return {"confidence_ratio": q["classifier_confidence"] / real_conf,
                "classes_5pct": q["class_coverage"]["classes_covered"],
                "min_share": min(q["class_coverage"]["class_shares"]), "fd": q["fd"]}

    rows, seconds = [], 0.0
    if a.variant == "ml":
        from spectral_backprop.train.manifold import ManifoldConfig, train_manifold
        for steps in a.stages:  # separate runs: the schedule is a fraction of the steps
            cfg = ManifoldConfig(dataset="mnist_manifold", arch="conv",
                                 latent_dim=a.latent_dim, steps=steps, batch_size=a.ml_batch,
                                 dtype=a.dtype, eval_every=0,
                                 volume_points=a.volume_points, eval_samples=500, seed=a.seed,
                                 width=a.width, ckpt_every=steps, device="cpu", progress=False)
            t0 = time.perf_counter()
            res = train_manifold(cfg, f"{a.out}/{steps}")
            row = {"steps": steps, "seconds": round(time.perf_counter() - t0, 1),
                   "test_nll": res.metrics["test_nll"],
                   "median_distance": res.metrics["manifold_distance"],
                   **quality(res.generator.eval())}
            rows.append(row)
            print(json.dumps(row), flush=True)
        a.stages = []
    for steps in a.stages:
        cfg = GANConfig(dataset="mnist", arch="dcgan", latent_dim=a.latent_dim, width=a.width,
                        batch_size=a.batch_size, steps=steps, seed=a.seed, lr_g=a.lr, lr_d=a.lr,
                        lr_schedule=a.lr_schedule, ema=a.ema,
                        entropy=EntropyTerm(weight=a.beta if a.variant == "entropy" else 0.0,
                                            batch=4, dtype="float32",
                                            decay=Decay(a.entropy_decay, end=a.entropy_end)),
                        log_every=100, ckpt_every=steps, device="cpu", progress=False)
        t0 = time.perf_counter()
        res = train_gan(cfg, a.out, resume=True, dataset=train)
        seconds += time.perf_counter() - t0
        row = {"steps": steps, "train_seconds": round(seconds, 1),
               **quality(res.generator.eval())}
        rows.append(row)
        print(json.dumps(row), flush=True)
    Path(a.out, "budget.json").write_text(json.dumps(
        {"args": vars(a), "classifier_accuracy": acc, "real_confidence": real_conf,
         "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
