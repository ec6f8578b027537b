"""Maximum implicit likelihood on data of known density: every estimator of the log det
gradient under the same architecture, seeds and step budget, compared at equal
wall-clock time.

Data: von Mises on the circle, the sine curve, the projected normal on S²
(:mod:`spectral_backprop.data.manifolds`), each natively (n = 2, 2, 3) and embedded
isometrically in R^100. Estimators: ours ``exact`` and ``lanczos`` (spectral
backpropagation), and the baselines of ``benchmarks/manifold_estimators.py``
(``rnf_exact``, ``rnf_hutchinson``, ``fif``, ``no_volume``).

Writes into ``--out`` (default ``docs/figures``): ``manifold_results.json`` (every run's
curve and final figures), ``manifold_table.md`` (the table of docs/manifold.md) and
``manifold_kl_<data>.png`` (``kl`` against training seconds, one curve per estimator,
mean over seeds). ``--tune`` instead runs the sweep behind the trainer's defaults (β,
warm-up) and prints its table.

Usage::

    OMP_NUM_THREADS=1 .venv/bin/python experiments/manifold_known_densities.py \
        --steps 3000 --seeds 3 --workers 2
    OMP_NUM_THREADS=1 .venv/bin/python experiments/manifold_known_densities.py --tune
    OMP_NUM_THREADS=1 .venv/bin/python experiments/manifold_known_densities.py \
        --step-times --data sine sphere --estimators exact exact_half rnf_exact fif
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from spectral_backprop import stats
from spectral_backprop.train.manifold import ManifoldConfig

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

ESTIMATORS = ("exact", "exact_half", "lanczos", "rnf_exact", "rnf_hutchinson", "fif",
              "no_volume")
# Variants of the library's estimators: (method, ManifoldConfig overrides). "exact_half"
# computes the exact log det at half of each batch's points (``volume_points``: an
# unbiased estimate of the batch's volume term at half its cost).
VARIANTS = {"exact_half": ("exact", {"volume_points": ManifoldConfig.batch_size // 2})}
DATA = (("circle", None), ("sine", None), ("sphere", None), ("circle", 100), ("sine", 100),
        ("sphere", 100))
# The success criterion: |kl| <= 0.05 nats with a median distance <= 0.02.
KL_TOL, DIST_TOL = 0.05, 0.02
# Per-estimator options: the stochastic ones at their papers' / library's defaults.
OPTIONS = {"lanczos": {"num_probes": 1}, "rnf_hutchinson": {"num_probes": 1}}


def one_run(job: dict) -> dict:
    """Train one (data, estimator, seed) and return its curve and final figures."""
    import warnings

    import torch

    torch.set_num_threads(1)
    import manifold_estimators
    from spectral_backprop.train.manifold import ManifoldConfig, train_manifold
    from spectral_backprop.train.run import TrainingError

    warnings.simplefilter("ignore")  # singular metrics are counted in the results instead

    manifold_estimators.register()
    options = {"ambient_dim": job["ambient_dim"]} if job["ambient_dim"] else {}
    method, overrides = VARIANTS.get(job["method"], (job["method"], {}))
    config = ManifoldConfig(dataset=job["data"], data_options=options, method=method,
                            method_options=OPTIONS.get(method, {}),
                            steps=job["steps"], eval_every=job["eval_every"],
                            eval_samples=1000, seed=job["seed"], progress=False,
                            device="cpu", **overrides, **job.get("overrides", {}))
    with tempfile.TemporaryDirectory() as tmp:
        try:
            final = train_manifold(config, tmp).metrics
        except TrainingError as err:  # the loss went to -inf: a collapsed metric
            final = {"kl": math.nan, "manifold_distance": math.nan, "diverged": str(err),
                     "seconds_per_step": math.nan}
        lines = (Path(tmp) / "metrics.jsonl").read_text().splitlines()
    curve = [json.loads(line) for line in lines]
    curve = [{k: r[k] for k in ("step", "train_time", "kl", "manifold_distance")}
             for r in curve if "kl" in r]
    return {**job, "curve": curve, "final": final}


def time_to_reach(curve: list[dict], key: str = "train_time") -> float | None:
    """Training seconds (or, with ``key="step"``, steps) of the first evaluation meeting
    both tolerances (None: never)."""
    for r in curve:
        if abs(r["kl"]) <= KL_TOL and r["manifold_distance"] <= DIST_TOL:
            return r[key]
    return None


def run_all(jobs: list[dict], workers: int) -> list[dict]:
    if workers <= 1:
        return [one_run(j) for j in jobs]
    with ProcessPoolExecutor(workers) as pool:
        return list(pool.map(one_run, jobs))


def label(data: str, ambient: int | None) -> str:
    return data if ambient is None else f"{data}{ambient}"


def mean_se(values: list[float], digits: int = 3) -> str:
    """``mean ± se`` of the finite values (:func:`spectral_backprop.stats.mean_se`), the
    mean alone for one value, ``–`` for none."""
    m = stats.mean_se(x for x in values if x is not None)
    if math.isnan(m["mean"]):
        return "–"
    if math.isnan(m["se"]):
        return f"{m['mean']:.{digits}f}"
    return f"{m['mean']:.{digits}f} ± {m['se']:.{digits}f}"


def table(runs: list[dict]) -> str:
    rows = ["| data | estimator | kl (nats) | median distance | s / step | reached "
            "(seeds) | seconds to reach | steps to reach |", "|---|---|---|---|---|---|---|---|"]
    for data, ambient in DATA:
        for method in ESTIMATORS:
            sel = [r for r in runs if (r["data"], r["ambient_dim"], r["method"])
                   == (data, ambient, method)]
            if not sel:
                continue
            hit = [t for t in (time_to_reach(r["curve"]) for r in sel) if t is not None]
            steps = [time_to_reach(r["curve"], "step") for r in sel]
            rows.append(
                f"| {label(data, ambient)} | {method} | "
                f"{mean_se([r['final']['kl'] for r in sel])} | "
                f"{mean_se([r['final']['manifold_distance'] for r in sel])} | "
                f"{np.mean([r['final']['seconds_per_step'] for r in sel]) * 1e3:.1f} ms | "
                f"{len(hit)}/{len(sel)} | {mean_se(hit, 2)} | {mean_se(steps, 0)} |")
    return "\n".join(rows) + "\n"


def at_time(curve: list[dict], seconds: float) -> dict | None:
    """The last evaluation of ``curve`` within ``seconds`` of training (None: none)."""
    within = [r for r in curve if r["train_time"] <= seconds]
    return within[-1] if within else None


def equal_time_table(runs: list[dict]) -> str:
    """``kl`` and median distance of each estimator at the same training seconds ``T``:
    per data set, ``T`` is the smallest total training time of any estimator's run
    (every estimator has had at least ``T`` seconds; the faster ones took more steps).
    A run read at ``T`` before its end has not finished its cosine decay."""
    rows = ["| data | T (s) | estimator | steps done by T (mean) | kl at T | median distance "
            "at T |", "|---|---|---|---|---|---|"]
    for data, ambient in DATA:
        sel = [r for r in runs if (r["data"], r["ambient_dim"]) == (data, ambient)
               and r["curve"]]
        if not sel:
            continue
        T = min(r["curve"][-1]["train_time"] for r in sel)
        for method in ESTIMATORS:
            picks = [at_time(r["curve"], T) for r in sel if r["method"] == method]
            picks = [q for q in picks if q is not None]
            if not picks:
                continue
            rows.append(f"| {label(data, ambient)} | {T:.0f} | {method} | "
                        f"{np.mean([q['step'] for q in picks]):.0f} | "
                        f"{mean_se([q['kl'] for q in picks])} | "
                        f"{mean_se([q['manifold_distance'] for q in picks])} |")
    return "\n".join(rows) + "\n"


def plot(runs: list[dict], out: Path) -> list[Path]:
    from spectral_backprop.pictures import pyplot, save_figure

    plt = pyplot()
    paths = []
    for data, ambient in DATA:
        if not any((r["data"], r["ambient_dim"]) == (data, ambient) for r in runs):
            continue
        fig, ax = plt.subplots(figsize=(5, 3.4))
        for method in ESTIMATORS:
            sel = [r for r in runs if (r["data"], r["ambient_dim"], r["method"])
                   == (data, ambient, method)]
            if not sel:
                continue
            n = min(len(r["curve"]) for r in sel)  # a diverged run stops early
            t = np.mean([[p["train_time"] for p in r["curve"][:n]] for r in sel], 0)
            kl = np.mean([[p["kl"] for p in r["curve"][:n]] for r in sel], 0)
            ax.plot(t, kl, marker=".", label=method)
        ax.axhspan(-KL_TOL, KL_TOL, color="grey", alpha=0.2, lw=0)
        ax.set_yscale("symlog", linthresh=0.05)
        ax.set_xlabel("training seconds (1 CPU thread)")
        ax.set_ylabel("test NLL − entropy (nats)")
        ax.set_title(f"{label(data, ambient)}: mean over seeds", fontsize=9)
        ax.legend(fontsize=7)
        paths.append(save_figure(fig, out / f"manifold_kl_{label(data, ambient)}.png"))
    return paths


def step_times(args, rounds: int = 7, steps: int = 100) -> None:
    """Median seconds of one training step at full likelihood weight (batch 256, one
    thread), each estimator's model stepping in turn, ``rounds`` × ``steps`` each."""
    import statistics
    import time
    import warnings

    import torch

    import manifold_estimators
    from spectral_backprop.train.distributed import setup_distributed
    from spectral_backprop.train.manifold import (
        ManifoldConfig,
        _build_state,
        _train_step,
        load_manifold_data,
    )

    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    manifold_estimators.register()
    print("| data | estimator | ms per step (median) |\n|---|---|---|")
    for data_name, ambient in [d for d in DATA if args.data is None or label(*d) in args.data]:
        options = {"ambient_dim": ambient} if ambient else {}
        data, dd = load_manifold_data(data_name, options), setup_distributed("cpu")
        runs = {}
        for name in args.estimators:
            method, overrides = VARIANTS.get(name, (name, {}))
            config = ManifoldConfig(dataset=data_name, data_options=options, method=method,
                                    method_options=OPTIONS.get(method, {}), device="cpu",
                                    progress=False, **overrides)
            runs[name] = (config, _build_state(config, data, dd), [])
        for _ in range(rounds):
            for config, state, times in runs.values():
                for i in range(steps + 10):  # 10 steps of warm-up, untimed
                    if i == 10:
                        start = time.perf_counter()
                    _train_step(state, config, data.batch(config.batch_size, state.rng), 1.0)
                times.append((time.perf_counter() - start) / steps)
        for name, (_, _, times) in runs.items():
            print(f"| {label(data_name, ambient)} | {name} | "
                  f"{statistics.median(times) * 1e3:.2f} |", flush=True)


def tune(args) -> None:
    jobs = [{"data": d, "ambient_dim": None, "method": "exact", "seed": 0,
             "steps": args.steps, "eval_every": args.steps,
             "overrides": {"beta": b, "warmup": w, "ramp": w}}
            for d in ("circle", "sphere") for b in (10.0, 100.0, 1000.0) for w in (0.0, 0.1)]
    print("| data | beta | warmup = ramp | kl | median distance |\n|---|---|---|---|---|")
    for r in run_all(jobs, args.workers):
        o = r["overrides"]
        note = " (diverged: loss -inf)" if "diverged" in r["final"] else ""
        print(f"| {r['data']} | {o['beta']:g} | {o['warmup']:g} | {r['final']['kl']:.3f} | "
              f"{r['final']['manifold_distance']:.4f}{note} |", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--eval-every", type=int, default=250)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--data", nargs="*", default=None, help="e.g. circle sine100")
    p.add_argument("--estimators", nargs="*", default=list(ESTIMATORS))
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "figures")
    p.add_argument("--tune", action="store_true")
    p.add_argument("--step-times", action="store_true",
                   help="time one training step of each estimator instead of training")
    p.add_argument("--replot", action="store_true",
                   help="redraw the table and figures from OUT/manifold_results.json")
    args = p.parse_args()
    if args.tune:
        return tune(args)
    if args.step_times:
        return step_times(args)
    if args.replot:
        runs = json.loads((args.out / "manifold_results.json").read_text())
        print(table(runs))
        print(equal_time_table(runs))
        for path in plot(runs, args.out):
            print("wrote", path)
        return None
    data = [d for d in DATA if args.data is None or label(*d) in args.data]
    jobs = [{"data": d, "ambient_dim": a, "method": m, "seed": s, "steps": args.steps,
             "eval_every": args.eval_every}
            for d, a in data for m in args.estimators for s in range(args.seeds)]
    runs = run_all(jobs, args.workers)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "manifold_results.json").write_text(json.dumps(runs, indent=1) + "\n")
    text = table(runs) + "\n" + equal_time_table(runs)
    (args.out / "manifold_table.md").write_text(text)
    print(text)
    for path in plot(runs, args.out):
        print("wrote", path)


if __name__ == "__main__":
    main()
