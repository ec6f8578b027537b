"""Matrix-free numerics on callables and tensors (no ``nn.Module`` logic here)."""

from .dense import dense_jacobian, dense_metric, dense_spectral_sum
from .jacobian import check_latents, flat_output, jacobian, jacobian_columns, metric_matvec

__all__ = [
    "check_latents",
    "dense_jacobian",
    "dense_metric",
    "dense_spectral_sum",
    "flat_output",
    "jacobian",
    "jacobian_columns",
    "metric_matvec",
]
