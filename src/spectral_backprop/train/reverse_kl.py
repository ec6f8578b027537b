"""Fitting a generator to an unnormalised density by reverse KL.

For an injective ``G: R² → R²`` and ``x = G(z)``, ``z ~ N(0, I)``, the implicit
likelihood ``log q(x) = log p_Z(z) − ½ log det JᵀJ`` gives

    KL(q ‖ p̃/Z) = E_z[ log p_Z(z) − ½ log det J(z)ᵀJ(z) − log p̃(G(z)) ] + log Z,

whose gradient needs no Z: the loss is the bracket, with the log det's gradient from
spectral backpropagation (Ramesh & LeCun 2018, arXiv 1806.00499; the objective is that
of Rezende & Mohamed 2015, arXiv 1505.05770). The generator is a
:class:`~spectral_backprop.models.CouplingGenerator`, invertible by construction, but
nothing here uses its analytic log det: the library computes ``log det JᵀJ`` exactly
from forward-mode Jacobians, as it would for any generator.

**Annealing** (optional, ``ReverseKLConfig.anneal_steps > 0``). Reverse KL is
mode-seeking: a generator that starts narrow may never find a far mode. Rezende & Mohamed
(2015, Section 6.1) train on the tempered target ``p̃^β_t`` with

    β_t = min(1, β_0 + t / T)   (they used β_0 = 0.01, T = 10,000),

whose flatter early landscape lets the samples spread over every mode first. The loss
at step t is ``E_z[log p_Z(z) − ½ log det JᵀJ − β_t log p̃(G(z))]``; the reported
figures are always against the untempered target.

Reported after training, on ``eval_samples`` fresh samples:

* ``reverse_kl``: the expectation above with ``log Z`` by quadrature, ± standard error;
* ``ess``: the effective sample size of importance weights ``w = p̃/q`` as a fraction,
  ``(Σw)² / (N Σw²)`` (1 for a perfect fit).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from spectral_backprop.density import implicit_log_prob, seeded_samples
from spectral_backprop.models import CouplingGenerator
from spectral_backprop.pictures import save_density_png
from spectral_backprop.progress import progress
from spectral_backprop.runfiles import CHECKPOINT, DENSITY, EVAL, METRICS, write_json
from spectral_backprop.stats import standard_error
from spectral_backprop.train.checkpoint import restore_checkpoint, save_checkpoint
from spectral_backprop.train.config import ReverseKLConfig
from spectral_backprop.train.run import MetricsLog, check_finite, check_run_dir, open_run_dir
from spectral_backprop.train.targets import BOX, get_target, grid_points, log_normaliser


@dataclass
class ReverseKLResult:
    """The trained generator (eval mode) and its final figures."""

    generator: CouplingGenerator
    metrics: dict
    out_dir: Path


def reverse_kl_terms(G: torch.nn.Module, z: torch.Tensor, log_p,
                     beta: float = 1.0) -> torch.Tensor:
    """Per-sample ``log q(G(z)) − β log p̃(G(z))`` (differentiable)."""
    return implicit_log_prob(G, z) - beta * log_p(G(z))


def anneal_weight(step: int, anneal_steps: int, anneal_start: float = 0.01) -> float:
    """The inverse temperature ``β_t = min(1, β_0 + t / T)`` at (0-based) step ``t``.

    Rezende & Mohamed 2015 (arXiv 1505.05770, Section 6.1). ``T = 0`` disables
    annealing (β = 1 throughout).

    Example:
        >>> [anneal_weight(t, 100, 0.01) for t in (0, 49, 99, 500)]
        [0.01, 0.5, 1.0, 1.0]
    """
    if anneal_steps <= 0:
        return 1.0
    return min(1.0, anneal_start + step / anneal_steps)


@torch.no_grad()
def _sample_terms(G, log_p, num_samples: int, seed: int, chunk: int = 10_000) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(num_samples, G.latent_dim, generator=g).to(next(G.parameters()).device)
    with torch.enable_grad():  # the exact log det builds its Jacobian with autograd tools
        parts = [reverse_kl_terms(G, zc, log_p).detach() for zc in z.split(chunk)]
    return torch.cat(parts).double()


def reverse_kl_figures(terms: torch.Tensor, target: str) -> dict[str, float]:
    """Figures from per-sample ``log q(x) − log p̃(x)`` at samples ``x ~ q`` of any model.

    ``reverse_kl = mean(terms) + log Z`` (± standard error); ``ess = (Σw)²/(N Σw²)``
    with ``log w = −terms``, computed in log space.
    """
    terms = terms.detach().double().cpu()
    n = terms.shape[0]
    log_z = log_normaliser(get_target(target))
    log_w = -terms
    log_ess = 2 * torch.logsumexp(log_w, 0).item() - torch.logsumexp(2 * log_w, 0).item()
    return {
        "reverse_kl": terms.mean().item() + log_z,
        "reverse_kl_se": standard_error(terms).item(),
        "ess": math.exp(log_ess) / n,
        "log_z": log_z,
    }


def evaluate_reverse_kl(G: torch.nn.Module, target: str, num_samples: int = 100_000,
                        seed: int = 0) -> dict[str, float]:
    """Reverse KL (nats, with standard error), effective sample size, and ``log Z``."""
    return reverse_kl_figures(_sample_terms(G, get_target(target), num_samples, seed), target)


def sample_histogram(x: torch.Tensor, resolution: int = 200) -> torch.Tensor:
    """2-D histogram ``[resolution, resolution]`` of samples on ``[−box, box]²``, rows = y."""
    return torch.histogramdd(x.detach().double().cpu(), bins=[resolution, resolution],
                             range=[-BOX, BOX, -BOX, BOX]).hist.T


def target_image(target: str, resolution: int = 200) -> torch.Tensor:
    """``p̃`` on the plotting grid, ``[resolution, resolution]``, rows = y."""
    pts, _ = grid_points(resolution)
    return get_target(target)(pts).exp().reshape(resolution, resolution)


def save_density_plot(G: torch.nn.Module, target: str, path: str | Path, title: str = "",
                      num_samples: int = 200_000, resolution: int = 200, seed: int = 1) -> None:
    """Target density beside a histogram of the generator's samples, on ``[−box, box]²``."""
    x = seeded_samples(G, G.latent_dim, num_samples, seed)
    save_density_png([(f"target {target}", target_image(target, resolution)),
                      ("generator samples", sample_histogram(x, resolution))],
                     (-BOX, BOX, -BOX, BOX), path, title)


def build_generator(config: ReverseKLConfig) -> CouplingGenerator:
    """The untrained :class:`~spectral_backprop.models.CouplingGenerator` of a config."""
    return CouplingGenerator(2, config.num_layers, config.hidden, config.depth,
                             mixing=config.mixing, transform=config.transform,
                             bins=config.bins, bound=config.bound)


def train_reverse_kl(config: ReverseKLConfig, out_dir: str | Path,
                     resume: bool = False) -> ReverseKLResult:
    """Fit a coupling generator to ``config.target``; write metrics, checkpoint, plot.

    Deterministic given ``config.seed`` and bit-identically resumable, like
    :func:`~spectral_backprop.train.gan.train_gan`; like it, checks everything before
    writing anything, holds the folder's lock, and stops with
    :class:`~.run.TrainingError` at a non-finite loss. Writes ``out_dir/eval.json`` (the
    final figures) and ``out_dir/density.png``.
    """
    out = Path(out_dir)
    device = torch.device(config.device)
    torch.manual_seed(config.seed)
    G = build_generator(config).to(device)
    opt = torch.optim.Adam(G.parameters(), lr=config.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=config.steps)
    rng = torch.Generator().manual_seed(config.seed + 1)
    modules, optimizers = {"G": G}, {"opt": opt, "sched": sched}

    payload = check_run_dir(out, config, resume)
    start = 0
    if payload is not None:
        start = restore_checkpoint(payload, modules=modules, optimizers=optimizers,
                                   generator=rng, path=out / CHECKPOINT)
    with open_run_dir(out, config):
        log = MetricsLog(out / METRICS, resume_step=start if payload is not None else None)
        print(config.describe())

        def save(done: int) -> None:
            save_checkpoint(out / CHECKPOINT, step=done, config=config, modules=modules,
                            optimizers=optimizers, generator=rng)

        fit_steps(G, config, opt, sched, rng, start, log, save)
        return finish_run(G, config, out)


def fit_steps(G: CouplingGenerator, config: ReverseKLConfig, opt: torch.optim.Optimizer,
              sched, rng: torch.Generator, start: int, log: MetricsLog,
              save: Callable[[int], None]) -> None:
    """Steps ``start, ..., config.steps − 1`` of a fit; ``save(done)`` checkpoints."""
    log_p = get_target(config.target)
    device = next(G.parameters()).device
    t0 = time.perf_counter()
    bar = progress(range(start, config.steps), initial=start, total=config.steps,
                   desc=f"fit {config.target}", disable=not config.progress)
    for step in bar:
        z = torch.randn(config.batch_size, 2, generator=rng).to(device)
        beta = anneal_weight(step, config.anneal_steps, config.anneal_start)
        loss = reverse_kl_terms(G, z, log_p, beta).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        done = step + 1
        logged, saved = done % config.log_every == 0, done % config.ckpt_every == 0
        if not (logged or saved or done == config.steps):
            continue
        check_finite({"loss": loss.item()}, ("loss",), done)
        if logged or done == config.steps:
            log.write({"step": done, "loss": loss.item(), "beta": beta,
                       "time": round(time.perf_counter() - t0, 3)})
            bar.set_postfix(loss=f"{loss.item():.4f}")
        if saved or done == config.steps:
            save(done)
    bar.close()


def finish_run(G: CouplingGenerator, config: ReverseKLConfig, out: Path) -> ReverseKLResult:
    """Evaluate the trained generator; write ``eval.json`` and ``density.png``."""
    G.eval()
    figures = evaluate_reverse_kl(G, config.target, config.eval_samples, seed=10_000 + config.seed)
    write_json(out / EVAL, figures)
    save_density_plot(G, config.target, out / DENSITY,
                      f"{config.target}: KL {figures['reverse_kl']:.3f} nats, "
                      f"ESS {figures['ess']:.2f}")
    print(json.dumps(figures))
    return ReverseKLResult(G, figures, out)
