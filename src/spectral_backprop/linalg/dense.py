r"""Dense reference: materialise each Jacobian with plain reverse-mode autograd.

Slow (``n`` backward passes per sample) but obviously right, so tests and benchmarks
use it as ground truth for the matrix-free and spectral-backprop code paths. Gradients
flow through ``torch.linalg.eigh``/``slogdet`` with ordinary autograd, which is exactly
what spectral backpropagation avoids.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from .jacobian import Generator

__all__ = ["dense_jacobian", "dense_metric", "dense_spectral_sum"]


def dense_jacobian(G: Generator, z: Tensor) -> Tensor:
    """``J[B, n, k]`` by per-sample ``torch.autograd.functional.jacobian`` with a graph."""
    rows = []
    for b in range(z.shape[0]):

        def single(zb: Tensor) -> Tensor:
            return G(zb[None]).reshape(-1)

        rows.append(torch.autograd.functional.jacobian(single, z[b], create_graph=True))
    return torch.stack(rows)


def dense_metric(G: Generator, z: Tensor) -> Tensor:
    """``M = JᵀJ`` per sample, ``[B, k, k]``, differentiable by plain autograd."""
    J = dense_jacobian(G, z)
    return J.mT @ J


def dense_spectral_sum(G: Generator, z: Tensor, g: Callable[[Tensor], Tensor]) -> Tensor:
    """``Σ_i g(λ_i(JᵀJ))`` with autograd through ``eigvalsh`` (undefined at repeated λ)."""
    return g(torch.linalg.eigvalsh(dense_metric(G, z))).sum(-1)
