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

A generator's score for a method is the mean purity over latents and directions; the
study in :mod:`spectral_backprop.studies.factors` trains several generators and reports
the mean and standard error of those per-seed scores.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..geometry import global_directions, infer_latent_dim, param_dtype, principal_directions
from .baselines import ganspace_directions, random_directions, sefa_directions
from .purity import factor_changes, factor_spread, purity_from_changes

__all__ = ["METHODS", "compare_directions"]

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
