r"""The one value-with-standard-error result of the library.

Every estimator of a spectral sum (``method="exact"``, ``"lanczos"``, ``"chebyshev"``,
``"auto"``) returns it with ``return_info=True``, and
:func:`~spectral_backprop.density.entropy` always returns it. For a Monte Carlo mean
of ``p`` independent draws ``q_j`` with sample standard deviation ``s``,

.. math::  \hat S = \frac1p \sum_j q_j, \qquad \operatorname{se}(\hat S) = s / \sqrt p

(:func:`spectral_backprop.stats.standard_error`); for probes drawn without replacement
from a population of ``K`` it is multiplied by ``(1 − p/K)^{1/2}``
(:mod:`~spectral_backprop.linalg.probes`), and a stochastic estimate's is never below
its estimated quadrature error. An exact value has standard error 0.

Example:
    >>> import torch
    >>> est = SpectralEstimate(torch.tensor([1.5]), torch.zeros(1), {"method": "exact"})
    >>> est.value, est.std_error, est.info["method"]
    (tensor([1.5000]), tensor([0.]), 'exact')
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

from torch import Tensor

__all__ = ["SpectralEstimate"]


@dataclass
class SpectralEstimate:
    """An estimate with its standard error and diagnostics.

    Attributes:
        value: the estimate (``Tensor[B]`` per sample for a spectral sum, a scalar
            tensor for the entropy), differentiable by spectral backpropagation.
        std_error: standard error of ``value``, same shape: zeros for an exact value,
            ``nan`` from a single draw (one probe, one sample); for probes drawn
            without replacement (``"hadamard"``, ``"orthogonal"``) with the
            finite-population factor ``(1 − p/K)^{1/2}``; with the adaptive stopping rule
            never below ``info["quadrature_error"]``, the kernels' estimate of the
            quadrature's error of the value (all that is left once all ``K`` are drawn).
        info: diagnostics, at least ``method``. The stochastic methods add
            ``num_probes`` (all rounds), ``probe_kind``, ``rel_probe_spread`` (the
            per-probe spread ``s/|value|``), ``quadrature_error``, ``matvecs`` (products with ``M``
            per sample, sketch included), ``iterations``/``residual``/``converged`` per vector
            ``[B, c]`` (deflation vectors first), ``deflated`` Ritz values,
            ``interval`` and ``degree`` (Chebyshev) and ``singular`` samples; the exact
            method adds ``singular`` and ``output`` (``G(z)`` as ``[B, n]``, with its
            graph: its forward-mode products compute it anyway).
    """

    value: Tensor
    std_error: Tensor
    info: dict = field(default_factory=dict)

    @property
    def stderr(self) -> Tensor:
        """Deprecated spelling of :attr:`std_error` (the entropy's former field name)."""
        warnings.warn(
            "SpectralEstimate.stderr is deprecated and will be removed; use .std_error",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.std_error
