r"""spectral-backprop: the implicit likelihood of a generator network as a
differentiable quantity, by spectral backpropagation (Ramesh & LeCun 2018,
arXiv 1806.00499).

For ``G: R^k → R^n`` with Jacobian ``J``: ``log p_G(G(z)) = log p_Z(z) − ½ log det JᵀJ``.
"""

from .density import StandardNormal, entropy, implicit_log_prob
from .linalg import jacobian, metric_matvec
from .spectral import (
    SingularMetricWarning,
    SpectralFunction,
    latent_metric,
    logdet_jtj,
    spectral_sum,
)

__version__ = "0.1.0"

__all__ = [
    # likelihood
    "implicit_log_prob",
    "entropy",
    "StandardNormal",
    # spectral sums and their gradients
    "logdet_jtj",
    "spectral_sum",
    "SpectralFunction",
    "SingularMetricWarning",
    # geometry and numerics
    "latent_metric",
    "jacobian",
    "metric_matvec",
]
