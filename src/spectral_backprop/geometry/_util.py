"""Argument helpers shared by the geometry and analysis modules.

``check_rank`` lives with :func:`~spectral_backprop.spectral.latent_metric`, whose
``top`` it checks, and is re-exported here.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from ..linalg.jacobian import Generator
from ..spectral.metric import check_rank

__all__ = ["check_rank", "frozen", "infer_latent_dim", "param_dtype"]


def infer_latent_dim(G: Generator, latent_dim: int | None = None) -> int:
    """``latent_dim`` if given, else ``G.latent_dim`` (set by the project's generators)."""
    k = latent_dim if latent_dim is not None else getattr(G, "latent_dim", None)
    if not isinstance(k, int) or k < 1:
        raise ValueError(
            "cannot tell the latent dimension of G: pass latent_dim=k "
            "(or give G an integer attribute latent_dim)"
        )
    return k


def param_dtype(G: Generator) -> torch.dtype:
    """The dtype of ``G``'s parameters (the default dtype for functions)."""
    if isinstance(G, torch.nn.Module):
        for p in G.parameters():
            return p.dtype
    return torch.get_default_dtype()


@contextmanager
def frozen(G: Generator) -> Iterator[None]:
    """``G``'s parameters with ``requires_grad`` off inside the block, restored after.

    For optimising latents: gradients must not pile up on ``G``'s parameters.
    """
    params = list(G.parameters()) if isinstance(G, torch.nn.Module) else []
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(params, flags, strict=True):
            p.requires_grad_(flag)
