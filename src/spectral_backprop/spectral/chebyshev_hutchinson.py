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

**The adaptive degree** (``budget`` given; the default of ``method="chebyshev"``). The
value series is the degree-``D`` interpolant's (``D = MAX_DEGREE``, or less where its
tail is at rounding level) truncated where the recurrence stops; truncated at degree
``j`` its error on a vector is at most ``‖x‖² Σ_{i>j}|c_i|`` (a bound, given that
``[a, b]`` holds the spectrum, which the recurrence certifies). The recurrence stops
at the first degree where that bound is within the budget of every column
(:data:`~.quadratic.ErrorBudget`, from :mod:`.stochastic`) and the gradient's series
(degree fixed beforehand from ``vector_tol``) is complete. The spread the budget needs
comes from the partial sums and from ``2(‖g(M)x‖² − (xᵀg(M)x)²/‖x‖²)`` (the series of
``g`` is summed as a vector too). A higher degree makes a missed interval visible (the
recurrence grows exponentially outside ``[a, b]``): the samples whose recurrence grew
are then run again with ``a`` lowered fourfold, at most twice, and reported if it
still grows.
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
    chebyshev_tail,
    degree_from_error,
)
from ..linalg.lanczos import rounding_floor
from .functions import SpectralFunction
from .quadratic import ErrorBudget, QuadraticForms

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
    budget: ErrorBudget | None = None,
    vector_tol: float = 1e-2,
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
        budget: with ``tol=None`` and no ``num_matvecs``: the adaptive degree (module
            docstring).
        vector_tol: the adaptive rule's tolerance of the gradient's series and of CG.
    """
    if tol is None:
        if budget is None:
            raise ValueError("chebyshev_forms needs tol or a budget")
        if num_matvecs is None:
            return _adaptive_forms(matvec, X, fn, bounds, vector_fn, solve, cg_iters, budget,
                                   vector_tol)
        tol = vector_tol  # a fixed degree: only CG has a tolerance left
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


_RETRIES = 2  # a fourfold lower a, at most twice, where the recurrence grew


def _adaptive_forms(matvec, X: Tensor, fn: SpectralFunction, bounds: tuple[Tensor, Tensor],
                    vector_fn, solve: bool, cg_iters: int, budget: ErrorBudget,
                    vector_tol: float) -> QuadraticForms:
    """The adaptive degree of the module docstring, with the interval repaired."""
    a, b = bounds
    forms = _adaptive_once(matvec, X, fn, (a, b), vector_fn, solve, cg_iters, budget,
                           vector_tol)
    spent = forms.matvecs
    for _ in range(_RETRIES):
        grew = (forms.extra["growth"] > 1 + _GROWTH_SLACK).any(-1)
        if not bool(grew.any()):
            break
        a = torch.where(grew, a / 4, a)
        forms = _adaptive_once(matvec, X, fn, (a, b), vector_fn, solve, cg_iters, budget,
                               vector_tol)
        spent += forms.matvecs
    forms.matvecs = spent
    return forms


def _adaptive_once(matvec, X: Tensor, fn: SpectralFunction, bounds: tuple[Tensor, Tensor],
                   vector_fn, solve: bool, cg_iters: int, budget: ErrorBudget,
                   vector_tol: float) -> QuadraticForms:
    """One pass of the adaptive degree on ``[a, b]``."""
    a, b = bounds
    k = X.shape[1]
    floor = rounding_floor(X.dtype, k)
    vector_tol = max(vector_tol, floor)
    coeff_g, tail, scale = chebyshev_tail(fn.g, a, b, MAX_DEGREE)
    # Past the degree where the tail reaches rounding level nothing more can be had.
    top = min(degree_from_error(tail / scale[:, None], floor), MAX_DEGREE)
    coeff_g = coeff_g[:, : top + 1]
    vector_series = vector_fn is not None and not solve
    series = []
    if vector_series:  # truncated from its own degree-D interpolant, like g's series
        coeff_h, tail_h, scale_h = chebyshev_tail(vector_fn, a, b, MAX_DEGREE)
        h_degree = min(degree_from_error(tail_h / scale_h[:, None], vector_tol), MAX_DEGREE)
        series.append(coeff_h[:, : h_degree + 1])
    else:
        h_degree = 0
    norm2 = X.pow(2).sum(1)  # [B, c]
    state = {"degree": max(top, h_degree), "error": None, "allowed": None}

    def stop(j: int, forms: list[Tensor], vectors: list[Tensor]) -> bool:
        q, gx = forms[0], vectors[-1]
        error = norm2 * tail[:, min(j, top), None]
        spread2 = 2 * (gx.pow(2).sum(1) - q.pow(2) / norm2.clamp_min(torch.finfo(q.dtype).tiny))
        allowed = budget(q, spread2.clamp_min(0), error)
        state.update(degree=j, error=error, allowed=allowed)
        return j >= h_degree and bool(((error <= allowed) | (j >= top)).all())

    forms, vecs, growth = chebyshev_recurrence(matvec, X, a, b, [coeff_g], [*series, coeff_g],
                                               stop=stop)
    degree = state["degree"]
    error = state["error"] if state["error"] is not None else norm2 * tail[:, :1]
    allowed = state["allowed"] if state["allowed"] is not None else torch.zeros_like(error)
    tiny = torch.finfo(error.dtype).tiny
    value_ok = (error <= allowed) | (degree >= top)
    residual = torch.where(value_ok, torch.zeros_like(error), error / allowed.clamp_min(tiny))
    vectors = vecs[0] if vector_series else None
    matvecs = degree * X.shape[-1]
    iterations = torch.full_like(growth, degree, dtype=torch.long)
    extra = {"degree": degree, "interval": (a, b), "growth": growth, "error": error}
    vector_ok = torch.ones_like(value_ok)
    if vector_fn is not None and solve:
        cg = conjugate_gradient(matvec, X, max_iters=cg_iters, tol=vector_tol)
        vectors, matvecs = cg.solution, matvecs + cg.matvecs
        iterations = iterations + cg.iterations
        residual = torch.maximum(residual, cg.residual / vector_tol)
        vector_ok = cg.converged
        extra["cg_iterations"] = cg.iterations
    inside = growth <= 1 + _GROWTH_SLACK
    converged = value_ok & vector_ok & inside
    residual = torch.where(inside, residual, torch.maximum(residual, growth))
    return QuadraticForms(forms[0], vectors, iterations, residual, converged, matvecs, extra)
