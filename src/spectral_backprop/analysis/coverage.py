"""Class coverage and sample quality of a generator under a classifier of the real data.

With ``p_c`` the share of samples given class ``c``, we report the counts, the entropy
``−Σ p_c log p_c`` (at most ``log C`` nats for ``C`` classes), and the number of classes
holding at least ``covered_share`` of the samples. A generator that drops modes (mode
collapse) leaves classes empty and lowers the entropy: the mode-counting protocol of
Metz et al. 2017 (unrolled GANs, arXiv 1611.02163) and Srivastava et al. 2017 (VEEGAN,
arXiv 1705.07761), with a classifier of the real data in place of known mode centres.

:func:`sample_quality` adds, on the same samples, the classifier's mean confidence and
the feature Fréchet distance to held-out real data
(:func:`~spectral_backprop.analysis.frechet.feature_frechet_distance`).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..density import seeded_samples
from .aberrance import classifier_scores
from .frechet import feature_frechet_distance

__all__ = ["COVERED_SHARE", "class_coverage", "class_shares", "coverage_of",
           "sample_quality"]

COVERED_SHARE = 0.05  # a class counts as covered with at least this share of samples


def _counts_and_shares(labels: Tensor, num_classes: int) -> tuple[Tensor, Tensor]:
    counts = torch.bincount(labels.long(), minlength=num_classes).double()
    return counts, counts / counts.sum()


def class_shares(labels: Tensor, num_classes: int) -> list[float]:
    """Share of each class among ``labels`` (e.g. of the real data, for reference)."""
    return _counts_and_shares(labels, num_classes)[1].tolist()


def coverage_of(predictions: Tensor, num_classes: int = 10,
                covered_share: float = COVERED_SHARE) -> dict[str, object]:
    """Counts, shares ``p_c``, entropy ``−Σ p_c log p_c`` (nats) and covered classes
    (``p_c ≥ covered_share``) of predicted class labels (module docstring, after Metz et
    al. 2017 and Srivastava et al. 2017)."""
    counts, p = _counts_and_shares(predictions, num_classes)
    return {
        "class_counts": counts.long().tolist(),
        "class_shares": p.tolist(),
        "class_entropy": -(p[p > 0] * p[p > 0].log()).sum().item(),
        "classes_covered": int((p >= covered_share).sum()),
        "covered_share": covered_share,
    }


def class_coverage(G: nn.Module, classifier: nn.Module, latent_dim: int, *,
                   num_samples: int = 2000, num_classes: int = 10, seed: int = 0,
                   covered_share: float = COVERED_SHARE) -> dict[str, object]:
    """Class counts, shares, entropy (nats) and covered classes of ``num_samples`` samples
    of ``G``.

    Latents come from :func:`~spectral_backprop.density.seeded_samples` with ``seed``, so
    two generators are compared on the same latents.
    """
    x = seeded_samples(G, latent_dim, num_samples, seed)
    pred = classifier_scores(classifier, x)["prediction"]
    return coverage_of(pred, num_classes, covered_share)


@torch.no_grad()
def sample_quality(G: nn.Module, classifier: nn.Module, heldout: Tensor, latent_dim: int, *,
                   num_samples: int = 2000, num_classes: int = 10, seed: int = 0,
                   covered_share: float = COVERED_SHARE) -> dict[str, object]:
    """Sample quality of ``G`` against held-out real data, on ``num_samples`` seeded samples.

    Returns ``fd`` (feature Fréchet distance to ``heldout``, features of ``classifier``:
    ``‖μ₁ − μ₂‖² + tr(Σ₁ + Σ₂ − 2(Σ₁Σ₂)^{1/2})``, Heusel et al. 2017, arXiv 1706.08500),
    ``classifier_confidence`` (mean max-probability over the samples, with ``_se`` =
    ``σ/√N``) and ``class_coverage`` (:func:`coverage_of`).
    """
    x = seeded_samples(G, latent_dim, num_samples, seed)
    scores = classifier_scores(classifier, x)
    conf = scores["confidence"].double()
    return {
        "fd": feature_frechet_distance(classifier, heldout, x),
        "classifier_confidence": conf.mean().item(),
        "classifier_confidence_se": (conf.std() / conf.numel() ** 0.5).item(),
        "class_coverage": coverage_of(scores["prediction"], num_classes, covered_share),
        "num_samples": num_samples,
    }
