"""Training generators through their implicit likelihood.

* :func:`train_gan`: non-saturating GAN with an optional R1 penalty and an optional
  entropy term ``−β·H[p_G]``;
* :func:`train_reverse_kl`: an invertible generator fitted to an unnormalised 2-D
  density by reverse KL;
* :func:`load_gan_generator`: the trained generator of a GAN run, for measurements.

Runs are configured by dataclasses (:class:`GANConfig` with its :class:`R1` and
:class:`EntropyTerm` sections, :class:`ReverseKLConfig`), deterministic given a seed,
logged as JSON lines and checkpointed atomically; an interrupted run resumes
bit-identically. Data-parallel training over ``torch.distributed`` is in
:mod:`.distributed`.
"""

from spectral_backprop.runfiles import read_metrics
from spectral_backprop.train.checkpoint import (
    CheckpointError,
    load_checkpoint,
    read_checkpoint,
    save_checkpoint,
)
from spectral_backprop.train.config import R1, Decay, EntropyTerm, GANConfig, ReverseKLConfig
from spectral_backprop.train.gan import GANResult, generator_entropy, train_gan
from spectral_backprop.train.loading import load_gan_generator
from spectral_backprop.train.reverse_kl import (
    ReverseKLResult,
    evaluate_reverse_kl,
    train_reverse_kl,
)
from spectral_backprop.train.targets import TARGETS, get_target, log_normaliser

__all__ = [
    "R1",
    "TARGETS",
    "CheckpointError",
    "Decay",
    "EntropyTerm",
    "GANConfig",
    "GANResult",
    "ReverseKLConfig",
    "ReverseKLResult",
    "evaluate_reverse_kl",
    "generator_entropy",
    "get_target",
    "load_checkpoint",
    "load_gan_generator",
    "log_normaliser",
    "read_checkpoint",
    "read_metrics",
    "save_checkpoint",
    "train_gan",
    "train_reverse_kl",
]
