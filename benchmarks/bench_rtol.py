"""Accuracy on request, measured: does ``rtol`` deliver what it promises on every zoo
family, and at what cost against the exact mode?

``rtol=r`` promises each sample's log det within ``r`` of the truth at 95% confidence
(:mod:`spectral_backprop.spectral.stochastic`). For each family of
:mod:`spectral_backprop.models.zoo` at latent size k, ``--seeds`` independent problems
(a fresh generator and latents per seed, ``--batch`` samples each) are estimated with
``method="lanczos", rtol=r`` (value only, no graph) and by the exact mode; the truth is
the exact mode on the same map in float64. Reported per family: the share of samples
within ``r`` (the promise: ≥ 95%), how many met the target before ``max_probes``, the
probes and metric products per sample, and seconds against the exact mode's (the same
process, interleaved seed by seed).

``--auto``: ``method="auto"`` with the same ``rtol`` against the faster of exact and
``lanczos`` with that ``rtol``, per family and k (the goal: auto never slower than 1.1×
the faster). Each is timed as the median of three calls on the same generator and
shape, after a first that warms torch up and lets auto measure its unit costs (its
first-call overhead is reported beside it); for auto, after three more calls, which
are a near-tie's timed trials where there is one (``registry.AUTO_NEAR_TIE``).

``--predict``: no timing; the probes ``rtol`` needs with each probe kind, from the dense
metric of each seed's samples (:func:`predict_family`).

Usage::

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_rtol.py --k 256 --seeds 10 \\
        --out docs/bench_rtol.md
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_rtol.py --predict --seeds 3 \\
        --out docs/bench_rtol_predict.md
    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_rtol.py --auto --rtol 0.1 \\
        --dtype float32 --ks 64 256 1024 --seeds 1 --out docs/bench_auto.md
"""

from __future__ import annotations

import argparse
import statistics
import sys
import warnings
from functools import partial
from pathlib import Path

import torch

from bench_peers import DTYPES, achieved_rel_error, make_problem, run_exact, run_ours_rtol
from bench_stochastic import timed
from bench_variance import log_metric, rademacher_variance
from spectral_backprop.linalg.jacobian import jacobian
from spectral_backprop.linalg.probes import PROBE_KINDS, probe_population, probes_to_match
from spectral_backprop.models.zoo import ZOO_FAMILIES
from spectral_backprop.spectral import spectral_sum
from spectral_backprop.spectral.diagnostics import AccuracyNotMetWarning
from spectral_backprop.spectral.registry import AUTO_TRIALS
from spectral_backprop.spectral.stochastic import DEFAULT_PROBES, RTOL_Z


def bench_family(family: str, args) -> dict:
    within, met, probes, products, t_ours, t_exact = [], [], [], [], [], []
    for seed in range(args.seeds):
        prob = make_problem(family, args.k, DTYPES[args.dtype], args.batch, seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AccuracyNotMetWarning)  # met says it
            seconds, ours = timed(partial(run_ours_rtol, prob, args.rtol, seed, False,
                                          probes=args.probes))
        exact_seconds, _ = timed(partial(run_exact, prob, 0, seed, False))
        rel = achieved_rel_error(ours, prob).tolist()
        within += [e <= args.rtol for e in rel]
        met.append(ours.extra["met"])
        probes.append(ours.extra["num_probes"])
        products.append(ours.products)
        t_ours.append(seconds)
        t_exact.append(exact_seconds)
        print(f"  {family} seed {seed}: worst error {max(rel):.4f}, {ours.extra['num_probes']} "
              f"probes, {seconds:.2f} s (exact {exact_seconds:.2f} s)", file=sys.stderr,
              flush=True)
    return {"family": family, "within": sum(within) / len(within), "samples": len(within),
            "met": sum(met) / len(met), "probes": statistics.median(probes),
            "products": statistics.median(products),
            "seconds": statistics.median(t_ours), "exact_seconds": statistics.median(t_exact)}


def markdown(rows: list[dict], args) -> str:
    lines = [f"`rtol={args.rtol}` at k = {args.k}, {args.dtype}, `probes=\"{args.probes}\"`, "
             f"{args.seeds} seeds × batch {args.batch}, torch threads "
             f"{torch.get_num_threads()}; medians over seeds.", "",
             "| family | within rtol (samples) | met before max_probes | probes | products "
             "per sample | seconds | exact seconds | time vs exact |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['family']} | {r['within']:.0%} ({r['samples']}) | {r['met']:.0%} | "
                     f"{r['probes']:.0f} | {r['products']:.0f} | {r['seconds']:.2f} | "
                     f"{r['exact_seconds']:.2f} | {r['seconds'] / r['exact_seconds']:.1f}× |")
    return "\n".join(lines) + "\n"


def predict_family(family: str, args) -> dict:
    """Probes ``rtol`` needs per sample, predicted from the dense metric: i.i.d.
    Rademacher ``p_iid = (z σ/(rtol |S|))²`` with ``σ² = 2Σ_{i≠j}A_ij²``, ``A = log M``;
    Hadamard ``1/(1/p_iid + 1/K)``; orthogonal likewise with its own σ²,
    ``2k/(k+2)(‖A‖_F² − tr(A)²/k)`` (:mod:`spectral_backprop.linalg.probes`)."""
    rows = []
    for seed in range(args.seeds):
        prob = make_problem(family, args.k, torch.float64, args.batch, seed, truth=False)
        with torch.no_grad():
            J = jacobian(prob.G, prob.z)
        lam, _, A = log_metric(J.mT @ J)
        S, k = lam.log().sum(-1), args.k
        rad = rademacher_variance(A)
        orth = 2 * k / (k + 2) * (A.pow(2).sum((-2, -1)) - S**2 / k)
        iid, iid_orth = ((RTOL_Z * var.sqrt() / (args.rtol * S.abs())) ** 2 for var in (rad, orth))
        for b in range(args.batch):
            rows.append((S[b], rad[b].sqrt(), orth[b].sqrt(), iid[b],
                         probes_to_match(float(iid[b]), probe_population("hadamard", k)),
                         probes_to_match(float(iid_orth[b]), k)))
    cols = list(zip(*[[float(x) for x in r] for r in rows], strict=True))
    span = lambda c: f"{min(c):.3g} to {max(c):.3g}"  # noqa: E731
    return {"family": family, **dict(zip(("logdet", "sd_rad", "sd_orth", "p_iid", "p_hadamard",
                                          "p_orth"), map(span, cols), strict=True))}


def predict_markdown(rows: list[dict], args) -> str:
    lines = [f"Probes per sample that `rtol={args.rtol}` needs, predicted from the dense "
             f"metric (k = {args.k}, {args.seeds} seeds × batch {args.batch}, float64; "
             "ranges over samples).", "",
             "| family | log det | σ per probe, Rademacher | σ, orthogonal | i.i.d. Rademacher "
             "| Hadamard | orthogonal |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['family']} | {r['logdet']} | {r['sd_rad']} | {r['sd_orth']} | "
              f"{r['p_iid']} | {r['p_hadamard']} | {r['p_orth']} |" for r in rows]
    return "\n".join(lines) + "\n"


def _auto_seconds(prob, method: str, rtol: float, seed: int, repeats: int = 3,
                  settle: int = 0) -> tuple[float, float, str]:
    """(first call, median of the last ``repeats`` calls) seconds of ``method`` with
    ``rtol`` (none for exact) on ``prob``, value only, and the path the last call took;
    ``settle`` calls between them are left out (auto's timed trials of a near-tie)."""
    times, path = [], method
    for _ in range(1 + settle + repeats):
        options = {} if method == "exact" else {
            "rtol": rtol, "generator": torch.Generator().manual_seed(seed)}
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", AccuracyNotMetWarning)
            seconds, est = timed(partial(spectral_sum, prob.G, prob.z, "logdet",
                                                 method=method, return_info=True, **options))
        times.append(seconds)
        path = est.info["method"]
    return times[0], statistics.median(times[1 + settle:]), path


def bench_auto(family: str, k: int, args) -> dict:
    rows = {"exact": [], "lanczos": [], "auto": [], "auto_first": [], "path": []}
    for seed in range(args.seeds):
        prob = make_problem(family, k, DTYPES[args.dtype], args.batch, seed, truth=False)
        for method in ("exact", "lanczos", "auto"):
            # auto: its first call and up to three more may be a near-tie's timed trials
            # (2 per path, alternating); the steady state is timed after them.
            settle = 2 * AUTO_TRIALS - 1 if method == "auto" else 0
            first, second, path = _auto_seconds(prob, method, args.rtol, seed, settle=settle)
            rows[method].append(second)
            if method == "auto":
                rows["auto_first"].append(first)
                rows["path"].append(path)
        print(f"  {family} k={k} seed {seed}: exact {rows['exact'][-1]:.2f} s, lanczos "
              f"{rows['lanczos'][-1]:.2f} s, auto ({rows['path'][-1]}) {rows['auto'][-1]:.2f} s",
              file=sys.stderr, flush=True)
    med = {m: statistics.median(v) for m, v in rows.items() if m != "path"}
    return {"family": family, "k": k, **med, "paths": sorted(set(rows["path"])),
            "ratio": max(a / min(e, s) for a, e, s in zip(rows["auto"], rows["exact"],
                                                            rows["lanczos"], strict=True))}


def auto_markdown(rows: list[dict], args) -> str:
    lines = [f"`method=\"auto\", rtol={args.rtol}` against the faster of exact and "
             f"`lanczos, rtol={args.rtol}` ({args.dtype}, {args.seeds} seeds × batch "
             f"{args.batch}, torch threads {torch.get_num_threads()}; seconds: median of 3 "
             "calls after a first — for auto, after its first and three more calls, which "
             "settle a near-tie by timed trials; the ratio is the worst seed's).", "",
             "| family | k | exact s | lanczos s | auto s | auto chose | auto ÷ faster "
             "(worst seed) | auto's first call s |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['family']} | {r['k']} | {r['exact']:.2f} | {r['lanczos']:.2f} | "
                     f"{r['auto']:.2f} | {', '.join(r['paths'])} | {r['ratio']:.2f} | "
                     f"{r['auto_first']:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--k", type=int, default=256)
    p.add_argument("--rtol", type=float, default=0.01)
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--dtype", choices=tuple(DTYPES), default="float64")
    p.add_argument("--families", nargs="*", default=list(ZOO_FAMILIES))
    p.add_argument("--probes", choices=PROBE_KINDS, default=DEFAULT_PROBES,
                   help="probe kind of the rtol runs (default: the library's)")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--auto", action="store_true", help="auto against exact and lanczos")
    p.add_argument("--ks", type=int, nargs="*", default=[64, 256, 1024])
    p.add_argument("--predict", action="store_true",
                   help="the probes each kind needs, from the dense metric (no timing)")
    args = p.parse_args(argv)
    if args.predict:
        text = predict_markdown([predict_family(f, args) for f in args.families], args)
    elif args.auto:
        text = auto_markdown([bench_auto(f, k, args) for k in args.ks
                              for f in args.families], args)
    else:
        text = markdown([bench_family(f, args) for f in args.families], args)
    report(text, args.out)


def report(text: str, out: Path | None) -> None:
    """Print the markdown report, and write it to ``out`` when given."""
    print(text)
    if out is not None:
        out.write_text(text)


if __name__ == "__main__":
    main()
