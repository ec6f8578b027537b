"""Mode coverage of a generator on the 2-D ring and grid mixtures.

Protocol of VEEGAN (Srivastava et al. 2017, arXiv 1705.07761) and PacGAN (Lin et al.
2018, arXiv 1712.04086, Table 1): on 2,500 generated samples,

* a sample is *high quality* when it lies within 3 standard deviations of its nearest
  mode;
* a mode is *captured* when it is the nearest mode of at least one high-quality sample;
* the *reverse KL* is ``KL(p̂ ‖ uniform) = Σ_m p̂_m log(M p̂_m)``, where ``p̂`` is the
  histogram of nearest modes over the high-quality samples and M the number of modes.

We add one figure: the *spread*, the root-mean-square per-coordinate offset of the
high-quality samples from their mode, in units of the mode's std. Data drawn from the
mixture itself scores ``√(E[χ²₂ | χ²₂ < 9]/2) ≈ 0.974`` (the 3-std cut truncates it).
Below that, the generator squeezes each mode towards a point: high quality rewards
this, the spread exposes it.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..density import seeded_samples

__all__ = ["MODE_FIGURES", "NUM_EVAL_SAMPLES", "evaluate_generator", "mode_coverage"]

NUM_EVAL_SAMPLES = 2500
MODE_FIGURES = ("modes", "high_quality", "reverse_kl", "spread")


def mode_coverage(samples: Tensor, modes: Tensor, std: float, num_std: float = 3.0
                  ) -> dict[str, float]:
    """``modes`` (captured count), ``high_quality`` (fraction), ``reverse_kl`` (nats)
    and ``spread`` (RMS offset per coordinate of the high-quality samples, in stds).

    With no high-quality sample the histogram is undefined and ``reverse_kl`` and
    ``spread`` are NaN.

    Example:
        >>> modes = torch.tensor([[0.0, 0.0], [4.0, 0.0]])
        >>> mode_coverage(torch.tensor([[0.0, 0.01], [9.0, 9.0]]), modes, std=0.05)["modes"]
        1
    """
    dist, nearest = torch.cdist(samples.double(), modes.double()).min(dim=1)
    good = dist <= num_std * std
    counts = torch.bincount(nearest[good], minlength=len(modes)).double()
    total = counts.sum()
    if total == 0:
        kl = spread = math.nan
    else:
        p = counts[counts > 0] / total
        kl = (p * (p * len(modes)).log()).sum().item()
        offsets = samples.double()[good] - modes.double()[nearest[good]]
        spread = offsets.pow(2).mean().sqrt().item() / std
    return {"modes": int((counts > 0).sum()), "high_quality": good.double().mean().item(),
            "reverse_kl": kl, "spread": spread}


def evaluate_generator(G: torch.nn.Module, latent_dim: int, modes: Tensor, std: float,
                       seed: int = 0, num_samples: int = NUM_EVAL_SAMPLES) -> dict[str, float]:
    """:func:`mode_coverage` of ``num_samples`` samples drawn with a seeded generator."""
    return mode_coverage(seeded_samples(G, latent_dim, num_samples, seed), modes, std)
