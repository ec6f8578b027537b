"""Train the generators behind docs/analysis.md (a DCGAN on MNIST; a DCGAN on sprites).

Usage:
    python experiments/paper_generators_train.py mnist OUT_DIR [--steps N] [--seed S]
    python experiments/paper_generators_train.py sprites OUT_DIR [--steps N] [--seed S]

Thin wrapper over :func:`spectral_backprop.train.train_gan` with the settings of the
``paper_generators`` protocol (``src/spectral_backprop/studies/configs/``).
"""

from __future__ import annotations

import argparse

import torch

from spectral_backprop.studies import load_protocol
from spectral_backprop.train import GANConfig, train_gan

SETTINGS = load_protocol("paper_generators")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("which", choices=sorted(SETTINGS))
    p.add_argument("out")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    cfg = GANConfig.from_dict({**SETTINGS[a.which], "steps": a.steps, "seed": a.seed})
    train_gan(cfg, a.out)


if __name__ == "__main__":
    main()
