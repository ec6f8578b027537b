r"""Finding 2 measured: factor purity of metric eigen-directions against the baselines.

For one generator trained on the procedural sprites, every method proposes ``r``
directions and each is scored by :func:`~.purity.direction_purity` at the same latents
with the same step:

=============== =========================================================
``eigen_local`` top ``r`` eigenvectors of ``J(z)ᵀJ(z)`` at each latent
``eigen_global`` top ``r`` eigenvectors of ``E_z[JᵀJ]``
``sefa``        top ``r`` eigenvectors of ``WᵀW``, first layer (SeFa)
``ganspace``    first ``r`` PCA directions of early features (GANSpace)
``random``      ``r`` random orthonormal directions (fresh per latent)
=============== =========================================================

A generator's score for a method is the mean purity over latents and directions; over
several seeds (independently trained generators) we report the mean and the standard
error of those per-seed scores.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import Tensor

from ..geometry import global_directions, infer_latent_dim, param_dtype, principal_directions
from .baselines import ganspace_directions, random_directions, sefa_directions
from .purity import factor_changes, factor_spread, purity_from_changes

__all__ = ["METHODS", "compare_directions", "run_factor_experiment"]

METHODS = ("eigen_local", "eigen_global", "sefa", "ganspace", "random")


def compare_directions(
    G: torch.nn.Module,
    images: Tensor,
    *,
    r: int = 3,
    n_latents: int = 128,
    delta: float = 0.5,
    global_samples: int = 512,
    ganspace_samples: int = 2000,
    seed: int = 0,
    latent_dim: int | None = None,
) -> dict[str, dict[str, float]]:
    """Mean factor purity of each method's top ``r`` directions on one generator.

    Args:
        G: generator trained on sprites.
        images: real sprite images ``[N, 1, S, S]``, for each factor's spread.
        r: directions per method.
        n_latents: prior latents at which every direction is scored.
        delta: half-step of the central difference (latent units).
        global_samples: prior samples in ``E_z[JᵀJ]``.
        ganspace_samples: prior samples for the GANSpace PCA.
        seed: seeds the latents and the random/global/GANSpace draws.
        latent_dim: k (default ``G.latent_dim``).

    Returns:
        ``{method: {"mean": float, "per_direction": [r floats],
        "dominant_factor_share": [r][F] floats}}``: the mean purity, per direction, and
        for each direction the fraction of latents at which each factor (in
        ``FACTOR_NAMES`` order) holds the largest share of the change.
    """
    G.eval()
    k = infer_latent_dim(G, latent_dim)
    dtype = param_dtype(G)
    g = torch.Generator().manual_seed(seed)
    spread = factor_spread(images)
    z = torch.randn(n_latents, k, generator=g, dtype=dtype)
    rand = torch.stack([random_directions(k, r, generator=g, dtype=dtype)
                        for _ in range(n_latents)])
    directions = {
        "eigen_local": principal_directions(G, z, r)[1],
        "eigen_global": global_directions(G, r, global_samples, latent_dim=k, generator=g)[1],
        "sefa": sefa_directions(G, r)[1],
        "ganspace": ganspace_directions(G, r, ganspace_samples, latent_dim=k, generator=g)[1],
        "random": rand,
    }
    out = {}
    for name, D in directions.items():
        change = factor_changes(G, z, D.to(dtype), spread, delta=delta).double()
        per_dir = torch.nanmean(purity_from_changes(change), dim=0)
        # Which factor holds the largest share, per direction (fractions over latents).
        top = change.abs().argmax(-1)
        shares = torch.stack([(top == j).double().mean(0) for j in range(change.shape[-1])], -1)
        out[name] = {"mean": per_dir.mean().item(), "per_direction": per_dir.tolist(),
                     "dominant_factor_share": shares.tolist()}
    return out


def run_factor_experiment(
    seeds: int,
    out_dir: str | Path,
    *,
    steps: int = 3000,
    image_size: int = 16,
    latent_dim: int = 8,
    width: int = 32,
    r: int = 3,
    n_latents: int = 128,
    delta: float = 0.5,
    progress: bool = True,
) -> dict:
    """Train ``seeds`` DCGANs on sprites and compare direction methods; writes results.json.

    Each seed trains in ``out_dir/seed_<i>`` with :func:`spectral_backprop.train.gan.train_gan`
    (a finished seed is reused, so an interrupted experiment can be re-run). Results hold
    ``purity: {method: {"mean", "se"}}`` over seeds, plus per-seed values and settings.
    """
    from ..data import load_dataset
    from ..train.config import GANConfig
    from ..train.gan import train_gan
    from ..train.modes import mean_se
    from ..train.run import CHECKPOINT

    if not isinstance(seeds, int) or seeds < 1:
        raise ValueError(f"seeds must be a positive integer, got {seeds!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data_options = {"image_size": image_size, "num_samples": 10_000}
    data = load_dataset("sprites", **data_options)
    per_seed = []
    for seed in range(seeds):
        cfg = GANConfig(dataset="sprites", data_options=data_options, arch="dcgan",
                        latent_dim=latent_dim, width=width, steps=steps, batch_size=64,
                        seed=seed, device="cpu", progress=progress, ckpt_every=steps,
                        log_every=max(1, steps // 10))
        run_dir = out / f"seed_{seed}"
        resume = (run_dir / CHECKPOINT).exists()
        G = train_gan(cfg, run_dir, resume=resume, dataset=data).generator
        scores = compare_directions(G, data.x, r=r, n_latents=n_latents, delta=delta, seed=seed)
        (run_dir / "purity.json").write_text(json.dumps(scores, indent=2) + "\n")
        per_seed.append(scores)
        if progress:
            print(f"seed {seed}: " + ", ".join(f"{m} {s['mean']:.3f}" for m, s in scores.items()))
    results = {
        "purity": {m: mean_se([s[m]["mean"] for s in per_seed]) for m in METHODS},
        "per_seed": per_seed,
        "settings": {"seeds": seeds, "steps": steps, "image_size": image_size,
                     "latent_dim": latent_dim, "width": width, "r": r,
                     "n_latents": n_latents, "delta": delta},
    }
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    return results
