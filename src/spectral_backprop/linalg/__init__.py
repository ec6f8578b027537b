"""Matrix-free numerics on callables and tensors (no ``nn.Module`` logic here).

:mod:`.jacobian` is also the front door every estimator passes (checks of ``z``, of
``G``'s output and Jacobian, of sample coupling); :mod:`.memory` refuses allocations
that cannot fit.
"""

from .cg import CGResult, conjugate_gradient
from .chebyshev import (
    chebyshev_coefficients,
    chebyshev_degree,
    chebyshev_error,
    chebyshev_recurrence,
    degree_from_error,
)
from .dense import dense_jacobian, dense_metric, dense_spectral_sum
from .jacobian import (
    check_generator,
    check_latents,
    flat_output,
    full_precision,
    jacobian,
    jacobian_columns,
    metric_matvec,
    reduced_precision_allowed,
    work_dtype,
)
from .lanczos import (
    LanczosDecomposition,
    lanczos,
    lanczos_function,
    lanczos_quadrature,
    ritz_pairs,
    tridiagonal,
)
from .memory import available_bytes, check_allocation
from .probes import PROBE_KINDS, ProbeStream, probe_population, project_out, sample_probes

__all__ = [
    "CGResult",
    "LanczosDecomposition",
    "PROBE_KINDS",
    "available_bytes",
    "chebyshev_coefficients",
    "chebyshev_degree",
    "chebyshev_error",
    "chebyshev_recurrence",
    "check_allocation",
    "check_generator",
    "check_latents",
    "conjugate_gradient",
    "dense_jacobian",
    "dense_metric",
    "dense_spectral_sum",
    "degree_from_error",
    "flat_output",
    "jacobian",
    "full_precision",
    "jacobian_columns",
    "lanczos",
    "lanczos_function",
    "lanczos_quadrature",
    "metric_matvec",
    "reduced_precision_allowed",
    "ProbeStream",
    "probe_population",
    "project_out",
    "ritz_pairs",
    "sample_probes",
    "tridiagonal",
    "work_dtype",
]
