"""Encoders ``E: R^n → R^k`` and generator / encoder pairs for manifold learning.

An injective generator trained by maximum implicit likelihood on data needs a map from a
data point to its latent (``z = E(x)``; Caterini et al. 2021, arXiv 2106.01413; Sorrenson
et al. 2024, arXiv 2306.01843). These are plain per-sample networks (no batch
normalisation): any other ``nn.Module`` works as well.

``build_manifold_pair(arch, data_shape, latent_dim, ...)`` returns ``(G, E)``: an
:class:`~spectral_backprop.models.mlp.MLPGenerator` with a smooth activation and an
:class:`MLPEncoder` for points; a :class:`~spectral_backprop.models.dcgan.DCGANGenerator`
and a :class:`ConvEncoder` for images.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import Tensor, nn

from spectral_backprop.models.dcgan import DCGANGenerator
from spectral_backprop.models.mlp import MLPGenerator, activation, mlp

__all__ = ["MANIFOLD_ARCHITECTURES", "ConvEncoder", "MLPEncoder", "build_manifold_pair"]

MANIFOLD_ARCHITECTURES = ("auto", "mlp", "conv")


class MLPEncoder(nn.Module):
    """``x [B, *in_shape] -> z [B, k]``: a fully connected network on the flattened input.

    Args:
        in_shape: shape of one sample, e.g. ``(2,)`` or ``(1, 28, 28)``.
        latent_dim: k.
        hidden: widths of the hidden layers.
        act: hidden activation.
    """

    def __init__(self, in_shape: Sequence[int], latent_dim: int,
                 hidden: Sequence[int] = (64, 64, 64), act: str = "silu"):
        super().__init__()
        self.latent_dim = latent_dim
        self.net = mlp([math.prod(in_shape), *hidden, latent_dim], act)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x.flatten(1))


class ConvEncoder(nn.Module):
    """``x [B, C, S, S] -> z [B, k]``: stride-2 convolutions (the mirror of a DCGAN
    generator, Radford et al. 2016, arXiv 1511.06434) and a linear head; no normalisation.

    Args:
        channels: C.
        image_size: S.
        latent_dim: k.
        width: channels of the first convolution (doubled at each of the others).
        act: activation.
    """

    def __init__(self, channels: int, image_size: int, latent_dim: int, width: int = 32,
                 act: str = "silu"):
        super().__init__()
        self.latent_dim = latent_dim
        layers: list[nn.Module] = []
        c, s = channels, image_size
        for i in range(3 if image_size >= 16 else 2):
            out = width * 2**i
            layers += [nn.Conv2d(c, out, 4, 2, 1), activation(act)]
            c, s = out, s // 2
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(c * s * s, latent_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x).flatten(1))


def build_manifold_pair(arch: str, data_shape: Sequence[int], latent_dim: int,
                        width: int | None = None, depth: int | None = None,
                        act: str = "silu") -> tuple[nn.Module, nn.Module]:
    """A ``(generator, encoder)`` pair for samples of shape ``data_shape``.

    Args:
        arch: ``mlp`` (fully connected both ways), ``conv`` (DCGAN generator and
            :class:`ConvEncoder`, square images only) or ``auto`` (``conv`` for images of
            side ≥ 16, else ``mlp``).
        data_shape: shape of one sample, ``(n,)`` or ``(C, H, W)``.
        latent_dim: k.
        width: hidden width (MLP, default 64) or base channels (conv, default 32).
        depth: hidden layers of both MLPs (default 3).
        act: hidden activation of the MLPs and of the encoder. Smooth by default: a ReLU
            generator has a piecewise constant ``log det JᵀJ``, hence a piecewise
            constant density on the manifold, and no gradient of it in ``z``.

    Example:
        >>> G, E = build_manifold_pair("auto", (10,), 2)
        >>> import torch
        >>> G(E(torch.zeros(3, 10))).shape
        torch.Size([3, 10])
    """
    data_shape = tuple(data_shape)
    is_image = len(data_shape) == 3
    if arch == "auto":
        arch = "conv" if is_image and data_shape[-1] >= 16 else "mlp"
    if latent_dim > math.prod(data_shape):
        raise ValueError(f"latent_dim k={latent_dim} exceeds the data dimension "
                         f"n={math.prod(data_shape)}: an injective generator needs k <= n")
    if arch == "mlp":
        hidden = [width or 64] * (depth if depth is not None else 3)
        return (MLPGenerator(latent_dim, data_shape, hidden, act=act, tanh_output=False),
                MLPEncoder(data_shape, latent_dim, hidden, act=act))
    if arch == "conv":
        if not is_image or data_shape[1] != data_shape[2]:
            raise ValueError(f"arch 'conv' needs square images [C, S, S], got {data_shape}")
        c, s = data_shape[0], data_shape[1]
        return (DCGANGenerator(latent_dim, c, s, width or 32),
                ConvEncoder(c, s, latent_dim, width or 32, act=act))
    raise ValueError(f"unknown architecture {arch!r}; choose from "
                     f"{', '.join(MANIFOLD_ARCHITECTURES)}")
