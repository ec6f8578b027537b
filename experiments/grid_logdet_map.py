"""Where a trained grid generator stretches latent space: ``½ log det JᵀJ`` over the
latent plane, and whether its large values are the samples between modes.

This is the evidence behind ``GANConfig.entropy_cap``: the entropy term rewards every
sample by ``½ log det JᵀJ``, and a continuous map from one Gaussian onto 25 separate
modes has to stretch latent space most where it jumps between modes.

Usage::

    python experiments/grid_logdet_map.py runs/modes_grid_r1 --seed 0 --out docs/figures

Prints, per variant, the share of non-high-quality (non-HQ) evaluation samples among
those with ``½ log det JᵀJ`` above and below 0, and the share of the non-HQ samples that
lie above 0; writes ``training_logdet_map_<folder name>.png``.
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import torch

from spectral_backprop.analysis.modes import NUM_EVAL_SAMPLES
from spectral_backprop.pictures import pyplot
from spectral_backprop.spectral import SingularMetricWarning, logdet_jtj
from spectral_backprop.studies.modes import eval_seed
from spectral_backprop.train import load_gan_generator
from spectral_backprop.train.common import in_dtype

CAP = 0.0  # the cap whose two sides the printout compares


def half_logdet(G: torch.nn.Module, z: torch.Tensor) -> torch.Tensor:
    """``½ log det JᵀJ`` per latent, in float64 (-inf where ``J`` is singular)."""
    G64 = in_dtype(G, torch.float64)
    with torch.no_grad(), warnings.catch_warnings():
        # Singular latents are expected (ReLU); they are drawn black, not reported.
        warnings.simplefilter("ignore", SingularMetricWarning)
        values = [0.5 * logdet_jtj(G64, chunk.double()) for chunk in z.split(4096)]
    return torch.cat(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--extent", type=float, default=3.0, help="latent box half-width")
    parser.add_argument("--resolution", type=int, default=241)
    parser.add_argument("--out", type=Path, default=Path("docs/figures"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    plt = pyplot()
    variants = ("gan", "entropy")
    fig, axes = plt.subplots(len(variants), 2, figsize=(10, 4.6 * len(variants)))
    side = torch.linspace(-args.extent, args.extent, args.resolution)
    z1, z2 = torch.meshgrid(side, side, indexing="xy")
    z_plane = torch.stack([z1.flatten(), z2.flatten()], dim=1)
    print("| variant | samples with ½ log det > 0 | non-HQ among them | non-HQ among the rest "
          "| non-HQ samples with ½ log det > 0 |")
    print("|---|---|---|---|---|")
    for row, variant in zip(axes, variants, strict=True):
        run = args.folder / variant / f"seed{args.seed}"
        G, config, data = load_gan_generator(run)
        # The evaluation's latents, as in eval.json.
        z = torch.randn(NUM_EVAL_SAMPLES, G.latent_dim,
                        generator=torch.Generator().manual_seed(eval_seed(config.seed)))
        with torch.no_grad():
            x = G(z).double()
        dist = torch.cdist(x, data.modes.double()).min(dim=1).values
        bad = dist > 3 * data.mode_std
        h = half_logdet(G, z)
        high = h > CAP
        print(f"| {variant} (β = {config.entropy.weight}) | {high.double().mean():.1%} | "
              f"{bad[high].double().mean():.1%} | {bad[~high].double().mean():.1%} | "
              f"{high[bad].double().mean():.1%} |")

        plane = half_logdet(G, z_plane).reshape(args.resolution, args.resolution)
        finite = plane[plane.isfinite()]
        lo, hi = finite.quantile(0.01).item(), finite.quantile(0.99).item()
        ax = row[0]
        image = ax.imshow(plane.clamp(lo, hi).numpy(), origin="lower", cmap="viridis",
                          extent=(-args.extent, args.extent, -args.extent, args.extent))
        ax.contour(z1.numpy(), z2.numpy(), plane.numpy(), levels=[CAP], colors="white",
                   linewidths=0.8)
        ax.set(title=f"{variant}: ½ log det JᵀJ over the latent plane\n"
                     f"(white: {CAP:g}; black: singular J)", xlabel="z₁", ylabel="z₂")
        ax.set_facecolor("black")
        fig.colorbar(image, ax=ax, shrink=0.8)

        ax = row[1]
        order = h.argsort()  # draw the stretched samples last, on top
        points = ax.scatter(x[order, 0], x[order, 1], c=h[order].clamp(lo, hi), s=3,
                            cmap="viridis")
        ax.scatter(data.modes[:, 0], data.modes[:, 1], marker="+", c="red", s=30, lw=0.8)
        ax.set(title=f"{variant}: samples coloured by ½ log det JᵀJ\n"
                     f"{bad.double().mean():.1%} outside 3 std of every mode",
               xlabel="x₁", ylabel="x₂", aspect="equal")
        fig.colorbar(points, ax=ax, shrink=0.8)
    fig.suptitle(f"{args.folder.name}, seed {args.seed}")
    fig.tight_layout()
    path = args.out / f"training_logdet_map_{args.folder.name}.png"
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
