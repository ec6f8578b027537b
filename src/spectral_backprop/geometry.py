r"""Latent geometry of a generator: metric eigen-directions, paths, traversals, inversion.

The metric ``M(z) = J(z)ᵀJ(z)`` measures how far the output moves per latent step:
``‖G(z + εv) − G(z)‖² ≈ ε² vᵀM(z)v``. Its top eigenvectors (the right singular vectors
of ``J``) are the latent directions that move the output most; Ramesh & LeCun (2018,
arXiv 1806.00499, §5) found them to act as quasi-disentangled explanatory factors.
Beyond the paper:

* the *global* metric ``E_z[M(z)]`` under the prior, whose eigenvectors are one set of
  directions for the whole latent space (the average of local geometry, where SeFa
  uses the first layer's weights only);
* *eigen paths*, curves that keep following the leading eigenvector of ``M`` (Ramesh,
  Choi & LeCun 2018, "A Spectral Regularizer for Unsupervised Disentanglement");
* *inversion* ``z* = argmin_z ‖G(z) − x‖² + w·½‖z‖²``, which lets real data be scored
  with the implicit likelihood at ``z*`` (meaningful only where the residual is small).

Everything here is evaluated without an autograd graph on ``G``'s parameters: these are
tools for studying a trained generator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from .linalg.jacobian import Generator, check_latents, jacobian
from .spectral import canonical_signs, latent_metric

__all__ = [
    "EigenPath",
    "Inversion",
    "eigen_path",
    "global_directions",
    "global_metric",
    "infer_latent_dim",
    "invert",
    "principal_directions",
    "traverse",
]


def infer_latent_dim(G: Generator, latent_dim: int | None = None) -> int:
    """``latent_dim`` if given, else ``G.latent_dim`` (set by the project's generators)."""
    k = latent_dim if latent_dim is not None else getattr(G, "latent_dim", None)
    if not isinstance(k, int) or k < 1:
        raise ValueError(
            "cannot tell the latent dimension of G: pass latent_dim=k "
            "(or give G an integer attribute latent_dim)"
        )
    return k


def _check_rank(r: int | None, k: int, name: str = "r") -> int:
    if r is None:
        return k
    if not isinstance(r, int) or isinstance(r, bool) or not 1 <= r <= k:
        raise ValueError(f"{name} must be an integer in [1, k={k}], got {r!r}")
    return r


@torch.no_grad()
def principal_directions(
    G: Generator, z: Tensor, r: int | None = None, *, chunk_size: int | None = None
) -> tuple[Tensor, Tensor]:
    r"""Local eigen-directions: the top ``r`` eigenpairs of ``M(z) = JᵀJ`` at each latent.

    ``v_i`` maximises ``‖J v‖`` among unit vectors orthogonal to ``v_1 … v_{i−1}``, and
    ``‖J v_i‖² = λ_i``; ``√λ_i`` is the output distance moved per unit latent step.

    Args:
        G: generator ``z[B, k] -> x[B, ...]``.
        z: latents ``[B, k]``.
        r: number of directions (default ``k``).
        chunk_size: Jacobian columns per forward-mode batch.

    Returns:
        ``(eigenvalues[B, r], directions[B, k, r])``: eigenvalues descending, directions
        orthonormal columns with the sign convention of
        :func:`~spectral_backprop.spectral.canonical_signs`.

    Example:
        >>> A = torch.tensor([[1.0, 0.0], [0.0, 3.0], [0.0, 0.0]])
        >>> lam, V = principal_directions(lambda z: z @ A.T, torch.zeros(1, 2), 1)
        >>> lam, V[0, :, 0]
        (tensor([[9.]]), tensor([0., 1.]))
    """
    check_latents(G, z)
    r = _check_rank(r, z.shape[1])
    return latent_metric(G, z.detach(), top=r, chunk_size=chunk_size)


@torch.no_grad()
def global_metric(
    G: Generator,
    n_samples: int = 256,
    *,
    latent_dim: int | None = None,
    batch_size: int = 64,
    z: Tensor | None = None,
    generator: torch.Generator | None = None,
    chunk_size: int | None = None,
) -> Tensor:
    r"""Monte Carlo average of the metric, ``Ḿ = E_{z∼N(0,I)}[J(z)ᵀJ(z)]`` (``[k, k]``).

    ``vᵀḾv = E_z‖J(z)v‖²`` is the mean squared output speed along a *fixed* latent
    direction ``v``, so the eigenvectors of ``Ḿ`` are the fixed directions that move
    outputs most on average.

    Args:
        G: generator.
        n_samples: number of prior samples (ignored when ``z`` is given).
        latent_dim: k (default ``G.latent_dim``).
        batch_size: latents per Jacobian evaluation.
        z: optional latents ``[N, k]`` to average over instead of prior samples.
        generator: random number generator for the prior samples.
        chunk_size: Jacobian columns per forward-mode batch.
    """
    if z is None:
        if not isinstance(n_samples, int) or n_samples < 1:
            raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}")
        k = infer_latent_dim(G, latent_dim)
        dtype = _param_dtype(G)
        z = torch.randn(n_samples, k, generator=generator, dtype=dtype)
    check_latents(G, z)
    total = torch.zeros(z.shape[1], z.shape[1], dtype=z.dtype, device=z.device)
    for zb in z.split(batch_size):
        J = jacobian(G, zb, chunk_size=chunk_size)
        total += torch.einsum("bni,bnj->ij", J, J)
    return total / z.shape[0]


def global_directions(
    G: Generator, r: int | None = None, n_samples: int = 256, **options
) -> tuple[Tensor, Tensor]:
    r"""Eigenpairs of the global metric ``E_z[JᵀJ]`` (see :func:`global_metric`).

    Args:
        G: generator.
        r: number of directions (default all ``k``).
        n_samples: prior samples in the average.
        **options: passed to :func:`global_metric` (``latent_dim``, ``z``, ``generator``...).

    Returns:
        ``(eigenvalues[r], directions[k, r])``, eigenvalues descending, orthonormal columns.
    """
    M = global_metric(G, n_samples, **options)
    r = _check_rank(r, M.shape[0])
    lam, V = torch.linalg.eigh(M)
    lam, V = lam.flip(-1)[:r], V.flip(-1)[:, :r]
    return lam, canonical_signs(V)


@dataclass
class EigenPath:
    """A curve in latent space that follows an eigenvector of the metric.

    Attributes:
        latents: ``[T + 1, B, k]``, the start first.
        eigenvalues: ``[T + 1, B]``, the followed eigenvalue at each point.
        directions: ``[T + 1, B, k]``, the (sign-aligned) unit direction at each point.
        outputs: ``[T + 1, B, ...]``, ``G`` at each point.
    """

    latents: Tensor
    eigenvalues: Tensor
    directions: Tensor
    outputs: Tensor


@torch.no_grad()
def eigen_path(
    G: Generator,
    z: Tensor,
    *,
    steps: int = 10,
    step_size: float = 0.25,
    index: int = 0,
    direction: Tensor | None = None,
    output_step: bool = False,
    chunk_size: int | None = None,
) -> EigenPath:
    r"""Follow the ``index``-th eigenvector of ``M(z)`` with Euler steps.

    ``z_{t+1} = z_t + h_t s_t v(z_t)`` where ``v`` is the eigenvector and the sign
    ``s_t = sign(v(z_t)·d_{t−1})`` keeps the curve going the same way (eigenvectors are
    defined up to sign, so without it the path can turn back on itself); ``d_{t−1}`` is
    the previous step's direction, or ``direction`` (default ``v(z_0)``) at the start.
    With ``output_step`` the latent step is ``h_t = step_size / √λ(z_t)``, so that
    each step moves the output by about ``step_size``; otherwise ``h_t = step_size``.
    Straight lines along a local eigenvector leave the eigen-direction as soon as the
    metric rotates; the curve stays on it (Ramesh, Choi & LeCun 2018).

    Args:
        G: generator.
        z: start latents ``[B, k]``.
        steps: number of Euler steps ``T``.
        step_size: ``h`` (latent units, or output units with ``output_step``).
        index: which eigenvector (0: leading).
        direction: optional ``[B, k]`` or ``[k]`` initial orientation.
        output_step: take steps of fixed output length.
        chunk_size: Jacobian columns per forward-mode batch.

    Returns:
        :class:`EigenPath`.
    """
    check_latents(G, z)
    k = z.shape[1]
    if not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be a non-negative integer, got {steps!r}")
    if not isinstance(index, int) or not 0 <= index < k:
        raise ValueError(f"index must be in [0, k={k}), got {index!r}")
    zs, lams, dirs, outs = [z.detach()], [], [], []
    prev = None if direction is None else direction.to(z).expand_as(z)
    for t in range(steps + 1):
        lam, V = latent_metric(G, zs[-1], top=index + 1, chunk_size=chunk_size)
        lam, v = lam[:, index], V[:, :, index]
        if prev is not None:
            sign = torch.sign((v * prev).sum(-1, keepdim=True))
            v = v * torch.where(sign == 0, torch.ones_like(sign), sign)
        lams.append(lam)
        dirs.append(v)
        outs.append(G(zs[-1]))
        if t == steps:
            break
        h = step_size / lam.clamp_min(1e-30).sqrt()[:, None] if output_step else step_size
        zs.append(zs[-1] + h * v)
        prev = v
    return EigenPath(torch.stack(zs), torch.stack(lams), torch.stack(dirs), torch.stack(outs))


@torch.no_grad()
def traverse(
    G: Generator,
    z: Tensor,
    direction: Tensor,
    steps: int | Tensor = 7,
    *,
    extent: float = 3.0,
) -> Tensor:
    r"""Outputs along straight lines ``G(z + t·d)`` for offsets ``t`` (a traversal).

    Args:
        G: generator.
        z: latents ``[B, k]``.
        direction: ``[k]`` (shared) or ``[B, k]`` (one per latent), e.g. a column of
            :func:`principal_directions`. Not normalised here: pass unit vectors for
            offsets in latent units.
        steps: number of evenly spaced offsets in ``[−extent, extent]``, or a 1-D tensor
            of offsets.
        extent: largest offset when ``steps`` is an integer.

    Returns:
        ``[B, S, ...]``: row ``b`` is the traversal from ``z[b]``.
    """
    check_latents(G, z)
    if isinstance(steps, Tensor):
        offsets = steps.to(z).reshape(-1)
    else:
        if not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps must be a positive integer or a tensor, got {steps!r}")
        offsets = torch.linspace(-extent, extent, steps, dtype=z.dtype, device=z.device)
    d = direction.to(z)
    if d.shape not in (z.shape[1:], z.shape):
        raise ValueError(
            f"direction must have shape [{z.shape[1]}] or {list(z.shape)}, got {list(d.shape)}"
        )
    d = d.expand_as(z)
    zz = z[:, None, :] + offsets[None, :, None] * d[:, None, :]
    x = G(zz.reshape(-1, z.shape[1]))
    return x.reshape(z.shape[0], offsets.numel(), *x.shape[1:])


@dataclass
class Inversion:
    """Latents recovered for data points.

    Attributes:
        latents: ``[N, k]``, the best restart for each point.
        residual: ``[N]``, root-mean-square error ``‖G(z*) − x‖ / √n`` per output entry.
        flagged: ``[N]`` bool, ``residual > residual_tol``: the point is far from the
            generator's manifold and its implicit likelihood is not meaningful.
        reconstructions: ``[N, ...]``, ``G(z*)``.
        residual_tol: the threshold used.
    """

    latents: Tensor
    residual: Tensor
    flagged: Tensor
    reconstructions: Tensor
    residual_tol: float


def _param_dtype(G: Generator) -> torch.dtype:
    if isinstance(G, torch.nn.Module):
        for p in G.parameters():
            return p.dtype
    return torch.get_default_dtype()


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
        progress: show a progress bar over batches.

    Returns:
        :class:`Inversion`.
    """
    k = infer_latent_dim(G, latent_dim)
    if not isinstance(x, Tensor) or x.dim() < 2 or x.shape[0] == 0:
        raise ValueError("x must be a tensor [N, ...] with at least one data point")
    for name, value in (("restarts", restarts), ("steps", steps), ("batch_size", batch_size)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if prior_weight < 0 or residual_tol <= 0 or lr <= 0:
        raise ValueError("prior_weight must be >= 0, residual_tol and lr > 0")
    dtype = _param_dtype(G)
    x = x.to(dtype)
    with torch.no_grad():
        probe = G(torch.zeros(1, k, dtype=dtype))
    if probe.shape[1:] != x.shape[1:]:
        raise ValueError(
            f"x has sample shape {tuple(x.shape[1:])} but G produces {tuple(probe.shape[1:])}"
        )
    from tqdm.auto import tqdm

    latents, residuals, recons = [], [], []
    for xb in tqdm(x.split(batch_size), desc="invert", disable=not progress):
        z, res, rec = _invert_batch(G, xb, k, restarts, steps, lr, prior_weight, generator)
        latents.append(z)
        residuals.append(res)
        recons.append(rec)
    residual = torch.cat(residuals)
    return Inversion(torch.cat(latents), residual, residual > residual_tol, torch.cat(recons),
                     residual_tol)


def _invert_batch(G, x, k, restarts, steps, lr, prior_weight, generator):
    n, flat_x = x.shape[0], x.reshape(x.shape[0], -1)
    z = torch.randn(restarts * n, k, generator=generator, dtype=x.dtype)
    z.requires_grad_(True)
    target = flat_x.repeat(restarts, 1)
    opt = torch.optim.Adam([z], lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda t: 0.5 * (1 + math.cos(math.pi * t / steps)) + 1e-3
    )
    # G's parameters must not accumulate gradients while we optimise latents.
    params = list(G.parameters()) if isinstance(G, torch.nn.Module) else []
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            err = (G(z).reshape(z.shape[0], -1) - target).pow(2).sum(-1)
            loss = err + prior_weight * 0.5 * z.pow(2).sum(-1)
            loss.sum().backward()
            opt.step()
            sched.step()
    finally:
        for p, f in zip(params, flags, strict=True):
            p.requires_grad_(f)
    with torch.no_grad():
        z = z.detach()
        rec = G(z)
        err = (rec.reshape(z.shape[0], -1) - target).pow(2).mean(-1)
        best = err.reshape(restarts, n).argmin(0)
        pick = best * n + torch.arange(n)
        return z[pick], err[pick].sqrt(), rec[pick]
