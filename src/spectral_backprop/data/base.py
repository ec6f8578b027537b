"""The in-memory data set type shared by every loader in :mod:`spectral_backprop.data`."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass
class Dataset:
    """Samples held in memory as one float32 tensor.

    Attributes:
        name: short name, as accepted by :func:`~spectral_backprop.data.load_dataset`.
        x: samples ``[N, *shape]``; 2-D points are ``[N, 2]``, images ``[N, C, H, W]``
            scaled to ``[-1, 1]`` (the range of a ``tanh`` generator output).
        labels: optional integer class labels ``[N]``.
        factors: optional ground-truth factors ``[N, F]`` (procedural data only).
        factor_names: names of the columns of ``factors``.
        modes: optional mixture centres ``[M, 2]`` (toy mixtures only).
        mode_std: standard deviation of each mixture component (toy mixtures only).
    """

    name: str
    x: Tensor
    labels: Tensor | None = None
    factors: Tensor | None = None
    factor_names: tuple[str, ...] = ()
    modes: Tensor | None = None
    mode_std: float | None = None
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return self.x.shape[0]

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of one sample, e.g. ``(2,)`` or ``(1, 28, 28)``."""
        return tuple(self.x.shape[1:])

    @property
    def is_image(self) -> bool:
        return self.x.dim() == 4

    def check(self) -> Dataset:
        """Refuse data that no run can train on: no samples, or NaN or ±inf values.

        Non-finite data would give NaN losses at the first step, and every step after
        it; the data are refused at load instead, naming the first bad sample.

        Raises:
            ValueError: the data set is empty or holds non-finite values.
        """
        if self.x.dim() < 2 or len(self) == 0:
            raise ValueError(f"data set {self.name!r} holds no samples "
                             f"(shape {tuple(self.x.shape)})")
        if self.x.is_floating_point():
            bad = ~torch.isfinite(self.x.flatten(1)).all(dim=1)
            if bad.any():
                first = int(bad.nonzero()[0, 0])
                raise ValueError(f"data set {self.name!r} holds NaN or infinite values in "
                                 f"{int(bad.sum())} of {len(self)} samples (the first: "
                                 f"sample {first}); clean the data before training")
        return self

    def batch(self, batch_size: int, generator: torch.Generator) -> Tensor:
        """Draw ``batch_size`` samples uniformly with replacement.

        Sampling with replacement from an explicit generator keeps the data stream a
        pure function of the generator state, so a resumed run draws exactly the batches
        the uninterrupted run would have drawn (no epoch position to save).
        """
        idx = torch.randint(len(self), (batch_size,), generator=generator)
        return self.x[idx]


def to_unit_range(images: Tensor, max_value: float) -> Tensor:
    """Map pixel values in ``[0, max_value]`` to float32 in ``[-1, 1]``."""
    return (images.to(torch.float32) / max_value) * 2.0 - 1.0
