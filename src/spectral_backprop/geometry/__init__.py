r"""Latent geometry of a generator: metric eigen-directions, paths, traversals, inversion.

* :mod:`.directions`: local eigenvectors of ``JᵀJ`` and those of the global metric
  ``E_z[JᵀJ]`` (Ramesh & LeCun 2018, arXiv 1806.00499, §5);
* :mod:`.paths`: curves following the leading eigenvector, straight traversals;
* :mod:`.inversion`: latent recovery for data points, with the residual.

Everything here is evaluated without an autograd graph on ``G``'s parameters: these are
tools for studying a trained generator.
"""

from ._util import check_rank, infer_latent_dim, param_dtype
from .directions import global_directions, global_metric, principal_directions
from .inversion import Inversion, encode_to_manifold, invert
from .paths import EigenPath, eigen_path, traverse

__all__ = [
    "EigenPath",
    "Inversion",
    "check_rank",
    "eigen_path",
    "global_directions",
    "global_metric",
    "infer_latent_dim",
    "invert",
    "encode_to_manifold",
    "param_dtype",
    "principal_directions",
    "traverse",
]
