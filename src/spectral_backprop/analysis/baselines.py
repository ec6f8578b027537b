r"""Latent directions that people use today, as baselines for the metric eigenvectors.

* **SeFa** (Shen & Zhou 2021, "Closed-Form Factorization of Latent Semantics in GANs",
  arXiv 2007.06600): the top eigenvectors of ``WᵀW`` for the weight ``W`` of the first
  layer acting on ``z``; they maximise ``‖W d‖`` over unit ``d``, i.e. the metric
  eigenvectors of the first layer alone.
* **GANSpace** (Härkönen et al. 2020, arXiv 2004.02546): PCA of early activations
  ``y(z)`` over prior samples, carried back to latent space by linear regression of
  ``z`` on the principal coordinates (their recipe for BigGAN, whose latent is not
  isotropic in feature space).
* **Random** orthonormal directions (Haar-distributed, by QR of a Gaussian matrix).

All three return ``directions[k, r]`` with unit columns, shared by every latent.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..geometry import check_rank, infer_latent_dim, param_dtype
from ..spectral import canonical_signs

__all__ = ["early_feature_layer", "first_latent_layer", "ganspace_directions",
           "random_directions", "sefa_directions"]

_WEIGHT_LAYERS = (nn.Linear, nn.ConvTranspose2d, nn.Conv2d, nn.ConvTranspose1d, nn.Conv1d)


def _leaves(G: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in G.named_modules() if not list(m.children())]


def first_latent_layer(G: nn.Module) -> tuple[str, nn.Module]:
    """The first weight layer of ``G`` in registration order (the one that reads ``z``)."""
    if not isinstance(G, nn.Module):
        raise TypeError(f"this baseline needs an nn.Module generator, got {type(G).__name__}")
    for name, m in _leaves(G):
        if isinstance(m, _WEIGHT_LAYERS):
            return name, m
    raise ValueError("G has no Linear or convolution layer: SeFa/GANSpace need one")


def early_feature_layer(G: nn.Module) -> tuple[str, nn.Module]:
    """The first parameter-free leaf after :func:`first_latent_layer` (its activation).

    GANSpace needs *nonlinear* features: PCA of the first layer's pre-activations
    ``Wz + b`` under ``z ∼ N(0, I)`` has covariance ``WWᵀ``, whose regression back to
    ``z`` gives exactly the SeFa directions. Falls back to the first layer itself.
    """
    first_name, first = first_latent_layer(G)
    leaves = _leaves(G)
    i = next(j for j, (n, _) in enumerate(leaves) if n == first_name)
    for name, m in leaves[i + 1:]:
        if not list(m.parameters()):
            return name, m
    return first_name, first


def _resolve_layer(G: nn.Module, layer: str | nn.Module | None) -> nn.Module:
    if layer is None:
        return early_feature_layer(G)[1]
    if isinstance(layer, nn.Module):
        return layer
    modules = dict(G.named_modules())
    if layer not in modules:
        raise ValueError(f"G has no submodule named {layer!r}")
    return modules[layer]


def sefa_directions(G: nn.Module, r: int | None = None, *,
                    layer: str | nn.Module | None = None) -> tuple[Tensor, Tensor]:
    r"""SeFa: the top ``r`` eigenpairs of ``WᵀW`` for the first layer's weight.

    For ``nn.Linear`` ``W`` is ``[out, k]``; for a transposed convolution reading
    ``z[B, k, 1, 1]`` the weight ``[k, out, h, w]`` is flattened to ``[out·h·w, k]``.

    Returns:
        ``(eigenvalues[r], directions[k, r])``, eigenvalues descending.
    """
    m = first_latent_layer(G)[1] if layer is None else _resolve_layer(G, layer)
    w = m.weight.detach()
    if isinstance(m, nn.Linear):
        W = w
    elif isinstance(m, (nn.ConvTranspose1d, nn.ConvTranspose2d)):
        W = w.reshape(w.shape[0], -1).T
    else:
        W = w.reshape(w.shape[0], -1)
    r = check_rank(r, W.shape[1])
    lam, V = torch.linalg.eigh(W.T @ W)
    return lam.flip(-1)[:r], canonical_signs(V.flip(-1)[:, :r])


@torch.no_grad()
def ganspace_directions(
    G: nn.Module,
    r: int | None = None,
    n_samples: int = 2000,
    *,
    layer: str | nn.Module | None = None,
    latent_dim: int | None = None,
    generator: torch.Generator | None = None,
    batch_size: int = 500,
) -> tuple[Tensor, Tensor]:
    r"""GANSpace: PCA of early features, regressed back to latent directions.

    With features ``Y[N, m]`` of prior samples ``Z[N, k]``, principal axes ``U[m, r]``
    and coordinates ``C = (Y − Ȳ)U``, solve ``Z ≈ C A`` by least squares; row ``i`` of
    ``A`` is the latent direction that moves the features along principal axis ``i``.

    Returns:
        ``(explained_variance[r], directions[k, r])`` with unit columns (not orthogonal
        in general).
    """
    k = infer_latent_dim(G, latent_dim)
    r = check_rank(r, k)
    if not isinstance(n_samples, int) or n_samples <= k:
        raise ValueError(f"n_samples must be an integer > k={k}, got {n_samples!r}")
    module = _resolve_layer(G, layer)
    feats: list[Tensor] = []
    handle = module.register_forward_hook(lambda m, i, o: feats.append(o.flatten(1)))
    try:
        Z = torch.randn(n_samples, k, generator=generator, dtype=param_dtype(G))
        for zb in Z.split(batch_size):
            G(zb)
    finally:
        handle.remove()
    Y = torch.cat(feats)
    if Y.shape[0] != n_samples:
        raise ValueError("the feature layer ran more than once per forward pass; pass layer=")
    Y = Y - Y.mean(0)
    _, S, Vh = torch.linalg.svd(Y, full_matrices=False)
    C = Y @ Vh[:r].T
    A = torch.linalg.lstsq(C, Z).solution  # [r, k]
    D = A.T / A.norm(dim=1).clamp_min(1e-30)
    return S[:r] ** 2 / (n_samples - 1), canonical_signs(D)


def random_directions(k: int, r: int | None = None, *, generator: torch.Generator | None = None,
                      dtype: torch.dtype | None = None) -> Tensor:
    """``r`` random orthonormal directions in ``R^k`` (``[k, r]``), Haar-distributed.

    The QR factor is made unique (and hence Haar) by fixing the signs of ``R``'s
    diagonal (Mezzadri 2007, arXiv math-ph/0609050).
    """
    r = check_rank(r, k)
    A = torch.randn(k, r, generator=generator, dtype=dtype or torch.get_default_dtype())
    Q, R = torch.linalg.qr(A)
    return Q * torch.sign(torch.diagonal(R))[None, :]
