r"""Monotonic rational-quadratic splines with identity tails (Durkan et al. 2019).

Reference: Durkan, Bekasov, Murray & Papamakarios, "Neural Spline Flows", NeurIPS 2019,
arXiv 1906.04066, Section 3.1 and Appendix A. Written from the paper's formulas.

On ``[−B, B]`` the spline has ``K`` bins with knots ``(x⁽ᵏ⁾, y⁽ᵏ⁾)``, ``k = 0..K``,
``x⁽⁰⁾ = y⁽⁰⁾ = −B``, ``x⁽ᴷ⁾ = y⁽ᴷ⁾ = B``, and positive derivatives ``δ⁽ᵏ⁾`` at the knots
(``δ⁽⁰⁾ = δ⁽ᴷ⁾ = 1``, so the map joins the identity outside ``[−B, B]`` with a continuous
first derivative). In bin ``k``, with ``w = x⁽ᵏ⁺¹⁾ − x⁽ᵏ⁾``, ``h = y⁽ᵏ⁺¹⁾ − y⁽ᵏ⁾``,
``s = h / w`` and ``ξ = (x − x⁽ᵏ⁾) / w ∈ [0, 1]`` (paper, eq. 4 and eq. 5):

    y = y⁽ᵏ⁾ + h [s ξ² + δ⁽ᵏ⁾ ξ(1−ξ)] / [s + (δ⁽ᵏ⁺¹⁾ + δ⁽ᵏ⁾ − 2s) ξ(1−ξ)],

    dy/dx = s² [δ⁽ᵏ⁺¹⁾ ξ² + 2s ξ(1−ξ) + δ⁽ᵏ⁾ (1−ξ)²] / [s + (δ⁽ᵏ⁺¹⁾ + δ⁽ᵏ⁾ − 2s) ξ(1−ξ)]²,

which is > 0 for any positive ``s, δ``: the spline is strictly increasing. The inverse
solves the quadratic ``a ξ² + b ξ + c = 0`` for ``ξ ∈ [0, 1]`` (paper, Appendix A):

    a = h (s − δ⁽ᵏ⁾) + (y − y⁽ᵏ⁾) σ,   b = h δ⁽ᵏ⁾ − (y − y⁽ᵏ⁾) σ,   c = −s (y − y⁽ᵏ⁾),
    σ = δ⁽ᵏ⁺¹⁾ + δ⁽ᵏ⁾ − 2s,            ξ = 2c / (−b − √(b² − 4ac)).

Only elementwise operations, ``softmax``, ``softplus``, ``cumsum``, comparisons and
``gather`` are used, all of which have forward-mode derivatives, so the library's
forward-mode Jacobians (``torch.func.jvp`` under ``vmap``) work through the spline. The
bin index comes from comparisons: it is piecewise constant, with zero derivative.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

MIN_BIN = 1e-3  # smallest bin width / height, as a fraction of 2B (as in the paper's code)
MIN_DERIVATIVE = 1e-3

# softplus(raw + offset) + MIN_DERIVATIVE = 1 at raw = 0, so zero conditioner outputs give
# uniform bins with unit derivatives: the identity map.
_DERIVATIVE_OFFSET = math.log(math.expm1(1 - MIN_DERIVATIVE))


def spline_params_per_dim(bins: int) -> int:
    """Unconstrained parameters per transformed coordinate: ``K`` widths, ``K`` heights,
    ``K − 1`` interior derivatives."""
    return 3 * bins - 1


def _knots(raw: Tensor, bound: float) -> Tensor:
    """Knot positions ``[..., K + 1]`` on ``[−B, B]`` from unnormalised bin sizes ``[..., K]``."""
    bins = raw.shape[-1]
    sizes = MIN_BIN + (1 - MIN_BIN * bins) * torch.softmax(raw, dim=-1)
    knots = F.pad(torch.cumsum(sizes, dim=-1), (1, 0))
    # Pin the ends exactly: the cumulative sum's rounding must not move the tails.
    knots = 2 * bound * knots - bound
    return torch.cat([torch.full_like(knots[..., :1], -bound), knots[..., 1:-1],
                      torch.full_like(knots[..., :1], bound)], dim=-1)


def spline_knots(raw: Tensor, bound: float) -> tuple[Tensor, Tensor, Tensor]:
    """Knots ``(x, y, δ)``, each ``[..., K + 1]``, from ``raw[..., 3K − 1]``.

    ``raw`` holds unnormalised widths, heights and interior derivatives, in this order.
    Zeros give the identity spline.
    """
    bins = (raw.shape[-1] + 1) // 3
    raw_w, raw_h, raw_d = raw[..., :bins], raw[..., bins: 2 * bins], raw[..., 2 * bins:]
    inner = MIN_DERIVATIVE + F.softplus(raw_d + _DERIVATIVE_OFFSET)
    ones = torch.ones_like(inner[..., :1])
    return _knots(raw_w, bound), _knots(raw_h, bound), torch.cat([ones, inner, ones], dim=-1)


def _bin(v: Tensor, knots: Tensor) -> Tensor:
    # Number of interior knots at or below v: the bin index in 0..K-1 for v in [-B, B].
    return (v.unsqueeze(-1) >= knots[..., 1:-1]).sum(-1, keepdim=True)


def rational_quadratic_spline(v: Tensor, raw: Tensor, bound: float,
                              inverse: bool = False) -> tuple[Tensor, Tensor]:
    """The spline (or its inverse) applied elementwise, and ``log|dy/dx|``.

    Args:
        v: inputs ``[...]`` (``x`` forward, ``y`` with ``inverse=True``).
        raw: unconstrained parameters ``[..., 3K − 1]`` (see :func:`spline_knots`).
        bound: B; outside ``[−B, B]`` the map is the identity.
        inverse: apply the inverse map.

    Returns:
        ``(output, log_abs_det)``, both shaped like ``v``. ``log_abs_det`` is
        ``log dy/dx`` at the input (forward) or at the output (inverse), i.e. always of
        the forward map, so that ``log|det|`` of the inverse is its negative.

    Example:
        >>> v = torch.tensor([-2.0, 0.3, 7.0])
        >>> y, ld = rational_quadratic_spline(v, torch.zeros(3, 3 * 4 - 1), bound=3.0)
        >>> torch.allclose(y, v) and torch.allclose(ld, torch.zeros(3), atol=1e-6)
        True
    """
    xk, yk, dk = spline_knots(raw, bound)
    inside = (v > -bound) & (v < bound)
    # Clamp before the in-bin formula so that the discarded branch of the final `where`
    # stays finite (a NaN there would poison gradients through `where`).
    vc = v.clamp(-bound, bound)
    idx = _bin(vc, yk if inverse else xk)

    def pick(t: Tensor) -> Tensor:
        return t.gather(-1, idx).squeeze(-1)

    x0, y0, d0 = pick(xk), pick(yk), pick(dk)
    w, h, d1 = pick(xk[..., 1:]) - x0, pick(yk[..., 1:]) - y0, pick(dk[..., 1:])
    s = h / w
    sigma = d1 + d0 - 2 * s
    if inverse:
        dy = vc - y0
        a = h * (s - d0) + dy * sigma
        b = h * d0 - dy * sigma
        c = -s * dy
        # The root in [0, 1]; this form avoids cancellation when a ≈ 0 (paper, App. A).
        disc = (b * b - 4 * a * c).clamp_min(0)
        xi = (2 * c / (-b - disc.sqrt())).clamp(0, 1)
    else:
        xi = (vc - x0) / w
    one_minus = 1 - xi
    denom = s + sigma * xi * one_minus  # shared by y(ξ) and dy/dx
    if inverse:
        out = x0 + xi * w
    else:
        out = y0 + h * (s * xi**2 + d0 * xi * one_minus) / denom
    num = d1 * xi**2 + 2 * s * xi * one_minus + d0 * one_minus**2
    log_det = 2 * s.log() + num.log() - 2 * denom.log()
    return torch.where(inside, out, v), torch.where(inside, log_det, torch.zeros_like(v))


__all__ = ["rational_quadratic_spline", "spline_knots", "spline_params_per_dim"]
