"""The factor study: are metric eigen-directions purer explanatory factors than baselines?

Trains ``seeds`` small DCGANs on the procedural sprites (known factors: position,
size, orientation, brightness), then scores the top eigen-directions of ``JᵀJ``
(local and global) against SeFa, GANSpace and random directions with
:func:`~spectral_backprop.analysis.factors.compare_directions` (purity protocol of
Ramesh & LeCun 2018, arXiv 1806.00499, §5, tested against Shen & Zhou 2021, arXiv
2007.06600, and Härkönen et al. 2020, arXiv 2004.02546). Reports the mean and standard
error of each method's per-seed score.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

from ..analysis.factors import METHODS, compare_directions
from ..data import load_dataset
from ..runfiles import CHECKPOINT, PURITY, RESULTS, run_lock, write_json
from ..stats import mean_se
from ..train import GANConfig, train_gan

__all__ = ["FactorsConfig", "run_factor_experiment"]


@dataclass
class FactorsConfig:
    """Settings of the factor study (saved in ``results.json``).

    Attributes:
        seeds: independently trained generators.
        steps: GAN training steps per seed.
        image_size: sprite side in pixels (16, 28 or 32).
        latent_dim: k of the generators.
        width: base channels of the DCGAN.
        directions: top directions scored per method (``r``).
        latents: latents at which each direction is scored.
        delta: half-step of the central difference, in latent units.
        progress: progress output.
    """

    seeds: int = 3
    steps: int = 3000
    image_size: int = 16
    latent_dim: int = 8
    width: int = 32
    directions: int = 3
    latents: int = 128
    delta: float = 0.5
    progress: bool = True

    CHOICES: ClassVar[dict[str, tuple]] = {"image_size": (16, 28, 32)}

    def __post_init__(self) -> None:
        for name in ("seeds", "steps", "latent_dim", "width", "latents"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.image_size not in self.CHOICES["image_size"]:
            raise ValueError(f"image_size must be 16, 28 or 32, got {self.image_size!r}")
        if not 1 <= self.directions <= self.latent_dim:
            raise ValueError(f"directions must be in [1, latent_dim={self.latent_dim}], "
                             f"got {self.directions!r}")
        if not self.delta > 0:
            raise ValueError(f"delta must be positive, got {self.delta!r}")

    def gan_config(self, seed: int) -> GANConfig:
        """The training run of one seed."""
        return GANConfig(dataset="sprites", data_options=self.data_options(), arch="dcgan",
                         latent_dim=self.latent_dim, width=self.width, steps=self.steps,
                         batch_size=64, seed=seed, device="cpu", progress=self.progress,
                         ckpt_every=self.steps, log_every=max(1, self.steps // 10))

    def data_options(self) -> dict[str, Any]:
        return {"image_size": self.image_size, "num_samples": 10_000}


def run_factor_experiment(out_dir: str | Path, config: FactorsConfig | None = None) -> dict:
    """Train ``config.seeds`` DCGANs on sprites and compare direction methods.

    Each seed trains in ``out_dir/seed_<i>`` (a finished seed is reused, so an
    interrupted study can be re-run) and writes its scores to ``purity.json``. Results,
    also written to ``out_dir/results.json``, hold ``purity: {method: {"mean", "se"}}``
    over seeds, the per-seed values and the settings. The study holds ``out_dir``'s
    lock while it runs.
    """
    cfg = config or FactorsConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with run_lock(out):
        return _run_factor_experiment(out, cfg)


def _run_factor_experiment(out: Path, cfg: FactorsConfig) -> dict:
    data = load_dataset("sprites", **cfg.data_options())
    per_seed = []
    for seed in range(cfg.seeds):
        run_dir = out / f"seed_{seed}"
        resume = (run_dir / CHECKPOINT).exists()
        G = train_gan(cfg.gan_config(seed), run_dir, resume=resume, dataset=data).generator
        scores = compare_directions(G, data.x, r=cfg.directions, n_latents=cfg.latents,
                                    delta=cfg.delta, seed=seed)
        write_json(run_dir / PURITY, scores)
        per_seed.append(scores)
        if cfg.progress:
            print(f"seed {seed}: " + ", ".join(f"{m} {s['mean']:.3f}" for m, s in scores.items()))
    results = {
        "purity": {m: mean_se([s[m]["mean"] for s in per_seed]) for m in METHODS},
        "per_seed": per_seed,
        "settings": asdict(cfg),
    }
    write_json(out / RESULTS, results)
    return results
