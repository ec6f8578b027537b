r"""Spectral sums of the latent metric ``JᵀJ`` and their gradients.

One signature for every estimator: ``spectral_sum(G, z, fn, method=..., **options)``.
``method`` picks an entry of a small registry; ``"exact"`` builds the Jacobian,
the stochastic methods are matrix-free.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

from ..linalg.jacobian import Generator
from .exact import SingularMetricWarning, exact_spectral_sum
from .functions import SPECTRAL_FUNCTIONS, SpectralFunction, resolve_function
from .metric import canonical_signs, latent_metric
from .quadratic import NonConvergenceError, NonConvergenceWarning
from .stochastic import (
    SpectralEstimate,
    auto_spectral_sum,
    chebyshev_spectral_sum,
    lanczos_spectral_sum,
    stochastic_spectral_sum,
)

__all__ = [
    "METHODS",
    "NonConvergenceError",
    "NonConvergenceWarning",
    "SPECTRAL_FUNCTIONS",
    "SingularMetricWarning",
    "SpectralEstimate",
    "SpectralFunction",
    "canonical_signs",
    "latent_metric",
    "logdet_jtj",
    "register_method",
    "spectral_sum",
    "stochastic_spectral_sum",
]

Method = Callable[..., Tensor]
METHODS: dict[str, Method] = {
    "exact": exact_spectral_sum,
    "lanczos": lanczos_spectral_sum,
    "chebyshev": chebyshev_spectral_sum,
    "auto": auto_spectral_sum,
}


def register_method(name: str, estimator: Method) -> None:
    """Register ``estimator(G, z, fn: SpectralFunction, **options) -> Tensor[B]`` as ``name``."""
    METHODS[name] = estimator


def spectral_sum(
    G: Generator,
    z: Tensor,
    fn: str | SpectralFunction | object,
    *,
    method: str = "exact",
    **options,
) -> Tensor:
    r"""``S_g(z) = Σ_i g(λ_i(J(z)ᵀJ(z)))`` per sample, differentiable by spectral backprop.

    Args:
        G: callable ``z[B, k] -> x[B, ...]`` (an ``nn.Module`` or a function); outputs
            are flattened to ``n >= k``.
        z: latents ``[B, k]``.
        fn: ``"logdet"`` (``Σ log λ``), ``"trace"`` (``Σ λ``), ``"nuclear"`` (``Σ √λ``),
            or an object with elementwise callables ``g`` and ``dg = g'``.
        method: ``"exact"`` (default), ``"lanczos"`` (stochastic Lanczos quadrature),
            ``"chebyshev"`` (Chebyshev–Hutchinson), ``"auto"`` (exact for small ``k``), or
            a registered estimator.
        **options: passed to the estimator; for ``"exact"``: ``chunk_size``, ``jitter``,
            ``on_singular`` (``"warn"``/``"raise"``), ``rank_tol``; for the stochastic
            methods: ``num_probes``, ``num_matvecs``, ``tol``, ``probes``, ``generator``,
            ``deflate``, ``on_nonconvergence``, ``return_info`` (see
            :func:`~spectral_backprop.spectral.stochastic.stochastic_spectral_sum`).

    Returns:
        ``Tensor[B]``; its gradient with respect to ``z`` and every tensor ``G`` uses is
        ``tr(g'(M) dM)`` (Ramesh & LeCun 2018, arXiv 1806.00499).

    Example:
        >>> import torch
        >>> A = torch.tensor([[2.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
        >>> spectral_sum(lambda z: z @ A.T, torch.zeros(1, 2), "trace")
        tensor([5.])
    """
    try:
        estimator = METHODS[method]
    except KeyError:
        known = ", ".join(sorted(METHODS))
        raise ValueError(f"unknown method {method!r}; known: {known}") from None
    return estimator(G, z, resolve_function(fn), **options)


def logdet_jtj(G: Generator, z: Tensor, *, method: str = "exact", **options) -> Tensor:
    r"""``log det(J(z)ᵀJ(z))`` per sample: :func:`spectral_sum` with ``fn="logdet"``.

    Example:
        >>> import torch
        >>> logdet_jtj(lambda z: 3 * z, torch.zeros(2, 4))  # 4 · log 9
        tensor([8.7889, 8.7889])
    """
    return spectral_sum(G, z, "logdet", method=method, **options)
