"""Train the generators used by the issue-5 experiments (DCGAN on MNIST; DCGAN on sprites).

Usage:
    python experiments/issue5_train.py mnist OUT_DIR [--steps N] [--seed S]
    python experiments/issue5_train.py sprites OUT_DIR [--steps N] [--seed S]

Thin wrapper over :func:`spectral_backprop.train.gan.train_gan` with the settings the
issue-5 experiments use (small widths so that a run fits a 2-core CPU budget).
"""

from __future__ import annotations

import argparse

import torch

from spectral_backprop.train.config import GANConfig
from spectral_backprop.train.gan import train_gan

SETTINGS = {
    "mnist": dict(dataset="mnist", arch="dcgan", latent_dim=32, width=32, batch_size=64),
    "sprites": dict(dataset="sprites", data_options={"image_size": 16, "num_samples": 10000},
                    arch="dcgan", latent_dim=8, width=32, batch_size=64),
}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("which", choices=sorted(SETTINGS))
    p.add_argument("out")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    cfg = GANConfig(**SETTINGS[a.which], steps=a.steps, seed=a.seed, device="cpu",
                    ckpt_every=500, log_every=100)
    train_gan(cfg, a.out)


if __name__ == "__main__":
    main()
