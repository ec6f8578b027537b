"""The held-back check of issue 16: ``method="lanczos"`` at its defaults against the exact
mode on a DCGAN-style generator it was not tuned on.

The generator: the zoo's ``dcgan_plain`` (DCGAN-style transposed convolutions, Softplus,
no normalisation, 3×32×32 output) at k = 512, batch 2, float32, two threads. Per seed (a
fresh generator and latents), value and parameter gradient of ``log det JᵀJ`` by both
modes, against the same map in float64 by the exact mode: the gradient's cosine, the
value's relative error, the seconds of value + backward, and the peak memory of each in
a fresh subprocess (high-water RSS above the process's state before the call).

Goals (issue 16): at least 3× less peak memory than exact, gradient cosine ≥ 0.9, value
within 1%; the time is reported.

Usage::

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_heldback.py --seeds 3 \\
        --out docs/bench_heldback.md
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

import torch

from bench_exact import peak_rss, reset_peak_rss
from bench_peers import make_problem
from bench_stochastic import cosine, flat_grad
from spectral_backprop.spectral import spectral_sum

FAMILY, K, BATCH = "dcgan_plain", 512, 2


def estimate(prob, method: str, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Value and flat parameter gradient of the summed log det by ``method``."""
    options = {} if method == "exact" else {"generator": torch.Generator().manual_seed(seed)}
    value = spectral_sum(prob.G, prob.z, "logdet", method=method, **options)
    return value.detach(), flat_grad(value, prob.params)


def memory_child(method: str, seed: int, threads: int) -> None:
    torch.set_num_threads(threads)
    warnings.simplefilter("ignore")
    prob = make_problem(FAMILY, K, torch.float32, BATCH, seed, truth=False)
    base = reset_peak_rss()
    estimate(prob, method, seed)
    print(json.dumps({"peak_mib": (peak_rss() - base) / 2**20}))


def peak_memory(method: str, seed: int, threads: int) -> float:
    cmd = [sys.executable, __file__, "--memory-child", method, str(seed),
           "--threads", str(threads)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True,
                         env=dict(os.environ, OMP_NUM_THREADS=str(threads)))
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_mib"]


def one_seed(seed: int, threads: int) -> dict:
    prob = make_problem(FAMILY, K, torch.float32, BATCH, seed)
    row = {"seed": seed}
    for method in ("exact", "lanczos"):
        estimate(prob, method, seed + 100)  # warm-up (first-call costs of torch)
        start = time.perf_counter()
        value, grad = estimate(prob, method, seed)
        row[f"{method}_seconds"] = time.perf_counter() - start
        row[f"{method}_cosine"] = cosine(grad.double(), prob.g_true)
        row[f"{method}_value_error"] = ((value.double() - prob.v_true).abs()
                                        / prob.v_true.abs()).max().item()
        row[f"{method}_peak_mib"] = peak_memory(method, seed, threads)
    print(f"  seed {seed}: {row}", file=sys.stderr, flush=True)
    return row


def markdown(rows: list[dict], threads: int) -> str:
    def med(key):
        return statistics.median(r[key] for r in rows)

    lines = [f"`{FAMILY}` at k = {K}, batch {BATCH}, float32, {threads} threads, "
             f"{len(rows)} seeds (medians; worst seed in brackets).", "",
             "| mode | seconds (value + gradient) | peak memory (MiB) | gradient cosine | "
             "value error (worst sample) |", "|---|---|---|---|---|"]
    for m in ("exact", "lanczos"):
        lines.append(
            f"| {m} | {med(f'{m}_seconds'):.2f} | {med(f'{m}_peak_mib'):.0f} | "
            f"{med(f'{m}_cosine'):.3f} ({min(r[f'{m}_cosine'] for r in rows):.3f}) | "
            f"{med(f'{m}_value_error'):.2%} ({max(r[f'{m}_value_error'] for r in rows):.2%}) |")
    lines += ["", f"Exact ÷ lanczos: time {med('exact_seconds') / med('lanczos_seconds'):.2f}×, "
              f"peak memory {med('exact_peak_mib') / med('lanczos_peak_mib'):.2f}×."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--memory-child", nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.memory_child:
        return memory_child(args.memory_child[0], int(args.memory_child[1]), args.threads)
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    text = markdown([one_seed(s, args.threads) for s in range(args.seeds)], args.threads)
    print(text)
    if args.out is not None:
        args.out.write_text(text)
    return None


if __name__ == "__main__":
    main()
