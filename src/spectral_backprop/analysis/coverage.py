r"""Class coverage: how a generator's samples spread over the classes of the real data.

A classifier trained on the real, labelled data labels ``N`` generated samples; with
``p_c`` the share of samples given class ``c``, we report the counts, the entropy
``−Σ_c p_c log p_c`` (``log C`` for a uniform spread over ``C`` classes) and the
number of classes holding at least 2% of the samples. A generator that drops modes
leaves classes empty (the MNIST mode-counting protocol of Metz et al. 2017, arXiv
1611.02163, and Srivastava et al. 2017, arXiv 1705.07761, on a small scale).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..density import seeded_samples
from .aberrance import classifier_scores

__all__ = ["COVERED_SHARE", "class_coverage", "class_shares"]

COVERED_SHARE = 0.02  # a class counts as covered with at least this share of samples


def _counts_and_shares(labels: Tensor, num_classes: int) -> tuple[Tensor, Tensor]:
    counts = torch.bincount(labels.long(), minlength=num_classes).double()
    return counts, counts / counts.sum()


def class_shares(labels: Tensor, num_classes: int) -> list[float]:
    """Share of each class among ``labels`` (e.g. of the real data, for reference)."""
    return _counts_and_shares(labels, num_classes)[1].tolist()


def class_coverage(G: nn.Module, classifier: nn.Module, latent_dim: int, *,
                   num_samples: int = 2000, num_classes: int = 10, seed: int = 0
                   ) -> dict[str, object]:
    """Class counts, entropy (nats) and covered classes of ``num_samples`` samples of ``G``.

    Latents come from :func:`~spectral_backprop.density.seeded_samples` with ``seed``, so
    two generators are compared on the same latents.
    """
    x = seeded_samples(G, latent_dim, num_samples, seed)
    pred = classifier_scores(classifier, x)["prediction"]
    counts, p = _counts_and_shares(pred, num_classes)
    return {
        "class_counts": counts.long().tolist(),
        "class_entropy": -(p[p > 0] * p[p > 0].log()).sum().item(),
        "classes_covered": int((p >= COVERED_SHARE).sum()),
    }
