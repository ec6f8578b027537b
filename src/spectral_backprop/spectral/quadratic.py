r"""What a stochastic kernel returns: quadratic forms ``xᵀ g(M) x`` and vectors ``g'(M) x``.

Each stochastic estimator of ``tr g(M)`` and of its gradient reduces to, for a set of
vectors ``x_j`` (random probes and deflation vectors),

.. math::  q_j \approx x_j^\top g(M)\, x_j, \qquad u_j \approx g'(M)\, x_j ,

computed without an autograd graph; :mod:`.stochastic` weights the ``q_j`` into the
value and the pairs ``(u_j, x_j)`` into the gradient surrogate. The kernels are
:mod:`.slq` (Lanczos) and :mod:`.chebyshev_hutchinson` (Chebyshev series).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from .functions import SpectralFunction

__all__ = ["ErrorBudget", "QuadraticForms", "is_reciprocal"]

# The adaptive stopping rule's budget (built by :mod:`.stochastic`, used by the kernels):
# ``budget(values[B, c], spread2[B, c], error[B, c]) -> allowed[B, c]``, the absolute
# error each column's quadratic form may keep, from the current forms ``q``, a per-column
# estimate of the probe variance (``2‖g(M) − q̄ I‖_F²``, see :mod:`.slq`) and the current
# error estimates.
ErrorBudget = Callable[[Tensor, Tensor, Tensor], Tensor]


def is_reciprocal(fn: SpectralFunction) -> bool:
    """``g' = 1/x`` (log det): ``g'(M) x`` solves ``M u = x``, so CG and its residual apply.

    ``d log det M = tr(M^{-1} dM)`` (Magnus & Neudecker, *Matrix Differential Calculus*).
    """
    return fn.dg is torch.reciprocal


@dataclass
class QuadraticForms:
    """Per-column results of a kernel for ``x[B, k, c]``.

    Attributes:
        values: ``q[B, c] ≈ xᵀ g(M) x``.
        vectors: ``u[B, k, c] ≈ g'(M) x``, or ``None`` when not requested.
        iterations: ``[B, c]`` products with ``M`` used by each column.
        residual: ``[B, c]`` convergence measure the tolerance was tested against.
        converged: ``[B, c]``.
        matvecs: products with ``M`` executed per sample (batched lanes included).
        extra: kernel-specific diagnostics (degree, interval, ...).
    """

    values: Tensor
    vectors: Tensor | None
    iterations: Tensor
    residual: Tensor
    converged: Tensor
    matvecs: int
    extra: dict = field(default_factory=dict)
