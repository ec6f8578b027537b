r"""Spectral functions ``g`` and their derivatives ``g'``.

A spectral sum of the latent metric ``M = JᵀJ`` is

.. math::  S_g(M) = \sum_i g(\lambda_i(M)) = \operatorname{tr} g(M),

and its differential is ``dS_g = tr(g'(M) dM)`` (Ramesh & LeCun 2018, arXiv
1806.00499, eq. 4), which is all spectral backpropagation needs from ``g``.

Built in: ``"logdet"`` (``g = log``), ``"trace"`` (``g = x``; equals ``‖J‖_F²``),
``"nuclear"`` (``g = √x``; the nuclear norm of ``J``). Any object with callables
``g`` and ``dg`` (elementwise on eigenvalue tensors) works too, for example
``SpectralFunction("square", lambda x: x**2, lambda x: 2*x)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["SpectralFunction", "SPECTRAL_FUNCTIONS", "resolve_function"]


@dataclass(frozen=True)
class SpectralFunction:
    """An elementwise function ``g`` of the eigenvalues, with its derivative ``dg``.

    Attributes:
        name: shown in messages.
        g: ``g(λ)``, applied elementwise.
        dg: ``g'(λ)``, applied elementwise.
        needs_positive: ``g`` or ``g'`` is singular at ``λ = 0`` (log, sqrt), so a
            singular metric is reported instead of returning ``-inf``/``inf`` silently.
    """

    name: str
    g: Callable[[Tensor], Tensor]
    dg: Callable[[Tensor], Tensor]
    needs_positive: bool = False


SPECTRAL_FUNCTIONS: dict[str, SpectralFunction] = {
    "logdet": SpectralFunction("logdet", torch.log, torch.reciprocal, needs_positive=True),
    "trace": SpectralFunction("trace", lambda x: x, torch.ones_like),
    "nuclear": SpectralFunction(
        "nuclear", torch.sqrt, lambda x: 0.5 * torch.rsqrt(x), needs_positive=True
    ),
}


def resolve_function(fn: str | SpectralFunction | object) -> SpectralFunction:
    """Turn a name or a user object with ``g`` and ``dg`` into a :class:`SpectralFunction`."""
    if isinstance(fn, SpectralFunction):
        return fn
    if isinstance(fn, str):
        try:
            return SPECTRAL_FUNCTIONS[fn]
        except KeyError:
            known = ", ".join(sorted(SPECTRAL_FUNCTIONS))
            raise ValueError(f"unknown spectral function {fn!r}; known: {known}") from None
    g, dg = getattr(fn, "g", None), getattr(fn, "dg", None)
    if not (callable(g) and callable(dg)):
        raise TypeError(
            "fn must be 'logdet', 'trace', 'nuclear' or an object with callables g and dg "
            f"(its derivative); got {fn!r}"
        )
    return SpectralFunction(
        getattr(fn, "name", type(fn).__name__), g, dg, bool(getattr(fn, "needs_positive", False))
    )
