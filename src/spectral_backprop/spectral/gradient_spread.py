r"""The standard error of a stochastic parameter gradient, from groups of probes
(``grad_rtol=`` of :func:`~.stochastic.stochastic_spectral_sum`).

The stochastic mode's parameter gradient is a mean over probes,
``ĝ = (1/p) Σ_j g_j`` with ``g_j = ∇_θ s_j`` the gradient of probe ``j``'s surrogate term
(``s_j = ‖J w_j‖²`` summed over the batch; Ramesh & LeCun 2018, arXiv 1806.00499, §3).
For i.i.d. probes the ``g_j`` are independent and identically distributed, so
``Cov(ĝ) = Cov(g_j)/p``; for probes drawn without replacement from ``K`` (the default
``"hadamard"``) they are exchangeable with a fixed population sum, and the batch-means
estimate below is multiplied by ``1 − p/K`` (:mod:`~..linalg.probes`).
Measuring it per probe would take one backward pass per probe; instead the probes are
dealt round-robin into ``G`` groups and each group's mean ``m_l`` costs one backward
pass through its probes' JVPs. The group means have mean ``E ĝ`` and are independent
for i.i.d. probes (without replacement, their common covariance ``−S²/K`` cancels in
the spread below, which is why one factor corrects it); the batch-means estimator
(Schmeiser 1982, *Operations Research* 30(3); Flegal & Jones 2010, *Ann. Statist.*
38(2))

.. math::
    \|\mathrm{se}\|^2 = \sum_i \mathrm{Var}(\hat g_i)
    \approx \frac{1}{G(G-1)} \sum_{l=1}^{G} \|m_l - \bar m\|^2

sums the variance over every parameter. With ``E‖ĝ‖² = ‖g‖² + ‖se‖²``, the relative
standard error is ``r = ‖se‖ / (‖ĝ‖² − ‖se‖²)^{1/2}``; the cosine of ``ĝ`` to the true
gradient is then about ``1/√(1 + r²)`` (``r = 0.48`` for a cosine of 0.9), because the
noise of a gradient with many parameters is nearly orthogonal to it.

The cost: one extra JVP and its backward per probe (against the 15–35 metric products a
probe's Lanczos run takes on the zoo) and ``G`` running sums of the gradient's size.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from ..linalg.probes import finite_population_factor

__all__ = ["GRADIENT_GROUPS", "GradientSpread"]

# Groups of probes: the variance estimate has G − 1 degrees of freedom per parameter
# (summed over many parameters, it is far tighter); each group is one backward pass and
# one running sum of the gradient's size (in float32 or wider).
GRADIENT_GROUPS = 4


class GradientSpread:
    """Running group sums of the probes' parameter gradients, and from them the relative
    standard error ``‖se‖/(‖ĝ‖² − ‖se‖²)^{1/2}`` with ``‖se‖² = Σ_l ‖m_l − m̄‖²/(G(G−1))``
    (batch means; Schmeiser 1982, see the module docstring).

    Args:
        params: the tensors the gradient is taken with respect to.
        surrogate: ``surrogate(U, X) -> Tensor[B]``, the surrogate of the columns of
            ``U[B, k, c]`` (and ``X``, without the symmetric split), unweighted: summed
            over the columns.
        groups: ``G``.
        population: ``K`` for probes drawn without replacement (``None``: i.i.d.).
    """

    def __init__(self, params: list[Tensor], surrogate: Callable[[Tensor, Tensor | None], Tensor],
                 groups: int = GRADIENT_GROUPS, population: int | None = None):
        self.params, self.surrogate, self.groups = params, surrogate, groups
        self.population = population
        self.sizes = [p.numel() for p in params]
        dtype = torch.promote_types(params[0].dtype, torch.float32)
        # one device assumed
        self.sums = params[0].new_zeros(groups, sum(self.sizes), dtype=dtype)
        self.counts = [0] * groups
        self.seen = 0

    def add(self, U: Tensor, X: Tensor | None) -> None:
        """Add the probes ``U[B, k, c]`` (and ``X``): one backward pass per group."""
        c = U.shape[-1]
        for group in range(self.groups):
            first = (group - self.seen) % self.groups  # round-robin over all probes so far
            idx = torch.arange(first, c, self.groups, device=U.device)
            if idx.numel() == 0:
                continue
            s = self.surrogate(U[..., idx], None if X is None else X[..., idx]).sum()
            grads = torch.autograd.grad(s, self.params, allow_unused=True)
            # Into the group's slices in place: no flattened copy of the whole gradient.
            for piece, g in zip(self.sums[group].split(self.sizes), grads, strict=True):
                if g is not None:
                    piece += g.flatten()
            del grads
            self.counts[group] += idx.numel()
        self.seen += c

    def relative_error(self) -> float:
        """``r = ‖se‖ / (‖ĝ‖² − ‖se‖²)^{1/2}`` (module docstring); ``inf`` while a group
        has no probe yet (fewer degrees of freedom would let a noisy estimate stop the
        rounds early) or the signal is not above the noise."""
        if min(self.counts) == 0:
            return math.inf
        G = self.groups
        # Two vectors of the gradient's size, however many groups: the mean of the group
        # means, and one group's deviation from it at a time.
        centre = torch.zeros_like(self.sums[0])
        for total, count in zip(self.sums, self.counts, strict=True):
            centre.add_(total, alpha=1.0 / (G * count))
        deviation, spread = torch.empty_like(centre), centre.new_zeros(())
        for total, count in zip(self.sums, self.counts, strict=True):
            deviation.copy_(total).div_(count).sub_(centre)
            spread = spread + torch.dot(deviation, deviation)
        var = spread / (G * (G - 1)) * finite_population_factor(self.seen, self.population)
        # the mean of every probe: the sums over the probe count
        torch.sum(self.sums, 0, out=deviation).div_(sum(self.counts))
        var, signal = torch.stack([var, torch.dot(deviation, deviation) - var]).tolist()
        return math.sqrt(var / signal) if signal > 0 else math.inf
