"""Generator and discriminator networks.

All generators are per-sample maps (no batch normalisation), so that the implicit
likelihood ``log p_Z(z) − ½ log det JᵀJ`` of each output is well defined and can be
computed with the generator in training mode.

``build_gan(arch, data_shape, latent_dim)`` picks a pair: ``mlp`` for points and small
images, ``dcgan`` for images of side 28, 32, ...; ``auto`` chooses by the data shape.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from spectral_backprop.models.coupling import AffineCoupling, CouplingGenerator, SplineCoupling
from spectral_backprop.models.dcgan import DCGANDiscriminator, DCGANGenerator
from spectral_backprop.models.encoders import ConvEncoder, MLPEncoder, build_manifold_pair
from spectral_backprop.models.mlp import MLPDiscriminator, MLPGenerator, activation, mlp
from spectral_backprop.models.zoo import ZOO_FAMILIES, zoo_generator

ARCHITECTURES = ("auto", "mlp", "dcgan")


def build_gan(arch: str, data_shape: Sequence[int], latent_dim: int, width: int | None = None,
              depth: int | None = None, g_activation: str | None = None
              ) -> tuple[nn.Module, nn.Module]:
    """A ``(generator, discriminator)`` pair for samples of shape ``data_shape``.

    Args:
        arch: ``mlp``, ``dcgan`` or ``auto`` (``dcgan`` for images of side ≥ 16).
        data_shape: shape of one sample, ``(d,)`` or ``(C, H, W)``.
        latent_dim: k.
        width: hidden width (MLP; default 400 for G, 200 for D) or base channel count
            (DCGAN; default 64).
        depth: number of hidden layers (MLP only; default 4 for G, 3 for D, the
            PacGAN 2-D setting).
        g_activation: hidden activation of the MLP generator (default ``relu``). A ReLU
            generator can be exactly rank-deficient on whole regions of latent space
            (where dead units leave fewer than k independent paths), so its log det is
            −∞ there and an entropy term has no gradient to act with; ``leaky_relu``
            keeps every Jacobian full rank.
    """
    data_shape = tuple(data_shape)
    is_image = len(data_shape) == 3
    if arch == "auto":
        arch = "dcgan" if is_image and data_shape[-1] >= 16 else "mlp"
    if arch == "mlp":
        g_hidden = [width or 400] * (depth or 4)
        d_hidden = [width or 200] * (depth or 3)
        return (MLPGenerator(latent_dim, data_shape, g_hidden, act=g_activation or "relu",
                             tanh_output=is_image),
                MLPDiscriminator(data_shape, d_hidden))
    if arch == "dcgan":
        if g_activation is not None:
            raise ValueError("g_activation applies to the mlp generator only")
        if not is_image or data_shape[1] != data_shape[2]:
            raise ValueError(f"dcgan needs square images [C, S, S], got sample shape {data_shape}")
        c, s = data_shape[0], data_shape[1]
        return (DCGANGenerator(latent_dim, c, s, width or 64),
                DCGANDiscriminator(c, s, width or 64))
    raise ValueError(f"unknown architecture {arch!r}; choose from {', '.join(ARCHITECTURES)}")


__all__ = [
    "ARCHITECTURES",
    "AffineCoupling",
    "ConvEncoder",
    "CouplingGenerator",
    "DCGANDiscriminator",
    "DCGANGenerator",
    "MLPDiscriminator",
    "MLPEncoder",
    "MLPGenerator",
    "SplineCoupling",
    "ZOO_FAMILIES",
    "activation",
    "build_gan",
    "build_manifold_pair",
    "mlp",
    "zoo_generator",
]
