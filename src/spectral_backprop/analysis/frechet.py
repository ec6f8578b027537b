r"""Fréchet distance between Gaussian fits of features (an MNIST-feature FD, not FID).

For two sets of feature vectors with means ``μ₁, μ₂`` and covariances ``C₁, C₂`` the
Fréchet (2-Wasserstein) distance between the Gaussians ``N(μ₁, C₁)`` and ``N(μ₂, C₂)`` is

.. math::

    d^2 = \lVert μ_1 - μ_2 \rVert^2
          + \operatorname{tr}\bigl(C_1 + C_2 - 2 (C_1^{1/2} C_2 C_1^{1/2})^{1/2}\bigr)

(Dowson & Landau 1982; used as the Fréchet Inception Distance by Heusel et al. 2017,
arXiv 1706.08500). The matrix square roots are taken by symmetric eigendecompositions in
float64 (``C₁^{1/2} C₂ C₁^{1/2}`` is symmetric positive semi-definite, so no complex
``sqrtm`` is needed; tiny negative eigenvalues from round-off are clipped at 0).

The features here are those of a small classifier trained on the real data
(:func:`~spectral_backprop.analysis.aberrance.small_classifier`, its penultimate layer:
64 units after a ReLU), not Inception's: the numbers are comparable only with each
other, under the same classifier (document them as a feature FD, not as FID).

Example:
    >>> import torch
    >>> mu, c = torch.zeros(2), torch.eye(2)
    >>> round(frechet_distance(mu, c, mu + 1, 4 * c), 6)   # ‖1‖² + tr(I + 4I − 2·2I)
    4.0
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["classifier_features", "feature_frechet_distance", "frechet_distance",
           "gaussian_fit"]


def _psd_sqrt(m: Tensor) -> Tensor:
    """Symmetric square root of a symmetric positive semi-definite matrix (float64)."""
    m = 0.5 * (m + m.T)
    vals, vecs = torch.linalg.eigh(m)
    return (vecs * vals.clamp_min(0).sqrt()) @ vecs.T


def gaussian_fit(features: Tensor) -> tuple[Tensor, Tensor]:
    """``(mean, covariance)`` of features ``[N, d]`` in float64 (unbiased, ``N − 1``).

    Raises:
        ValueError: not a 2-D array with at least two rows, or non-finite values.
    """
    if features.dim() != 2 or features.shape[0] < 2:
        raise ValueError(f"features must be [N, d] with N >= 2, got {tuple(features.shape)}")
    f = features.detach().double()
    if not torch.isfinite(f).all():
        raise ValueError("features contain NaN or infinite values")
    return f.mean(0), torch.cov(f.T).reshape(f.shape[1], f.shape[1])


def frechet_distance(mu1: Tensor, cov1: Tensor, mu2: Tensor, cov2: Tensor) -> float:
    """The Fréchet distance ``d²`` between ``N(mu1, cov1)`` and ``N(mu2, cov2)`` (see the
    module docstring); ≥ 0 up to round-off, 0 for equal Gaussians."""
    mu1, mu2, cov1, cov2 = (t.detach().double() for t in (mu1, mu2, cov1, cov2))
    if mu1.shape != mu2.shape or cov1.shape != cov2.shape or cov1.shape != (*mu1.shape,) * 2:
        raise ValueError(f"shapes do not match: means {tuple(mu1.shape)}, {tuple(mu2.shape)}; "
                         f"covariances {tuple(cov1.shape)}, {tuple(cov2.shape)}")
    root1 = _psd_sqrt(cov1)
    cross = _psd_sqrt(root1 @ cov2 @ root1)
    d2 = (mu1 - mu2).pow(2).sum() + torch.trace(cov1) + torch.trace(cov2) - 2 * torch.trace(cross)
    return float(d2.clamp_min(0))


@torch.no_grad()
def classifier_features(model: nn.Module, x: Tensor, batch_size: int = 256) -> Tensor:
    """Penultimate-layer features of an ``nn.Sequential`` classifier (all layers but the
    last), ``[N, d]``, in batches, the model in eval mode."""
    if not isinstance(model, nn.Sequential) or len(model) < 2:
        raise TypeError("model must be an nn.Sequential of at least two layers (its last "
                        "layer, the logits, is dropped)")
    body = model[:-1].eval()
    dtype = next(model.parameters()).dtype
    return torch.cat([body(xb.to(dtype)).flatten(1) for xb in x.split(batch_size)])


def feature_frechet_distance(model: nn.Module, real: Tensor, fake: Tensor) -> float:
    """Fréchet distance between Gaussian fits of ``model``'s penultimate features of
    ``real`` and ``fake`` samples (see the module docstring)."""
    mu_r, cov_r = gaussian_fit(classifier_features(model, real))
    mu_f, cov_f = gaussian_fit(classifier_features(model, fake))
    return frechet_distance(mu_r, cov_r, mu_f, cov_f)
