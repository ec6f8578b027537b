r"""Implicit densities of generators (the area formula).

For an injective generator ``G: R^k → R^n`` and latent density ``p_Z``, the density
of ``x = G(z)`` with respect to ``k``-dimensional volume on the image manifold is

.. math::  \log p_G(G(z)) = \log p_Z(z) - \tfrac12 \log\det J(z)^\top J(z),

and the generator's entropy is ``H[p_G] = H[p_Z] + ½ E_z log det JᵀJ`` (Federer's area
formula; used for GANs by Ramesh & LeCun 2018, arXiv 1806.00499). With ``k = n`` this is
the usual change of variables, ``½ log det JᵀJ = log |det J|``.
"""

from __future__ import annotations

import math
import numbers

import torch
from torch import Tensor

from .linalg.jacobian import Generator
from .spectral import SpectralEstimate, logdet_jtj
from .stats import standard_error

__all__ = ["StandardNormal", "entropy", "implicit_log_prob", "prior_log_prob", "seeded_samples"]


class StandardNormal:
    """The standard normal prior on ``R^k``; ``log_prob`` sums over the latent axis."""

    def log_prob(self, z: Tensor) -> Tensor:
        k = z.shape[-1]
        return -0.5 * (z * z).sum(-1) - 0.5 * k * math.log(2 * math.pi)

    def entropy(self, k: int) -> float:
        """``H[N(0, I_k)] = ½ k (1 + log 2π)`` nats."""
        return 0.5 * k * (1.0 + math.log(2 * math.pi))

    def sample(
        self, shape: tuple[int, int], generator: torch.Generator | None = None, **kw
    ) -> Tensor:
        return torch.randn(shape, generator=generator, **kw)

    def __repr__(self) -> str:
        return "StandardNormal()"


@torch.no_grad()
def seeded_samples(G: Generator, latent_dim: int, num_samples: int, seed: int) -> Tensor:
    """Samples ``G(z)`` of ``p_G``, ``z ~ N(0, I)`` drawn on the CPU from a generator seeded
    with ``seed`` (so the same on every device), evaluated on ``G``'s device; returned on the CPU.
    """
    z = torch.randn(num_samples, latent_dim, generator=torch.Generator().manual_seed(seed))
    params = list(G.parameters()) if isinstance(G, torch.nn.Module) else []
    return G(z.to(params[0].device) if params else z).cpu()


def prior_log_prob(prior: object | None, z: Tensor) -> Tensor:
    """``log p_Z(z)`` per sample for any object with ``log_prob`` (default standard normal).

    Per-coordinate log densities (shape ``[B, k]``, as from ``torch.distributions.Normal``)
    are summed over the latent axis.
    """
    prior = StandardNormal() if prior is None else prior
    log_prob = getattr(prior, "log_prob", None)
    if not callable(log_prob):
        raise TypeError(f"prior must have a callable log_prob, got {type(prior).__name__}")
    lp = log_prob(z)
    if lp.shape == z.shape:
        lp = lp.sum(-1)
    if lp.shape != z.shape[:1]:
        raise ValueError(
            f"prior.log_prob returned shape {tuple(lp.shape)}; expected [{z.shape[0]}] "
            f"or [{z.shape[0]}, {z.shape[1]}]"
        )
    return lp


def implicit_log_prob(
    G: Generator, z: Tensor, *, prior: object | None = None, method: str = "exact", **options
) -> Tensor | SpectralEstimate:
    r"""``log p_Z(z) − ½ log det(JᵀJ)``: the log density ``G`` assigns to its output ``G(z)``.

    Differentiable with respect to ``z`` and to every tensor ``G`` uses; the log det
    gradient comes from spectral backpropagation (see :func:`logdet_jtj`).

    Args:
        G: callable ``z[B, k] -> x[B, ...]``.
        z: latents ``[B, k]``.
        prior: any object with ``log_prob``; default :class:`StandardNormal`.
        method: estimator of the log det (``"exact"`` or a stochastic method).
        **options: passed to the estimator. With ``return_info=True`` the result is a
            :class:`SpectralEstimate` whose standard error is half the log det's.

    Returns:
        ``Tensor[B]`` in nats, with respect to ``k``-dimensional volume on the manifold.

    Example:
        >>> import torch
        >>> z = torch.zeros(1, 2)
        >>> implicit_log_prob(lambda z: 2 * z, z)  # N(0, 4 I) at 0: -log(2π) - log 4
        tensor([-3.2242])
    """
    logdet = logdet_jtj(G, z, method=method, **options)  # checks z before the prior reads it
    log_prior = prior_log_prob(prior, z)
    if isinstance(logdet, SpectralEstimate):
        return SpectralEstimate(log_prior - 0.5 * logdet.value, 0.5 * logdet.std_error,
                                logdet.info)
    return log_prior - 0.5 * logdet


def entropy(
    G: Generator,
    z: Tensor,
    *,
    prior: StandardNormal | None = None,
    method: str = "exact",
    cap: float | None = None,
    **options,
) -> SpectralEstimate:
    r"""Monte Carlo entropy of ``p_G``: ``H[p_Z] + ½ mean_b log det J(z_b)ᵀJ(z_b)``
    (the area formula; Ramesh & LeCun 2018, arXiv 1806.00499, section 4).

    ``z`` must be samples of the prior (standard normal by default, whose entropy is
    known in closed form). The value is differentiable (use it as ``-β·H`` in a loss).

    With ``cap = c`` it is the truncated entropy
    ``H_c = H[p_Z] + mean_b min(½ log det J(z_b)ᵀJ(z_b), c) ≤ H[p_G]``: samples stretched
    beyond volume ``e^c`` count as ``c`` and carry no gradient. As a training term it
    still resists collapse (``log det → −∞``) but no longer rewards the stretched
    latents that a generator of separate modes maps between them (docs/training.md).

    Returns:
        A :class:`SpectralEstimate` in nats: scalar ``value``, scalar ``std_error``
        ``s/√B`` over the samples (it includes the probe noise of a stochastic method;
        ``nan`` for one sample), ``info`` with ``method`` and ``num_samples``.

    Example:
        >>> import torch
        >>> h = entropy(lambda z: 2 * z, torch.randn(8, 3))
        >>> round(h.value.item(), 4)  # H[N(0, 4 I_3)] = 3/2 (1 + log 2π) + 3 log 2
        6.3363
    """
    if "return_info" in options:
        raise TypeError("entropy always returns a SpectralEstimate: drop return_info")
    if cap is not None and (isinstance(cap, bool) or not isinstance(cap, numbers.Real)
                            or math.isnan(cap)):
        raise ValueError(f"cap must be a number or None, got {cap!r}")
    prior = StandardNormal() if prior is None else prior
    half_logdet = 0.5 * logdet_jtj(G, z, method=method, **options)
    if cap is not None:
        half_logdet = half_logdet.clamp(max=cap)
    value = prior.entropy(z.shape[-1]) + half_logdet.mean()
    info = {"method": method, "num_samples": half_logdet.shape[0]}
    return SpectralEstimate(value, standard_error(half_logdet, dim=0), info)
