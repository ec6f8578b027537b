"""Where a value-only ``method="lanczos"`` call spends its time, on one zoo family.

Splits the wall time of ``spectral_sum(G, z, "logdet", method="lanczos")`` (no graph,
default Hadamard probes) into the products with ``M`` (the metric matvec), the stopping
rule's eigendecompositions of ``T`` (``torch.linalg.eigh``) and the rest (Lanczos with
its two Gram–Schmidt passes, bookkeeping), by timing wrappers around the first two; the
median of ``--repeats`` calls after a warm-up.

Usage::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/profile_lanczos.py --family mlp --probes 49
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import spectral_backprop.spectral.stochastic as stochastic
from bench_peers import DTYPES, make_problem
from spectral_backprop.spectral import spectral_sum


def profile(family: str, k: int, probes: int, dtype: str, repeats: int) -> dict[str, float]:
    prob = make_problem(family, k, DTYPES[dtype], 2, 0, truth=False)
    spent = {"products": 0.0, "eigh": 0.0}

    def timed(name, fn):
        def run(*args, **kwargs):
            t0 = time.perf_counter()
            out = fn(*args, **kwargs)
            spent[name] += time.perf_counter() - t0
            return out
        return run

    matvec, eigh = stochastic.metric_matvec, torch.linalg.eigh
    stochastic.metric_matvec = lambda *a, **kw: timed("products", matvec(*a, **kw))
    torch.linalg.eigh = timed("eigh", eigh)
    rows = []
    try:
        for i in range(repeats + 1):
            spent.update(products=0.0, eigh=0.0)
            t0 = time.perf_counter()
            with torch.no_grad():
                spectral_sum(prob.G, prob.z, "logdet", method="lanczos", num_probes=probes,
                             generator=torch.Generator().manual_seed(i))
            total = time.perf_counter() - t0
            if i:  # the first call warms up
                rows.append((total, spent["products"], spent["eigh"]))
    finally:
        stochastic.metric_matvec, torch.linalg.eigh = matvec, eigh
    total, products, eig = (statistics.median(c) for c in zip(*rows, strict=True))
    return {"seconds": total, "products": products / total, "eigh": eig / total,
            "rest": 1 - (products + eig) / total}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--family", default="mlp")
    p.add_argument("--k", type=int, default=256)
    p.add_argument("--probes", type=int, default=49)
    p.add_argument("--dtype", choices=tuple(DTYPES), default="float32")
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    r = profile(args.family, args.k, args.probes, args.dtype, args.repeats)
    print(f"{args.family} k={args.k} {args.dtype}, {args.probes} probes, value only: "
          f"{r['seconds']:.3f} s per call; products {r['products']:.0%}, eigh of T "
          f"{r['eigh']:.0%}, the rest (Lanczos, Gram–Schmidt, bookkeeping) {r['rest']:.0%}")


if __name__ == "__main__":
    main()
