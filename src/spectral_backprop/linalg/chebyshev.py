r"""Chebyshev expansions of matrix functions on a spectrum interval ``[a, b]``.

With ``M̃ = (2M − (a+b) I)/(b − a)`` (spectrum mapped into ``[−1, 1]``),

.. math::  f(M) \approx \sum_{j=0}^{d} c_j T_j(\tilde M), \qquad
           T_0 = I,\ T_1 = \tilde M,\ T_{j+1} = 2 \tilde M T_j - T_{j-1},

with coefficients from interpolation at the Chebyshev nodes (Trefethen, *Approximation
Theory and Approximation Practice*, ch. 3). For ``f`` analytic in a Bernstein ellipse
around ``[a, b]`` that reaches the singularity at ``0`` (``log``, ``1/x``, ``√x``),
``|c_j|`` decays like ``ρ^{-j}`` with ``ρ = (√κ + 1)/(√κ − 1)``, ``κ = b/a``; so the
degree needed for a tolerance grows like ``½√κ log(1/tol)``. Han, Malioutov & Shin
(2015, arXiv 1503.06394) and Han et al. (2017, arXiv 1606.00942) combine this with
Hutchinson probes: ``tr f(M) ≈ (1/p) Σ_i Σ_j c_j ε_iᵀ T_j(M̃) ε_i``.

The recurrence keeps three vectors, so memory is independent of the degree ``d``
(``d`` products with ``M`` per probe).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from .memory import check_allocation

Fn = Callable[[Tensor], Tensor]

_TABLE_ENTRIES = 2**22  # entries of cos(jθ) held at once by chebyshev_coefficients

__all__ = [
    "chebyshev_coefficients",
    "chebyshev_degree",
    "chebyshev_error",
    "chebyshev_recurrence",
    "chebyshev_tail",
    "degree_from_error",
]


def chebyshev_coefficients(
    f: Callable[[Tensor], Tensor], a: Tensor, b: Tensor, degree: int
) -> Tensor:
    """Coefficients ``c[B, degree+1]`` of the interpolant of ``f`` on ``[a[B], b[B]]``.

    ``c_j = (2 − δ_{j0})/n · Σ_l f(x_l) cos(j θ_l)``, ``θ_l = π(l + ½)/n``, ``n = degree+1``,
    at the nodes ``x_l = ½(b−a) cos θ_l + ½(b+a)`` (Press et al., *Numerical Recipes*,
    §5.8).
    """
    n = degree + 1
    theta = math.pi * (torch.arange(n, dtype=a.dtype, device=a.device) + 0.5) / n
    nodes = torch.cos(theta)
    x = 0.5 * (b - a)[:, None] * nodes + 0.5 * (b + a)[:, None]  # [B, n]
    fx = f(x)
    c = torch.empty_like(fx)
    # cos(j θ_l) in blocks of rows: memory O(n · block), not O(n²), at any degree.
    block = max(1, _TABLE_ENTRIES // n)
    for lo in range(0, n, block):
        j = torch.arange(lo, min(lo + block, n), dtype=a.dtype, device=a.device)
        c[:, lo : lo + block] = (2.0 / n) * fx @ torch.cos(j[:, None] * theta[None, :]).T
    c[:, 0] = c[:, 0] / 2
    return c


def chebyshev_tail(
    f: Fn, a: Tensor, b: Tensor, max_degree: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Coefficients, absolute tails and scale of ``f``'s series on ``[a, b]``.

    From the interpolant at twice the degree (so that aliasing does not hide the tail):
    ``c[B, max_degree + 1]``, ``tail[B, max_degree + 1]`` with ``tail[:, d] = Σ_{j>d} |c_j|``,
    which bounds the uniform error of the series truncated at degree ``d`` on ``[a, b]``
    (``|T_j| ≤ 1`` there; Trefethen, *Approximation Theory and Approximation Practice*,
    ch. 4 and 8), and ``scale[B] ≈ max |f|``.
    """
    c = chebyshev_coefficients(f, a, b, 2 * max_degree + 1)
    mag = c.abs()
    tail = mag.flip(-1).cumsum(-1).flip(-1)  # tail[j] = Σ_{i≥j} |c_i|
    scale = (mag[:, 0] + mag.amax(-1)).clamp_min(torch.finfo(c.dtype).tiny)  # ≈ max |f|
    return c[:, : max_degree + 1], tail[:, 1 : max_degree + 2], scale


def chebyshev_error(
    f: Fn | Sequence[Fn], a: Tensor, b: Tensor, max_degree: int
) -> Tensor:
    """Relative truncation bound ``Σ_{j>d} |c_j| / max|f|`` for every degree ``d ≤ max_degree``.

    The tail bounds the uniform error of the degree-``d`` series on ``[a, b]``
    (``|T_j| ≤ 1`` there). Coefficients come from interpolation at twice the degree, so
    aliasing does not hide the tail (Trefethen, *Approximation Theory and Approximation
    Practice*, ch. 4 and 8). For several functions, the largest bound of them. Returns
    ``[B, max_degree + 1]``.
    """
    if not callable(f):
        return torch.stack([chebyshev_error(g, a, b, max_degree) for g in f]).amax(0)
    _, tail, scale = chebyshev_tail(f, a, b, max_degree)
    return tail / scale[:, None]


def chebyshev_degree(
    f: Fn | Sequence[Fn], a: Tensor, b: Tensor, tol: float, max_degree: int
) -> int:
    """Smallest degree with :func:`chebyshev_error` ``≤ tol`` for every sample.

    This is the degree the condition number ``b/a`` calls for, about ``½√κ log(1/tol)``
    for ``log`` and ``1/x`` (Han et al. 2017, arXiv 1606.00942). With several functions
    (the value's ``g`` and the gradient's ``h``, served by one recurrence) it is the
    degree that suffices for all of them. Returns ``max_degree + 1`` when ``max_degree``
    is not enough (the caller reports it).

    Example:
        >>> a, b = torch.tensor([0.5], dtype=torch.float64), torch.tensor([2.0]).double()
        >>> [chebyshev_degree(f, a, b, 1e-6, 100) for f in (torch.log, torch.reciprocal)]
        [11, 12]
        >>> chebyshev_degree([torch.log, torch.reciprocal], a, b, 1e-6, 100)
        12
    """
    return degree_from_error(chebyshev_error(f, a, b, max_degree), tol)


def degree_from_error(errors: Tensor, tol: float) -> int:
    """Smallest degree whose bound in ``errors[B, max_degree + 1]`` is ``≤ tol`` for all.

    ``errors`` is a table from :func:`chebyshev_error`; returns ``max_degree + 1`` when no
    degree in it is enough. Lets a caller that also needs the table build it once.
    """
    ok = errors <= tol
    none = torch.full_like(ok[:, 0], errors.shape[-1], dtype=torch.long)
    return int(torch.where(ok.any(-1), ok.long().argmax(-1), none).max())


def chebyshev_recurrence(
    matvec: Callable[[Tensor], Tensor],
    X: Tensor,
    a: Tensor,
    b: Tensor,
    forms: Sequence[Tensor] = (),
    vectors: Sequence[Tensor] = (),
    stop: Callable[[int, list[Tensor], list[Tensor]], bool] | None = None,
) -> tuple[list[Tensor], list[Tensor], Tensor]:
    """Evaluate Chebyshev series on probes ``X[B, k, c]`` in one pass of the recurrence.

    ``w_0 = x``, ``w_1 = M̃x``, ``w_{j+1} = 2M̃w_j − w_{j−1}``; then ``Σ_j c_j xᵀw_j`` and
    ``Σ_j c_j w_j`` (Han, Malioutov & Shin 2015, arXiv 1503.06394).

    Args:
        matvec: ``V[B, k, c] ↦ M V`` (no autograd graph).
        X: probe vectors.
        a, b: interval ``[B]`` containing the spectrum of every ``M``.
        forms: coefficient tensors ``c[B, d+1]``; for each, ``Σ_j c_j xᵀ T_j(M̃) x``
            per column, ``[B, c]``.
        vectors: coefficient tensors; for each, ``Σ_j c_j T_j(M̃) x``, ``[B, k, c]``.
        stop: optional ``stop(j, forms_so_far, vectors_so_far) -> bool``, called after the
            term of degree ``j ≥ 1`` is added; ``True`` ends the recurrence there (an
            adaptive degree: the caller records ``j``).

    Returns:
        ``(quadratic_forms, vectors, growth)``; ``growth[B, c]`` is ``max_j ‖T_j(M̃)x‖/‖x‖``,
        at most 1 when the spectrum lies in ``[a, b]``, so a value above 1 certifies
        that the interval missed part of the spectrum. Degree ``d`` costs ``d`` products.
    """
    degree = max([t.shape[-1] - 1 for t in [*forms, *vectors]], default=0)
    check_allocation(X.numel(), X.dtype, X.device, copies=4 + len(vectors),
                     what=f"the Chebyshev recurrence on probes {list(X.shape)}",
                     fix="Lower num_probes or the batch.")
    half_width = (0.5 * (b - a))[:, None, None]
    centre = (0.5 * (b + a))[:, None, None]

    def scaled(V: Tensor) -> Tensor:
        return (matvec(V) - centre * V) / half_width

    def coeff(c: Tensor, j: int) -> Tensor:
        return c[:, j, None] if j < c.shape[-1] else torch.zeros_like(c[:, :1])

    q_out = [coeff(c, 0) * (X * X).sum(1) for c in forms]
    v_out = [coeff(c, 0)[:, None] * X for c in vectors]
    w_prev, w = X, scaled(X) if degree >= 1 else X
    x_norm = torch.linalg.vector_norm(X, dim=1).clamp_min(torch.finfo(X.dtype).tiny)
    growth = torch.ones_like(x_norm)
    for j in range(1, degree + 1):
        growth = torch.maximum(growth, torch.linalg.vector_norm(w, dim=1) / x_norm)
        xw = (X * w).sum(1)
        q_out = [q + coeff(c, j) * xw for q, c in zip(q_out, forms, strict=True)]
        v_out = [v + coeff(c, j)[:, None] * w for v, c in zip(v_out, vectors, strict=True)]
        if stop is not None and stop(j, q_out, v_out):
            break
        if j < degree:
            w_prev, w = w, 2 * scaled(w) - w_prev
    return q_out, v_out, growth
