r"""spectral-backprop: the implicit likelihood of a generator network as a
differentiable quantity, by spectral backpropagation (Ramesh & LeCun 2018,
arXiv 1806.00499).

For ``G: R^k → R^n`` with Jacobian ``J``: ``log p_G(G(z)) = log p_Z(z) − ½ log det JᵀJ``.

This module is a facade over the numerical core: :mod:`.density`, :mod:`.spectral`,
:mod:`.geometry` and :mod:`.linalg`. The floors above it are imported on use:
``spectral_backprop.data`` and ``models`` (data sets, networks), ``train`` (training
loops), ``analysis`` (measurements of a trained generator), ``studies`` (protocols that
combine both), ``report`` (the HTML report) and ``cli``. The two analysis entry points
below are served lazily, so ``import spectral_backprop`` stays light.
"""

from importlib import import_module

from .density import StandardNormal, entropy, implicit_log_prob
from .geometry import eigen_path, global_directions, invert, principal_directions, traverse
from .linalg import jacobian, metric_matvec
from .spectral import (
    NonConvergenceWarning,
    SingularMetricWarning,
    SpectralEstimate,
    SpectralFunction,
    latent_metric,
    logdet_jtj,
    spectral_sum,
)

__version__ = "0.1.0"

# Heavier names, imported from their floor on first use: {name: module}.
_LAZY = {
    "analyze_generator": "spectral_backprop.analysis",
    "high_likelihood_search": "spectral_backprop.analysis",
}


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module 'spectral_backprop' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    # likelihood
    "implicit_log_prob",
    "entropy",
    "StandardNormal",
    # spectral sums and their gradients (method="exact" | "lanczos" | "chebyshev" | "auto")
    "logdet_jtj",
    "spectral_sum",
    "SpectralFunction",
    "SpectralEstimate",
    "SingularMetricWarning",
    "NonConvergenceWarning",
    # geometry of the latent metric
    "latent_metric",
    "principal_directions",
    "global_directions",
    "eigen_path",
    "traverse",
    "invert",
    # studying a trained generator (lazy: spectral_backprop.analysis)
    "high_likelihood_search",
    "analyze_generator",
    # numerics
    "jacobian",
    "metric_matvec",
]
