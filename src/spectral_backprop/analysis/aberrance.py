r"""How aberrant are generated outputs? Two model-free scores.

* **Classifier scores**: a small classifier trained on the real, labelled data gives
  each output a confidence ``max_c p(c|x)`` and an entropy ``−Σ_c p(c|x) log p(c|x)``
  (nats). Outputs that look like data get confident, low-entropy predictions; the
  aberrant outputs of a high-likelihood search do not (the Inception-score intuition,
  Salimans et al. 2016, arXiv 1606.03498, on a toy scale).
* **Nearest-training distance**: the root-mean-square difference per output entry to
  the closest training example; large for outputs unlike any data point.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..progress import progress as progress_bar

__all__ = ["classifier_scores", "nearest_distance", "small_classifier", "train_classifier"]


def small_classifier(sample_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """A small convolutional net for images ``[C, H, W]`` (H, W ≥ 8), else an MLP."""
    if len(sample_shape) == 3 and min(sample_shape[1:]) >= 8:
        c, h, w = sample_shape
        return nn.Sequential(
            nn.Conv2d(c, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(32 * (h // 4) * (w // 4), 64), nn.ReLU(),
            nn.Linear(64, num_classes),
        )
    n = math.prod(sample_shape)
    return nn.Sequential(nn.Flatten(), nn.Linear(n, 128), nn.ReLU(), nn.Linear(128, num_classes))


def train_classifier(
    x: Tensor, labels: Tensor, *, epochs: int = 5, batch_size: int = 64, lr: float = 1e-3,
    seed: int = 0, holdout: float = 0.1, progress: bool = False
) -> tuple[nn.Module, float]:
    """Train :func:`small_classifier` with Adam; returns ``(model, held-out accuracy)``.

    A fraction ``holdout`` of the data (chosen with ``seed``) is kept out of training to
    report accuracy, so that a poorly trained classifier is visible in the results.
    """
    if x.shape[0] != labels.shape[0]:
        raise ValueError(f"{x.shape[0]} samples but {labels.shape[0]} labels")
    if not 0 <= holdout < 1:
        raise ValueError(f"holdout must be in [0, 1), got {holdout}")
    g = torch.Generator().manual_seed(seed)
    labels = labels.long()
    num_classes = int(labels.max()) + 1
    perm = torch.randperm(x.shape[0], generator=g)
    n_test = int(holdout * x.shape[0])
    test, train = perm[:n_test], perm[n_test:]
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = small_classifier(tuple(x.shape[1:]), num_classes).to(x.dtype)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in progress_bar(range(epochs), desc="classifier", disable=not progress):
        order = train[torch.randperm(train.numel(), generator=g)]
        for idx in order.split(batch_size):
            opt.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(x[idx]), labels[idx]).backward()
            opt.step()
    model.eval()
    acc = float("nan")
    if n_test:
        with torch.no_grad():
            acc = (model(x[test]).argmax(1) == labels[test]).double().mean().item()
    return model, acc


@torch.no_grad()
def classifier_scores(model: nn.Module, x: Tensor, batch_size: int = 256) -> dict[str, Tensor]:
    """Per-sample ``confidence`` (max class probability) and ``entropy`` (nats)."""
    dtype = next(model.parameters()).dtype
    logp = torch.cat([model(xb.to(dtype)).log_softmax(-1) for xb in x.split(batch_size)])
    p = logp.exp()
    return {"confidence": p.max(-1).values, "entropy": -(p * logp).sum(-1),
            "prediction": p.argmax(-1)}


@torch.no_grad()
def nearest_distance(x: Tensor, train: Tensor, batch_size: int = 256) -> Tensor:
    """RMS distance per entry from each ``x[i]`` to its nearest ``train`` example (``[N]``)."""
    a = x.reshape(x.shape[0], -1).double()
    b = train.reshape(train.shape[0], -1).double()
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"x has {a.shape[1]} entries per sample, train has {b.shape[1]}")
    best = [torch.cdist(ab, b).min(1).values for ab in a.split(batch_size)]
    return torch.cat(best) / math.sqrt(a.shape[1])
