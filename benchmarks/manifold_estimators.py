r"""Baseline gradients of ``½ log det J_G(z)ᵀJ_G(z)`` for maximum likelihood on manifolds,
each written from its paper, as estimators of the library's ``method=`` registry.

Benchmark and experiment code only: not part of the library's public surface. Each
estimator ``f(G, z, fn, **options)`` returns ``log det JᵀJ`` per sample (or a
surrogate with that gradient) and, with ``return_info=True``, a
:class:`~spectral_backprop.spectral.SpectralEstimate`. :func:`register` adds them to the
registry, so that :func:`spectral_backprop.manifold.manifold_terms` and the training loop
use them unchanged, under the same architecture as the library's own estimators.

``rnf_exact`` — rectangular flows' exact path (Caterini et al. 2021, arXiv 2106.01413,
§4.1): the Jacobian ``J`` built by forward mode (here ``vmap(jacfwd(G))``), ``M = JᵀJ``,
``log det M = 2 Σ log diag chol(M)``, differentiated by autograd through all of it (the
graph holds every Jacobian column, so memory grows with k).

``rnf_hutchinson`` — rectangular flows' stochastic path (same paper, §4.2):
``∇ log det M = tr(M⁻¹ ∇M) ≈ (1/K) Σ_j u_jᵀ ∇M ε_j`` with Rademacher (or Gaussian) probes
``ε_j`` and ``u_j = M⁻¹ε_j`` by conjugate gradients, held fixed (no graph through CG).
The CG follows GPyTorch's ``linear_cg`` as their code calls it: at least ``min(10, k)``
iterations, then stop once the mean relative residual is below ``cg_tol`` (their
default 1), and their default ``K = 1`` probe. The surrogate's gradient is taken as that
of ``(J u)·(J ε)`` (the same as their ``uᵀ Jᵀ(J ε)``: ``u`` is fixed and ``M`` symmetric).

``fif`` — free-form injective flows (Sorrenson et al. 2024, arXiv 2306.01843; the
estimator of free-form flows, Draxler et al. 2024, arXiv 2310.16624):
``d ½ log det JᵀJ = tr(J⁺ dJ)`` with the pseudo-inverse ``J⁺`` replaced by the encoder's
Jacobian ``J_E(x)`` at the data point, and one Gaussian probe ``v``:
surrogate ``sg(vᵀ J_E(x)) · (J_G(z) v)`` (one JVP of G with a graph, one VJP of E
without). Unbiased only where ``J_E J_G = I`` (the encoder inverts the generator on the
manifold, to first order). As in their code, the decoder's forward-mode pass also
supplies the reconstruction ``G(z)`` (``info["output"]``, reused by the loss), as the
library's exact mode does.

``no_volume`` — the volume term dropped (0, no gradient): the heuristic that rectangular
flows argue against (its likelihood is that of the latent alone).

The stochastic surrogates (``rnf_hutchinson``, ``fif``) carry the gradient only: their
value is 0 (``s − sg(s)``), so a training log's ``nll`` is then ``−log p_Z(z)``;
evaluations always use the exact log det.
"""

from __future__ import annotations

import torch
from torch import Tensor

from spectral_backprop.spectral import SpectralEstimate, register_method

__all__ = ["BASELINES", "fif", "no_volume", "register", "rnf_exact", "rnf_hutchinson"]


def _check_logdet(fn) -> None:
    if getattr(fn, "name", None) not in (None, "logdet"):
        raise ValueError(f"this baseline estimates log det only, not {fn.name!r}")


def _flat(G):
    return lambda z: G(z).flatten(1)


def _result(value: Tensor, std_error: Tensor | None, method: str, return_info: bool):
    if not return_info:
        return value
    se = torch.zeros_like(value.detach()) if std_error is None else std_error
    return SpectralEstimate(value, se, {"method": method})


def rnf_exact(G, z: Tensor, fn, *, jitter: float = 0.0, on_singular: str = "warn",
              return_info: bool = False):
    """``log det JᵀJ`` by autograd through a Cholesky factor of ``JᵀJ`` (RNF exact)."""
    _check_logdet(fn)
    f = _flat(G)
    J = torch.func.vmap(torch.func.jacfwd(lambda zi: f(zi[None])[0]))(z)  # [B, n, k]
    M = J.transpose(1, 2) @ J
    if jitter:
        M = M + jitter * torch.eye(M.shape[-1], dtype=M.dtype, device=M.device)
    L = torch.linalg.cholesky(M)
    value = 2 * torch.diagonal(L, dim1=-2, dim2=-1).log().sum(-1)
    return _result(value, None, "rnf_exact", return_info)


def _probes(shape, kind: str, generator, like: Tensor) -> Tensor:
    if kind == "gaussian":
        return torch.randn(shape, generator=generator).to(like)
    return (torch.randint(0, 2, shape, generator=generator) * 2 - 1).to(like)


def _metric_matvec(f, z: Tensor):
    """``v ↦ Jᵀ(J v)`` at ``z`` without a graph (one JVP, one VJP per product)."""
    z = z.detach()

    def matvec(v: Tensor) -> Tensor:
        with torch.no_grad():
            _, jv = torch.func.jvp(f, (z,), (v,))
            _, vjp = torch.func.vjp(f, z)
            return vjp(jv)[0]

    return matvec


def gpytorch_style_cg(matvec, b: Tensor, tol: float = 1.0, max_iter: int = 1000
                      ) -> tuple[Tensor, int]:
    """Batched CG for ``M u = b`` (rows of ``b``), stopped as GPyTorch's ``linear_cg``:
    after at least ``min(10, max_iter, k)`` iterations, once the mean of ``‖r‖/‖b‖`` is
    below ``tol``. Returns the solution and the iterations run."""
    k = b.shape[-1]
    x = torch.zeros_like(b)
    r, p = b.clone(), b.clone()
    rr = (r * r).sum(-1, keepdim=True)
    b_norm = b.norm(dim=-1).clamp_min(1e-30)
    it = 0
    for it in range(1, max_iter + 1):  # noqa: B007 - the count is returned
        Mp = matvec(p)
        alpha = rr / (p * Mp).sum(-1, keepdim=True).clamp_min(1e-300)
        x = x + alpha * p
        r = r - alpha * Mp
        rr_new = (r * r).sum(-1, keepdim=True)
        if it >= min(10, max_iter, k) and (r.norm(dim=-1) / b_norm).mean() < tol:
            break
        p = r + (rr_new / rr.clamp_min(1e-300)) * p
        rr = rr_new
    return x, it


def rnf_hutchinson(G, z: Tensor, fn, *, num_probes: int = 1, cg_tol: float = 1.0,
                   max_cg_iter: int = 1000, probes: str = "rademacher",
                   generator: torch.Generator | None = None, jitter: float = 0.0,
                   on_singular: str = "warn", return_info: bool = False):
    """Surrogate with the RNF Hutchinson + CG gradient of ``log det JᵀJ`` (value 0)."""
    _check_logdet(fn)
    f = _flat(G)
    B, k = z.shape
    zr = z.repeat_interleave(num_probes, 0)
    eps = _probes((B * num_probes, k), probes, generator, z)
    u, iters = gpytorch_style_cg(_metric_matvec(f, zr), eps, cg_tol, max_cg_iter)
    _, J_both = torch.func.jvp(f, (torch.cat([zr, zr]),), (torch.cat([u, eps]),))
    Ju, Je = J_both.split(B * num_probes)
    s = (Ju.detach() * Je).sum(-1) + (Ju * Je.detach()).sum(-1)
    s = s.reshape(B, num_probes).mean(1)  # its differential is uᵀ dM ε
    out = s - s.detach()
    est = _result(out, None, "rnf_hutchinson", return_info)
    if return_info:
        est.info["cg_iterations"] = iters
    return est


def fif(G, z: Tensor, fn, *, encoder, data: Tensor, num_probes: int = 1,
        generator: torch.Generator | None = None, jitter: float = 0.0,
        on_singular: str = "warn", return_info: bool = False):
    """Surrogate with the free-form injective flow gradient of ``log det JᵀJ`` (value 0)."""
    _check_logdet(fn)
    f = _flat(G)
    B, k = z.shape
    v = torch.randn((num_probes, B, k), generator=generator).to(z)
    x = data.detach().requires_grad_(True)
    with torch.enable_grad():
        zx = encoder(x)
        vJE = torch.stack([torch.autograd.grad(zx, x, vi, retain_graph=True)[0].flatten(1)
                           for vi in v])  # [K, B, n], no graph
    s, output = 0, None
    for i in range(num_probes):
        x1, JGv = torch.func.jvp(f, (z,), (v[i],))
        output = x1 if output is None else output
        s = s + (vJE[i].detach() * JGv).sum(-1)
    s = 2 * s / num_probes  # log det = 2 · ½ log det
    est = _result(s - s.detach(), None, "fif", return_info)
    if return_info:
        est.info["output"] = output  # the reconstruction, from the decoder's JVP
    return est


def no_volume(G, z: Tensor, fn, *, jitter: float = 0.0, on_singular: str = "warn",
              return_info: bool = False):
    """No volume term: 0, no gradient."""
    _check_logdet(fn)
    return _result(torch.zeros(z.shape[0], dtype=z.dtype, device=z.device), None,
                   "no_volume", return_info)


BASELINES = {"rnf_exact": rnf_exact, "rnf_hutchinson": rnf_hutchinson, "fif": fif,
             "no_volume": no_volume}


def register() -> None:
    """Add the baselines to the library's estimator registry (idempotent)."""
    for name, estimator in BASELINES.items():
        register_method(name, estimator)
