r"""A zoo of generator families for benchmarks and tests, so that no default is tuned
to one model (DESIGN.md §4, issue 16).

``zoo_generator(family, latent_dim, seed=..., scale=..., dtype=...)`` builds a random
(untrained) generator ``z[B, k] -> x[B, ...]`` of one family, deterministic from its
seed, in eval mode, with every sample treated independently:

========== ============================================================ ===========
family     architecture                                                  output
========== ============================================================ ===========
``mlp``        :class:`MLPGenerator`, two tanh hidden layers of ``2k``   ``2k``
``dcgan_bn``   DCGAN-style transposed convolutions, **batch norm** with  3×32×32
               frozen running statistics (eval mode), LeakyReLU
``dcgan_gn``   :class:`DCGANGenerator` (GroupNorm, ReLU), ``width=64``   3×32×32
``dcgan_plain`` DCGAN-style, **no normalisation**, Softplus (the         3×32×32
               held-back generator of issue 16)
``coupling``   :class:`CouplingGenerator`, affine couplings, ``k = n``   ``k``
``resnet``     ResNet-style decoder: residual blocks (two 3×3 convs and  3×32×32
               a skip) between stride-2 upsamplings, SiLU
========== ============================================================ ===========

**The conditioning knob** ``scale ≥ 1``. The layer that reads the latent (the first
linear map, or the coupling flow's diagonal affine map) is reshaped to
``W = U diag(s) Vᵀ`` with its own random orthonormal ``U, V`` and singular values
``s_i`` geometric from ``σ`` to ``σ/scale`` (``σ`` = the layer's largest singular value at
its PyTorch initialisation, so the activations keep their scale). Then
``J = J_rest W`` and, since ``cond(AB) ≤ cond(A) cond(B)``, ``κ(JᵀJ)`` can grow by up to
``scale²`` over the network's own conditioning: ``scale=1`` is the family's intrinsic
``κ``, and each decade of ``scale`` adds up to two decades of ``κ``. ``tests/
test_models_zoo.py`` measures ``κ(JᵀJ)`` with the dense reference at ``k = 16`` and checks
that it grows with ``scale`` for every family.

Sizes are chosen so that ``k = 256–512`` runs on a 2-core CPU in seconds: convolutional
families map to 3×32×32 (``n = 3072``), the MLP to ``n = 2k``.

Example:
    >>> import torch
    >>> G = zoo_generator("dcgan_plain", 8, seed=0)
    >>> G(torch.zeros(2, 8)).shape
    torch.Size([2, 3, 32, 32])
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from spectral_backprop.models.coupling import CouplingGenerator
from spectral_backprop.models.dcgan import DCGANGenerator
from spectral_backprop.models.mlp import MLPGenerator

__all__ = ["DEFAULT_SCALE", "ZOO_FAMILIES", "ZooDecoder", "zoo_generator"]

ZOO_FAMILIES = ("mlp", "dcgan_bn", "dcgan_gn", "dcgan_plain", "coupling", "resnet")
# Singular values of the latent layer spread over one decade by default: κ(JᵀJ) of the
# zoo at k = 256 then lies in tens to thousands, the range of the benchmark.
DEFAULT_SCALE = 10.0
_IMAGE = (3, 32, 32)


class _FrozenBatchNorm2d(nn.Module):
    """Batch norm that always normalises with its running statistics (eval behaviour).

    A generator must not couple the samples of a batch (its per-sample Jacobian is
    otherwise undefined), so the statistics stay frozen even after ``.train()``; it is
    therefore not a ``BatchNorm2d`` (whose training mode the estimators refuse).
    """

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))

    def forward(self, x: Tensor) -> Tensor:
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                            False, 0.0, self.eps)


class _Residual(nn.Module):
    """``x + conv(act(conv(act(x))))`` with 3×3 convolutions (He et al. 2016)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv2(F.silu(self.conv1(F.silu(x))))


class ZooDecoder(nn.Module):
    """``z [B, k] -> x [B, 3, 32, 32]``: a linear layer to ``c0 × 4 × 4``, then three
    stride-2 transposed convolutions (4×4 kernels) halving the channels, ``tanh`` output.

    Args:
        latent_dim: k.
        width: channels after the first upsampling (``c0 = 2·width``).
        norm: ``"batch"`` (frozen statistics), or ``None``.
        act: ``"leaky_relu"``, ``"softplus"`` or ``"silu"``.
        residual: a residual block (:class:`_Residual`) at every resolution (ResNet-style).
    """

    def __init__(self, latent_dim: int, width: int = 32, norm: str | None = None,
                 act: str = "softplus", residual: bool = False):
        super().__init__()
        self.latent_dim, self.out_shape = latent_dim, _IMAGE
        acts = {"leaky_relu": lambda: nn.LeakyReLU(0.2), "softplus": nn.Softplus,
                "silu": nn.SiLU}
        self.c0 = 2 * width
        self.project = nn.Linear(latent_dim, self.c0 * 16)
        layers: list[nn.Module] = [acts[act]()]
        c = self.c0
        for i in range(3):
            if residual:
                layers.append(_Residual(c))
            last = i == 2
            c_out = _IMAGE[0] if last else c // 2
            layers.append(nn.ConvTranspose2d(c, c_out, 4, stride=2, padding=1))
            if not last:
                if norm == "batch":
                    layers.append(_FrozenBatchNorm2d(c_out))
                layers.append(acts[act]())
            c = c_out
        layers.append(nn.Tanh())
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(self.project(z).reshape(z.shape[0], self.c0, 4, 4))


def _shape_spectrum(weight: Tensor, scale: float) -> None:
    """Give ``weight[out, in]`` singular values geometric from ``σ_max`` to ``σ_max/scale``.

    The singular vectors are the weight's own (its SVD), so the layer stays a random
    layer of its initialisation whose spread of gains is set by ``scale``.
    """
    with torch.no_grad():
        U, s, Vh = torch.linalg.svd(weight.double(), full_matrices=False)
        shaped = s[0] * torch.logspace(0, -math.log10(scale), len(s), dtype=torch.float64)
        weight.copy_((U * shaped) @ Vh)


def _calibrate(G: nn.Module, latent_dim: int) -> None:
    """Running statistics of the frozen batch norms from 256 latents of the seeded RNG,
    as after training; then random affine parameters, so normalisation is not a no-op."""
    norms = [m for m in G.modules() if isinstance(m, _FrozenBatchNorm2d)]
    hooks = []
    for m in norms:
        def hook(module, inputs, _m=m):
            x = inputs[0]
            _m.running_mean.copy_(x.mean((0, 2, 3)))
            _m.running_var.copy_(x.var((0, 2, 3)))
        hooks.append(m.register_forward_pre_hook(hook))
    with torch.no_grad():
        # One layer at a time: each hook sees activations normalised by the layers above.
        for _ in norms:
            G(torch.randn(256, latent_dim))
    for h in hooks:
        h.remove()
    with torch.no_grad():
        for m in norms:
            m.weight.uniform_(0.5, 1.5)
            m.bias.uniform_(-0.2, 0.2)


def _build(family: str, k: int) -> tuple[nn.Module, Tensor]:
    """The network and the weight of its latent layer (whose spectrum ``scale`` shapes)."""
    if family == "mlp":
        G = MLPGenerator(k, (2 * k,), hidden=(2 * k, 2 * k), act="tanh")
        return G, G.net[0].weight
    if family == "dcgan_bn":
        G = ZooDecoder(k, width=32, norm="batch", act="leaky_relu")
        return G, G.project.weight
    if family == "dcgan_gn":
        G = DCGANGenerator(k, channels=3, image_size=32, width=64)
        return G, G.project[0].weight
    if family == "dcgan_plain":
        G = ZooDecoder(k, width=32, norm=None, act="softplus")
        return G, G.project.weight
    if family == "resnet":
        G = ZooDecoder(k, width=16, norm=None, act="silu", residual=True)
        return G, G.project.weight
    if family == "coupling":
        G = CouplingGenerator(dim=k, num_layers=4, hidden=64, depth=1, act="silu",
                              mixing="rotation")
        # Zero-initialised conditioners are the identity: give them random weights,
        # small enough that every layer stays well inside its bounded log-scale.
        for layer in G.layers:
            last = layer.net[-1]
            nn.init.normal_(last.weight, std=0.5 / math.sqrt(last.in_features))
        return G, G.log_scale
    raise AssertionError(family)  # zoo_generator has checked the name


def zoo_generator(family: str, latent_dim: int, *, seed: int = 0, scale: float = DEFAULT_SCALE,
                  dtype: torch.dtype = torch.float32) -> nn.Module:
    """A random generator of one zoo family (module docstring), in eval mode.

    Args:
        family: one of :data:`ZOO_FAMILIES`.
        latent_dim: ``k`` (``coupling``: ``k = n``, at least 2).
        seed: the whole network (weights, the latent layer's shaping, rotations, batch
            norm statistics) is a function of it; the global RNG is left untouched.
        scale: ``≥ 1``, the ratio of the largest to the smallest singular value of the
            latent layer; ``κ(JᵀJ)`` grows with it, by up to ``scale²``.
        dtype: of the parameters (built in float32, then converted: the float64 model is
            the same map as the float32 one).

    Returns:
        An ``nn.Module`` with ``latent_dim``, ``out_shape``, ``family`` and ``scale``.
    """
    if family not in ZOO_FAMILIES:
        raise ValueError(f"unknown zoo family {family!r}; choose from {', '.join(ZOO_FAMILIES)}")
    if isinstance(latent_dim, bool) or not isinstance(latent_dim, int) or latent_dim < 2:
        raise ValueError(f"latent_dim must be an integer >= 2, got {latent_dim!r}")
    if not isinstance(scale, (int, float)) or not 1 <= scale < float("inf"):
        raise ValueError(f"scale must be a finite number >= 1, got {scale!r}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        G, latent_weight = _build(family, latent_dim)
        if family == "coupling":
            # The diagonal latent layer z ↦ z·exp(log_scale): gains geometric over [1/scale, 1],
            # in a seeded random order.
            with torch.no_grad():
                gains = torch.logspace(0, -math.log10(scale), latent_dim, dtype=torch.float64)
                latent_weight.copy_(gains.log()[torch.randperm(latent_dim)])
        else:
            _shape_spectrum(latent_weight, scale)
        _calibrate(G, latent_dim)
    G = G.to(dtype).eval()
    G.family, G.scale = family, float(scale)
    return G
