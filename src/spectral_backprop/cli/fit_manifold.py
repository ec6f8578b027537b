"""``spectral-backprop fit-manifold``: a generator and an encoder fitted to data by maximum
implicit likelihood (:mod:`spectral_backprop.train.manifold`).

Its flags are generated from :class:`~spectral_backprop.train.manifold.ManifoldConfig`
(:mod:`.flags`), plus ``--data`` (a data set name or a ``.npy`` file), ``--ambient-dim``
and ``--seeds``. Each seed trains into ``OUT/seed_S``; ``OUT/results.json`` holds every
figure as ``{"mean", "se"}`` over seeds, under the estimator's name.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from spectral_backprop.cli import CLIError
from spectral_backprop.cli.flags import add_config_arguments, config_from_args

# --data names and the data sets they load; anything ending in .npy is a user's array.
DATA_NAMES = {"circle": "circle", "sine": "sine", "sphere": "sphere", "mnist": "mnist_manifold"}
FIGURES = ("test_nll", "entropy", "kl", "manifold_distance", "distance_mean", "distance_p90",
           "seconds_per_step", "peak_memory_mb")


def data_settings(data: str, ambient_dim: int | None) -> dict[str, Any]:
    """The ``dataset`` and ``data_options`` of ``--data`` and ``--ambient-dim``.

    Raises:
        CLIError: an unknown name, a missing file, or ``--ambient-dim`` where it has no
            meaning (MNIST, a user's array).
    """
    if data.endswith(".npy"):
        if not Path(data).is_file():
            raise CLIError(f"--data {data}: no such file")
        settings: dict[str, Any] = {"dataset": "npy", "data_options": {"path": data}}
    elif data in DATA_NAMES:
        settings = {"dataset": DATA_NAMES[data], "data_options": {}}
    else:
        raise CLIError(f"--data must be {', '.join(DATA_NAMES)} or a .npy file, got {data!r}")
    if ambient_dim is not None:
        if settings["dataset"] not in ("circle", "sine", "sphere"):
            raise CLIError("--ambient-dim applies to circle, sine and sphere only")
        settings["data_options"]["ambient_dim"] = ambient_dim
    return settings


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """``{figure: {"mean", "se"}}`` over the runs (``None`` for a figure that is unknown)."""
    from spectral_backprop.stats import mean_se

    out: dict[str, Any] = {}
    for name in FIGURES:
        values = [r[name] for r in runs if r.get(name) is not None]
        out[name] = mean_se(values) if values else None
    return out


def run(args: argparse.Namespace) -> int:
    from spectral_backprop.cli.train import load_data
    from spectral_backprop.runfiles import RESULTS, write_json
    from spectral_backprop.train.manifold import (
        ManifoldConfig,
        save_manifold_pictures,
        train_manifold,
    )

    if args.seeds < 1:
        raise CLIError(f"--seeds must be at least 1, got {args.seeds}")
    base = data_settings(args.data, args.ambient_dim)
    config = config_from_args(args, ManifoldConfig, extra=base)
    data = load_data(config)
    runs = []
    for i in range(args.seeds):
        seeded = replace(config, seed=config.seed + i)
        folder = args.out / f"seed_{seeded.seed}"
        try:
            result = train_manifold(seeded, folder, resume=args.resume, dataset=data)
        except ValueError as err:  # (the errors of train.RUN_ERRORS are cli.main's)
            raise CLIError(str(err)) from err
        save_manifold_pictures(result, folder)
        runs.append(result.metrics)
    results = {config.method: summarise(runs), "runs": runs,
               "data": args.data, "settings": config.to_dict()}
    write_json(args.out / RESULTS, results)
    print(json.dumps(results[config.method], indent=2))
    print(f"wrote {args.out}/{RESULTS} and a run folder per seed")
    return 0


def add_parser(subparsers) -> None:
    from spectral_backprop.train.manifold import ManifoldConfig

    p = subparsers.add_parser(
        "fit-manifold", help="fit a generator to data by maximum implicit likelihood",
        description="Train a generator G (k -> n) and an encoder E (n -> k) on data near a "
                    "k-dimensional manifold by -log p_Z(E(x)) + 1/2 log det JᵀJ + "
                    "beta |x - G(E(x))|², the log det's gradient by spectral backprop. "
                    "Reports test NLL, KL to the truth where the density is known, and "
                    "the distance of test points to the learned manifold.",
    )
    p.add_argument("--data", required=True,
                   help="circle, sine, sphere, mnist, or a .npy file of shape [N, n]")
    p.add_argument("--ambient-dim", type=int, default=None,
                   help="embed circle / sine / sphere isometrically in R^N")
    p.add_argument("--seeds", type=int, default=1,
                   help="number of seeds (seed, seed + 1, ...), one run folder each")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--resume", action="store_true", help="continue the runs in --out")
    add_config_arguments(p, ManifoldConfig, exclude=("dataset",))
    p.set_defaults(func=run)
