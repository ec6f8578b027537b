"""Collect the figures of docs/analysis.md into docs/figures/ (PNG).

Usage:
    python experiments/paper_findings_figures.py ANALYZE_DIR FACTORS_DIR [--out docs/figures]

Copies the figures ``spectral-backprop analyze`` wrote for the MNIST DCGAN, and draws
traversals of the first sprites generator of a ``spectral-backprop factors`` run along
its top local and global eigen-directions, SeFa, GANSpace and random directions.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import torch

from spectral_backprop.analysis import ganspace_directions, random_directions, sefa_directions
from spectral_backprop.geometry import global_directions, principal_directions, traverse
from spectral_backprop.pictures import save_image_grid
from spectral_backprop.train import load_gan_generator

COPY = ["search_trajectory.png", "search_loglik.png", "spectra.png", "traverse_local_0.png",
        "traverse_global.png", "eigen_path.png", "typical.png", "search_final.png"]


def sprite_traversals(run: Path, out: Path, r: int = 3, steps: int = 9) -> None:
    G, _, _ = load_gan_generator(run)
    G = G.double()
    g = torch.Generator().manual_seed(0)
    k = G.latent_dim
    z = torch.randn(1, k, generator=g, dtype=torch.float64)
    D = {
        "local": principal_directions(G, z, r)[1][0],
        "global": global_directions(G, r, 512, generator=g)[1],
        "sefa": sefa_directions(G, r)[1],
        "ganspace": ganspace_directions(G, r, 2000, generator=g)[1],
        "random": random_directions(k, r, generator=g, dtype=torch.float64),
    }
    rows, labels = [], []
    for name, V in D.items():
        for j in range(r):
            rows.append(traverse(G, z, V[:, j], steps, extent=2.0)[0])
            labels.append(f"{name} {j + 1}")
    save_image_grid(torch.stack(rows), out / "sprites_traversals.png", row_labels=labels,
                    title="sprites: top directions per method, offsets ±2")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("analyze_dir", type=Path)
    p.add_argument("factors_dir", type=Path)
    p.add_argument("--out", type=Path, default=Path("docs/figures"))
    a = p.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    for name in COPY:
        shutil.copy(a.analyze_dir / name, a.out / f"mnist_{name}")
    sprite_traversals(a.factors_dir / "seed_0", a.out)


if __name__ == "__main__":
    main()
