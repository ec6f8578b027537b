r"""The likelihood gap: implicit log-likelihoods of typical samples, search outputs and
inverted real data, in nats and in bits per dimension.

``log p_G(G(z)) = log p_Z(z) − ½ log det JᵀJ`` is a density with respect to
``k``-dimensional volume on the generator's manifold, in the units of ``G``'s output
(images in ``[−1, 1]``). Bits per dimension follow the image-model convention,

.. math::  \text{bpd} = -\log p / (n \ln 2),

with ``n`` the number of output entries; they compare sets of points under one
generator, not models with different ``k`` or output scaling.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..density import implicit_log_prob
from ..geometry import Inversion, invert
from ..linalg.jacobian import Generator
from ..stats import standard_error

__all__ = ["bits_per_dim", "log_likelihoods", "score_data", "summarize"]


def log_likelihoods(
    G: Generator, z: Tensor, *, batch_size: int = 64, prior: object | None = None,
    method: str = "exact", **options
) -> Tensor:
    """``implicit_log_prob`` for many latents, in batches and without a graph (``[N]``)."""
    with torch.no_grad():
        parts = [implicit_log_prob(G, zb, prior=prior, method=method, **options)
                 for zb in z.detach().split(batch_size)]
    return torch.cat(parts)


def bits_per_dim(log_prob: Tensor | float, n: int) -> Tensor | float:
    """Negative log-likelihood in bits per output entry, ``−log p / (n ln 2)``."""
    return -log_prob / (n * math.log(2))


def summarize(log_prob: Tensor, n: int) -> dict[str, float]:
    """Mean, standard error, median (nats) and mean bits/dim of finite log-likelihoods."""
    v = log_prob.detach().double()
    v = v[torch.isfinite(v)]
    if v.numel() == 0:
        nan = float("nan")
        return {"mean": nan, "se": nan, "median": nan, "bits_per_dim": nan, "count": 0}
    se = standard_error(v).item()
    return {
        "mean": v.mean().item(),
        "se": se,
        "median": v.median().item(),
        "bits_per_dim": float(bits_per_dim(v.mean().item(), n)),
        "count": int(v.numel()),
    }


def score_data(G: Generator, x: Tensor, *, method: str = "exact", batch_size: int = 64,
               **invert_options) -> tuple[Tensor, Inversion]:
    """Implicit log-likelihood of data points at their recovered latents.

    Runs :func:`~spectral_backprop.geometry.invert`, then scores ``G(z*)`` (the nearest
    point found on the manifold). Check ``inversion.flagged``: points far from the
    manifold get the likelihood of their reconstruction, not their own.

    Returns:
        ``(log_prob[N], inversion)``.
    """
    inv = invert(G, x, **invert_options)
    return log_likelihoods(G, inv.latents, batch_size=batch_size, method=method), inv
