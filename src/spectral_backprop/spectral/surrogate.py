r"""The surrogate of spectral backpropagation is first-order only: a guard says so.

Every estimator returns ``value + (s − s.detach())`` with a surrogate ``s`` whose
gradient is that of ``S_g``: ``ds = tr(W dM)`` with ``W = g'(M)`` (or the solver's
vectors) held fixed (Ramesh & LeCun 2018, arXiv 1806.00499, §3). Holding ``W`` fixed
is exact for the gradient and wrong for the gradient of the gradient, which also needs
``dW``: with ``create_graph=True`` (a gradient penalty on a log-likelihood, a Hessian-
vector product) the second derivative would be silently wrong.

:func:`first_order_only` passes ``s`` through unchanged. Its backward returns the
incoming gradient as it is; when that backward itself records a graph
(``create_graph=True``), the gradient it returns is routed through a node whose own
backward raises, so differentiating the gradient fails with a clear message instead
of returning a wrong number. First derivatives, with or without ``create_graph``, are
unaffected.

Example:
    >>> s = torch.tensor([2.0], requires_grad=True)
    >>> (g,) = torch.autograd.grad(first_order_only(s * s).sum(), s, create_graph=True)
    >>> g.detach()  # the first derivative 2s, as without the guard
    tensor([4.])
    >>> torch.autograd.grad(g.sum(), s)
    Traceback (most recent call last):
    ...
    RuntimeError: second derivatives through spectral backpropagation are not supported: ...
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["SECOND_ORDER_MESSAGE", "first_order_only"]

SECOND_ORDER_MESSAGE = (
    "second derivatives through spectral backpropagation are not supported: its "
    "surrogate holds g'(JᵀJ) (the eigenvectors, the solver's vectors) fixed, which gives "
    "the right gradient but not the right gradient of the gradient, so a gradient "
    "penalty or Hessian product built with create_graph=True would be silently wrong. "
    "Differentiate a dense value instead for that term (for example "
    "torch.linalg.slogdet(J.mT @ J) with J = spectral_backprop.jacobian(G, z))."
)


class _RefuseSecondOrder(torch.autograd.Function):
    """``grad`` unchanged; differentiating it raises (it carries ``s``'s graph)."""

    @staticmethod
    def forward(grad: Tensor, s: Tensor) -> Tensor:
        return grad.clone()

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        pass

    @staticmethod
    def backward(ctx, _):
        raise RuntimeError(SECOND_ORDER_MESSAGE)


class _FirstOrderOnly(torch.autograd.Function):
    """Identity on the surrogate; see the module docstring."""

    @staticmethod
    def forward(s: Tensor) -> Tensor:
        return s.clone()

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        ctx.save_for_backward(inputs[0])

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        if not torch.is_grad_enabled():  # a plain backward pass
            return grad
        (s,) = ctx.saved_tensors
        return _RefuseSecondOrder.apply(grad, s)


def first_order_only(s: Tensor) -> Tensor:
    """``s`` unchanged, whose gradient may not be differentiated again (module docstring)."""
    if not s.requires_grad:
        return s
    return _FirstOrderOnly.apply(s)
