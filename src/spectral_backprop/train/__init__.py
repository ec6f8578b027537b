"""Training generators through their implicit likelihood.

* :func:`train_gan`: non-saturating GAN with an optional R1 penalty and an optional
  entropy term ``−β·H[p_G]``;
* :func:`train_reverse_kl`: an invertible generator fitted to an unnormalised 2-D
  density by reverse KL;
* :func:`train_manifold`: a generator and an encoder fitted to data by maximum implicit
  likelihood (injective generators, k < n; :mod:`spectral_backprop.manifold`);
* :func:`load_gan_generator`: the trained generator of a GAN run, for measurements.

Runs are configured by dataclasses (:class:`GANConfig` with its :class:`R1` and
:class:`EntropyTerm` sections, :class:`ReverseKLConfig`), deterministic given a seed,
logged as JSON lines and checkpointed atomically; an interrupted run resumes
bit-identically. Data-parallel training over ``torch.distributed`` is in
:mod:`.distributed`.
"""

from spectral_backprop.runfiles import RunFileError, RunLockedError, read_metrics
from spectral_backprop.train.checkpoint import (
    CheckpointError,
    load_checkpoint,
    read_checkpoint,
    save_checkpoint,
)
from spectral_backprop.train.config import (
    R1,
    ConfigError,
    Decay,
    EntropyTerm,
    GANConfig,
    ReverseKLConfig,
)
from spectral_backprop.train.gan import GANResult, generator_entropy, train_gan
from spectral_backprop.train.loading import load_gan_generator
from spectral_backprop.train.manifold import (
    ManifoldConfig,
    ManifoldResult,
    evaluate_manifold,
    save_manifold_pictures,
    train_manifold,
)
from spectral_backprop.train.reverse_kl import (
    ReverseKLResult,
    evaluate_reverse_kl,
    train_reverse_kl,
)
from spectral_backprop.train.run import TrainingError
from spectral_backprop.train.targets import TARGETS, get_target, log_normaliser

# The errors of a run that a person acts on (settings, files, a folder in use, a run
# that diverged): the command line prints them as one line, with exit code 2.
RUN_ERRORS = (CheckpointError, ConfigError, FileExistsError, RunFileError, TrainingError)

__all__ = [
    "R1",
    "RUN_ERRORS",
    "TARGETS",
    "CheckpointError",
    "ConfigError",
    "Decay",
    "EntropyTerm",
    "GANConfig",
    "GANResult",
    "ManifoldConfig",
    "ManifoldResult",
    "ReverseKLConfig",
    "ReverseKLResult",
    "RunFileError",
    "RunLockedError",
    "TrainingError",
    "evaluate_manifold",
    "evaluate_reverse_kl",
    "generator_entropy",
    "get_target",
    "load_checkpoint",
    "load_gan_generator",
    "log_normaliser",
    "read_checkpoint",
    "read_metrics",
    "save_checkpoint",
    "save_manifold_pictures",
    "train_gan",
    "train_manifold",
    "train_reverse_kl",
]
