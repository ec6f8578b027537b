"""Training generators through their implicit likelihood.

* :func:`train_gan`: non-saturating GAN with an optional entropy term ``−β·H[p_G]``;
* :func:`train_reverse_kl`: an invertible generator fitted to an unnormalised 2-D
  density by reverse KL;
* :func:`run_modes`: the mode-coverage protocol on the ring and grid mixtures.

Runs are configured by dataclasses (:class:`GANConfig`, :class:`ReverseKLConfig`),
deterministic given a seed, logged as JSON lines and checkpointed atomically; an
interrupted run resumes bit-identically. Data-parallel training over
``torch.distributed`` is in :mod:`.distributed`.
"""

from spectral_backprop.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from spectral_backprop.train.config import GANConfig, ReverseKLConfig
from spectral_backprop.train.gan import GANResult, generator_entropy, train_gan
from spectral_backprop.train.modes import evaluate_generator, mode_coverage, run_modes
from spectral_backprop.train.reverse_kl import (
    ReverseKLResult,
    evaluate_reverse_kl,
    train_reverse_kl,
)
from spectral_backprop.train.run import read_metrics
from spectral_backprop.train.targets import TARGETS, get_target, log_normaliser

__all__ = [
    "TARGETS",
    "CheckpointError",
    "GANConfig",
    "GANResult",
    "ReverseKLConfig",
    "ReverseKLResult",
    "evaluate_generator",
    "evaluate_reverse_kl",
    "generator_entropy",
    "get_target",
    "load_checkpoint",
    "log_normaliser",
    "mode_coverage",
    "read_metrics",
    "run_modes",
    "save_checkpoint",
    "train_gan",
    "train_reverse_kl",
]
