"""Exact spectral backpropagation against what users write by hand.

Measures, side by side in one process, the time of one gradient step of
``logdet_jtj(G, z).sum().backward()`` against

* (a) per-sample ``torch.autograd.functional.jacobian(..., create_graph=True)``,
  then ``slogdet(JᵀJ)``, then backward (what a user writes first);
* (b) ``torch.func.vmap(torch.func.jacfwd(G))``, then ``slogdet``, then backward
  (what a careful user writes);

and the peak memory (``ru_maxrss`` of a fresh subprocess, peak counter reset after set-up)
of the exact mode at k = 512 with and without ``chunk_size=16``.

Run:  .venv/bin/python benchmarks/bench_exact.py [--repeats 7] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import torch
from torch import nn

from spectral_backprop import logdet_jtj
from spectral_backprop.models import DCGANGenerator


def mlp(k: int = 64, hidden: int = 512, n: int = 784) -> nn.Module:
    return nn.Sequential(
        nn.Linear(k, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
        nn.Linear(hidden, n), nn.Tanh(),
    )


CASES = {
    "MLP k=64, hidden 512, n=784, batch 32": (lambda: mlp(), 64, 32),
    "DCGAN k=128, 3×32×32, batch 4": (lambda: DCGANGenerator(128, 3, 32), 128, 4),
}


def step_ours(G, z, **options):
    G.zero_grad(set_to_none=True)
    logdet_jtj(G, z, **options).sum().backward()


def step_per_sample(G, z):
    G.zero_grad(set_to_none=True)
    total = 0.0
    for zb in z:
        J = torch.autograd.functional.jacobian(
            lambda u: G(u[None]).reshape(-1), zb, create_graph=True
        )
        total = total + torch.linalg.slogdet(J.T @ J)[1]
    total.backward()


def step_vmap_jacfwd(G, z):
    G.zero_grad(set_to_none=True)
    J = torch.func.vmap(torch.func.jacfwd(lambda u: G(u[None]).reshape(-1)))(z)
    torch.linalg.slogdet(J.mT @ J)[1].sum().backward()


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def time_case(name: str, repeats: int, per_sample: bool) -> dict:
    make, k, batch = CASES[name]
    torch.manual_seed(0)
    G = make()
    z = torch.randn(batch, k)
    steps = {"ours": lambda: step_ours(G, z), "vmap(jacfwd)": lambda: step_vmap_jacfwd(G, z),
             # The coupling check's share of ours (docs/reliability.md).
             "ours, unchecked": lambda: step_ours(G, z, check_coupling=False)}
    for fn in steps.values():  # warm-up
        fn()
    times = {key: [] for key in steps}
    for _ in range(repeats):  # interleaved, so machine load hits every method alike
        for key, fn in steps.items():
            times[key].append(timed(fn))
    med = {key: statistics.median(v) for key, v in times.items()}
    if per_sample:  # minutes per step: measured once, after the others
        med["per-sample jacobian"] = timed(lambda: step_per_sample(G, z))
    return med


def _status_bytes(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def reset_peak_rss() -> int:
    """Reset the kernel's peak-RSS counter (Linux) and return the current RSS in bytes.

    ``ru_maxrss`` alone would include transient peaks from imports and set-up.
    """
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:  # not Linux: fall back to the lifetime peak
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return _status_bytes("VmRSS")


def peak_rss() -> int:
    try:
        return _status_bytes("VmHWM")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def memory_child(k: int, batch: int, chunk_size: int | None) -> None:
    torch.manual_seed(0)
    G = DCGANGenerator(k, 3, 32)
    z = torch.randn(batch, k)
    base = reset_peak_rss()
    step_ours(G, z, chunk_size=chunk_size)
    print(json.dumps({"peak_mib": (peak_rss() - base) / 2**20}))


def memory(k: int, batch: int, chunk_size: int | None) -> float:
    cmd = [sys.executable, __file__, "--memory-child", str(k), str(batch), str(chunk_size)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])["peak_mib"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="skip the per-sample baseline")
    parser.add_argument("--memory-child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        k, batch, cs = args.memory_child
        return memory_child(int(k), int(batch), None if cs == "None" else int(cs))

    print(f"torch {torch.__version__}, {os.cpu_count()} cores, {torch.get_num_threads()} threads")
    print("\n| case | per-sample jacobian | vmap(jacfwd) | ours | speed-up vs per-sample "
          "| ours / vmap(jacfwd) | coupling check |")
    print("|---|---|---|---|---|---|---|")
    for name in CASES:
        t = time_case(name, args.repeats, per_sample=not args.quick)
        ps = t.get("per-sample jacobian")
        ps_cell = f"{ps:.2f} s" if ps else "skipped"
        speed = f"{ps / t['ours']:.0f}×" if ps else "–"
        print(f"| {name} | {ps_cell} | {t['vmap(jacfwd)'] * 1e3:.0f} ms | "
              f"{t['ours'] * 1e3:.0f} ms | {speed} | {t['ours'] / t['vmap(jacfwd)']:.2f} | "
              f"{t['ours'] / t['ours, unchecked'] - 1:+.1%} |", flush=True)

    k, batch = 512, 4
    full, chunked = memory(k, batch, None), memory(k, batch, 16)
    print(f"\nPeak memory, DCGAN k={k}, 3×32×32, batch {batch}, one gradient step:")
    print("| variant | peak MiB above set-up |\n|---|---|")
    print(f"| unchunked | {full:.0f} |\n| chunk_size=16 | {chunked:.0f} |")
    print(f"| ratio | {chunked / full:.0%} |")


if __name__ == "__main__":
    main()
