"""``spectral-backprop train``: a GAN (optionally entropy-regularised) on any data set.

Its flags are generated from :class:`~spectral_backprop.train.GANConfig`
(:mod:`.flags`); a few older spellings stay as deprecated aliases
(:func:`add_deprecated_arguments`). Data-parallel:
``torchrun --nproc_per_node=N -m spectral_backprop train ...``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from spectral_backprop.cli import CLIError
from spectral_backprop.cli.flags import add_config_arguments
from spectral_backprop.cli.flags import config_from_args as _config_from_args


def _entropy_decay(words: list[str]) -> tuple[float, float] | None:
    """``--entropy-decay START END`` as a pair, ``--entropy-decay off`` as ``None``."""
    if words == ["off"]:
        return None
    try:
        start, end = map(float, words)
    except ValueError:
        raise CLIError(f"--entropy-decay takes START END or off, got {' '.join(words)!r}"
                       ) from None
    return start, end


def add_deprecated_arguments(parser: argparse.ArgumentParser) -> None:
    """The schedule flags of earlier versions, with their old meaning.

    They are read as the flat config fields they set then (``reg_schedule``, ...; see
    :meth:`~spectral_backprop.train.GANConfig.upgrade`), on top of the base config and
    ``--config``, and under the new flags.
    """
    g = parser.add_argument_group(
        "deprecated aliases", "Older spellings of the decay flags, kept for existing scripts; "
        "the --r1-decay-* and --entropy-decay-* flags above say the same per term.")
    g.add_argument("--reg-schedule", choices=["constant", "linear", "cosine"],
                   help="sets --r1-decay-shape and --entropy-decay-shape")
    g.add_argument("--reg-decay-start", type=float, metavar="FRACTION",
                   help="sets --r1-decay-start, and beta's start too while beta's window is "
                        "R1's")
    g.add_argument("--reg-decay-end", type=float, metavar="FRACTION",
                   help="sets --r1-decay-end, and beta's end too while beta's window is R1's")
    g.add_argument("--entropy-decay", nargs="+", metavar="START END | off",
                   help="START END: --entropy-decay-start START --entropy-decay-end END "
                        "(needs a linear or cosine shape); off: beta decays as R1 does "
                        "(its shape and window)")


def deprecated_values(args: argparse.Namespace) -> dict:
    """The old flat config fields set by :func:`add_deprecated_arguments`' flags."""
    values = {name: getattr(args, name) for name in ("reg_schedule", "reg_decay_start",
                                                      "reg_decay_end")
              if getattr(args, name, None) is not None}
    if getattr(args, "entropy_decay", None) is not None:
        values["entropy_decay"] = _entropy_decay(args.entropy_decay)
    return values


def add_gan_arguments(p: argparse.ArgumentParser, exclude: tuple[str, ...] = ()) -> None:
    """The :class:`~spectral_backprop.train.GANConfig` flags of ``train`` and ``modes``
    (all default to the config's value), ``--config``, and the deprecated aliases."""
    from spectral_backprop.train import GANConfig

    add_config_arguments(p, GANConfig, exclude=exclude)
    add_deprecated_arguments(p)


def config_from_args(args: argparse.Namespace, base: dict | None = None):
    """A :class:`~spectral_backprop.train.GANConfig` from ``base``, then ``--config``,
    then the deprecated aliases and ``--data-path``, then the flags given."""
    from spectral_backprop.train import GANConfig

    extra = deprecated_values(args)
    if getattr(args, "data_path", None) is not None:
        extra["data_options"] = {"path": args.data_path}
    return _config_from_args(args, GANConfig, base, extra=extra)


def load_data(config):
    """The configured data set, with user errors (bad name, missing path) as ``CLIError``."""
    from spectral_backprop.data import load_dataset

    try:
        return load_dataset(config.dataset, **config.data_options)
    except (ValueError, TypeError, OSError, ImportError) as err:
        raise CLIError(str(err)) from err


def run(args: argparse.Namespace) -> int:
    from spectral_backprop.density import seeded_samples
    from spectral_backprop.pictures import save_samples_png
    from spectral_backprop.runfiles import SAMPLES
    from spectral_backprop.train import train_gan
    from spectral_backprop.train.distributed import teardown_distributed

    config = config_from_args(args)
    data = load_data(config)
    try:
        result = train_gan(config, args.out, resume=args.resume, dataset=data)
    finally:
        teardown_distributed()
    if int(os.environ.get("RANK", "0")) == 0:
        x = seeded_samples(result.generator, result.latent_dim,
                           64 if data.is_image else 2500, config.seed)
        save_samples_png(x, Path(args.out) / SAMPLES, data.modes,
                         f"{config.dataset}, step {result.step}")
        print(f"wrote {args.out}/samples.png, metrics.jsonl, checkpoint.pt")
    return 0


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "train", help="train a GAN, optionally with an entropy term",
        description="Train a GAN with the non-saturating loss and an optional entropy term "
                    "-beta*H[p_G] (H = 1/2 E log det J^T J + const, by spectral backprop). "
                    "Writes config.json, metrics.jsonl, checkpoint.pt and samples.png to "
                    "--out. Run under torchrun for data-parallel training.",
    )
    p.add_argument("--out", required=True, type=Path, help="run folder")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--data-path", help="file or folder for the idx and folder data sets "
                                       "(short for --data-option path=...)")
    add_gan_arguments(p)
    p.set_defaults(func=run)
