"""Gradients of ``½ log det JᵀJ`` for maximum likelihood on manifolds: our spectral
backpropagation (exact and stochastic) against the estimators of rectangular flows (RNF
exact and Hutchinson + CG), free-form injective flows (FIF) and no volume term, all
under the same generator / encoder pair (``benchmarks/manifold_estimators.py``).

1. **Gradient accuracy** at fixed parameters of a partly trained pair (an MLP pair with
   k = 8 trained for ``--train-steps`` steps on the embedded MNIST digits): the cosine
   and relative error of each estimator's parameter gradient (G and E) of the mean
   ``½ log det`` term against a float64 dense reference (autograd through ``slogdet`` of
   ``JᵀJ`` built by ``vmap(jacfwd)``), by metric products per sample, over ``--seeds``
   probe seeds.
2. **Time and peak memory per step** of ``manifold_loss(...).backward()`` for MLP pairs as
   k and n grow: time as the median of interleaved repeats in this process, as a ratio
   to ours exact; peak memory of one step in a fresh subprocess, as the resident
   set's high-water mark (reset after a warm-up step) above the resident set before it.

Usage::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_manifold.py
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import manifold_estimators  # noqa: E402
from bench_exact import peak_rss, reset_peak_rss  # noqa: E402
from bench_stochastic import cosine, flat_grad, interleaved  # noqa: E402
from spectral_backprop.manifold import manifold_loss, manifold_terms  # noqa: E402
from spectral_backprop.models.encoders import build_manifold_pair  # noqa: E402

manifold_estimators.register()
ESTIMATORS = ("exact", "lanczos", "rnf_exact", "rnf_hutchinson", "fif", "no_volume")


def partly_trained_pair(steps: int, k: int = 8):
    import tempfile

    from spectral_backprop.train.manifold import ManifoldConfig, train_manifold

    config = ManifoldConfig(dataset="mnist_manifold", latent_dim=k, arch="mlp", width=128,
                            depth=2, steps=steps, batch_size=64, eval_every=0,
                            eval_samples=100, progress=False, device="cpu")
    with tempfile.TemporaryDirectory() as tmp:
        r = train_manifold(config, tmp)
    return r.generator.double(), r.encoder.double(), r.dataset.test[:16].double().flatten(1)


def manifold_grad(G, E, x, method, **options):
    params = [*G.parameters(), *E.parameters()]
    half = manifold_terms(lambda z: G(z).flatten(1), lambda v: E(v), x, method=method,
                          **options).half_logdet.mean()
    if not half.requires_grad:
        return torch.zeros(sum(p.numel() for p in params), dtype=torch.float64)
    return flat_grad(half, params)


def dense_reference(G, E, x):
    params = [*G.parameters(), *E.parameters()]
    z = E(x)
    J = torch.func.vmap(torch.func.jacfwd(lambda zi: G(zi[None]).flatten(1)[0]))(z)
    half = 0.5 * torch.linalg.slogdet(J.transpose(1, 2) @ J).logabsdet.mean()
    return flat_grad(half, params)


def accuracy(args) -> None:
    G, E, x = partly_trained_pair(args.train_steps)
    k = E(x).shape[1]
    ref = dense_reference(G, E, x)
    rows = [("exact", {}, k)]
    for p in (1, 2, 4, 8):
        rows += [("lanczos", {"num_probes": p}, None),
                 ("rnf_hutchinson", {"num_probes": p}, None),
                 ("rnf_hutchinson", {"num_probes": p, "cg_tol": 1e-6}, None),
                 ("fif", {"num_probes": p}, 2 * p)]
    rows += [("rnf_exact", {}, k), ("no_volume", {}, 0)]
    print(f"\n## Gradient accuracy, MLP pair k={k}, n=784, 16 held-out digits, "
          f"{args.seeds} probe seeds (median [min, max])\n")
    print("| estimator | options | products / sample | cosine | relative error |")
    print("|---|---|---|---|---|")
    for method, options, products in rows:
        cos, rel, prods = [], [], []
        seeds = range(args.seeds) if method in ("lanczos", "rnf_hutchinson", "fif") else [0]
        for s in seeds:
            opts = dict(options)
            if method in ("lanczos", "rnf_hutchinson", "fif"):
                opts["generator"] = torch.Generator().manual_seed(s)
            g = manifold_grad(G, E, x, method, **opts)
            cos.append(cosine(g, ref))
            rel.append(((g - ref).norm() / ref.norm()).item())
            prods.append(products if products is not None else
                         _products(G, E, x, method, options))
        print(f"| {method} | {options or ''} | {statistics.median(prods):.0f} | "
              f"{_fmt(cos)} | {_fmt(rel)} |", flush=True)


def _products(G, E, x, method, options) -> float:
    """Metric products per sample of a stochastic estimator (from its own report)."""
    if method == "lanczos":
        from spectral_backprop.spectral import logdet_jtj

        est = logdet_jtj(G, E(x), method="lanczos", return_info=True, **options)
        return float(est.info["matvecs"] + 2 * options.get("num_probes", 1))
    est = manifold_estimators.rnf_hutchinson(G, E(x), None, return_info=True, **options)
    return options.get("num_probes", 1) * (est.info["cg_iterations"] + 2)


def _fmt(v: list[float]) -> str:
    if len(v) == 1:
        return f"{v[0]:.4f}"
    return f"{statistics.median(v):.4f} [{min(v):.4f}, {max(v):.4f}]"


def one_step(method: str, k: int, n: int, batch: int):
    torch.manual_seed(0)
    G, E = build_manifold_pair("mlp", (n,), k, 128, 2)
    x = torch.randn(batch, n)
    gen = torch.Generator().manual_seed(0)
    options = {"generator": gen} if method in ("lanczos", "rnf_hutchinson", "fif") else {}
    if method in ("exact", "lanczos"):
        # As the trainer runs them: it checks the architecture for batch coupling once,
        # before the first step, not on every step (the baselines never check).
        options["check_coupling"] = False

    def step():
        loss, _ = manifold_loss(G, E, x, beta=10.0, method=method, **options)
        loss.backward()

    return step


def memory_child(method: str, k: int, n: int, batch: int) -> None:
    """Peak resident memory of one step above the resident memory before it (MiB).

    After a warm-up step and ``malloc_trim``, the kernel's high-water mark of the
    resident set (``VmHWM``) is reset by writing 5 to ``/proc/self/clear_refs`` (Linux
    ≥ 4.0, ``Documentation/admin-guide/mm/soft-dirty`` / ``proc(5)``), so that the import
    of torch no longer masks the step's peak; ``peak = VmHWM − VmRSS`` around one step.
    Where that is unavailable, ``ru_maxrss`` above its value before the step (which
    reads 0 when the step peaks below the import's peak). The counters are
    ``bench_exact.reset_peak_rss`` / ``peak_rss``.
    """
    import ctypes
    import gc

    step = one_step(method, k, n, batch)
    step()  # warm-up: lazy initialisations, the optimiser-free graph's first run
    gc.collect()
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    before = reset_peak_rss()
    step()
    print(json.dumps({"mib": (peak_rss() - before) / 2**20}))


def cost(args) -> None:
    shapes = [tuple(int(v) for v in s.split("x")) for s in args.shapes]
    print(f"\n## Time and peak memory of one step (loss + backward), MLP pair 128×2, batch "
          f"{args.batch}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads\n")
    print("| k | n | " + " | ".join(args.estimators) + " |")
    print("|---|---|" + "---|" * len(args.estimators))
    for k, n in shapes:
        steps = {m: one_step(m, k, n, args.batch) for m in args.estimators}
        med = interleaved({m: lambda _r, s=s: s() for m, s in steps.items()}, args.repeats)
        mem = {m: _child_memory(m, k, n, args.batch) for m in args.estimators}
        cells = [f"{med[m] * 1e3:.1f} ms ({med[m] / med['exact']:.2f}×), {mem[m]:.0f} MiB"
                 for m in args.estimators]
        print(f"| {k} | {n} | " + " | ".join(cells) + " |", flush=True)


def _child_memory(method, k, n, batch) -> float:
    out = subprocess.run([sys.executable, __file__, "--child", method, str(k), str(n),
                          str(batch)], capture_output=True, text=True, check=True,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    return json.loads(out.stdout.strip().splitlines()[-1])["mib"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train-steps", type=int, default=300)
    p.add_argument("--seeds", type=int, default=8)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--shapes", nargs="+", default=["2x100", "16x100", "64x100", "16x1000",
                                                   "64x1000", "128x1000", "64x4096",
                                                   "128x4096"], help="k x n")
    p.add_argument("--estimators", nargs="+", default=list(ESTIMATORS))
    p.add_argument("--skip-accuracy", action="store_true")
    p.add_argument("--skip-cost", action="store_true")
    p.add_argument("--child", nargs=4, default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    if args.child:
        m, k, n, b = args.child
        return memory_child(m, int(k), int(n), int(b))
    if not args.skip_accuracy:
        accuracy(args)
    if not args.skip_cost:
        cost(args)


if __name__ == "__main__":
    main()
