"""An invertible generator ``R^d -> R^d`` built from coupling layers.

Used for reverse-KL training (k = n), where the implicit likelihood
``log p_Z(z) − ½ log det JᵀJ`` is a true density only if G is injective. Each layer
applies a fixed orthogonal matrix ``Q`` (a swap of halves on alternate layers, or a
random rotation) and then updates the second half of the coordinates elementwise,
conditioned on the first, by one of two transforms:

* affine (Dinh et al. 2017, "Density estimation using Real NVP", arXiv 1605.08803):

      y = Q x;   y_b ← y_b · exp(s(y_a)) + t(y_a),   s = c · tanh(ŝ / c);

* rational-quadratic spline (Durkan et al. 2019, "Neural Spline Flows", arXiv
  1906.04066): ``y_b ← RQS(y_b; θ(y_a))``, monotonic with ``K`` bins on ``[−B, B]`` and
  the identity outside (:mod:`spectral_backprop.models.spline`).

Both are invertible for any parameters, so the library's log det is meaningful at every
step of training. The bounded scale ``s`` (and the spline's bounded bin sizes and
derivatives) keep the map bi-Lipschitz. The training code never uses
:meth:`CouplingGenerator.log_abs_det`: it is the analytic reference
``log|det J| = Σ log|∂y_b/∂x_b|``, against which tests check the spectral log det.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from spectral_backprop.models.mlp import mlp
from spectral_backprop.models.spline import (
    rational_quadratic_spline,
    spline_params_per_dim,
)


def _mixing(dim: int, index: int, kind: str, seed: int) -> Tensor:
    """The fixed orthogonal matrix applied before coupling layer ``index``.

    ``swap``: reverse the coordinates on odd layers (RealNVP's alternating masks), so
    that every coordinate is transformed conditioned on the others in turn, along the
    original axes. ``rotation``: a seeded random rotation (QR of a Gaussian).
    """
    if kind == "swap":
        eye = torch.eye(dim)
        return eye.flip(0) if index % 2 else eye
    if kind == "rotation":
        g = torch.Generator().manual_seed(seed * 1000 + index)
        q, r = torch.linalg.qr(torch.randn(dim, dim, generator=g, dtype=torch.float64))
        # In the default dtype, so that a float64 model (tests) is orthogonal to float64
        # precision and its analytic log det (which takes |det Q| = 1) is exact.
        return (q * torch.sign(torch.diagonal(r))).to(torch.get_default_dtype())
    raise ValueError(f"mixing must be 'swap' or 'rotation', got {kind!r}")


class _Coupling(nn.Module):
    """Rotate, then transform the second half ``y_b`` elementwise, conditioned on ``y_a``.

    Subclasses set ``params_per_dim`` and implement :meth:`_transform`.
    """

    params_per_dim: int

    def __init__(self, dim: int, hidden: int, depth: int, act: str, mixing: Tensor):
        super().__init__()
        self.split = dim // 2
        self.register_buffer("rotation", mixing)
        self.net = mlp([self.split, *([hidden] * depth),
                        self.params_per_dim * (dim - self.split)], act)
        # Zero outputs are the identity on y_b for both transforms, so that training
        # begins from a well-conditioned map.
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def _params(self, ya: Tensor) -> Tensor:
        """Conditioner output ``[B, d − split, params_per_dim]``."""
        return self.net(ya).unflatten(-1, (-1, self.params_per_dim))

    def _transform(self, yb: Tensor, params: Tensor,
                   inverse: bool = False) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def couple(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The layer's output and its per-coordinate ``log|∂y_b/∂x_b|`` (sum: ``log|det J|``)."""
        y = x @ self.rotation.T
        ya, yb = y[:, : self.split], y[:, self.split :]
        out, log_det = self._transform(yb, self._params(ya))
        return torch.cat([ya, out], dim=-1), log_det

    def forward(self, x: Tensor) -> Tensor:
        return self.couple(x)[0]

    def log_abs_det(self, x: Tensor) -> Tensor:
        return self.couple(x)[1].sum(-1)

    def inverse(self, y: Tensor) -> Tensor:
        """``x`` with ``forward(x) = y`` (for tests: the map is a bijection)."""
        ya, out = y[:, : self.split], y[:, self.split :]
        yb, _ = self._transform(out, self._params(ya), inverse=True)
        # Q⁻¹ by a solve rather than Qᵀ: a rotation rounded to float32 is orthogonal only
        # to float32 precision.
        return torch.linalg.solve(self.rotation, torch.cat([ya, yb], dim=-1).T).T


class AffineCoupling(_Coupling):
    """``y_b ← y_b · exp(s(y_a)) + t(y_a)``, ``s = c · tanh(ŝ / c)`` (Dinh et al. 2017)."""

    params_per_dim = 2

    def __init__(self, dim: int, hidden: int, depth: int, act: str, mixing: Tensor,
                 max_log_scale: float = 3.0):
        super().__init__(dim, hidden, depth, act, mixing)
        self.max_log_scale = max_log_scale

    def _transform(self, yb: Tensor, params: Tensor,
                   inverse: bool = False) -> tuple[Tensor, Tensor]:
        raw_s, t = params.unbind(-1)
        s = self.max_log_scale * torch.tanh(raw_s / self.max_log_scale)
        if inverse:
            return (yb - t) * (-s).exp(), s
        return yb * s.exp() + t, s


class SplineCoupling(_Coupling):
    """``y_b ← RQS(y_b; θ(y_a))``: a monotonic rational-quadratic spline per coordinate,
    ``K`` bins on ``[−B, B]``, identity outside (Durkan et al. 2019, arXiv 1906.04066;
    formulas in :mod:`spectral_backprop.models.spline`)."""

    def __init__(self, dim: int, hidden: int, depth: int, act: str, mixing: Tensor,
                 bins: int = 8, bound: float = 5.0):
        if bins < 2 or bound <= 0:
            raise ValueError(f"spline needs bins >= 2 and bound > 0, got {bins}, {bound}")
        self.params_per_dim = spline_params_per_dim(bins)
        super().__init__(dim, hidden, depth, act, mixing)
        self.bins, self.bound = bins, bound

    def _transform(self, yb: Tensor, params: Tensor,
                   inverse: bool = False) -> tuple[Tensor, Tensor]:
        return rational_quadratic_spline(yb, params, self.bound, inverse=inverse)


TRANSFORMS = ("affine", "spline")


class CouplingGenerator(nn.Module):
    """``z [B, d] -> x [B, d]``: a learnable affine map followed by coupling layers.

    Args:
        dim: d (2 for the reverse-KL targets).
        num_layers: number of coupling layers.
        hidden: width of each conditioner MLP.
        depth: hidden layers per conditioner.
        act: conditioner activation (smooth, so that the log det is smooth in z).
        mixing: ``rotation`` (a fixed random rotation before each layer) or ``swap``
            (alternate which half is transformed, as RealNVP). With SiLU conditioners,
            rotations gave the lower reverse KL on U3 (0.124 against 0.192 nats, 1,500
            steps; docs/reverse_kl.md).
        seed: seed of the fixed rotations (part of the architecture, not of training).
        transform: ``affine`` (:class:`AffineCoupling`) or ``spline``
            (:class:`SplineCoupling`, rational-quadratic, as in Neural Spline Flows).
        bins, bound: the spline's ``K`` bins on ``[−B, B]`` (ignored for ``affine``).
    """

    def __init__(self, dim: int = 2, num_layers: int = 8, hidden: int = 64, depth: int = 2,
                 act: str = "silu", mixing: str = "rotation", seed: int = 0,
                 transform: str = "affine", bins: int = 8, bound: float = 5.0):
        super().__init__()
        if dim < 2:
            raise ValueError(f"coupling layers need dim >= 2, got {dim}")
        if transform not in TRANSFORMS:
            raise ValueError(f"transform must be one of {TRANSFORMS}, got {transform!r}")
        self.latent_dim = dim
        self.out_shape = (dim,)
        self.log_scale = nn.Parameter(torch.zeros(dim))
        self.shift = nn.Parameter(torch.zeros(dim))

        def layer(i: int) -> _Coupling:
            rot = _mixing(dim, i, mixing, seed)
            if transform == "spline":
                return SplineCoupling(dim, hidden, depth, act, rot, bins, bound)
            return AffineCoupling(dim, hidden, depth, act, rot)

        self.layers = nn.ModuleList(layer(i) for i in range(num_layers))

    def forward(self, z: Tensor) -> Tensor:
        x = z * self.log_scale.exp() + self.shift
        for layer in self.layers:
            x = layer(x)
        return x

    def inverse(self, x: Tensor) -> Tensor:
        """``z`` with ``G(z) = x`` (for tests: G is a bijection of ``R^d``)."""
        for layer in reversed(self.layers):
            x = layer.inverse(x)
        return (x - self.shift) * (-self.log_scale).exp()

    def log_abs_det(self, z: Tensor) -> Tensor:
        """Analytic ``log|det ∂G/∂z|`` per sample (reference for tests only)."""
        total = self.log_scale.sum().expand(z.shape[0])
        x = z * self.log_scale.exp() + self.shift
        for layer in self.layers:
            x, s = layer.couple(x)
            total = total + s.sum(-1)
        return total
