"""Unnormalised 2-D target densities ``p̃ = exp(−U)`` for reverse-KL training.

U1–U4 are the energies of Rezende & Mohamed 2015 ("Variational Inference with
Normalizing Flows", arXiv 1505.05770, Table 1), with

    w1(z) = sin(2π z1 / 4),  w2(z) = 3 exp(−½((z1 − 1)/0.6)²),  w3(z) = 3 σ((z1 − 1)/0.3).

U2–U4 do not decay along z1 (their integral over R² is infinite); the paper shows them
on the box ``[−4, 4]²``. We multiply them by the smooth window ``exp(−(z1/4)⁸)``,
which is ≈ 1 for ``|z1| < 3`` and confines the mass to ``|z1| ≲ 4.5``, so that Z is
finite and the reverse KL is well defined for a generator with full support.

``ring`` is an annulus of radius 2 and width 0.2; ``moons`` places a Gaussian tube
(std 0.1) around the two interleaved half circles of scikit-learn's ``make_moons``,
shifted and scaled by 2 to be centred in the box.

``log Z`` is computed by quadrature (midpoint rule in float64) on ``[−6, 6]²``, which
holds all but a negligible fraction of every target's mass.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

BOX = 6.0


def _w1(z: Tensor) -> Tensor:
    return torch.sin(2 * math.pi * z[:, 0] / 4)


def _w2(z: Tensor) -> Tensor:
    return 3 * torch.exp(-0.5 * ((z[:, 0] - 1) / 0.6) ** 2)


def _w3(z: Tensor) -> Tensor:
    return 3 * torch.sigmoid((z[:, 0] - 1) / 0.3)


def _window(z: Tensor) -> Tensor:
    return -((z[:, 0] / 4) ** 8)


def log_u1(z: Tensor) -> Tensor:
    """U1 of Rezende & Mohamed 2015 (arXiv 1505.05770, Table 1), as ``−U``.

    A ring of radius 2 (std 0.4) with two bumps on the z₁ axis.
    """
    r = z.norm(dim=1)
    bumps = torch.logaddexp(-0.5 * ((z[:, 0] - 2) / 0.6) ** 2, -0.5 * ((z[:, 0] + 2) / 0.6) ** 2)
    return -0.5 * ((r - 2) / 0.4) ** 2 + bumps


def log_u2(z: Tensor) -> Tensor:
    """U2 (Rezende & Mohamed 2015): ``−½((z₂ − w₁(z))/0.4)²``, windowed along z₁."""
    return -0.5 * ((z[:, 1] - _w1(z)) / 0.4) ** 2 + _window(z)


def log_u3(z: Tensor) -> Tensor:
    """U3 (Rezende & Mohamed 2015): two waves ``w₁`` and ``w₁ − w₂``, std 0.35, windowed."""
    a = -0.5 * ((z[:, 1] - _w1(z)) / 0.35) ** 2
    b = -0.5 * ((z[:, 1] - _w1(z) + _w2(z)) / 0.35) ** 2
    return torch.logaddexp(a, b) + _window(z)


def log_u4(z: Tensor) -> Tensor:
    """U4 (Rezende & Mohamed 2015): waves ``w₁`` (std 0.4) and ``w₁ − w₃`` (std 0.35), windowed."""
    a = -0.5 * ((z[:, 1] - _w1(z)) / 0.4) ** 2
    b = -0.5 * ((z[:, 1] - _w1(z) + _w3(z)) / 0.35) ** 2
    return torch.logaddexp(a, b) + _window(z)


def log_ring(z: Tensor) -> Tensor:
    """An annulus of radius 2: ``−½((‖z‖ − 2)/0.2)²``."""
    return -0.5 * ((z.norm(dim=1) - 2) / 0.2) ** 2


def _arc_distance(p: Tensor, centre: tuple[float, float], upper: bool) -> Tensor:
    """Distance from points to a unit half circle (upper or lower half) around ``centre``."""
    d = p - torch.tensor(centre, dtype=p.dtype, device=p.device)
    on_side = d[:, 1] >= 0 if upper else d[:, 1] <= 0
    to_circle = (d.norm(dim=1) - 1).abs()
    to_ends = torch.minimum((d - d.new_tensor([1.0, 0.0])).norm(dim=1),
                            (d - d.new_tensor([-1.0, 0.0])).norm(dim=1))
    return torch.where(on_side, to_circle, to_ends)


def log_moons(z: Tensor) -> Tensor:
    """A Gaussian tube (std 0.1) around scikit-learn's two moons, scaled by 2."""
    p = z / 2 + z.new_tensor([0.5, 0.25])  # back to make_moons coordinates
    upper = _arc_distance(p, (0.0, 0.0), upper=True)
    lower = _arc_distance(p, (1.0, 0.5), upper=False)
    # Distances are measured in make_moons units; the tube std 0.1 is in the box's units.
    return torch.logaddexp(-0.5 * (2 * upper / 0.1) ** 2, -0.5 * (2 * lower / 0.1) ** 2)


TARGETS: dict[str, Callable[[Tensor], Tensor]] = {
    "U1": log_u1,
    "U2": log_u2,
    "U3": log_u3,
    "U4": log_u4,
    "ring": log_ring,
    "moons": log_moons,
}


def get_target(name: str) -> Callable[[Tensor], Tensor]:
    """``log p̃`` of a target by name (``U1``–``U4``, ``ring``, ``moons``)."""
    if name not in TARGETS:
        raise ValueError(f"unknown target {name!r}; choose from {', '.join(TARGETS)}")
    return TARGETS[name]


def grid_points(resolution: int = 1000, box: float = BOX) -> tuple[Tensor, float]:
    """Cell centres ``[resolution², 2]`` of a square grid on ``[−box, box]²`` (float64),
    and the cell area. Row-major in ``(y, x)`` so that ``reshape(res, res)`` is an image."""
    h = 2 * box / resolution
    c = -box + h * (torch.arange(resolution, dtype=torch.float64) + 0.5)
    yy, xx = torch.meshgrid(c, c, indexing="ij")
    return torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=1), h * h


def log_normaliser(log_p: Callable[[Tensor], Tensor], resolution: int = 1000,
                   box: float = BOX) -> float:
    """``log Z = log ∫ p̃`` by the midpoint rule on ``[−box, box]²`` (float64)."""
    pts, area = grid_points(resolution, box)
    return (torch.logsumexp(log_p(pts), 0) + math.log(area)).item()
