"""DCGAN-style convolutional generator and discriminator (Radford et al. 2016,
arXiv 1511.06434) for square images of side ``base · 2^m`` with ``base ∈ {4, 7}``:
8, 16, 28 (MNIST), 32 (RGB), 64, ...

Departures from the paper, and why:

* the generator normalises with ``GroupNorm`` instead of batch norm, so each output
  depends on its own latent only and the implicit likelihood is per sample; GroupNorm
  also supports forward-mode differentiation, which the exact Jacobian uses;
* the discriminator has no batch norm either, so that data-parallel training on N
  processes computes exactly the gradient of one process with the global batch.
"""

from __future__ import annotations

import math

from torch import Tensor, nn


def _plan(image_size: int) -> tuple[int, int]:
    """``(base, num_upsamplings)`` with ``base · 2^num_upsamplings == image_size``."""
    for base in (7, 4):
        m = math.log2(image_size / base) if image_size % base == 0 else -1.0
        if m >= 1 and m == int(m):
            return base, int(m)
    raise ValueError(
        f"DCGAN models need an image side of 4·2^m or 7·2^m (m ≥ 1), e.g. 8, 16, 28, 32; "
        f"got {image_size}"
    )


def _groups(channels: int) -> int:
    return math.gcd(channels, 8)


class DCGANGenerator(nn.Module):
    """``z [B, k] -> x [B, C, S, S]`` in ``[-1, 1]``.

    A linear layer to ``width·2^(m-1)`` channels at ``base x base``, then ``m``
    stride-2 transposed convolutions, halving channels, ending in ``C`` channels and
    ``tanh``.
    """

    def __init__(self, latent_dim: int, channels: int = 1, image_size: int = 28,
                 width: int = 64):
        super().__init__()
        base, ups = _plan(image_size)
        self.latent_dim = latent_dim
        self.out_shape = (channels, image_size, image_size)
        c0 = width * 2 ** (ups - 1)
        self.c0, self.base = c0, base
        self.project = nn.Sequential(nn.Linear(latent_dim, c0 * base * base), nn.ReLU())
        layers: list[nn.Module] = []
        c = c0
        for i in range(ups):
            last = i == ups - 1
            c_out = channels if last else c // 2
            layers.append(nn.ConvTranspose2d(c, c_out, 4, stride=2, padding=1))
            if not last:
                layers += [nn.GroupNorm(_groups(c_out), c_out), nn.ReLU()]
            c = c_out
        layers.append(nn.Tanh())
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        h = self.project(z).reshape(z.shape[0], self.c0, self.base, self.base)
        return self.net(h)


class DCGANDiscriminator(nn.Module):
    """``x [B, C, S, S] -> logit [B]``: stride-2 convolutions doubling channels."""

    def __init__(self, channels: int = 1, image_size: int = 28, width: int = 64):
        super().__init__()
        base, downs = _plan(image_size)
        layers: list[nn.Module] = []
        c_in, c = channels, width
        for _ in range(downs):
            layers += [nn.Conv2d(c_in, c, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
            c_in, c = c, c * 2
        self.net = nn.Sequential(*layers, nn.Flatten(), nn.Linear(c_in * base * base, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).squeeze(1)
