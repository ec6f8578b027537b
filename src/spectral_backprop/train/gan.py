"""GAN training with an optional entropy term on the generator.

Generator loss (non-saturating, Goodfellow et al. 2014) minus β times the generator's
entropy (Ramesh & LeCun 2018, arXiv 1806.00499, section 4):

    L_D = E_x softplus(−D(x)) + E_z softplus(D(G(z)))
    L_G = E_z softplus(−D(G(z))) − β·H[p_G],   H[p_G] = H[p_Z] + ½ E_z log det JᵀJ

with an optional R1 penalty ``γ/2·E‖∇ₓD(x)‖²`` on real data in ``L_D`` (Mescheder et
al. 2018, arXiv 1801.04406), and β and γ each optionally decayed to 0 over training
(:class:`~spectral_backprop.train.config.Decay`).

``H`` is estimated on a sub-batch of latents by :func:`spectral_backprop.entropy`
(exact, or a stochastic estimator for large k); its gradient is spectral
backpropagation. The entropy pushes against mode collapse: a generator that maps a
region of latent space onto a point has ``log det JᵀJ → −∞`` there.

:func:`train_gan` is the loop: per step, ``d_steps`` calls of :func:`d_step`, then one
of :func:`g_step`; :class:`GANState` holds what a checkpoint saves.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from spectral_backprop.data import Dataset, load_dataset
from spectral_backprop.density import entropy
from spectral_backprop.models import build_gan
from spectral_backprop.progress import progress
from spectral_backprop.runfiles import CHECKPOINT, METRICS
from spectral_backprop.train.checkpoint import save_checkpoint
from spectral_backprop.train.common import (
    estimator_options,
    in_dtype,
    make_schedule,
    probe_estimator,
    restore_run,
)
from spectral_backprop.train.config import EntropyTerm, GANConfig
from spectral_backprop.train.distributed import Distributed, setup_distributed
from spectral_backprop.train.run import MetricsLog, check_finite, open_run_dir


@dataclass
class GANResult:
    """What :func:`train_gan` leaves behind (the generator is in eval mode)."""

    generator: torch.nn.Module
    discriminator: torch.nn.Module
    dataset: Dataset
    latent_dim: int
    step: int
    last_metrics: dict
    out_dir: Path


def default_latent_dim(data: Dataset) -> int:
    """k = 2 for 2-D points (the mode-coverage protocol), 32 for images."""
    return 32 if data.is_image else 2


def build_models(config: GANConfig, data: Dataset) -> tuple[torch.nn.Module, torch.nn.Module, int]:
    """The untrained ``(G, D)`` of a config for ``data``, and its latent size k.

    One place for both training and loading a saved run, so that every architecture
    field of :class:`GANConfig` reaches the builder in both.
    """
    k = config.latent_dim or default_latent_dim(data)
    G, D = build_gan(config.arch, data.shape, k, config.width, config.depth,
                     config.g_activation)
    return G, D, k


def generator_entropy(G: torch.nn.Module, z: Tensor, term: EntropyTerm | GANConfig,
                      generator: torch.Generator | None = None, *,
                      coupling_checked: bool = False) -> Tensor:
    """``H[p_G]`` estimated on latents ``z`` as ``term`` says (differentiable).

    ``term`` is an :class:`~spectral_backprop.train.config.EntropyTerm` or a whole
    :class:`~spectral_backprop.train.config.GANConfig` (its ``entropy``). With
    ``term.cap = c`` it is the truncated entropy

        H_c = H[p_Z] + E_z min(½ log det JᵀJ, c)  ≤  H[p_G]

    (``entropy(..., cap=c)``), which rewards expanding volume only up to ``exp(c)``. Why:
    a continuous generator of a multi-modal distribution must stretch latent space over
    the gaps between modes (``½ log det JᵀJ`` is largest there), so the plain entropy
    pays the generator to put mass on those bridges. Collapse is the opposite limit,
    ``log det JᵀJ → −∞``, and the truncated term still pushes against it with full force.
    ``coupling_checked=True`` skips the test for samples coupled by ``G`` (for a training
    loop whose pre-training check ran it: :func:`~.common.estimator_options`).

    Computed in ``term.dtype``: a GAN generator squeezes each mode into a
    tiny region, so ``JᵀJ`` becomes ill-conditioned, and in float32 its smallest
    eigenvalue drowns in round-off (``λ_min < k·eps·λ_max``, a condition number of
    ``JᵀJ`` above ~4·10⁶), which makes ``log det`` infinite exactly where the entropy
    term should act. Float64 costs little on the entropy sub-batch.
    """
    if isinstance(term, GANConfig):
        term = term.entropy
    return _entropy_estimate(G, z, term, generator, coupling_checked)


def _entropy_estimate(G: torch.nn.Module, z: Tensor, term: EntropyTerm,
                      generator: torch.Generator | None, coupling_checked: bool = False
                      ) -> Tensor:
    """The estimate of :func:`generator_entropy` (also the pre-training check's, and with
    ``coupling_checked`` the training step's: :func:`~.common.estimator_options`)."""
    options = estimator_options(term.method, term.options, z.shape[-1], generator,
                                coupling_checked=coupling_checked)
    dtype = getattr(torch, term.dtype)
    return entropy(in_dtype(G, dtype), z.to(dtype), method=term.method, cap=term.cap,
                   **options).value.float()


def r1_penalty(d_real: Tensor, real: Tensor) -> Tensor:
    """``E‖∇ₓD(x)‖²`` over the real batch (differentiable), for the R1 penalty
    ``γ/2·E‖∇ₓD(x)‖²`` of Mescheder, Geiger & Nowozin 2018 (arXiv 1801.04406).

    Each ``D(x_i)`` depends on ``x_i`` only, so the gradient of the sum gives every
    per-sample input gradient in one backward pass.
    """
    (grad,) = torch.autograd.grad(d_real.sum(), real, create_graph=True)
    return grad.flatten(1).pow(2).sum(1).mean()


@dataclass
class GANState:
    """The live objects of a run: networks, optimisers, learning-rate schedules, and the
    run's random generator (all a checkpoint saves and restores)."""

    G: torch.nn.Module
    D: torch.nn.Module
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    sched_g: torch.optim.lr_scheduler.LRScheduler
    sched_d: torch.optim.lr_scheduler.LRScheduler
    rng: torch.Generator
    latent_dim: int
    dd: Distributed
    G_ema: torch.nn.Module | None = None

    def modules(self) -> dict[str, torch.nn.Module]:
        mods = {"G": self.G, "D": self.D}
        return mods if self.G_ema is None else {**mods, "G_ema": self.G_ema}

    @property
    def sampler(self) -> torch.nn.Module:
        """The generator the run hands out: the weight average when there is one."""
        return self.G if self.G_ema is None else self.G_ema

    @torch.no_grad()
    def update_average(self, decay: float) -> None:
        """``θ̄ ← decay·θ̄ + (1 − decay)·θ``; buffers (normalisation statistics) copied."""
        if self.G_ema is None:
            return
        for avg, live in zip(self.G_ema.parameters(), self.G.parameters(), strict=True):
            avg.lerp_(live, 1.0 - decay)
        for avg, live in zip(self.G_ema.buffers(), self.G.buffers(), strict=True):
            avg.copy_(live)

    def optimizers(self) -> dict:
        return {"G": self.opt_g, "D": self.opt_d, "sched_G": self.sched_g,
                "sched_D": self.sched_d}

    def latents(self, n: int) -> Tensor:
        """This process's share of ``n`` latents ``z ~ N(0, I)`` from the run's generator."""
        z = torch.randn(n, self.latent_dim, generator=self.rng)
        return self.dd.shard(z).to(self.dd.device)

    def real(self, data: Dataset, n: int) -> Tensor:
        """This process's share of a batch of ``n`` training points."""
        return self.dd.shard(data.batch(n, self.rng)).to(self.dd.device)


def build_state(config: GANConfig, data: Dataset, dd: Distributed) -> GANState:
    """Models initialised from ``config.seed`` (the same on every process), Adam, the
    learning-rate schedules, and the run's random generator.

    Batches and latents come from that CPU generator (the same stream on every process
    and device); it is the only randomness after initialisation.
    """
    torch.manual_seed(config.seed)
    G, D, k = build_models(config, data)
    G, D = G.to(dd.device), D.to(dd.device)
    dd.broadcast_parameters(G)
    dd.broadcast_parameters(D)
    opt_g = torch.optim.Adam(G.parameters(), lr=config.lr_g, betas=config.adam_betas)
    opt_d = torch.optim.Adam(D.parameters(), lr=config.lr_d, betas=config.adam_betas)
    rng = torch.Generator().manual_seed(config.seed + 1)
    G_ema = copy.deepcopy(G).requires_grad_(False) if config.ema > 0 else None
    return GANState(G, D, opt_g, opt_d, make_schedule(opt_g, config.lr_schedule, config.steps),
                    make_schedule(opt_d, config.lr_schedule, config.steps), rng, k, dd, G_ema)


def d_step(s: GANState, real: Tensor, z: Tensor, gamma: float) -> Tensor:
    """One discriminator update on ``real`` against detached ``G(z)``; returns ``L_D``
    (with the R1 penalty when ``gamma > 0``)."""
    s.D.requires_grad_(True)
    with torch.no_grad():
        fake = s.G(z)
    if gamma > 0:
        real.requires_grad_(True)
    d_real = s.D(real)
    loss = F.softplus(-d_real).mean() + F.softplus(s.D(fake)).mean()
    if gamma > 0:
        loss = loss + gamma / 2 * r1_penalty(d_real, real)
    s.opt_d.zero_grad(set_to_none=True)
    loss.backward()
    s.dd.average_gradients(s.D.parameters())
    s.opt_d.step()
    return loss


def g_step(s: GANState, z: Tensor, z_h: Tensor | None, beta: float, term: EntropyTerm
           ) -> tuple[Tensor, Tensor | None]:
    """One generator update on ``softplus(−D(G(z))).mean() − β·H``, ``H`` estimated on
    ``z_h`` (when ``beta > 0``); returns the adversarial loss and ``H`` (or ``None``)."""
    s.D.requires_grad_(False)
    g_adv = F.softplus(-s.D(s.G(z))).mean()
    loss, ent = g_adv, None
    if beta > 0:
        # check_entropy_term tested this architecture for batch coupling before training.
        ent = generator_entropy(s.G, z_h, term, s.rng, coupling_checked=True)
        loss = g_adv - beta * ent
    s.opt_g.zero_grad(set_to_none=True)
    loss.backward()
    s.dd.average_gradients(s.G.parameters())
    s.opt_g.step()
    return g_adv, ent


def check_entropy_term(config: GANConfig, data: Dataset, G: torch.nn.Module | None = None,
                       device: torch.device | str = "cpu") -> None:
    """Refuse an entropy term whose estimator or options do not work, before training:
    one estimate on two latents of ``G`` (default: an untrained generator of ``config``
    for ``data``). Torch's random state is left as it was.

    Raises:
        ConfigError: the estimator refused its options (names or values).
    """
    term = config.entropy
    if term.weight <= 0:
        return
    device = torch.device(device)
    if G is None:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            G = build_models(config, data)[0].to(device)
    rng = torch.Generator().manual_seed(0)
    z = torch.randn(2, config.latent_dim or default_latent_dim(data), generator=rng).to(device)
    probe_estimator("entropy", term.method, term.options, device,
                    lambda options: _entropy_estimate(G, z, replace(term, options=options), rng))


def start_run(s: GANState, config: GANConfig, out: Path, resume: bool, data: Dataset
              ) -> int | None:
    """Check everything and restore the checkpoint when resuming, writing nothing
    (:func:`~.run.check_run_dir`); returns the step resumed at (``None``: a new run)."""
    check_entropy_term(config, data, s.G, s.dd.device)
    payload = restore_run(s, config, out, resume, f"data: {data.name} {tuple(data.x.shape)}, "
                          f"k = {s.latent_dim}, processes = {s.dd.world_size}")
    return payload["step"] if payload is not None else None


def step_values(config: GANConfig, d_loss: Tensor, g_adv: Tensor, ent: Tensor | None,
                r1_scale: float, beta: float) -> dict[str, float]:
    """The figures of a logged step: losses, ``entropy`` (β > 0), ``reg_scale`` (R1's
    decay factor, when it decays) and ``beta`` (the current β, when it decays)."""
    values = {"d_loss": d_loss.item(), "g_loss": g_adv.item()}
    if ent is not None:
        values["entropy"] = ent.item()
    if config.r1.decay.shape != "constant":
        values["reg_scale"] = r1_scale
    if config.entropy.decay.shape != "constant":
        values["beta"] = beta
    return values


def train_gan(config: GANConfig, out_dir: str | Path, resume: bool = False,
              dataset: Dataset | None = None) -> GANResult:
    """Train a GAN as configured, writing config, metrics and checkpoints to ``out_dir``.

    Deterministic given ``config.seed``: model initialisation uses torch's global
    generator seeded with it, and every batch, latent and probe is drawn from one
    run generator whose state is checkpointed, so an interrupted run resumed with
    ``resume=True`` continues bit-identically.

    Everything is checked before anything is written (the data, the entropy term's
    estimator, the checkpoint to resume: :mod:`.run`); the run then holds the folder's
    lock, and stops with :class:`~.run.TrainingError` at the first logged or
    checkpointed step whose losses are not finite.

    Args:
        config: the run's settings.
        out_dir: run folder (see :mod:`spectral_backprop.train.run`).
        resume: continue from ``out_dir/checkpoint.pt`` if present.
        dataset: use this data instead of ``load_dataset(config.dataset, ...)``.
    """
    dd = setup_distributed(config.device)
    out = Path(out_dir)
    data = dataset if dataset is not None else load_dataset(config.dataset,
                                                            **config.data_options)
    data.check()
    s = build_state(config, data, dd)
    resumed = start_run(s, config, out, resume, data)
    with open_run_dir(out, config, write=dd.is_main):
        dd.barrier()
        log = MetricsLog(out / METRICS, resume_step=resumed, enabled=dd.is_main)
        metrics = train_steps(s, config, data, out, resumed or 0, log)
    s.G.eval()
    s.D.eval()
    return GANResult(s.sampler.eval(), s.D, data, s.latent_dim, config.steps, metrics, out)


def train_steps(s: GANState, config: GANConfig, data: Dataset, out: Path, start: int,
                log: MetricsLog) -> dict:
    """Steps ``start, ..., config.steps − 1`` of a run; returns the last logged metrics."""
    dd, B, steps = s.dd, config.batch_size, config.steps
    metrics, t0 = {}, time.perf_counter()
    bar = progress(range(start, steps), initial=start, total=steps, desc="train",
                   disable=not (config.progress and dd.is_main))
    for step in bar:
        r1_scale = config.r1.decay.scale(step, steps)
        beta = config.entropy.decay.scale(step, steps) * config.entropy.weight
        for _ in range(config.d_steps):
            d_loss = d_step(s, s.real(data, B), s.latents(B), r1_scale * config.r1.weight)
        z = s.latents(B)
        z_h = s.latents(config.entropy.batch) if beta > 0 else None
        g_adv, ent = g_step(s, z, z_h, beta, config.entropy)
        s.update_average(config.ema)
        s.sched_g.step()
        s.sched_d.step()

        done = step + 1
        logged, saved = done % config.log_every == 0, done % config.ckpt_every == 0
        if not (logged or saved or done == steps):
            continue
        values = dd.mean(step_values(config, d_loss, g_adv, ent, r1_scale, beta))
        check_finite(values, ("d_loss", "g_loss"), done)
        if logged or done == steps:
            metrics = {"step": done, **values, "time": round(time.perf_counter() - t0, 3)}
            log.write(metrics)
            bar.set_postfix({name: f"{v:.3f}" for name, v in values.items()})
        if saved or done == steps:
            if dd.is_main:
                save_checkpoint(out / CHECKPOINT, step=done, config=config,
                                modules=s.modules(), optimizers=s.optimizers(),
                                generator=s.rng)
            dd.barrier()
    bar.close()
    return metrics
