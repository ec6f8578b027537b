"""Stochastic vs exact spectral backpropagation, side by side in one run.

Generator: DCGAN-style (``spectral_backprop.models.DCGANGenerator``), k = 512 latents,
3×32×32 output, batch 2, float32, random initialisation, in eval mode. Task: the value
of ``log det JᵀJ`` per sample and the gradient of its batch sum with respect to all
parameters.

Comparisons (timings are ratios measured interleaved in this process,
medians after a warm-up; peak memory per variant in a fresh subprocess as
``ru_maxrss`` minus the resident set after set-up):

1. ``method="lanczos"`` at its default budget vs ``method="exact"``: time, peak memory,
   cosine of the full parameter gradient, relative error of the log det value.
2. Gradient mean-squared error against exact, at an equal number of products
   ``Mv = Jᵀ(Jv)``: ours vs plain Hutchinson + CG (the estimator of Rectangular Flows,
   Caterini et al. 2021, arXiv 2106.01413) and vs ours without deflation.
3. Peak memory of autograd through an unrolled Chebyshev recurrence vs ours
   (``method="chebyshev"``) at degree 10 and 80.
4. Log det value error and time vs linear_operator's (GPyTorch) stochastic log det
   (``pip install linear_operator``; benchmark-only, never imported by the library)
   at an equal number of products.

``--crossover`` instead times exact vs lanczos for several k (the ``method="auto"``
threshold). Usage::

    .venv/bin/python benchmarks/bench_stochastic.py            # full run, ~15 min
    .venv/bin/python benchmarks/bench_stochastic.py --quick    # fewer seeds
    .venv/bin/python benchmarks/bench_stochastic.py --crossover
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
import warnings
from collections.abc import Callable

import torch
from torch.func import jvp, vjp, vmap

from spectral_backprop.linalg import (
    chebyshev_coefficients,
    conjugate_gradient,
    flat_output,
    jacobian_columns,
    metric_matvec,
    sample_probes,
)
from spectral_backprop.spectral import NonConvergenceWarning, spectral_sum
from spectral_backprop.spectral.stochastic import DEFAULT_TOL

try:
    from spectral_backprop.models import DCGANGenerator
except ImportError:  # the models package is optional for this script
    DCGANGenerator = None


class SmallDCGAN(torch.nn.Module):
    """Fallback DCGAN-style generator: linear to 256×4×4, three stride-2 deconvolutions."""

    def __init__(self, k: int, channels: int = 3, width: int = 64):
        super().__init__()
        c0 = width * 4
        self.c0 = c0
        self.project = torch.nn.Sequential(torch.nn.Linear(k, c0 * 16), torch.nn.ReLU())
        layers, c = [], c0
        for i in range(3):
            c_out = channels if i == 2 else c // 2
            layers.append(torch.nn.ConvTranspose2d(c, c_out, 4, stride=2, padding=1))
            if i < 2:
                layers += [torch.nn.GroupNorm(8, c_out), torch.nn.ReLU()]
            c = c_out
        self.net = torch.nn.Sequential(*layers, torch.nn.Tanh())

    def forward(self, z):
        return self.net(self.project(z).reshape(z.shape[0], self.c0, 4, 4))


def make_problem(k: int = 512, batch: int = 2, seed: int = 0):
    torch.manual_seed(seed)
    G = DCGANGenerator(k, 3, 32, 64) if DCGANGenerator is not None else SmallDCGAN(k)
    G.eval()
    z = torch.randn(batch, k)
    return G, z, [p for p in G.parameters() if p.requires_grad]


def flat_grad(value: torch.Tensor, params) -> torch.Tensor:
    grads = torch.autograd.grad(value.sum(), params, allow_unused=True)
    return torch.cat([(torch.zeros_like(p) if g is None else g).flatten()
                      for p, g in zip(params, grads, strict=True)])


# ---------------------------------------------------------------- the estimators


def run_exact(G, z, params):
    value = spectral_sum(G, z, "logdet")
    return value.detach(), flat_grad(value, params), {"matvecs": 0}


def run_ours(G, z, params, seed, method="lanczos", **options):
    est = spectral_sum(G, z, "logdet", method=method, generator=torch.Generator().manual_seed(seed),
                       return_info=True, **options)
    info = dict(est.info, std_error=est.std_error)
    return est.value.detach(), flat_grad(est.value, params), info


def run_hutchinson_cg(G, z, params, seed, num_probes, tol=DEFAULT_TOL, max_iters=64):
    """Plain Hutchinson + CG (Rectangular Flows): u = M⁻¹ε by CG, gradient of (Ju)·(Jε)."""
    g = torch.Generator().manual_seed(seed)
    eps = sample_probes(z.shape[0], z.shape[1], num_probes, generator=g, dtype=z.dtype)
    cg = conjugate_gradient(metric_matvec(G, z), eps, max_iters=max_iters, tol=tol)
    _, JT = jacobian_columns(G, z, torch.cat([cg.solution, eps], -1).permute(2, 0, 1))
    surrogate = (JT[..., :num_probes] * JT[..., num_probes:]).sum((1, 2)) / num_probes
    return None, flat_grad(surrogate, params), {"matvecs": cg.matvecs}


def differentiable_matvec(G, z) -> Callable[[torch.Tensor], torch.Tensor]:
    """``V ↦ Jᵀ(JV)`` that records its graph (what autograd-through-the-solver needs)."""
    f = flat_output(G)

    def one(v):
        _, jv = jvp(f, (z,), (v,))
        return vjp(f, z)[1](jv)[0]

    return lambda V: vmap(one, in_dims=2, out_dims=2)(V)


def run_unrolled_chebyshev(G, z, params, seed, degree, num_probes, bounds):
    """Hutchinson on a Chebyshev series of log, differentiated by autograd through it."""
    a, b = bounds
    eps = sample_probes(z.shape[0], z.shape[1], num_probes,
                        generator=torch.Generator().manual_seed(seed), dtype=z.dtype)
    c = chebyshev_coefficients(torch.log, a, b, degree)
    mv = differentiable_matvec(G, z)
    hw, ctr = (0.5 * (b - a))[:, None, None], (0.5 * (b + a))[:, None, None]
    w_prev, w = eps, (mv(eps) - ctr * eps) / hw
    value = c[:, :1] * (eps * eps).sum(1) + c[:, 1:2] * (eps * w).sum(1)
    for j in range(2, degree + 1):
        w_prev, w = w, 2 * (mv(w) - ctr * w) / hw - w_prev
        value = value + c[:, j : j + 1] * (eps * w).sum(1)
    value = value.mean(-1)
    return value.detach(), flat_grad(value, params), {"matvecs": degree * num_probes}


class _CountingMetric:
    """``Jᵀ(JV)`` with a count of products, for linear_operator."""

    def __init__(self, G, z):
        self.mv, self.count = metric_matvec(G, z), 0

    def __call__(self, V):
        self.count += V.shape[-1]
        return self.mv(V)


def run_gpytorch(G, z, seed, num_probes, num_iters, tol):
    """linear_operator's stochastic log det (mBCG + Lanczos quadrature) on ``JᵀJ``."""
    import linear_operator
    from linear_operator.operators import LinearOperator

    metric = _CountingMetric(G, z)
    B, k = z.shape

    class Metric(LinearOperator):
        def __init__(self, anchor):
            super().__init__(anchor)
            self.anchor = anchor

        def _matmul(self, rhs):
            return metric(rhs)

        def _size(self):
            return torch.Size((B, k, k))

        def _transpose_nonbatch(self):
            return self

    torch.manual_seed(seed)
    s = linear_operator.settings
    with (torch.no_grad(), s.max_cholesky_size(0), s.num_trace_samples(num_probes),
          s.max_lanczos_quadrature_iterations(num_iters), s.max_cg_iterations(num_iters),
          s.cg_tolerance(tol), s.skip_logdet_forward(False)):
        value = Metric(z.new_zeros(B, k)).logdet()
    return value, None, {"matvecs": metric.count}


# ---------------------------------------------------------------- measurement helpers


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def interleaved(fns: dict[str, Callable], repeats: int) -> dict[str, float]:
    """Median seconds per variant; variants alternate within each repeat after a warm-up."""
    for fn in fns.values():
        fn(0)
    times = {name: [] for name in fns}
    for r in range(repeats):
        for name, fn in fns.items():
            times[name].append(timed(lambda fn=fn, r=r: fn(r + 1))[0])
    return {name: statistics.median(t) for name, t in times.items()}


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status (Linux only)")


def _peak_kib() -> int:
    # ru_maxrss is carried over from the parent across fork + exec on Linux (a child of a
    # 1.3 GB benchmark process reports at least 1.3 GB), so the child's own high-water
    # mark, VmHWM, which starts afresh with its new address space, is read as well.
    return min(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, _status_kib("VmHWM"))


VARIANTS = {
    "exact": lambda G, z, p, a: run_exact(G, z, p),
    "lanczos": lambda G, z, p, a: run_ours(G, z, p, 0, **a.options),
    "hutchinson_cg": lambda G, z, p, a: run_hutchinson_cg(G, z, p, 0, a.num_probes),
    "chebyshev": lambda G, z, p, a: run_ours(G, z, p, 0, method="chebyshev",
                                             num_matvecs=a.degree, num_probes=a.num_probes,
                                             deflate=0),
    "unrolled_chebyshev": lambda G, z, p, a: run_unrolled_chebyshev(
        G, z, p, 0, a.degree, a.num_probes, (torch.tensor(a.bounds[0]), torch.tensor(a.bounds[1]))
    ),
}


def child_memory(args) -> None:
    """Run one variant once after set-up; print peak RSS growth in MiB as JSON."""
    torch.set_num_threads(args.threads)
    G, z, params = make_problem()
    warnings.simplefilter("ignore", NonConvergenceWarning)
    args.options = json.loads(args.options_json)
    base = _status_kib("VmRSS")
    VARIANTS[args.memory](G, z, params, args)
    print(json.dumps({"peak_mib": (_peak_kib() - base) / 1024}))


def peak_memory(variant: str, threads: int, **extra) -> float:
    cmd = [sys.executable, __file__, "--memory", variant, "--threads", str(threads)]
    for key, val in extra.items():
        cmd += [f"--{key.replace('_', '-')}", str(val)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True,
                         env=dict(os.environ, OMP_NUM_THREADS=str(threads)))
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_mib"]


def cosine(a, b) -> float:
    return torch.nn.functional.cosine_similarity(a, b, 0).item()


# ---------------------------------------------------------------- the benchmark


def main_benchmark(args) -> None:
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore", NonConvergenceWarning)  # counted in the table instead
    G, z, params = make_problem()
    options = json.loads(args.options_json)
    seeds = range(args.seeds)
    print(f"# bench_stochastic: {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{args.threads} thread(s); G = {type(G).__name__}, k=512, 3x32x32, batch 2, float32")
    print(f"default budget: {options or 'library defaults'}\n")

    v_exact, g_exact, _ = run_exact(G, z, params)
    ours = [run_ours(G, z, params, s, **options) for s in seeds]
    matvecs = statistics.mean(o[2]["matvecs"] for o in ours)
    unconverged = sum(int((~o[2]["converged"]).sum()) for o in ours)
    cos = [cosine(o[1], g_exact) for o in ours]
    rel = torch.stack([((o[0] - v_exact) / v_exact).abs() for o in ours])
    se = torch.stack([o[2]["std_error"] / v_exact.abs() for o in ours])
    mse_ours = statistics.mean(float((o[1] - g_exact).pow(2).sum()) for o in ours)

    # 1. time against exact, interleaved
    t = interleaved({
        "exact": lambda s: run_exact(G, z, params),
        "lanczos": lambda s: run_ours(G, z, params, s, **options),
        "chebyshev": lambda s: run_ours(G, z, params, s, method="chebyshev", **options),
    }, args.repeats)
    cheb = [run_ours(G, z, params, s, method="chebyshev", **options) for s in seeds[:2]]
    mem_exact = peak_memory("exact", args.threads)
    mem_ours = peak_memory("lanczos", args.threads, options_json=json.dumps(options))

    rows = [
        ("time, value + parameter gradient", f"{t['exact']:.2f} s", f"{t['lanczos']:.2f} s",
         f"{t['exact'] / t['lanczos']:.2f}x faster", ">= 3x"),
        ("peak memory (RSS growth)", f"{mem_exact:.0f} MiB", f"{mem_ours:.0f} MiB",
         f"{mem_exact / max(mem_ours, 1e-9):.2f}x lower", ">= 3x"),
        ("cosine, full parameter gradient", "1", f"{statistics.mean(cos):.3f} "
         f"(min {min(cos):.3f})", "", ">= 0.9"),
        ("log det relative error", "0", f"{rel.mean():.2%} (max {rel.max():.2%})",
         f"std. error {se.mean():.2%}", "<= 1%"),
        ("products Mv per sample", "-", f"{matvecs:.0f}", f"{unconverged} unconverged vectors",
         ""),
    ]
    print("## 1. lanczos (default budget) vs exact\n")
    print(f"log det exact: {v_exact.tolist()}; seeds: {args.seeds}; timing repeats: "
          f"{args.repeats}\n")
    print("| quantity | exact | lanczos | ratio | target |\n|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print(f"\nmethod=\"chebyshev\" (same options, 2 seeds): {t['chebyshev']:.2f} s "
          f"({t['exact'] / t['chebyshev']:.2f}x faster than exact), degree "
          f"{[o[2]['degree'] for o in cheb]}, products {[o[2]['matvecs'] for o in cheb]}, "
          f"cosine {[round(cosine(o[1], g_exact), 3) for o in cheb]}")

    # 2. gradient MSE at equal matvecs: each rival gets as many probes as fit in our budget
    def mse(runs):
        return statistics.mean(float((o[1] - g_exact).pow(2).sum()) for o in runs)

    def equal_budget(run: Callable[[int, int], tuple]) -> tuple[int, list]:
        # Pilots at 4 and 8 probes give the cost model fixed + per_probe · probes (the
        # fixed part is a deflation sketch, if any).
        c4, c8 = (run(p, 10_000)[2]["matvecs"] for p in (4, 8))
        per_probe = (c8 - c4) / 4
        probes = max(1, round((matvecs - (c4 - 4 * per_probe)) / per_probe))
        return probes, [run(probes, s) for s in seeds]

    # the probes ours used (at the defaults, the gradient target may add rounds to 8)
    num_probes = statistics.mean(o[2]["num_probes"] for o in ours)
    rivals = {
        "plain Hutchinson + CG (Rectangular Flows)": lambda p, s: run_hutchinson_cg(
            G, z, params, s, p, tol=options.get("tol", DEFAULT_TOL)),
        "ours + deflation (deflate=2)": lambda p, s: run_ours(
            G, z, params, s, **dict(options, num_probes=p, deflate=2)),
    }
    print("\n## 2. gradient MSE against exact at equal products Mv\n")
    print(f"‖g_exact‖² = {float(g_exact.pow(2).sum()):.4g}; {args.seeds} seeds; rivals get the "
          "number of probes that spends the same products as ours\n")
    print("| estimator | probes | Mv per sample | gradient MSE / ‖g‖² | MSE / ours |")
    print("|---|---|---|---|---|")
    norm = float(g_exact.pow(2).sum())
    print(f"| ours (lanczos, default) | {num_probes:.3g} | {matvecs:.0f} | "
          f"{mse_ours / norm:.4f} | 1 |")
    for name, run in rivals.items():
        probes, runs = equal_budget(run)
        mv = statistics.mean(o[2]["matvecs"] for o in runs)
        print(f"| {name} | {probes} | {mv:.0f} | {mse(runs) / norm:.4f} | "
              f"{mse(runs) / mse_ours:.2f} |", flush=True)

    # 3. unrolled Chebyshev memory
    sketch = run_ours(G, z, params, 0, method="chebyshev", num_probes=1, deflate=0)[2]
    lo, hi = (x.tolist() for x in sketch["interval"])
    print("\n## 3. peak memory: autograd through an unrolled Chebyshev recurrence vs ours\n")
    print(f"interval [a, b] from the Lanczos sketch: a={lo}, b={hi}; 4 probes\n")
    print("| degree | unrolled autograd | ours (chebyshev) | ratio |\n|---|---|---|---|")
    for degree in (10, 80):
        extra = dict(degree=degree, num_probes=4, bounds=json.dumps([lo, hi]))
        m_unrolled = peak_memory("unrolled_chebyshev", args.threads, **extra)
        m_ours = peak_memory("chebyshev", args.threads, **extra)
        print(f"| {degree} | {m_unrolled:.0f} MiB | {m_ours:.0f} MiB | "
              f"{m_unrolled / max(m_ours, 1e-9):.1f}x |")

    # 4. linear_operator (GPyTorch) stochastic log det at equal matvecs
    print("\n## 4. log det value vs linear_operator (GPyTorch) at equal products Mv\n")
    try:
        import linear_operator  # noqa: F401
    except ImportError:
        print("linear_operator not installed: `pip install linear_operator` to run this part")
        return
    tol = options.get("tol", DEFAULT_TOL)
    with torch.no_grad():  # values only, for both: the value alone needs fewer steps
        mine = [run_ours_value(G, z, s, options) for s in seeds]
        mv_mine = statistics.mean(o.info["matvecs"] for o in mine)
        rel_mine = torch.stack([((o.value - v_exact) / v_exact).abs() for o in mine])
        # linear_operator gets the Lanczos/CG step cap our probes needed, so that equal
        # products also means about equal probes.
        iters = int(max(o.info["iterations"].max() for o in mine))
        pilot_g = run_gpytorch(G, z, 10_002, 4, iters, tol)[2]["matvecs"] / 4
        p_g = max(1, round(mv_mine / pilot_g))
        gp = [run_gpytorch(G, z, s, p_g, iters, tol) for s in seeds]
        rel_g = torch.stack([((o[0] - v_exact) / v_exact).abs() for o in gp])
        mv_g = statistics.mean(o[2]["matvecs"] for o in gp)
        tv = interleaved({
            "ours": lambda s: run_ours_value(G, z, s, options),
            "gpytorch": lambda s: run_gpytorch(G, z, s, p_g, iters, tol),
        }, args.repeats)
    print(f"step cap per probe: {iters}; tolerance {tol:g}\n")
    print("| estimator | probes | Mv per sample | rel. error (mean, max) | time (value only) |")
    print("|---|---|---|---|---|")
    print(f"| ours (lanczos) | {statistics.mean(o.info['num_probes'] for o in mine):.3g} | "
          f"{mv_mine:.0f} | "
          f"{rel_mine.mean():.2%}, {rel_mine.max():.2%} | {tv['ours']:.2f} s |")
    print(f"| linear_operator logdet | {p_g} | {mv_g:.0f} | {rel_g.mean():.2%}, "
          f"{rel_g.max():.2%} | {tv['gpytorch']:.2f} s ({tv['gpytorch'] / tv['ours']:.2f}x) |")


def run_ours_value(G, z, seed, options):
    return spectral_sum(G, z, "logdet", method="lanczos", return_info=True,
                        generator=torch.Generator().manual_seed(seed), **options)


def main_crossover(args) -> None:
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore", NonConvergenceWarning)
    options = json.loads(args.options_json)
    print(f"# crossover: {os.cpu_count()} cores, {args.threads} thread(s), batch 2, 3x32x32\n")
    print("| k | exact | lanczos (default) | exact / lanczos |\n|---|---|---|---|")
    for k in (32, 64, 128, 256, 512):
        G, z, params = make_problem(k)
        t = interleaved({
            "exact": lambda s, G=G, z=z, p=params: run_exact(G, z, p),
            "lanczos": lambda s, G=G, z=z, p=params: run_ours(G, z, p, s, **options),
        }, args.repeats)
        print(f"| {k} | {t['exact']:.2f} s | {t['lanczos']:.2f} s | "
              f"{t['exact'] / t['lanczos']:.2f} |", flush=True)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (1 by default: other jobs share this machine)")
    p.add_argument("--seeds", type=int, default=8)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="3 seeds, 2 repeats")
    p.add_argument("--crossover", action="store_true")
    p.add_argument("--options-json", default="{}",
                   help="stochastic options as JSON, e.g. '{\"num_probes\": 12}'")
    # internal: one memory measurement in a subprocess
    p.add_argument("--memory", choices=sorted(VARIANTS), help=argparse.SUPPRESS)
    p.add_argument("--degree", type=int, default=10, help=argparse.SUPPRESS)
    p.add_argument("--num-probes", type=int, default=4, help=argparse.SUPPRESS)
    p.add_argument("--bounds", type=json.loads, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.seeds, args.repeats = 3, 2
    return args


if __name__ == "__main__":
    ARGS = parse_args()
    if ARGS.memory:
        child_memory(ARGS)
    elif ARGS.crossover:
        main_crossover(ARGS)
    else:
        main_benchmark(ARGS)
