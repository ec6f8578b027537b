"""GAN training with an optional entropy term on the generator.

Generator loss (non-saturating, Goodfellow et al. 2014) minus β times the generator's
entropy (Ramesh & LeCun 2018, arXiv 1806.00499, section 4):

    L_D = E_x softplus(−D(x)) + E_z softplus(D(G(z)))
    L_G = E_z softplus(−D(G(z))) − β·H[p_G],   H[p_G] = H[p_Z] + ½ E_z log det JᵀJ

with an optional R1 penalty ``γ/2·E‖∇ₓD(x)‖²`` on real data in ``L_D``, and β and γ
optionally decayed to 0 over training (:func:`regularizer_scale`).

``H`` is estimated on a sub-batch of latents by :func:`spectral_backprop.entropy`
(exact, or a stochastic estimator for large k); its gradient is spectral
backpropagation. The entropy pushes against mode collapse: a generator that maps a
region of latent space onto a point has ``log det JᵀJ → −∞`` there.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from spectral_backprop.data import Dataset, load_dataset
from spectral_backprop.models import build_gan
from spectral_backprop.train.checkpoint import load_checkpoint, save_checkpoint
from spectral_backprop.train.config import GANConfig
from spectral_backprop.train.distributed import setup_distributed
from spectral_backprop.train.run import CHECKPOINT, METRICS, MetricsLog, prepare_run_dir


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


def in_dtype(G: torch.nn.Module, dtype: torch.dtype) -> Callable[[torch.Tensor], torch.Tensor]:
    """``G`` evaluated with its parameters and buffers cast to ``dtype``, differentiably.

    Gradients flow back through the casts into the original (float32) parameters.
    """
    if dtype == next(G.parameters()).dtype:
        return G
    tensors = {n: t.to(dtype) if t.is_floating_point() else t
               for n, t in (*G.named_parameters(), *G.named_buffers())}
    return lambda z: torch.func.functional_call(G, tensors, (z.to(dtype),))


def generator_entropy(G: torch.nn.Module, z: torch.Tensor, config: GANConfig,
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """``H[p_G]`` estimated on latents ``z`` with the configured estimator (differentiable).

    With ``config.entropy_cap = c`` it is the truncated entropy

        H_c = H[p_Z] + E_z min(½ log det JᵀJ, c)  ≤  H[p_G]

    (``entropy(..., cap=c)``), which rewards expanding volume only up to ``exp(c)``. Why:
    a continuous generator of a multi-modal distribution must stretch latent space over
    the gaps between modes (``½ log det JᵀJ`` is largest there), so the plain entropy
    pays the generator to put mass on those bridges. Collapse is the opposite limit,
    ``log det JᵀJ → −∞``, and the truncated term still pushes against it with full force.

    Computed in ``config.entropy_dtype``: a GAN generator squeezes each mode into a
    tiny region, so ``JᵀJ`` becomes ill-conditioned, and in float32 its smallest
    eigenvalue drowns in round-off (``λ_min < k·eps·λ_max``, a condition number of
    ``JᵀJ`` above ~4·10⁶), which makes ``log det`` infinite exactly where the entropy
    term should act. Float64 costs little on the entropy sub-batch.
    """
    from spectral_backprop import entropy

    options = dict(config.entropy_options)
    if config.entropy_method != "exact" and generator is not None:
        options.setdefault("generator", generator)
    dtype = getattr(torch, config.entropy_dtype)
    return entropy(in_dtype(G, dtype), z.to(dtype), method=config.entropy_method,
                   cap=config.entropy_cap, **options).value.float()


def regularizer_scale(step: int, config: GANConfig,
                      window: tuple[float, float] | None = None) -> float:
    """Factor in [0, 1] on a regulariser (β or the R1 γ) at update ``step`` (0-based).

    With ``u = step / steps`` and the decay window ``(s, e)`` (``window``, by default
    ``(reg_decay_start, reg_decay_end)``; β uses ``config.entropy_decay`` when set), the
    factor is 1 for ``u ≤ s``, decays to 0 at ``u = e`` and stays 0 after it::

        linear:  1 − v            cosine:  ½(1 + cos πv),      v = min(1, (u − s)/(e − s))

    (the cosine shape of Loshchilov & Hutter's SGDR, arXiv 1608.03983, without restarts).

    Why decay: both regularisers trade sharpness for coverage. The generator's optimum
    under ``KL(p_G‖p_data) − β′H[p_G]`` is the tempered ``p_data^{1/(1+β′)}``, broader
    than the data, and an R1-smoothed discriminator cannot resolve modes narrower than
    its smoothness. Strong early, they keep mass on every mode while the generator is
    still moving; letting them go to 0 recovers sharp modes at the end. Ending the
    decay before the learning rate has decayed (``e < 1``) leaves a phase of plain GAN
    training in which the generator can still move.
    """
    u = step / config.steps
    s, e = window or (config.reg_decay_start, config.reg_decay_end)
    if config.reg_schedule == "constant" or u <= s:
        return 1.0
    v = min(1.0, (u - s) / (e - s))
    if config.reg_schedule == "linear":
        return 1.0 - v
    return 0.5 * (1.0 + math.cos(math.pi * v))


def r1_penalty(d_real: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """``E‖∇ₓD(x)‖²`` over the real batch (differentiable), for the R1 penalty
    ``γ/2·E‖∇ₓD(x)‖²`` of Mescheder, Geiger & Nowozin 2018 (arXiv 1801.04406).

    Each ``D(x_i)`` depends on ``x_i`` only, so the gradient of the sum gives every
    per-sample input gradient in one backward pass.
    """
    (grad,) = torch.autograd.grad(d_real.sum(), real, create_graph=True)
    return grad.flatten(1).pow(2).sum(1).mean()


def make_schedule(opt: torch.optim.Optimizer, config: GANConfig):
    """The learning-rate schedule of ``config.lr_schedule`` (stepped once per G update)."""
    if config.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=config.steps)
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)


def train_gan(config: GANConfig, out_dir: str | Path, resume: bool = False,
              dataset: Dataset | None = None) -> GANResult:
    """Train a GAN as configured, writing config, metrics and checkpoints to ``out_dir``.

    Deterministic given ``config.seed``: model initialisation uses torch's global
    generator seeded with it, and every batch, latent and probe is drawn from one
    run generator whose state is checkpointed, so an interrupted run resumed with
    ``resume=True`` continues bit-identically.

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
    torch.manual_seed(config.seed)
    G, D, k = build_models(config, data)
    G, D = G.to(dd.device), D.to(dd.device)
    dd.broadcast_parameters(G)
    dd.broadcast_parameters(D)
    opt_g = torch.optim.Adam(G.parameters(), lr=config.lr_g, betas=config.adam_betas)
    opt_d = torch.optim.Adam(D.parameters(), lr=config.lr_d, betas=config.adam_betas)
    scheds = [make_schedule(opt, config) for opt in (opt_g, opt_d)]
    # Batches and latents come from this CPU generator (same stream on every process and
    # device); it is the only randomness after initialisation.
    rng = torch.Generator().manual_seed(config.seed + 1)

    ckpt = prepare_run_dir(out, config, resume, write=dd.is_main)
    dd.barrier()
    start = 0
    modules = {"G": G, "D": D}
    optimizers = {"G": opt_g, "D": opt_d, "sched_G": scheds[0], "sched_D": scheds[1]}
    if ckpt is not None:
        start = load_checkpoint(ckpt, config=config, modules=modules, optimizers=optimizers,
                                generator=rng)["step"]
    log = MetricsLog(out / METRICS, resume_step=start if ckpt else None, enabled=dd.is_main)
    if dd.is_main:
        print(config.describe())
        print(f"data: {data.name} {tuple(data.x.shape)}, k = {k}, processes = {dd.world_size}"
              + (f", resuming at step {start}" if ckpt else ""))

    B = config.batch_size
    metrics: dict = {}
    t0 = time.perf_counter()
    bar = tqdm(range(start, config.steps), initial=start, total=config.steps,
               disable=not (config.progress and dd.is_main), desc="train", dynamic_ncols=True)
    for step in bar:
        scale = regularizer_scale(step, config)
        beta = regularizer_scale(step, config, config.entropy_decay) * config.entropy_weight
        gamma = scale * config.r1_weight
        # Discriminator: real batch vs detached fakes.
        D.requires_grad_(True)
        for _ in range(config.d_steps):
            real = dd.shard(data.batch(B, rng)).to(dd.device)
            z = dd.shard(torch.randn(B, k, generator=rng)).to(dd.device)
            with torch.no_grad():
                fake = G(z)
            if gamma > 0:
                real.requires_grad_(True)
            d_real = D(real)
            d_loss = F.softplus(-d_real).mean() + F.softplus(D(fake)).mean()
            if gamma > 0:
                d_loss = d_loss + gamma / 2 * r1_penalty(d_real, real)
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            dd.average_gradients(D.parameters())
            opt_d.step()

        # Generator: non-saturating loss minus β·H[p_G].
        D.requires_grad_(False)
        z = dd.shard(torch.randn(B, k, generator=rng)).to(dd.device)
        g_adv = F.softplus(-D(G(z))).mean()
        loss = g_adv
        ent = None
        if beta > 0:
            z_h = dd.shard(torch.randn(config.entropy_batch, k, generator=rng)).to(dd.device)
            ent = generator_entropy(G, z_h, config, rng)
            loss = g_adv - beta * ent
        opt_g.zero_grad(set_to_none=True)
        loss.backward()
        dd.average_gradients(G.parameters())
        opt_g.step()
        for sched in scheds:
            sched.step()

        done = step + 1
        if done % config.log_every == 0 or done == config.steps:
            values = {"d_loss": d_loss.item(), "g_loss": g_adv.item()}
            if ent is not None:
                values["entropy"] = ent.item()
            if config.reg_schedule != "constant":
                values["reg_scale"] = scale
            if config.entropy_decay is not None:
                values["beta"] = beta
            metrics = {"step": done, **dd.mean(values),
                       "time": round(time.perf_counter() - t0, 3)}
            log.write(metrics)
            bar.set_postfix({k_: f"{v:.3f}" for k_, v in values.items()})
        if done % config.ckpt_every == 0 or done == config.steps:
            if dd.is_main:
                save_checkpoint(out / CHECKPOINT, step=done, config=config, modules=modules,
                                optimizers=optimizers, generator=rng)
            dd.barrier()
    bar.close()
    G.eval()
    D.eval()
    return GANResult(G, D, data, k, config.steps, metrics, out)
