"""Training a generator and an encoder by maximum implicit likelihood on data.

Per step, on a batch ``x`` (:func:`spectral_backprop.manifold.manifold_loss`):

    L = w_t · mean[−log p_Z(E(x)) + ½ log det JᵀJ] + β · mean ‖x − G(E(x))‖²

with the likelihood weight ``w_t`` off during a reconstruction warm-up, then ramped
linearly to 1. Why: at initialisation the manifold is far from the data, and the
likelihood term alone pays for shrinking the manifold (a smaller manifold has a higher
density); rectangular flows (Caterini et al. 2021, arXiv 2106.01413, their
"likelihood warm-up") and M-flows (Brehmer & Cranmer 2020, arXiv 2003.13913, manifold
phase then density phase) both fit the manifold first. ``β`` sets the trade: shrinking a
manifold of curvature radius r by δ gains about ``k δ / r`` nats and costs ``β δ²``, so the
optimum is off the data by ``δ ≈ k / (2 β r)``; the default β = 100 leaves δ ≈ 0.005 on the
unit circle. (Defaults measured with ``experiments/manifold_known_densities.py --tune``;
see docs/manifold.md.)

Evaluation (:func:`evaluate_manifold`, exact log det in float64, on the held-out set):

* ``test_nll``: mean of ``−log p_Z(E(x)) + ½ log det JᵀJ`` (nats w.r.t. k-volume);
* ``kl = test_nll − entropy`` where the data's entropy is known (a KL divergence when
  the learned manifold is the data's; a manifold shrunk off the data can make it < 0);
* ``manifold_distance``: the median over test points of ``‖x − G(E(x))‖`` (data units),
  with its mean and 90th percentile.

The loop has what :func:`~spectral_backprop.train.gan.train_gan` has: JSON-lines metrics,
atomic checkpoints with bit-identical resume, one seeded run generator for every batch
and probe, progress output, data-parallel gradients over ``torch.distributed``.
"""

from __future__ import annotations

import resource
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor

from spectral_backprop.data import Dataset, load_dataset
from spectral_backprop.data.manifolds import ManifoldDataset, split
from spectral_backprop.manifold import manifold_loss, manifold_terms
from spectral_backprop.models.encoders import MANIFOLD_ARCHITECTURES, build_manifold_pair
from spectral_backprop.models.mlp import ACTIVATIONS
from spectral_backprop.progress import progress
from spectral_backprop.runfiles import CHECKPOINT, EVAL, METRICS, write_json
from spectral_backprop.train.checkpoint import save_checkpoint
from spectral_backprop.train.common import (
    estimator_options,
    in_dtype,
    make_schedule,
    probe_estimator,
    restore_run,
)
from spectral_backprop.train.config import ConfigError, _Config, check_estimator
from spectral_backprop.train.distributed import Distributed, setup_distributed
from spectral_backprop.train.run import MetricsLog, check_finite, open_run_dir

__all__ = ["ManifoldConfig", "ManifoldResult", "evaluate_manifold", "likelihood_weight",
           "load_manifold_data", "train_manifold"]


@dataclass
class ManifoldConfig(_Config):
    """Maximum implicit likelihood of a generator ``G`` and an encoder ``E`` on data
    (:mod:`spectral_backprop.train.manifold`).

    Attributes:
        dataset: ``circle``, ``sine``, ``sphere``, ``mnist_manifold``, ``npy`` (option
            ``path``) or any name of :func:`~spectral_backprop.data.load_dataset` (then
            10% is held out by seed 0).
        data_options: options for the loader (``ambient_dim``, ``num_samples``, ``path``, ...).
        latent_dim: k; ``None`` takes the data's intrinsic dimension (20 for images).
        arch: ``mlp``, ``conv`` (images) or ``auto``.
        width: hidden width (MLP) or base channels (conv); ``None``: the default.
        depth: hidden layers of both MLPs; ``None``: 3.
        activation: hidden activation of the MLPs and the encoder.
        method: the log det estimator: ``exact``, ``lanczos``, ``chebyshev`` or ``auto``.
        method_options: options for that estimator (``num_probes``, ``chunk_size``, ...).
        dtype: precision of the loss during training, ``float64`` or ``float32``. In
            float32 a metric with ``λ_min < k·eps·λ_max`` (condition number above ~4·10⁶,
            common where an untrained generator folds) counts as singular and its sample
            drops out of the gradient; float64 costs little for small k.
        beta: β, weight of the squared reconstruction distance.
        volume_points: points of each batch at which the log det is computed (``None``:
            all); an unbiased estimate of the batch's volume term at a fraction of its
            cost (:func:`~spectral_backprop.manifold.manifold_loss`).
        warmup: fraction of the steps trained on reconstruction only.
        ramp: fraction of the steps over which the likelihood weight then rises to 1.
        steps: Adam steps.
        batch_size: global batch (split over processes in data-parallel runs).
        lr: Adam learning rate (of both networks).
        lr_schedule: ``constant`` or ``cosine`` (decay to 0 over ``steps``).
        eval_every: steps between two evaluations on the held-out set (0: at the end only).
        eval_samples: held-out points used by each evaluation (at most the held-out set).
        seed: seeds model initialisation and every random draw of the run.
        log_every: steps between two records of ``metrics.jsonl``.
        ckpt_every: steps between two checkpoints.
        device: ``auto`` (CUDA when available), ``cpu`` or ``cuda``.
        progress: show a progress bar.
    """

    CHOICES: ClassVar[dict[str, Any]] = {
        "arch": MANIFOLD_ARCHITECTURES, "activation": tuple(ACTIVATIONS),
        "dtype": ("float32", "float64"),
        "lr_schedule": ("constant", "cosine"), "device": ("auto", "cpu", "cuda")}
    RESUMABLE: ClassVar[frozenset[str]] = _Config.RESUMABLE | {"eval_every"}

    dataset: str = "circle"
    data_options: dict[str, Any] = field(default_factory=dict)
    latent_dim: int | None = None
    arch: str = "auto"
    width: int | None = None
    depth: int | None = None
    activation: str = "silu"
    method: str = "exact"
    method_options: dict[str, Any] = field(default_factory=dict)
    dtype: str = "float64"
    beta: float = 100.0
    volume_points: int | None = None
    warmup: float = 0.1
    ramp: float = 0.1
    steps: int = 3000
    batch_size: int = 256
    lr: float = 1e-3
    lr_schedule: str = "cosine"
    eval_every: int = 500
    eval_samples: int = 2000
    seed: int = 0
    log_every: int = 50
    ckpt_every: int = 500
    device: str = "auto"
    progress: bool = True

    def resumable(self) -> frozenset[str]:
        # The warm-up, the ramp and a cosine learning rate are fractions of ``steps``.
        return self.RESUMABLE - {"steps"}

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check_positive("steps", "batch_size", "lr", "log_every", "ckpt_every",
                             "eval_samples")
        self._check_non_negative("beta", "warmup", "ramp", "eval_every")
        if self.volume_points is not None and not 1 <= self.volume_points <= self.batch_size:
            raise ConfigError("volume_points", f"must be in [1, batch_size = "
                                               f"{self.batch_size}], got {self.volume_points}")
        if self.latent_dim is not None and self.latent_dim < 1:
            raise ConfigError("latent_dim", f"must be positive, got {self.latent_dim}")
        check_estimator(self.method, self.method_options, "method_options")
        if self.warmup + self.ramp >= 1:
            raise ConfigError("warmup", f"+ ramp must be < 1 (some steps at full likelihood "
                                        f"weight), got {self.warmup} + {self.ramp}")
        if self.beta == 0 and self.warmup > 0:
            raise ConfigError("beta", "is 0, so the warm-up would train nothing")


def likelihood_weight(step: int, steps: int, warmup: float, ramp: float) -> float:
    """``w_t``: 0 for ``t/steps < warmup``, then linear to 1 over ``ramp``, then 1.

    Example:
        >>> [round(likelihood_weight(t, 100, 0.2, 0.1), 6) for t in (0, 19, 20, 25, 30, 99)]
        [0.0, 0.0, 0.0, 0.5, 1.0, 1.0]
    """
    u = step / steps
    if u < warmup:
        return 0.0
    if ramp == 0:
        return 1.0
    return min(1.0, (u - warmup) / ramp)


def load_manifold_data(name: str, options: dict[str, Any] | None = None) -> ManifoldDataset:
    """A :class:`~spectral_backprop.data.manifolds.ManifoldDataset` by name, loaded (and
    checked) by :func:`~spectral_backprop.data.load_dataset`: the manifold sets as they
    are, any other data set with 10% held out (seed 0)."""
    return as_manifold_data(load_dataset(name, **(options or {})))


def as_manifold_data(data: Dataset) -> ManifoldDataset:
    """``data`` itself when it has a held-out set, else 10% of it held out (seed 0)."""
    if isinstance(data, ManifoldDataset) and data.test is not None:
        return data
    train, test = split(data.x, 0.1, seed=0)
    return ManifoldDataset(data.name, train, test=test, meta=dict(data.meta))


def _latent_dim(config: ManifoldConfig, data: ManifoldDataset) -> int:
    if config.latent_dim is not None:
        return config.latent_dim
    if data.intrinsic_dim is not None:
        return data.intrinsic_dim
    if data.is_image:
        return 20  # the MNIST latent size of rectangular flows (Caterini et al. 2021)
    raise ValueError(f"data set {data.name!r} has no known intrinsic dimension: set "
                     "latent_dim (--latent-dim K)")


@dataclass
class ManifoldResult:
    """What :func:`train_manifold` leaves behind (networks in eval mode)."""

    generator: torch.nn.Module
    encoder: torch.nn.Module
    dataset: ManifoldDataset
    latent_dim: int
    metrics: dict
    out_dir: Path


@dataclass
class _State:
    G: torch.nn.Module
    E: torch.nn.Module
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LRScheduler
    rng: torch.Generator
    latent_dim: int
    dd: Distributed
    train_time: float = 0.0

    def modules(self) -> dict[str, torch.nn.Module]:
        return {"G": self.G, "E": self.E}

    def optimizers(self) -> dict:
        return {"opt": self.opt, "sched": self.sched}

    def parameters(self) -> list[torch.nn.Parameter]:
        return [*self.G.parameters(), *self.E.parameters()]


def _build_state(config: ManifoldConfig, data: ManifoldDataset, dd: Distributed) -> _State:
    torch.manual_seed(config.seed)
    k = _latent_dim(config, data)
    G, E = build_manifold_pair(config.arch, data.shape, k, config.width, config.depth,
                               config.activation)
    G, E = G.to(dd.device), E.to(dd.device)
    dd.broadcast_parameters(G)
    dd.broadcast_parameters(E)
    opt = torch.optim.Adam([*G.parameters(), *E.parameters()], lr=config.lr)
    sched = make_schedule(opt, config.lr_schedule, config.steps)
    rng = torch.Generator().manual_seed(config.seed + 1)
    return _State(G, E, opt, sched, rng, k, dd)


def _train_step(s: _State, config: ManifoldConfig, x: Tensor, weight: float
                ) -> dict[str, float]:
    dtype = getattr(torch, config.dtype)
    G, E = in_dtype(s.G, dtype), in_dtype(s.E, dtype)
    # check_method tested this architecture for batch coupling before the first step.
    options = (estimator_options(config.method, config.method_options, s.latent_dim, s.rng,
                                 coupling_checked=True) if weight > 0 else {})
    # Each process's share of the volume points (data-parallel runs split the batch).
    m = (None if config.volume_points is None or weight == 0
         else max(1, config.volume_points * x.shape[0] // config.batch_size))
    loss, terms = manifold_loss(G, E, x.to(dtype), beta=config.beta, likelihood_weight=weight,
                                method=config.method, volume_points=m, **options)
    s.opt.zero_grad(set_to_none=True)
    loss.backward()
    s.dd.average_gradients(s.parameters())
    s.opt.step()
    s.sched.step()
    values = {"loss": loss.item(), "distance": terms.distance.mean().item(),
              "likelihood_weight": weight}
    if weight > 0:
        values["nll"] = terms.nll.nanmean().item()  # the points with a log det
    return values


@torch.no_grad()
def evaluate_manifold(G: torch.nn.Module, E: torch.nn.Module, data: ManifoldDataset,
                      num_samples: int | None = None, chunk: int = 1000) -> dict[str, Any]:
    """Held-out figures of a trained pair (exact log det, float64; see the module docstring).

    Returns ``test_nll`` (with ``test_nll_se``), ``entropy`` and ``kl`` (``None`` when the
    entropy is unknown), ``manifold_distance`` (median), ``distance_mean``,
    ``distance_p90`` and ``num_test``.
    """
    if data.test is None:
        raise ValueError(f"data set {data.name!r} has no held-out set")
    x = data.test[:num_samples] if num_samples else data.test
    device = next(G.parameters()).device
    G64, E64 = in_dtype(G, torch.float64), in_dtype(E, torch.float64)
    nll, dist = [], []
    with torch.enable_grad():  # the exact log det builds its Jacobian with autograd tools
        for xc in x.split(chunk):
            t = manifold_terms(G64, E64, xc.to(device, torch.float64))
            nll.append(t.nll.detach().cpu())
            dist.append(t.distance.detach().cpu())
    nll_t, dist_t = torch.cat(nll), torch.cat(dist)
    test_nll = nll_t.mean().item()
    entropy = data.entropy
    return {"test_nll": test_nll,
            "test_nll_se": (nll_t.std() / len(nll_t) ** 0.5).item() if len(nll_t) > 1 else None,
            "entropy": entropy, "kl": None if entropy is None else test_nll - entropy,
            "manifold_distance": dist_t.median().item(), "distance_mean": dist_t.mean().item(),
            "distance_p90": dist_t.quantile(0.9).item(), "num_test": len(nll_t)}


def check_method(config: ManifoldConfig, data: ManifoldDataset, k: int,
                 device: torch.device | str = "cpu") -> None:
    """Refuse a log det estimator whose options do not work, before training: the loss
    of an untrained pair of ``config`` on two training points
    (:func:`~.common.probe_estimator`).

    Raises:
        ConfigError: the estimator refused its options (names or values).
    """
    device = torch.device(device)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        G, E = build_manifold_pair(config.arch, data.shape, k, config.width, config.depth,
                                   config.activation)
    G, E = G.to(device), E.to(device)
    dtype, rng = getattr(torch, config.dtype), torch.Generator().manual_seed(0)
    x = data.x[:2].to(device, dtype)
    probe_estimator("method_options", config.method, config.method_options, device,
                    lambda options: manifold_terms(
                        in_dtype(G, dtype), in_dtype(E, dtype), x, method=config.method,
                        **estimator_options(config.method, options, k, rng)))


def _start(s: _State, config: ManifoldConfig, out: Path, resume: bool,
           data: ManifoldDataset) -> int | None:
    """Check everything (the estimator, the run folder) and restore the checkpoint when
    resuming, writing nothing; returns the step resumed at (``None``: a new run)."""
    check_method(config, data, s.latent_dim, s.dd.device)
    payload = restore_run(s, config, out, resume,
                          f"data: {data.name} train {tuple(data.x.shape)}, test "
                          f"{tuple(data.test.shape)}, k = {s.latent_dim}, processes = "
                          f"{s.dd.world_size}")
    if payload is None:
        return None
    s.train_time = float(payload["extra"].get("train_time", 0.0))
    return payload["step"]


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return rss / (2**20 if sys.platform == "darwin" else 2**10)


def train_manifold(config: ManifoldConfig, out_dir: str | Path, resume: bool = False,
                   dataset: Dataset | None = None) -> ManifoldResult:
    """Train ``(G, E)`` as configured; write config, metrics, checkpoints and ``eval.json``.

    Deterministic given ``config.seed`` and resumable bit-identically, like
    :func:`~spectral_backprop.train.gan.train_gan`. Evaluations (every ``eval_every``
    steps and at the end) go into ``metrics.jsonl`` with ``train_time``, the seconds spent
    training so far (evaluations excluded, kept across resumes).

    Args:
        config: the run's settings.
        out_dir: run folder (see :mod:`spectral_backprop.train.run`).
        resume: continue from ``out_dir/checkpoint.pt`` if present.
        dataset: use this data instead of loading ``config.dataset`` (a plain
            :class:`~spectral_backprop.data.Dataset` gets 10% held out).
    """
    dd = setup_distributed(config.device)
    out = Path(out_dir)
    data = (as_manifold_data(dataset.check()) if dataset is not None
            else load_manifold_data(config.dataset, config.data_options))
    s = _build_state(config, data, dd)
    resumed = _start(s, config, out, resume, data)
    with open_run_dir(out, config, write=dd.is_main):
        dd.barrier()
        log = MetricsLog(out / METRICS, resume_step=resumed, enabled=dd.is_main)
        final = _train_steps(s, config, data, out, resumed or 0, log)
        return _finish(s, config, data, out, final)


def _evaluate(s: _State, data: ManifoldDataset, num_samples: int | None) -> dict[str, Any]:
    s.G.eval(), s.E.eval()
    figures = evaluate_manifold(s.G, s.E, data, num_samples)
    s.G.train(), s.E.train()
    return figures


def _train_steps(s: _State, config: ManifoldConfig, data: ManifoldDataset, out: Path,
                 start: int, log: MetricsLog) -> dict[str, Any] | None:
    """Steps ``start, ..., config.steps − 1``: train, log, evaluate, checkpoint. Returns
    the last step's evaluation when it covered the whole held-out set, else ``None``."""
    dd, final = s.dd, None
    bar = progress(range(start, config.steps), initial=start, total=config.steps,
                   desc=f"fit {data.name}", disable=not (config.progress and dd.is_main))
    for step in bar:
        t0 = time.perf_counter()
        x = dd.shard(data.batch(config.batch_size, s.rng)).to(dd.device)
        w = likelihood_weight(step, config.steps, config.warmup, config.ramp)
        values = _train_step(s, config, x, w)
        s.train_time += time.perf_counter() - t0
        done, last = step + 1, step + 1 == config.steps
        record: dict[str, Any] = {}
        if done % config.log_every == 0 or done % config.ckpt_every == 0 or last:
            values = dd.mean(values)
            check_finite(values, ("loss",), done)
            record = dict(values)
            bar.set_postfix({n: f"{v:.3f}" for n, v in values.items()})
        if (config.eval_every and done % config.eval_every == 0) or last:
            metrics = _evaluate(s, data, config.eval_samples)
            record |= {k: metrics[k] for k in ("test_nll", "kl", "manifold_distance")}
            if last and config.eval_samples >= len(data.test):
                final = metrics  # the whole held-out set: the final evaluation itself
        if record:
            log.write({"step": done, **record, "train_time": round(s.train_time, 4)})
        if done % config.ckpt_every == 0 or last:
            if dd.is_main:
                save_checkpoint(out / CHECKPOINT, step=done, config=config,
                                modules=s.modules(), optimizers=s.optimizers(),
                                generator=s.rng, extra={"train_time": s.train_time})
            dd.barrier()
    bar.close()
    return final


def _finish(s: _State, config: ManifoldConfig, data: ManifoldDataset, out: Path,
            final: dict[str, Any] | None) -> ManifoldResult:
    """``eval.json``: the evaluation on the whole held-out set (the last step's, when it
    was one)."""
    s.G.eval()
    s.E.eval()
    figures = dict(final) if final is not None else evaluate_manifold(s.G, s.E, data)
    figures |= {"method": config.method, "latent_dim": s.latent_dim,
                "seconds_per_step": s.train_time / config.steps,
                "peak_memory_mb": _peak_memory_mb(s.dd.device), "steps": config.steps}
    if s.dd.is_main:
        write_json(out / EVAL, figures)
    return ManifoldResult(s.G, s.E, data, s.latent_dim, figures, out)


@torch.no_grad()
def save_manifold_pictures(result: ManifoldResult, out: str | Path,
                           num_points: int = 1000) -> list[Path]:
    """Pictures of a trained pair in ``out``: ``density.png`` (the learned log density
    at held-out points against the truth, when the truth is known, and beside the
    points' reconstructions for 2-D or 3-D data) or, for images, ``samples.png`` (samples
    above, held-out digits and their reconstructions below)."""
    from spectral_backprop.pictures import pyplot, save_figure, save_image_grid
    from spectral_backprop.runfiles import DENSITY, SAMPLES

    out, data = Path(out), result.dataset
    G, E = result.generator, result.encoder
    device = next(G.parameters()).device
    x = data.test[:num_points].to(device)
    if data.is_image:
        z = torch.randn(16, result.latent_dim, generator=torch.Generator().manual_seed(0))
        rows = torch.stack([G(z.to(device)), x[:16], G(E(x[:16]))]).cpu()
        return [save_image_grid(rows, out / SAMPLES,
                                row_labels=["samples", "held out", "reconstructed"])]
    with torch.enable_grad():
        terms = manifold_terms(in_dtype(G, torch.float64), in_dtype(E, torch.float64),
                               x.double())
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.6))
    x_hat = terms.x_hat.detach().cpu()
    coords = x.cpu()
    if data.meta.get("ambient_dim", x.shape[1]) != x.shape[1] or x.shape[1] > 3:
        coords, x_hat = coords[:, :2], x_hat[:, :2]  # first two ambient coordinates
    axes[0].scatter(coords[:, 0], coords[:, 1], s=2, alpha=0.3, label="held-out data")
    axes[0].scatter(x_hat[:, 0], x_hat[:, 1], s=2, alpha=0.3, label="G(E(x))")
    axes[0].set_aspect("equal")
    axes[0].legend(fontsize=7, loc="upper right")
    learned = -terms.nll.detach().cpu()
    if data.log_density is not None:
        truth = data.log_density(x.cpu())
        axes[1].scatter(truth, learned, s=2, alpha=0.4)
        lo, hi = float(truth.min()), float(truth.max())
        axes[1].plot([lo, hi], [lo, hi], "k--", lw=0.8)
        axes[1].set_xlabel("true log density on the manifold")
    else:
        axes[1].hist(learned.numpy(), bins=50)
        axes[1].set_xlabel("learned log density")
    axes[1].set_ylabel("learned log density" if data.log_density is not None else "count")
    fig.suptitle(f"{data.name}: test NLL {result.metrics['test_nll']:.3f}, median distance "
                 f"{result.metrics['manifold_distance']:.4f}", fontsize=9)
    return [save_figure(fig, out / DENSITY)]
