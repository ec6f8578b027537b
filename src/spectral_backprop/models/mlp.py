"""Fully connected generator and discriminator.

The generator has no batch normalisation: the implicit likelihood needs the Jacobian of
one output with respect to its own latent, and batch statistics would couple samples
(``∂G(z_i)/∂z_j ≠ 0``) so the per-sample log det would be wrong (the core raises for
training-mode batch norm). Everything here is per-sample.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

ACTIVATIONS = {
    "relu": nn.ReLU,
    "leaky_relu": lambda: nn.LeakyReLU(0.2),
    "tanh": nn.Tanh,
    "silu": nn.SiLU,
    "softplus": nn.Softplus,
    "elu": nn.ELU,
}


def activation(name: str) -> nn.Module:
    """An activation module by name (``relu``, ``leaky_relu``, ``tanh``, ``silu``, ...)."""
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose from {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


def mlp(sizes: Sequence[int], act: str) -> nn.Sequential:
    """Linear layers ``sizes[0] -> ... -> sizes[-1]`` with ``act`` between them."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(activation(act))
    return nn.Sequential(*layers)


class MLPGenerator(nn.Module):
    """``z [B, k] -> x [B, *out_shape]``; ``tanh`` output for images, linear for points.

    Args:
        latent_dim: k.
        out_shape: shape of one sample, e.g. ``(2,)`` or ``(1, 8, 8)``.
        hidden: widths of the hidden layers.
        act: hidden activation.
        tanh_output: squash the output to ``[-1, 1]`` (image data).
    """

    def __init__(self, latent_dim: int, out_shape: Sequence[int],
                 hidden: Sequence[int] = (400, 400, 400, 400), act: str = "relu",
                 tanh_output: bool = False):
        super().__init__()
        self.latent_dim = latent_dim
        self.out_shape = tuple(out_shape)
        self.net = mlp([latent_dim, *hidden, math.prod(self.out_shape)], act)
        self.tanh_output = tanh_output

    def forward(self, z: Tensor) -> Tensor:
        x = self.net(z)
        if self.tanh_output:
            x = torch.tanh(x)
        return x.reshape(z.shape[0], *self.out_shape)


class MLPDiscriminator(nn.Module):
    """``x [B, *in_shape] -> logit [B]`` (the log odds of "real")."""

    def __init__(self, in_shape: Sequence[int], hidden: Sequence[int] = (200, 200, 200),
                 act: str = "leaky_relu"):
        super().__init__()
        self.net = mlp([math.prod(in_shape), *hidden, 1], act)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x.flatten(1)).squeeze(1)
