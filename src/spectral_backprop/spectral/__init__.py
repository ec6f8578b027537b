r"""Spectral sums of the latent metric ``M = JᵀJ`` and their gradients.

``S_g(M) = Σ_i g(λ_i(M))`` with ``dS_g = tr(g'(M) dM)`` (Ramesh & LeCun 2018, arXiv
1806.00499, §3). One signature for every estimator,
``spectral_sum(G, z, fn, method=..., **options)``; one module per piece:

* :mod:`.functions`: the spectral functions ``g`` (log det, trace, nuclear norm);
* :mod:`.registry`: ``spectral_sum``, ``logdet_jtj``, the ``method=`` registry,
  the option contract and ``method="auto"``;
* :mod:`.estimate`: :class:`SpectralEstimate`, the value with its standard error;
* :mod:`.diagnostics`: singular metrics, non-finite values and non-convergence (warn or
  raise);
* :mod:`.surrogate`: the guard that refuses second derivatives through the surrogate;
* :mod:`.exact`: exact spectral backpropagation (Cholesky or QR for log det);
* :mod:`.stochastic`: the stochastic estimator (prepare → kernel → estimate), with the
  kernels :mod:`.slq` (Lanczos quadrature) and :mod:`.chebyshev_hutchinson`, the
  spectrum sketch :mod:`.deflation` and their common result :mod:`.quadratic`;
* :mod:`.metric`: the eigenpairs of ``M`` (``latent_metric``).

Example:
    >>> import torch
    >>> G = lambda z: torch.cat([2 * z, z], dim=1)  # J = [2I; I], JᵀJ = 5 I
    >>> logdet_jtj(G, torch.zeros(1, 3))  # 3 log 5
    tensor([4.8283])
"""

from __future__ import annotations

from .diagnostics import (
    AccuracyNotMetWarning,
    NonConvergenceError,
    NonConvergenceWarning,
    SingularMetricWarning,
)
from .estimate import SpectralEstimate
from .exact import exact_spectral_sum
from .functions import SPECTRAL_FUNCTIONS, SpectralFunction, resolve_function
from .metric import canonical_signs, latent_metric
from .registry import (
    AUTO_CROSSOVER,
    CORE_OPTIONS,
    EXACT_OPTIONS,
    METHOD_OPTIONS,
    METHODS,
    STOCHASTIC_OPTIONS,
    AutoCosts,
    accepts_option,
    auto_choice,
    auto_spectral_sum,
    logdet_jtj,
    register_method,
    resolve_method,
    spectral_sum,
)
from .stochastic import chebyshev_spectral_sum, lanczos_spectral_sum, stochastic_spectral_sum

__all__ = [
    "AUTO_CROSSOVER",
    "AccuracyNotMetWarning",
    "CORE_OPTIONS",
    "EXACT_OPTIONS",
    "METHODS",
    "METHOD_OPTIONS",
    "NonConvergenceError",
    "NonConvergenceWarning",
    "SPECTRAL_FUNCTIONS",
    "STOCHASTIC_OPTIONS",
    "SingularMetricWarning",
    "SpectralEstimate",
    "SpectralFunction",
    "AutoCosts",
    "accepts_option",
    "auto_choice",
    "auto_spectral_sum",
    "canonical_signs",
    "chebyshev_spectral_sum",
    "exact_spectral_sum",
    "lanczos_spectral_sum",
    "latent_metric",
    "logdet_jtj",
    "register_method",
    "resolve_function",
    "resolve_method",
    "spectral_sum",
    "stochastic_spectral_sum",
]
