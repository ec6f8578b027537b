"""``spectral-backprop train``: a GAN (optionally entropy-regularised) on any data set.

Data-parallel: ``torchrun --nproc_per_node=N -m spectral_backprop train ...``.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from spectral_backprop.cli import CLIError


def parse_key_values(items: list[str] | None, what: str) -> dict:
    """``["a=1", "b=x"]`` -> ``{"a": 1, "b": "x"}`` (values parsed as JSON when possible)."""
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CLIError(f"{what} must look like KEY=VALUE, got {item!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


# GANConfig fields set by a flag of the same name (argparse dest == field name).
_FIELDS = (
    "dataset", "arch", "latent_dim", "width", "depth", "g_activation", "steps", "batch_size",
    "d_steps", "lr_g", "lr_d", "lr_schedule", "r1_weight", "entropy_weight", "reg_schedule",
    "reg_decay_start", "reg_decay_end", "entropy_batch", "entropy_method",
    "entropy_dtype", "entropy_cap", "seed", "log_every", "ckpt_every", "device",
)


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


def add_gan_arguments(p: argparse.ArgumentParser) -> None:
    """Flags shared by ``train`` and ``modes`` (defaults ``None`` = keep the config's)."""
    g = p.add_argument_group("model and optimisation")
    g.add_argument("--arch", choices=["auto", "mlp", "dcgan"])
    g.add_argument("--latent-dim", type=int, help="k (default 2 for points, 32 for images)")
    g.add_argument("--width", type=int, help="hidden width / base channels")
    g.add_argument("--depth", type=int, help="hidden layers (MLP)")
    g.add_argument("--g-activation", choices=["relu", "leaky_relu", "silu", "elu", "tanh",
                                              "softplus"],
                   help="hidden activation of the MLP generator (default relu)")
    g.add_argument("--steps", type=int, help="generator updates (default 2000)")
    g.add_argument("--batch-size", type=int, help="global batch (default 128)")
    g.add_argument("--d-steps", type=int, help="discriminator updates per step (default 1)")
    g.add_argument("--lr-g", type=float, help="generator Adam learning rate (default 2e-4)")
    g.add_argument("--lr-d", type=float, help="discriminator Adam learning rate (default 2e-4)")
    g.add_argument("--lr-schedule", choices=["constant", "cosine"])
    g.add_argument("--r1-weight", type=float, metavar="GAMMA",
                   help="R1 gradient penalty on real data (default 0)")
    g.add_argument("--reg-schedule", choices=["constant", "linear", "cosine"],
                   help="decay of the entropy weight and R1 weight to 0 (default constant)")
    g.add_argument("--reg-decay-start", type=float, metavar="FRACTION",
                   help="fraction of the steps after which they decay (default 0)")
    g.add_argument("--reg-decay-end", type=float, metavar="FRACTION",
                   help="fraction of the steps at which they reach 0 (default 1)")
    g.add_argument("--entropy-decay", nargs="+", metavar="START END | off",
                   help="decay the entropy weight alone over this window of fractions of "
                        "the steps; off: with R1, over the window above (the default of "
                        "train)")
    g.add_argument("--entropy-batch", type=int, help="latents per entropy estimate (default 32)")
    g.add_argument("--entropy-method", help="exact (default) or a stochastic estimator")
    g.add_argument("--entropy-option", action="append", metavar="KEY=VALUE",
                   help="estimator option, e.g. num_probes=8 (repeatable)")
    g.add_argument("--entropy-dtype", choices=["float32", "float64"])
    g.add_argument("--entropy-cap", type=float, metavar="C",
                   help="clip each sample's 1/2 log det J^T J at C in the entropy term: "
                        "resist collapse without paying for stretched gaps between modes "
                        "(default: no clipping)")
    g.add_argument("--log-every", type=int)
    g.add_argument("--ckpt-every", type=int)
    g.add_argument("--device", choices=["auto", "cpu", "cuda"])
    g.add_argument("--config", type=Path, help="start from a saved config.json")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")


def config_from_args(args: argparse.Namespace, base: dict | None = None):
    """A :class:`GANConfig` from ``base``, then ``--config`` (if any), then explicit flags."""
    from spectral_backprop.train import GANConfig

    values: dict = dict(base or {})
    if getattr(args, "config", None) is not None:
        try:
            values.update(json.loads(args.config.read_text()))
        except (OSError, json.JSONDecodeError) as err:
            raise CLIError(f"cannot read config {args.config}: {err}") from err
    for name in _FIELDS:
        if getattr(args, name, None) is not None:
            values[name] = getattr(args, name)
    if getattr(args, "entropy_decay", None) is not None:
        values["entropy_decay"] = _entropy_decay(args.entropy_decay)
    if getattr(args, "entropy_option", None):
        values["entropy_options"] = parse_key_values(args.entropy_option, "--entropy-option")
    data_options = parse_key_values(getattr(args, "data_option", None), "--data-option")
    if getattr(args, "data_path", None) is not None:
        data_options["path"] = args.data_path
    if data_options:
        values["data_options"] = {**values.get("data_options", {}), **data_options}
    if args.no_progress:
        values["progress"] = False
    try:
        return GANConfig.from_dict(values)
    except (TypeError, ValueError) as err:
        raise CLIError(str(err)) from err


def load_data(config):
    """The configured data set, with user errors (bad name, missing path) as ``CLIError``."""
    from spectral_backprop.data import load_dataset

    try:
        return load_dataset(config.dataset, **config.data_options)
    except (ValueError, TypeError, FileNotFoundError, ImportError) as err:
        raise CLIError(str(err)) from err


def run(args: argparse.Namespace) -> int:
    from spectral_backprop.train import CheckpointError, train_gan
    from spectral_backprop.train.distributed import teardown_distributed
    from spectral_backprop.train.modes import seeded_samples
    from spectral_backprop.train.plots import save_samples_png

    config = config_from_args(args)
    data = load_data(config)
    try:
        result = train_gan(config, args.out, resume=args.resume, dataset=data)
    except (CheckpointError, FileExistsError) as err:
        raise CLIError(str(err)) from err
    finally:
        teardown_distributed()
    if int(os.environ.get("RANK", "0")) == 0:
        x = seeded_samples(result.generator, result.latent_dim,
                           64 if data.is_image else 2500, config.seed)
        save_samples_png(x, Path(args.out) / "samples.png", data.modes,
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
    p.add_argument("--dataset", default=None,
                   help="ring, grid, digits, mnist (default), idx, folder, sprites")
    p.add_argument("--data-path", help="file or folder for the idx and folder data sets")
    p.add_argument("--data-option", action="append", metavar="KEY=VALUE",
                   help="loader option, e.g. num_samples=10000 (repeatable)")
    p.add_argument("--entropy-weight", type=float, help="beta (default 0: plain GAN)")
    p.add_argument("--seed", type=int, help="seed of the run (default 0)")
    add_gan_arguments(p)
    p.add_argument("--out", required=True, type=Path, help="run folder")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.set_defaults(func=run)
