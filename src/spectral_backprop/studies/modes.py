"""The mode-coverage study: a plain GAN against an entropy-regularised GAN, over seeds.

Both variants train under the same protocol (``configs/modes_grid.json`` or
``configs/modes_ring.json``); each run is scored by
:func:`~spectral_backprop.analysis.modes.mode_coverage` on 2,500 samples whose latents
come from :func:`eval_seed`, and the study reports mean ± standard error over seeds
(VEEGAN / PacGAN protocol: Srivastava et al. 2017, arXiv 1705.07761; Lin et al. 2018,
arXiv 1712.04086).
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..analysis.modes import MODE_FIGURES, NUM_EVAL_SAMPLES, evaluate_generator
from ..data import Dataset, load_dataset
from ..runfiles import CONFIG, EVAL, RESULTS, RunFileError, read_json, write_json
from ..stats import mean_se
from ..train import CheckpointError, GANConfig, train_gan
from ..train.gan import check_entropy_term
from .protocols import load_protocol as _load

__all__ = ["check_finished_run", "describe_terms", "eval_seed", "load_protocol", "run_modes",
           "train_and_evaluate"]


def load_protocol(dataset: str) -> dict[str, Any]:
    """``{"config": <GANConfig fields>, "entropy_weight": β}`` of the ``ring`` or ``grid`` study."""
    return _load(f"modes_{dataset}")


def _decay_text(decay) -> str:
    if decay.shape == "constant":
        return ""
    return f", {decay.shape}-decayed to 0 from {decay.start:.0%} to {decay.end:.0%} of training"


def describe_terms(config: GANConfig) -> str:
    """The regularisers of a run in words, for tables and figure titles.

    Example:
        >>> cfg = GANConfig.from_dict(load_protocol("grid")["config"])
        >>> describe_terms(cfg)
        'β = 0; R1 γ = 0.1, cosine-decayed to 0 from 50% to 100% of training'
    """
    entropy, r1 = config.entropy, config.r1
    parts = [f"β = {entropy.weight:g}" + (_decay_text(entropy.decay) if entropy.weight else "")]
    parts.append(f"R1 γ = {r1.weight:g}{_decay_text(r1.decay)}" if r1.weight else "no R1")
    if entropy.cap is not None:
        parts.append(f"entropy cap {entropy.cap:g}")
    return "; ".join(parts)


def eval_seed(run_seed: int) -> int:
    """Seed of a run's evaluation latents, ``10,000 + run_seed``: fixed per run and apart
    from the seeds that training uses (``run_seed`` and ``run_seed + 1``)."""
    return 10_000 + run_seed


def check_finished_run(run_dir: Path, config: GANConfig) -> None:
    """Refuse to reuse a finished run (its ``eval.json``) trained under another config.

    A resumed summary must describe the protocol it is run with; without this check a
    folder of runs made under other settings would be summarised silently.
    """
    try:
        saved = read_json(run_dir / CONFIG)
        if not isinstance(saved, dict):
            raise RunFileError(f"{run_dir / CONFIG} does not hold a JSON object")
        details = config.mismatch_details(saved, label="run")
    except (OSError, ValueError, TypeError) as err:
        raise CheckpointError(f"{run_dir} holds a finished run whose settings cannot be "
                              f"read ({err}); delete the run folder to train it again"
                              ) from err
    if details:
        raise CheckpointError(f"{run_dir} was trained with other settings ({details}). Use a "
                              "new output folder, or the settings of those runs.")


def train_and_evaluate(config: GANConfig, run_dir: Path, data, resume: bool = False
                       ) -> dict[str, float]:
    """Train one run and write its mode-coverage figures to ``run_dir/eval.json``.

    With ``resume``, a finished run (one with ``eval.json``) is reused after
    :func:`check_finished_run`, and an interrupted one continues from its checkpoint.
    """
    eval_path = Path(run_dir) / EVAL
    if resume and eval_path.exists():
        check_finished_run(Path(run_dir), config)
        return read_eval(eval_path)
    result = train_gan(config, run_dir, resume=resume, dataset=data)
    figures = evaluate_generator(result.generator, result.latent_dim, data.modes,
                                 data.mode_std, seed=eval_seed(config.seed))
    write_json(eval_path, figures)
    return figures


def read_eval(path: Path) -> dict[str, float]:
    """The figures of a finished run's ``eval.json`` (``null``, a non-finite figure, as NaN).

    Raises:
        RunFileError: the file is not JSON or not an object of numbers.
    """
    figures = read_json(path)
    if not isinstance(figures, dict) or not all(
            v is None or (isinstance(v, int | float) and not isinstance(v, bool))
            for v in figures.values()):
        raise RunFileError(f"{path} does not hold the figures of a run (an object of "
                           "numbers); delete its run folder to train it again")
    return {k: math.nan if v is None else v for k, v in figures.items()}


def run_modes(dataset: str, seeds: int, out_dir: str | Path, base: GANConfig,
              entropy_weight: float, resume: bool = False, first_seed: int = 0,
              data: Dataset | None = None) -> dict[str, Any]:
    """Train both variants (β = 0 and β = ``entropy_weight``) for seeds
    ``first_seed, ..., seeds − 1``.

    Each run lives in ``out_dir/<variant>/seed<i>`` (resumable); the summary, with
    per-seed figures, is written to ``out_dir/results.json`` and returned. To spread
    seeds over processes, give each a ``first_seed``/``seeds`` range, then summarise
    all of them with ``first_seed=0, resume=True`` (finished runs are not retrained).
    ``data`` (default: loaded as ``base.data_options`` say) is the training data.
    """
    out = Path(out_dir)
    data = data if data is not None else load_dataset(dataset, **base.data_options)
    variants = {"gan": 0.0, "entropy": entropy_weight}
    # The entropy variant's estimator is checked before the first run trains.
    check_entropy_term(replace(base, dataset=dataset,
                               entropy=replace(base.entropy, weight=entropy_weight)), data)
    per_seed: dict[str, list[dict[str, float]]] = {v: [] for v in variants}
    for seed in range(first_seed, seeds):
        for variant, beta in variants.items():
            config = replace(base, dataset=dataset, seed=seed,
                             entropy=replace(base.entropy, weight=beta))
            figures = train_and_evaluate(config, out / variant / f"seed{seed}", data, resume)
            per_seed[variant].append(figures)
            print(f"{variant:8s} seed {seed}: {figures}")
    summary = {
        "dataset": dataset,
        "seeds": seeds - first_seed,
        "first_seed": first_seed,
        "num_eval_samples": NUM_EVAL_SAMPLES,
        "config": base.to_dict(),
        "entropy_weight": entropy_weight,
        "variants": {
            v: {key: mean_se([r.get(key, float("nan")) for r in runs]) for key in MODE_FIGURES}
            | {"per_seed": runs}
            for v, runs in per_seed.items()
        },
    }
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / RESULTS, summary)
    return summary
