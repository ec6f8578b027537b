r"""spectral-backprop: the implicit likelihood of a generator network as a
differentiable quantity, by spectral backpropagation (Ramesh & LeCun 2018,
arXiv 1806.00499).

For ``G: R^k → R^n`` with Jacobian ``J``: ``log p_G(G(z)) = log p_Z(z) − ½ log det JᵀJ``.

Sub-packages with heavier needs are imported on use: ``spectral_backprop.data``,
``models``, ``train`` (training), ``report`` (HTML report), ``analysis`` (the rest of
the measurement tools).
"""

from .analysis import analyze_generator, high_likelihood_search
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
    # studying a trained generator
    "high_likelihood_search",
    "analyze_generator",
    # numerics
    "jacobian",
    "metric_matvec",
]
