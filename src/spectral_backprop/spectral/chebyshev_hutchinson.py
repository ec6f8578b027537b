r"""Chebyshev–Hutchinson kernel: ``xᵀ g(M) x`` and ``h(M) x`` by Chebyshev series.

On an interval ``[a, b]`` that contains the spectrum of ``M``, with ``h = g'`` or ``√g'``,

.. math::
    x^\top g(M)\, x \approx \sum_{j=0}^{d} c_j\, x^\top T_j(\tilde M)\, x, \qquad
    h(M)\, x \approx \sum_{j=0}^{d} c'_j\, T_j(\tilde M)\, x ,

``M̃ = (2M − (a+b)I)/(b−a)`` (Han, Malioutov & Shin 2015, arXiv 1503.06394; Han et al.
2017, arXiv 1606.00942; used for spectral backpropagation by Ramesh & LeCun 2018,
arXiv 1806.00499). One pass of the three-term recurrence serves both series. Unless
the degree is given, it is the smallest one whose coefficient tail is below ``tol``
for both series (:func:`~spectral_backprop.linalg.chebyshev.chebyshev_degree`; it grows
like ``√κ``, ``κ = b/a``). For ``h = 1/x`` (log det without
the symmetric split) the vector ``M^{-1}x`` comes from conjugate gradients instead,
whose residual is checkable, not from a series whose accuracy near ``a`` depends on
the bound. If ``‖T_j(M̃)x‖`` exceeds ``‖x‖``, the
interval missed part of the spectrum and the column is reported as not converged.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ..linalg.cg import conjugate_gradient
from ..linalg.chebyshev import (
    chebyshev_coefficients,
    chebyshev_error,
    chebyshev_recurrence,
    degree_from_error,
)
from .functions import SpectralFunction
from .quadratic import QuadraticForms

__all__ = ["MAX_DEGREE", "MAX_USER_DEGREE", "chebyshev_forms"]

MAX_DEGREE = 500  # beyond this the interval is too ill-conditioned for a polynomial
# The largest degree a caller may ask for (num_matvecs): the degree for tol = 1e-2 grows
# like ½√κ log(1/tol), so 10⁴ already covers κ ≈ 2·10⁷; beyond, Lanczos is the tool.
MAX_USER_DEGREE = 10_000
_GROWTH_SLACK = 1e-2  # rounding in the recurrence; a real miss grows exponentially


def chebyshev_forms(
    matvec: Callable[[Tensor], Tensor],
    X: Tensor,
    fn: SpectralFunction,
    *,
    bounds: tuple[Tensor, Tensor],
    num_matvecs: int | None,
    tol: float,
    vector_fn: Callable[[Tensor], Tensor] | None,
    solve: bool,
    cg_iters: int,
) -> QuadraticForms:
    """Chebyshev–Hutchinson quadratic forms for every column of ``X[B, k, c]``.

    ``xᵀg(M)x ≈ Σ_j c_j xᵀT_j(M̃)x`` and ``h(M)x ≈ Σ_j c'_j T_j(M̃)x`` (Han, Malioutov &
    Shin 2015, arXiv 1503.06394).

    Args:
        matvec: ``V ↦ MV`` without a graph.
        X: vectors (probes and deflation vectors).
        fn: spectral function.
        bounds: ``(a[B], b[B])`` enclosing each sample's spectrum.
        num_matvecs: polynomial degree; ``None`` picks it from ``tol`` and ``b/a``.
        tol: truncation tolerance (relative to ``max |g|`` on the interval) and CG tolerance.
        vector_fn: ``h``, to also return ``h(M) x`` (``None``: value only).
        solve: ``h = 1/x``: compute ``M^{-1} x`` by CG instead of a series.
        cg_iters: CG budget when ``solve``.
    """
    a, b = bounds
    series = [fn.g] + ([vector_fn] if vector_fn is not None and not solve else [])
    cap = MAX_DEGREE if num_matvecs is None else num_matvecs
    errors = chebyshev_error(series, a, b, cap)  # [B, cap + 1], worst of the series
    # degree_from_error says MAX_DEGREE + 1 when that is not enough
    degree = num_matvecs if num_matvecs is not None else min(degree_from_error(errors, tol), cap)
    truncation = errors[:, degree]  # [B]
    coeffs = [chebyshev_coefficients(f, a, b, degree) for f in series]
    forms, vecs, growth = chebyshev_recurrence(matvec, X, a, b, coeffs[:1], coeffs[1:])
    residual = truncation[:, None].expand_as(growth).clone()
    matvecs = degree * X.shape[-1]
    iterations = torch.full_like(growth, degree, dtype=torch.long)
    vectors = vecs[0] if vecs else None
    extra = {"degree": degree, "interval": (a, b), "growth": growth}
    if vector_fn is not None and solve:
        cg = conjugate_gradient(matvec, X, max_iters=cg_iters, tol=tol)
        vectors, matvecs = cg.solution, matvecs + cg.matvecs
        iterations = iterations + cg.iterations
        residual = torch.maximum(residual, cg.residual)
        extra["cg_iterations"] = cg.iterations
    converged = (residual <= tol) & (growth <= 1 + _GROWTH_SLACK)
    # A spectrum outside [a, b] makes the series meaningless: report it as the residual.
    residual = torch.where(growth > 1 + _GROWTH_SLACK, torch.maximum(residual, growth), residual)
    return QuadraticForms(forms[0], vectors, iterations, residual, converged, matvecs, extra)
