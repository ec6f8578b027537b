"""Rebuild a trained GAN generator from a training checkpoint, for analysis.

The training code saves checkpoints to resume runs (:mod:`spectral_backprop.train`);
analysis needs only the generator, rebuilt from the saved config with
:func:`~spectral_backprop.train.gan.build_models` (as training builds it) and loaded
with the saved weights.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import torch

__all__ = ["load_gan_generator"]


def load_gan_generator(path: str | Path):
    """``(G, config, dataset)`` from a GAN run folder or its ``checkpoint.pt``.

    ``G`` is in eval mode; ``dataset`` is the run's training data, loaded again from
    its config (used to score real data and train the aberrance classifier).

    Raises:
        FileNotFoundError: no checkpoint at ``path``.
        ValueError: the file is not a readable GAN checkpoint or does not match the
            models its config describes.
    """
    from ..data import load_dataset
    from ..train.config import GANConfig
    from ..train.gan import build_models
    from ..train.run import CHECKPOINT

    path = Path(path)
    ckpt = path / CHECKPOINT if path.is_dir() else path
    if not ckpt.is_file():
        raise FileNotFoundError(f"no checkpoint at {ckpt}")
    try:
        payload = torch.load(ckpt, map_location="cpu", weights_only=False)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError, zipfile.BadZipFile,
            ValueError) as err:
        raise ValueError(f"cannot read checkpoint {ckpt}: {err}") from err
    if not isinstance(payload, dict) or payload.get("kind") != "GANConfig":
        kind = payload.get("kind") if isinstance(payload, dict) else type(payload).__name__
        raise ValueError(f"{ckpt} is not a GAN training checkpoint (kind: {kind!r})")
    config = GANConfig.from_dict(payload["config"])
    data = load_dataset(config.dataset, **config.data_options)
    G, _, k = build_models(config, data)
    try:
        G.load_state_dict(payload["modules"]["G"])
    except (KeyError, RuntimeError) as err:
        raise ValueError(f"{ckpt}: generator weights do not match its config: {err}") from err
    G.latent_dim = k
    return G.eval(), config, data
