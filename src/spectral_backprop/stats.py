r"""Standard errors of Monte Carlo averages, computed one way everywhere.

For ``n`` independent draws with sample standard deviation ``s`` (Bessel-corrected),
the standard error of their mean is ``s / √n``. With fewer than two draws it is not
defined and is reported as NaN, never as 0, so that a single probe or seed never
passes for an exact figure.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import Tensor

__all__ = ["mean_se", "standard_error"]


def standard_error(x: Tensor, dim: int = -1) -> Tensor:
    """``s / √n`` of ``x`` along ``dim`` (NaN where ``n < 2``), without a graph.

    Example:
        >>> standard_error(torch.tensor([1.0, 2.0, 3.0, 4.0]))
        tensor(0.6455)
    """
    x = x.detach()
    n = x.shape[dim]
    if n < 2:
        return torch.full_like(x.sum(dim), float("nan"))
    return x.std(dim) / math.sqrt(n)


def mean_se(values: Iterable[float]) -> dict[str, float]:
    """``{"mean", "se"}`` of the finite values (e.g. one figure over seeds).

    Non-finite values are left out; none left gives NaN for both; one left gives
    ``se = NaN``.

    Example:
        >>> mean_se([1.0, 2.0, 3.0, float("nan")])
        {'mean': 2.0, 'se': 0.5773502691896258}
    """
    finite = [float(v) for v in values if math.isfinite(v)]
    if not finite:
        return {"mean": math.nan, "se": math.nan}
    t = torch.tensor(finite, dtype=torch.float64)
    return {"mean": t.mean().item(), "se": standard_error(t).item()}
