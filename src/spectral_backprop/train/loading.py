"""Rebuild a trained GAN generator from a training checkpoint.

Training saves checkpoints to resume runs (:mod:`.checkpoint`); a measurement needs only
the generator, rebuilt from the saved config with
:func:`~spectral_backprop.train.gan.build_models` (as training builds it) and loaded
with the saved weights.
"""

from __future__ import annotations

from pathlib import Path

import torch

from spectral_backprop.data import Dataset, load_dataset
from spectral_backprop.runfiles import CHECKPOINT
from spectral_backprop.train.checkpoint import CheckpointError, read_checkpoint
from spectral_backprop.train.config import GANConfig
from spectral_backprop.train.gan import build_models

__all__ = ["load_gan_generator"]


def load_gan_generator(path: str | Path) -> tuple[torch.nn.Module, GANConfig, Dataset]:
    """``(G, config, dataset)`` from a GAN run folder or its ``checkpoint.pt``.

    ``G`` (the weight average when the run kept one) is in eval mode, with
    ``G.latent_dim`` set; ``dataset`` is the run's training
    data, loaded again from its config (to score real data, say).

    Raises:
        FileNotFoundError: no checkpoint at ``path``.
        CheckpointError: (a ``ValueError``) the file is not a readable GAN checkpoint or
            does not match the models its config describes.
        ValueError, TypeError, FileNotFoundError: the run's data set, named in its
            config, cannot be loaded (:func:`~spectral_backprop.data.load_dataset`).
    """
    path = Path(path)
    ckpt = path / CHECKPOINT if path.is_dir() else path
    payload = read_checkpoint(ckpt)
    if payload.get("kind") != "GANConfig":
        raise CheckpointError(f"{ckpt} is not a GAN training checkpoint "
                              f"(kind: {payload.get('kind')!r})")
    try:
        config = GANConfig.from_dict(payload["config"])
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{ckpt} holds a config that cannot be read: {err}") from err
    data = load_dataset(config.dataset, **config.data_options)
    G, _, k = build_models(config, data)
    try:
        # A run with a weight average hands out the average (GANConfig.ema).
        modules = payload["modules"]
        G.load_state_dict(modules["G_ema"] if config.ema > 0 else modules["G"])
    except (KeyError, RuntimeError, TypeError, ValueError) as err:
        raise CheckpointError(f"{ckpt}: generator weights do not match its config: {err}"
                              ) from err
    G.latent_dim = k
    return G.eval(), config, data
