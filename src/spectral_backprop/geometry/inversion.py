r"""Inversion: the latent whose output is nearest a data point.

``z* = argmin_z ‖G(z) − x‖² + w·½‖z‖²`` lets real data be scored with the implicit
likelihood at ``z*``, which is meaningful only where the residual is small: the
implicit density lives on the generator's manifold.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ..linalg.jacobian import Generator
from ..progress import progress as progress_bar
from ..spectral.diagnostics import NonConvergenceWarning, warn
from ._util import frozen, infer_latent_dim, param_dtype

__all__ = ["Inversion", "encode_to_manifold", "invert"]


@dataclass
class Inversion:
    """Latents recovered for data points.

    Attributes:
        latents: ``[N, k]``, the best restart for each point.
        residual: ``[N]``, root-mean-square error ``‖G(z*) − x‖ / √n`` per output entry.
        flagged: ``[N]`` bool, ``residual > residual_tol`` (or not finite): the point is
            far from the generator's manifold and its implicit likelihood is not meaningful.
        reconstructions: ``[N, ...]``, ``G(z*)``.
        residual_tol: the threshold used.
    """

    latents: Tensor
    residual: Tensor
    flagged: Tensor
    reconstructions: Tensor
    residual_tol: float


def invert(
    G: Generator,
    x: Tensor,
    *,
    latent_dim: int | None = None,
    restarts: int = 4,
    steps: int = 300,
    lr: float = 0.05,
    prior_weight: float = 0.0,
    residual_tol: float = 0.1,
    batch_size: int = 256,
    generator: torch.Generator | None = None,
    progress: bool = False,
) -> Inversion:
    r"""Recover latents ``z* = argmin_z ‖G(z) − x‖² + w·½‖z‖²`` for data points ``x``.

    Adam from ``restarts`` prior samples per point, all optimised together; the restart
    with the smallest reconstruction error is kept (the objective is non-convex and
    single starts often stall in poor basins). The learning rate decays with a cosine
    schedule to refine the last steps. The prior term ``w > 0`` keeps latents where the
    prior has mass, which matters when ``x`` is off the manifold.

    Score the recovered points with ``implicit_log_prob(G, inv.latents)`` and discard or
    report the ``flagged`` ones: the implicit density lives on the manifold, and a
    point with a large residual is not on it.

    Args:
        G: generator ``z[B, k] -> x[B, ...]``.
        x: data ``[N, ...]``, same sample shape as ``G``'s output.
        latent_dim: k (default ``G.latent_dim``).
        restarts: random starts per point.
        steps: Adam steps.
        lr: initial learning rate.
        prior_weight: ``w``.
        residual_tol: RMS residual per output entry above which a point is flagged.
        batch_size: points inverted at once.
        generator: random number generator for the starts.
        progress: report progress over batches (a bar on a terminal, lines in a log).

    Returns:
        :class:`Inversion`.
    """
    k = infer_latent_dim(G, latent_dim)
    _check_options(x, restarts, steps, batch_size, prior_weight, residual_tol, lr)
    dtype = param_dtype(G)
    x = x.to(dtype)
    finite = torch.isfinite(x.reshape(x.shape[0], -1)).all(1)
    if not finite.all():
        bad = (~finite).nonzero().flatten().tolist()
        raise ValueError(f"x has non-finite entries in points {bad}")
    probe = _probe(G, k, dtype)
    if probe.shape[1:] != x.shape[1:]:
        raise ValueError(
            f"x has sample shape {tuple(x.shape[1:])} but G produces {tuple(probe.shape[1:])}"
        )
    latents, residuals, recons = [], [], []
    for xb in progress_bar(x.split(batch_size), desc="invert", disable=not progress):
        z, res, rec = _invert_batch(G, xb, k, restarts, steps, lr, prior_weight, generator)
        latents.append(z)
        residuals.append(res)
        recons.append(rec)
    residual = torch.cat(residuals)
    failed = ~torch.isfinite(residual)
    if failed.any():
        warn(f"inversion failed for points {failed.nonzero().flatten().tolist()}: G produced "
             "non-finite outputs along the way (residual NaN); they are flagged",
             NonConvergenceWarning)
    return Inversion(torch.cat(latents), residual, ~(residual <= residual_tol),
                     torch.cat(recons), residual_tol)


@torch.no_grad()
def encode_to_manifold(G: Generator, E: Generator, x: Tensor, residual_tol: float,
                       batch_size: int = 256) -> Inversion:
    """The projection ``G(E(x))`` of data points by an encoder, as an :class:`Inversion`.

    For a generator trained with an encoder (maximum implicit likelihood,
    :mod:`spectral_backprop.manifold`), ``E(x)`` is the model's own projection: the one
    its training loss and its test NLL use, as in M-flows (Brehmer & Cranmer 2020, arXiv
    2003.13913). Residuals are RMS per output entry, like :func:`invert`'s:
    ``‖G(E(x)) − x‖ / √n``.
    """
    x = x.to(param_dtype(G))
    latents, recons = [], []
    for xb in x.split(batch_size):
        z = E(xb)
        latents.append(z)
        recons.append(G(z).reshape(xb.shape))
    rec = torch.cat(recons)
    residual = (rec - x).flatten(1).pow(2).mean(1).sqrt()
    return Inversion(torch.cat(latents), residual, ~(residual <= residual_tol), rec,
                     residual_tol)


def _check_options(x, restarts, steps, batch_size, prior_weight, residual_tol, lr) -> None:
    if not isinstance(x, Tensor) or x.dim() < 2 or x.shape[0] == 0:
        raise ValueError("x must be a tensor [N, ...] with at least one data point")
    if x.is_complex():
        raise TypeError(f"x must be real, got {x.dtype}")
    for name, value in (("restarts", restarts), ("steps", steps), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    values = (prior_weight, residual_tol, lr)
    if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values) or (
        prior_weight < 0 or residual_tol <= 0 or lr <= 0
    ):
        raise ValueError("prior_weight must be >= 0, residual_tol and lr > 0 (finite numbers)")


def _probe(G: Generator, k: int, dtype: torch.dtype) -> Tensor:
    """``G`` at one zero latent, with a clear error when it cannot take ``k`` latents."""
    try:
        with torch.no_grad():
            probe = G(torch.zeros(1, k, dtype=dtype))
    except (RuntimeError, ValueError, TypeError, IndexError) as err:
        raise ValueError(f"G could not be evaluated on a latent of size k={k} (is "
                         f"latent_dim right?): {err}") from err
    if not isinstance(probe, Tensor) or probe.dim() == 0 or probe.shape[0] != 1:
        raise TypeError("G must return a tensor whose first dimension is the batch, got "
                        f"{type(probe).__name__} {tuple(getattr(probe, 'shape', ()))}")
    return probe


def _invert_batch(G, x, k, restarts, steps, lr, prior_weight, generator):
    n, flat_x = x.shape[0], x.reshape(x.shape[0], -1)
    z = torch.randn(restarts * n, k, generator=generator, dtype=x.dtype)
    z.requires_grad_(True)
    target = flat_x.repeat(restarts, 1)
    opt = torch.optim.Adam([z], lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda t: 0.5 * (1 + math.cos(math.pi * t / steps)) + 1e-3
    )
    with frozen(G):
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            err = (G(z).reshape(z.shape[0], -1) - target).pow(2).sum(-1)
            loss = err + prior_weight * 0.5 * z.pow(2).sum(-1)
            loss.sum().backward()
            opt.step()
            sched.step()
    with torch.no_grad():
        z = z.detach()
        rec = G(z)
        err = (rec.reshape(z.shape[0], -1) - target).pow(2).mean(-1)
        best = err.reshape(restarts, n).argmin(0)
        pick = best * n + torch.arange(n)
        return z[pick], err[pick].sqrt(), rec[pick]
