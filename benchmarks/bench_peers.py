"""Stochastic log det against its peers, side by side in one run, on every zoo family.

For each family of :mod:`spectral_backprop.models.zoo` at latent size k (256 by default),
float32 and float64, batch 2, the task is ``log det JᵀJ`` per sample (the VALUE) and the
gradient of its batch sum with respect to all parameters (the GRADIENT). Truth: the exact
mode (dense Jacobian, eigendecomposition) in float64 on the same map (the float32 zoo model
converted). Estimators:

* ``ours``: ``method="lanczos"`` at its default stopping rule and probes (Hadamard: at
  most ``K = 2^⌈log₂ k⌉``, then exact; the table says when fewer were used than asked),
  ``num_probes`` varied;
* ``ours_rtol``: ``method="lanczos", rtol=r`` (adaptive probes), run only if
  ``spectral_sum`` accepts ``rtol`` (the header says which);
* ``gpytorch``: GPyTorch's ``linear_operator`` stochastic log det (mBCG + Lanczos
  quadrature, no preconditioner, ``max_cholesky_size(0)``) on a ``LinearOperator`` whose
  representation holds G's parameters, so its own backward (``InvQuadLogdet``, Hutchinson
  on ``M⁻¹ε`` from mBCG, ``_bilinear_derivative`` by autograd through ``Jᵀ(JV)``) gives
  the parameter gradient;
* ``matfree``: matfree's SLQ (JAX, CPU; ``funm.monte_carlo_funm_sym_logdet`` with
  ``decomp.tridiag_sym(m)``, Rademacher probes), value only. The product is the torch
  metric product reached through ``jax.pure_callback`` (numpy in, numpy out, one callback
  per Lanczos step batched over samples and probes); its seconds INCLUDE the bridge, and
  the bridge's own share (copies in and out, measured inside the callback) and the torch
  products' share are reported. JIT compilation is excluded (one warm-up per shape);
* ``hutchinson_cg``: plain Hutchinson + CG, the estimator of Rectangular Flows (Caterini
  et al. 2021, arXiv 2106.01413), gradient only (``run_hutchinson_cg`` of
  ``bench_stochastic.py``);
* ``exact``: the exact mode in the run's dtype (one point; its cost is k JVP columns).

Budgets are metric products ``Mv = Jᵀ(Jv)`` per sample; each estimator gets the number of
probes that spends about that many, from a one-probe pilot. VALUE runs are timed under
``torch.no_grad()`` (values only, for every estimator), GRADIENT runs with the backward
pass. Runs are interleaved (seed by seed, every estimator and budget within a seed) after a
warm-up; seconds are medians over seeds. Errors: value RMS error in nats over seeds and
samples (and relative to the mean |log det|), gradient relative error
``‖g − g*‖/‖g*‖`` (RMS over seeds) and cosine (mean). ``slope``: the fitted exponent of
error against products; ≈ −½ for an unbiased estimator, near 0 when a bias dominates.
"ours vs best peer at equal seconds": the best peer's error interpolated (log-log) at
ours' seconds, divided by ours' error (> 1: ours is better).

Peak memory (``--memory``): one variant per fresh subprocess, high-water RSS of one run
above the RSS after set-up (the kernel's counter reset by ``bench_exact.reset_peak_rss``),
twice: the *first call* (what a one-off call costs, torch's own first-use allocations
included: about 95 MiB on the zoo's DCGANs, alike for every method) and a *second call*
after the first one's tensors are freed (the working memory of the method, as in a
training loop). The child runs with ``MALLOC_MMAP_THRESHOLD_=65536``, so that glibc
returns freed blocks to the kernel and the second call's RSS grows by what it allocates
rather than reusing the first call's retained heap unseen. matfree's JIT compilation
runs before both; memory it freed can be reused unseen, so its figures are lower bounds.

Each run also draws error against products and against seconds per family into a PNG
beside its tables (``--plot JSON`` redraws it from a saved run).

Usage::

    pip install -c <(echo torch==2.13.0) -e ".[bench]"   # linear_operator, jax, matfree
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_peers.py --quick   # float32, < 5 min
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_peers.py --seeds 6 --budgets 64 256 \
        1024 --rtols 0.1 0.05            # both dtypes, ~1 h on 2 busy cores
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_peers.py --memory  # all defaults, hours
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.func import functional_call, jvp, vjp, vmap

from bench_exact import peak_rss, reset_peak_rss
from bench_stochastic import cosine, flat_grad, run_hutchinson_cg
from spectral_backprop.linalg import flat_output, jacobian_columns, metric_matvec
from spectral_backprop.models.zoo import ZOO_FAMILIES, zoo_generator
from spectral_backprop.spectral import spectral_sum
from spectral_backprop.spectral.registry import accepts_option

VALUE_PEERS = ("gpytorch", "matfree")
PILOTED = ("ours", "gpytorch", "hutchinson_cg")  # a one-probe pilot sets their probes
GRAD_PEERS = ("gpytorch", "hutchinson_cg")


# ---------------------------------------------------------------- the problem


@dataclass
class Problem:
    family: str
    dtype: torch.dtype
    G: torch.nn.Module
    z: torch.Tensor
    params: list
    v_true: torch.Tensor | None = None  # float64 [B]
    g_true: torch.Tensor | None = None  # float64, flat
    _mv: Callable | None = field(default=None, repr=False)

    @property
    def mv(self) -> Callable:  # the graph-free metric product (front door run once)
        if self._mv is None:
            self._mv = metric_matvec(self.G, self.z)
        return self._mv


def make_problem(family: str, k: int, dtype: torch.dtype, batch: int, seed: int,
                 truth: bool = True) -> Problem:
    z64 = torch.randn(batch, k, generator=torch.Generator().manual_seed(1000 + seed),
                      dtype=torch.float64)
    G = zoo_generator(family, k, seed=seed, dtype=dtype)
    prob = Problem(family, dtype, G, z64.to(dtype), [p for p in G.parameters()
                                                     if p.requires_grad])
    if truth:  # the same map in float64 (the zoo builds in float32, then converts)
        G64 = zoo_generator(family, k, seed=seed, dtype=torch.float64)
        p64 = [p for p in G64.parameters() if p.requires_grad]
        v = spectral_sum(G64, z64, "logdet")
        prob.v_true, prob.g_true = v.detach(), flat_grad(v, p64)
    return prob


@dataclass
class Out:
    value: torch.Tensor | None
    grad: torch.Tensor | None
    products: float  # metric products per sample
    extra: dict = field(default_factory=dict)


def _mode(grad: bool):
    return torch.enable_grad() if grad else torch.no_grad()


# ---------------------------------------------------------------- ours


def _lanczos(prob: Problem, seed: int, grad: bool, keys: tuple[str, ...], **options) -> Out:
    """``method="lanczos"`` on ``prob``; ``keys`` of its report go into ``Out.extra``."""
    with _mode(grad):
        est = spectral_sum(prob.G, prob.z, "logdet", method="lanczos", return_info=True,
                           generator=torch.Generator().manual_seed(seed), **options)
    g = flat_grad(est.value, prob.params) if grad else None
    info = est.info
    extra = {key: _plain(info[key]) for key in keys if key in info}
    return Out(est.value.detach(), g, float(torch.as_tensor(info["matvecs"]).float().mean()),
               extra)


def run_ours(prob: Problem, p: int, seed: int, grad: bool, **options) -> Out:
    return _lanczos(prob, seed, grad, ("met", "rel_std_error", "num_probes"), num_probes=p,
                    **options)


def run_ours_defaults(prob: Problem, level: int, seed: int, grad: bool) -> Out:
    """Ours at its defaults (``level`` unused): 8 probes, and with the gradient the default
    gradient target (``stochastic.default_gradient_target``)."""
    return _lanczos(prob, seed, grad, ("num_probes", "met", "grad_rel_std_error"))


def run_ours_rtol(prob: Problem, rtol: float, seed: int, grad: bool, **options) -> Out:
    return _lanczos(prob, seed, grad, ("num_probes", "met", "rel_std_error"), rtol=rtol,
                    **options)


def achieved_rel_error(out: Out, prob: Problem) -> torch.Tensor:
    """``|value − truth| / |truth|`` per sample, against the float64 truth."""
    return ((out.value.double() - prob.v_true) / prob.v_true).abs()


def run_ours_grad_rtol(prob: Problem, grad_rtol: float, seed: int, grad: bool) -> Out:
    """Ours with a target on the parameter gradient's relative standard error; always with
    the gradient (the target needs one), whatever ``grad`` says. Used by bench_heldback and
    bench_grad_rtol (not a ``--methods`` choice of the main run, which has no levels
    for it)."""
    return _lanczos(prob, seed, True, ("num_probes", "met", "grad_rel_std_error"),
                    grad_rtol=grad_rtol)


def _plain(x):
    if isinstance(x, torch.Tensor):
        return x.tolist()
    return x


# ---------------------------------------------------------------- GPyTorch linear_operator


def _metric_operator(prob: Problem, counter: list):
    """``JᵀJ`` as a batched ``LinearOperator`` represented by G's parameters.

    Without a graph the product is :func:`metric_matvec`; inside linear_operator's backward
    (``_bilinear_derivative``, grad enabled) it is ``Jᵀ(JV)`` by ``functional_call`` on the
    operator's own copies of the parameters, so autograd gives ``∂(uᵀ M v)/∂θ``.
    """
    from linear_operator.operators import LinearOperator

    G, z = prob.G, prob.z.detach()
    names = [n for n, p in G.named_parameters() if p.requires_grad]
    B, k = z.shape

    class Metric(LinearOperator):
        def __init__(self, anchor, *params):
            super().__init__(anchor, *params)

        def _matmul(self, rhs):
            counter[0] += rhs.shape[-1]
            params = self._args[1:]
            if not (torch.is_grad_enabled() and any(p.requires_grad for p in params)):
                return prob.mv(rhs)
            f = flat_output(lambda u: functional_call(G, dict(zip(names, params, strict=True)),
                                                      (u,)))

            def one(v):
                _, jv = jvp(f, (z,), (v,))
                return vjp(f, z)[1](jv)[0]

            return vmap(one, in_dims=2, out_dims=2)(rhs)

        def _size(self):
            return torch.Size((B, k, k))

        def _transpose_nonbatch(self):
            return self

    return Metric(z.new_zeros(B, k), *prob.params)


def run_gpytorch(prob: Problem, p: int, seed: int, grad: bool, steps: int = 32,
                 tol: float = 1e-2) -> Out:
    import linear_operator

    counter = [0]
    op = _metric_operator(prob, counter)
    torch.manual_seed(seed)  # linear_operator draws its probes from the global RNG
    s = linear_operator.settings
    with (_mode(grad), s.max_cholesky_size(0), s.num_trace_samples(p),
          s.max_lanczos_quadrature_iterations(steps), s.cg_tolerance(tol),
          s.skip_logdet_forward(False), warnings.catch_warnings()):
        warnings.simplefilter("ignore")  # its CG tolerance warnings
        value = op.logdet()
        g = flat_grad(value, prob.params) if grad else None
    return Out(value.detach(), g, counter[0])


# ---------------------------------------------------------------- matfree (JAX)


class MatfreeSLQ:
    """matfree's SLQ log det with the torch metric product behind ``jax.pure_callback``."""

    def __init__(self):
        import jax

        jax.config.update("jax_enable_x64", True)
        self.cache: dict = {}  # compiled once per shape, reused across problems
        self.prob: Problem | None = None  # the problem the callback multiplies with
        self.t_callback = self.t_torch = 0.0
        self.calls = self.columns = 0

    def _host(self):
        def host(v, idx):
            t0 = time.perf_counter()
            idx = np.asarray(idx)
            if not (idx[:, 0] == np.arange(idx.shape[0])).all():
                raise RuntimeError("unexpected batch layout in the matfree callback")
            V = torch.from_numpy(np.array(v)).permute(0, 2, 1)  # [B, k, P]
            t1 = time.perf_counter()
            out = self.prob.mv(V)
            t2 = time.perf_counter()
            res = out.permute(0, 2, 1).contiguous().numpy()
            self.t_torch += t2 - t1
            self.t_callback += time.perf_counter() - t0
            self.calls += 1
            self.columns += V.shape[-1]
            return res

        return host

    def function(self, prob: Problem, p: int, steps: int):
        """The compiled estimator for ``prob``'s shape (compiling it on first use)."""
        self.prob = prob
        B, k = prob.z.shape
        key = (B, k, prob.dtype, p, steps)
        if key not in self.cache:
            import jax
            import jax.numpy as jnp
            from matfree import decomp, funm, stochtrace

            jdt = jnp.float64 if prob.dtype == torch.float64 else jnp.float32
            host = self._host()

            def matvec(v, idx):
                return jax.pure_callback(host, jax.ShapeDtypeStruct(v.shape, v.dtype), v, idx,
                                         vmap_method="broadcast_all")

            integrand = funm.monte_carlo_funm_sym_logdet(decomp.tridiag_sym(steps))
            sampler = stochtrace.sampler_signs(jnp.zeros(k, dtype=jdt), num=p)
            est = stochtrace.estimator_monte_carlo(integrand, sampler)
            fn = jax.jit(jax.vmap(lambda key, i: est(matvec, key, i)))
            idx = jnp.arange(B)
            self.cache[key] = lambda seed: np.asarray(
                fn(jax.random.split(jax.random.PRNGKey(seed), B), idx))
            self.cache[key](-1)  # compile (excluded from the timings)
        return self.cache[key]

    def run(self, prob: Problem, p: int, seed: int, grad: bool, steps: int = 32) -> Out:
        assert not grad
        fn = self.function(prob, p, steps)
        c0 = self.columns
        value = torch.from_numpy(fn(seed).copy())
        return Out(value, None, self.columns - c0)  # columns per sample


# ---------------------------------------------------------------- the rest


def run_hcg(prob: Problem, p: int, seed: int, grad: bool, tol: float = 1e-4) -> Out:
    assert grad
    _, g, info = run_hutchinson_cg(prob.G, prob.z, prob.params, seed, p, tol=tol,
                                   max_iters=4 * prob.z.shape[1])
    return Out(None, g, float(info["matvecs"]))


def run_exact(prob: Problem, p: int, seed: int, grad: bool) -> Out:
    with _mode(grad):
        v = spectral_sum(prob.G, prob.z, "logdet")
    g = flat_grad(v, prob.params) if grad else None
    return Out(v.detach(), g, float(prob.z.shape[1]))


def estimators(args) -> tuple[dict[str, tuple[Callable, tuple[str, ...]]], MatfreeSLQ | None]:
    """``{name: (run(prob, level, seed, grad), modes)}`` and the matfree runner (or None)."""
    mf = MatfreeSLQ() if "matfree" in args.methods else None
    table = {
        "ours": (run_ours, ("value", "grad")),
        "ours_rtol": (run_ours_rtol, ("value", "grad")),
        "ours_grad_rtol": (run_ours_grad_rtol, ("grad",)),
        "ours_defaults": (run_ours_defaults, ("value", "grad")),
        "gpytorch": (lambda pr, p, s, g: run_gpytorch(pr, p, s, g, args.peer_steps,
                                                      args.gpytorch_tol), ("value", "grad")),
        "matfree": (lambda pr, p, s, g: mf.run(pr, p, s, g, args.peer_steps), ("value",)),
        "hutchinson_cg": (lambda pr, p, s, g: run_hcg(pr, p, s, g, args.cg_tol), ("grad",)),
        "exact": (run_exact, ("value", "grad")),
    }
    return {name: table[name] for name in args.methods}, mf


def rtol_available(k: int) -> bool:
    return accepts_option("lanczos", "rtol", k, unchecked=False)


# ---------------------------------------------------------------- one family, one dtype


def levels_for(name: str, mode: str, prob: Problem, run, args) -> list:
    """The probe counts (or rtol targets, or one exact point) that meet each budget."""
    if name == "exact":
        return [0]
    if name == "ours_rtol":
        return list(args.rtols)
    if name == "matfree":  # a fixed number of Lanczos steps per probe
        pilot = args.peer_steps
    else:  # products per probe, from a one-probe pilot (also the warm-up)
        assert name in PILOTED
        pilot = run(prob, 1, 10_000, mode == "grad").products
    levels = []
    for budget in args.budgets:
        p = max(1, min(args.max_probes, round(budget / max(pilot, 1e-9))))
        if p not in levels:
            levels.append(p)
    return levels


def bench_case(family: str, dtype: torch.dtype, args, ests, mf) -> dict:
    prob = make_problem(family, args.k, dtype, args.batch, args.model_seed)
    plan = []  # (name, mode, level)
    for name, (run, modes) in ests.items():
        for mode in modes:
            for level in levels_for(name, mode, prob, run, args):
                plan.append((name, mode, level))
    runs: dict = {key: [] for key in plan}
    warmed = {(name, mode) for name, mode, _ in plan if name in PILOTED}  # by the pilot
    for name, mode, level in plan:  # warm-up: one run per estimator and mode
        if (name, mode) not in warmed:
            ests[name][0](prob, level, 20_000, mode == "grad")
            warmed.add((name, mode))
        if name == "matfree":  # compile every shape before the timings
            mf.function(prob, level, args.peer_steps)
    if mf is not None:  # the bridge is measured over the timed runs only
        mf.t_callback = mf.t_torch = 0.0
        mf.calls = mf.columns = 0
    for seed in range(args.seeds):  # interleaved: every variant within each seed
        for key in plan:
            name, mode, level = key
            # Every call linearises G afresh, as ours does (and as a training step must).
            prob._mv = None
            t0 = time.perf_counter()
            out = ests[name][0](prob, level, seed, mode == "grad")
            runs[key].append((time.perf_counter() - t0, out))
    rows = [summarise(prob, key, runs[key]) for key in plan]
    bridge = None
    if mf is not None and mf.calls:
        total = sum(t for key in plan if key[0] == "matfree" for t, _ in runs[key])
        bridge = {"matfree_total_s": total, "callback_s": mf.t_callback,
                  "torch_products_s": mf.t_torch,
                  "bridge_copies_s": mf.t_callback - mf.t_torch, "calls": mf.calls}
    return {"family": family, "dtype": str(dtype).replace("torch.", ""), "k": args.k,
            "batch": args.batch, "logdet_true": prob.v_true.tolist(),
            "grad_norm_true": float(prob.g_true.norm()), "rows": rows,
            "matfree_bridge": bridge}


def summarise(prob: Problem, key, outs) -> dict:
    name, mode, level = key
    secs = [t for t, _ in outs]
    row = {"method": name, "mode": mode, "level": level,
           "products": statistics.mean(o.products for _, o in outs),
           "seconds": statistics.median(secs)}
    if mode == "value":
        err = torch.stack([o.value.double() - prob.v_true for _, o in outs])  # [S, B]
        row["value_rms_nats"] = float(err.pow(2).mean().sqrt())
        row["value_bias_nats"] = float(err.mean())
        row["value_rel"] = row["value_rms_nats"] / float(prob.v_true.abs().mean())
    else:
        g_norm = prob.g_true.norm()
        rel = [float((o.grad.double() - prob.g_true).norm() / g_norm) for _, o in outs]
        row["grad_rel"] = math.sqrt(statistics.mean(r * r for r in rel))
        row["grad_cos"] = statistics.mean(cosine(o.grad.double(), prob.g_true) for _, o in outs)
    extras = [o.extra for _, o in outs if o.extra]
    if extras:
        row["extra"] = extras
    if name == "ours_rtol" and mode == "value":  # achieved relative error vs the target
        achieved = [a for _, o in outs for a in achieved_rel_error(o, prob).tolist()]
        row["within_rtol"] = sum(a <= level for a in achieved) / len(achieved)
    return row


# ---------------------------------------------------------------- analysis and tables


def _err(row) -> float:
    return row["value_rel"] if row["mode"] == "value" else row["grad_rel"]


def _curve(rows, name, mode):
    pts = sorted((r["seconds"], _err(r), r["products"]) for r in rows
                 if r["method"] == name and r["mode"] == mode)
    return pts


def _at(pts, x: float, axis: int) -> tuple[float, bool]:
    """Error interpolated log-log at seconds (axis 0) or products (axis 2); outside the
    measured range, extrapolated from the nearest point along slope −½ (flag True)."""
    pts = sorted(pts, key=lambda p: p[axis])
    xs = [p[axis] for p in pts]
    es = [max(p[1], 1e-300) for p in pts]
    if x <= xs[0] or x >= xs[-1]:
        i = 0 if x <= xs[0] else -1
        return es[i] * math.sqrt(xs[i] / x), not math.isclose(x, xs[i], rel_tol=1e-9)
    for j in range(len(xs) - 1):
        if xs[j] <= x <= xs[j + 1]:
            if xs[j + 1] == xs[j]:
                return es[j], False
            w = math.log(x / xs[j]) / math.log(xs[j + 1] / xs[j])
            return math.exp((1 - w) * math.log(es[j]) + w * math.log(es[j + 1])), False
    raise AssertionError


def slope(pts) -> float | None:
    if len(pts) < 2:
        return None
    x = np.log([p[2] for p in pts])
    y = np.log([max(p[1], 1e-300) for p in pts])
    if np.ptp(x) == 0:
        return None
    return float(np.polyfit(x, y, 1)[0])


def comparisons(case) -> list[dict]:
    """Ours vs the best peer at each of ours' budgets, at equal seconds and products."""
    out = []
    for mode, peers in (("value", VALUE_PEERS), ("grad", GRAD_PEERS)):
        curves = {p: _curve(case["rows"], p, mode) for p in peers}
        curves = {p: c for p, c in curves.items() if c}
        for ours in ("ours", "ours_rtol"):
            for t, e, products in _curve(case["rows"], ours, mode):
                best_t = best_p = None
                for peer, pts in curves.items():
                    et, ft = _at(pts, t, 0)
                    ep, fp = _at(pts, products, 2)
                    if best_t is None or et < best_t[1]:
                        best_t = (peer, et, ft)
                    if best_p is None or ep < best_p[1]:
                        best_p = (peer, ep, fp)
                if best_t is None:
                    continue
                out.append({"family": case["family"], "dtype": case["dtype"], "mode": mode,
                            "ours": ours, "products": products, "seconds": t, "error": e,
                            "best_peer_at_seconds": best_t[0],
                            "ratio_at_seconds": best_t[1] / max(e, 1e-300),
                            "extrapolated_s": best_t[2],
                            "best_peer_at_products": best_p[0],
                            "ratio_at_products": best_p[1] / max(e, 1e-300),
                            "extrapolated_p": best_p[2]})
    return out


def _fmt_err(row) -> str:
    if row["mode"] == "value":
        return f"{row['value_rel']:.2%} ({row['value_rms_nats']:.3g} nats)"
    return f"{row['grad_rel']:.3f} (cos {row['grad_cos']:.3f})"


def summary_lines(result) -> list[str]:
    """One row per family, dtype and mode: slopes, and ours' default vs the best peer."""
    lines = ["## Summary: ours (default) vs the best peer", "",
             "slope: exponent of error against products (−½ unbiased; near 0 = a bias "
             "dominates). Ratios: best peer's error / ours (> 1: ours better), range over "
             "ours' budgets; * = at least one extrapolated.", "",
             "| family | dtype | mode | slope ours | slopes peers | ratio at equal products "
             "| ratio at equal seconds | exact: seconds / ours' largest budget |",
             "|---|---|---|---|---|---|---|---|"]
    for case in result["cases"]:
        for mode, peers in (("value", VALUE_PEERS), ("grad", GRAD_PEERS)):
            comps = [c for c in result["comparisons"] if c["family"] == case["family"]
                     and c["dtype"] == case["dtype"] and c["mode"] == mode
                     and c["ours"] == "ours"]
            if not comps:
                continue
            s_ours = slope(_curve(case["rows"], "ours", mode))
            s_peers = ", ".join(
                f"{p} {s:+.2f}" for p in peers
                if (s := slope(_curve(case["rows"], p, mode))) is not None)

            def span(key, flag, comps=comps):
                vals = [c[key] for c in comps]
                star = "*" if any(c[flag] for c in comps) else ""
                return f"{min(vals):.2f}–{max(vals):.2f}{star}"

            exact = [r for r in case["rows"] if r["method"] == "exact" and r["mode"] == mode]
            t_ours = max(comps, key=lambda c: c["products"])["seconds"]
            ex = f"{exact[0]['seconds'] / t_ours:.2f}" if exact else ""
            lines.append(f"| {case['family']} | {case['dtype']} | {mode} | "
                         f"{'' if s_ours is None else f'{s_ours:+.2f}'} | {s_peers} | "
                         f"{span('ratio_at_products', 'extrapolated_p')} | "
                         f"{span('ratio_at_seconds', 'extrapolated_s')} | {ex} |")
    return lines + [""]


def _probes_used(row: dict) -> int:
    """Ours' probes per sample, from the run's report: fewer than asked once Hadamard
    probes reach their population ``K`` (exact)."""
    return max([e["num_probes"] for e in row.get("extra", []) if "num_probes" in e],
               default=row["level"])


def markdown(result) -> str:
    lines = [f"# bench_peers: {result['header']}", ""]
    lines += summary_lines(result)
    lines += ["## Error against products and seconds", "",
              "value: relative RMS error of log det (RMS nats); gradient: relative error "
              "‖g−g*‖/‖g*‖ (mean cosine). Seconds: median per call (batch of "
              f"{result['args']['batch']}), values timed without the backward pass. slope: "
              "exponent of error against products (−½ unbiased).", "",
              "| family | dtype | mode | method | level | products/sample | seconds | error "
              "| slope |", "|---|---|---|---|---|---|---|---|---|"]
    for case in result["cases"]:
        slopes = {}
        for row in case["rows"]:
            key = (row["method"], row["mode"])
            if key not in slopes:
                slopes[key] = slope(_curve(case["rows"], *key))
            s = slopes[key]
            level = {"ours_rtol": f"rtol={row['level']}", "exact": "-"}.get(
                row["method"], f"p={row['level']}")
            if row["method"] == "ours" and _probes_used(row) < row["level"]:
                level += f" ({_probes_used(row)} used: all of K)"
            within = (f"; ≤ rtol in {row['within_rtol']:.0%}" if "within_rtol" in row
                      else "")
            lines.append(f"| {case['family']} | {case['dtype']} | {row['mode']} | "
                         f"{row['method']} | {level} | {row['products']:.0f} | "
                         f"{row['seconds']:.3f} | {_fmt_err(row)}{within} | "
                         f"{'' if s is None else f'{s:+.2f}'} |")
    lines += ["", "## Ours vs the best peer (ratio > 1: ours has the lower error)", "",
              "At ours' seconds (and, second, at ours' products) the best peer's error, "
              "interpolated log-log between its budgets (* = extrapolated along slope −½ "
              "outside its measured range), divided by ours'. value peers: "
              f"{', '.join(VALUE_PEERS)}; gradient peers: {', '.join(GRAD_PEERS)}.", "",
              "| family | dtype | mode | ours | products | seconds | ours error | best peer "
              "(equal s) | ratio, equal s | best peer (equal products) | ratio, equal "
              "products |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for c in result["comparisons"]:
        lines.append(f"| {c['family']} | {c['dtype']} | {c['mode']} | {c['ours']} | "
                     f"{c['products']:.0f} | {c['seconds']:.3f} | {c['error']:.3g} | "
                     f"{c['best_peer_at_seconds']} | {c['ratio_at_seconds']:.2f}"
                     f"{'*' if c['extrapolated_s'] else ''} | {c['best_peer_at_products']} | "
                     f"{c['ratio_at_products']:.2f}{'*' if c['extrapolated_p'] else ''} |")
    bridges = [(c["family"], c["dtype"], c["matfree_bridge"]) for c in result["cases"]
               if c.get("matfree_bridge")]
    if bridges:
        lines += ["", "## matfree bridge (jax.pure_callback ↔ torch), summed over the case",
                  "timed runs only. 'JAX + dispatch' = matfree's seconds outside the "
                  "callback (its Lanczos, the callback round trips); 'copies' = numpy↔torch "
                  "inside the callback.", "",
                  "| family | dtype | callbacks | matfree total | torch products | copies | "
                  "JAX + dispatch |", "|---|---|---|---|---|---|---|"]
        for fam, dt, b in bridges:
            lines.append(f"| {fam} | {dt} | {b['calls']} | {b['matfree_total_s']:.2f} s | "
                         f"{b['torch_products_s']:.2f} s | {b['bridge_copies_s']:.2f} s | "
                         f"{b['matfree_total_s'] - b['callback_s']:.2f} s |")
    if result.get("memory"):
        lines += ["", "## Peak memory (fresh subprocess, RSS above set-up, MiB)", "",
                  "| family | dtype | method | mode | level | first call | second call |",
                  "|---|---|---|---|---|---|---|"]
        for m in result["memory"]:
            lines.append(f"| {m['family']} | {m['dtype']} | {m['method']} | {m['mode']} | "
                         f"{m['level']} | {m['peak_mib']:.0f} | {m['steady_mib']:.0f} |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- memory


DTYPES = {"float32": torch.float32, "float64": torch.float64}


def memory_child(args) -> None:
    family, name, mode, level, dtype = args.memory_child
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    prob = make_problem(family, args.k, DTYPES[dtype], args.batch, args.model_seed,
                        truth=False)
    args.methods = [name]
    run = estimators(args)[0][name][0]
    level = float(level) if name in ("ours_rtol", "ours_grad_rtol") else int(level)
    if name == "matfree":  # JIT compilation first: its peak is not the estimator's
        run(prob, level, 0, False)
    if args.warm_jvp:  # torch's one-time forward-mode set-up, paid by any earlier JVP of G
        jacobian_columns(prob.G, prob.z.detach(), torch.ones_like(prob.z[:1]))
    peaks = []
    for seed in (1, 1):  # the first call, then the steady state of the same call again
        gc.collect()
        base = reset_peak_rss()  # the kernel's high-water mark restarts here
        run(prob, level, seed, mode == "grad")
        peaks.append((peak_rss() - base) / 2**20)
        prob._mv = None  # the peers' linearisation of G is rebuilt by each call, as in training
    print(json.dumps({"peak_mib": peaks[0], "steady_mib": peaks[1]}))


def peak_memory(args, family, name, mode, level, dtype, warm_jvp: bool = False) -> dict:
    """``{"peak_mib": first call, "steady_mib": second call}`` in a fresh subprocess; with
    ``warm_jvp`` the process first runs one JVP of ``G`` (torch's first use of forward
    mode, about 90 MiB on the zoo, is then not counted in the first call)."""
    cmd = [sys.executable, __file__, "--memory-child", family, name, mode, str(level), dtype,
           "--k", str(args.k), "--batch", str(args.batch), "--threads", str(args.threads),
           "--peer-steps", str(args.peer_steps), "--gpytorch-tol", str(args.gpytorch_tol),
           "--cg-tol", str(args.cg_tol), "--model-seed", str(args.model_seed)]
    cmd += ["--warm-jvp"] if warm_jvp else []
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MALLOC_MMAP_THRESHOLD_="65536")
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- main


def main(args) -> dict:
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")  # non-convergence is visible in the errors instead
    has_rtol = rtol_available(args.k)
    if not has_rtol and "ours_rtol" in args.methods:
        args.methods.remove("ours_rtol")
    header = (f"{os.cpu_count()} cores, {args.threads} thread(s), torch {torch.__version__}; "
              f"k={args.k}, batch {args.batch}, {args.seeds} seeds, budgets "
              f"{list(args.budgets)} products/sample; ours_rtol "
              f"{'run, rtol ' + str(list(args.rtols)) if has_rtol else 'NOT run (no rtol option)'}"
              f"; peers: {args.peer_steps} Lanczos steps, gpytorch cg_tol {args.gpytorch_tol}, "
              f"hutchinson_cg tol {args.cg_tol}")
    print(f"# bench_peers: {header}", flush=True)
    ests, mf = estimators(args)
    cases, t_start = [], time.perf_counter()
    for family in args.families:
        for dtype in args.dtypes:
            t0 = time.perf_counter()
            case = bench_case(family, DTYPES[dtype], args, ests, mf)
            cases.append(case)
            print(f"  {family} {dtype}: {time.perf_counter() - t0:.0f} s", flush=True)
    result = {"header": header, "args": {k: v for k, v in vars(args).items()
                                         if k != "memory_child"},
              "cases": cases, "comparisons": [c for case in cases for c in comparisons(case)],
              "seconds_total": time.perf_counter() - t_start}
    if args.memory:
        mem = []
        for family in args.memory_families or args.families:
            for case in cases:
                if case["family"] != family or case["dtype"] != "float32":
                    continue
                for name in args.methods:
                    for mode in ests[name][1]:
                        rows = [r for r in case["rows"] if r["method"] == name
                                and r["mode"] == mode]
                        level = rows[-1]["level"] if name != "ours_rtol" else rows[0]["level"]
                        mem.append({"family": family, "dtype": "float32", "method": name,
                                    "mode": mode, "level": level,
                                    **peak_memory(args, family, name, mode, level,
                                                            "float32")})
        result["memory"] = mem
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1))
    md = markdown(result)
    out.with_suffix(".md").write_text(md)
    plot(result, out.with_suffix(".png"))
    print(md)
    print(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.md')} "
          f"({result['seconds_total']:.0f} s)")
    return result


PLOT_STYLE = {"ours": ("C0", "o", "ours (default)"), "ours_rtol": ("C0", "x", "ours, rtol"),
              "matfree": ("C1", "s", "matfree"), "gpytorch": ("C2", "^", "GPyTorch"),
              "hutchinson_cg": ("C3", "v", "Hutchinson + CG")}


def plot(result: dict, path: Path) -> Path:
    """Error against metric products and against seconds, one column per family: value
    (relative RMS error, top rows) and gradient (relative error, bottom rows), log-log;
    the exact mode's cost as a dotted line (its error is rounding only)."""
    from matplotlib.ticker import NullFormatter

    from spectral_backprop.pictures import pyplot, save_figure

    plt = pyplot()
    cases = result["cases"]
    fig, axes = plt.subplots(4, len(cases), figsize=(3.2 * len(cases), 12), squeeze=False,
                             constrained_layout=True)
    for col, case in enumerate(cases):
        for row, (mode, axis) in enumerate([("value", 2), ("value", 0), ("grad", 2),
                                            ("grad", 0)]):
            ax = axes[row, col]
            for name, (color, marker, label) in PLOT_STYLE.items():
                pts = sorted(_curve(case["rows"], name, mode), key=lambda q: q[axis])
                if pts:
                    ax.loglog([q[axis] for q in pts], [q[1] for q in pts], color=color,
                              marker=marker, label=label, lw=1, ms=4,
                              ls="none" if name == "ours_rtol" else "-")
            exact = _curve(case["rows"], "exact", mode)
            if exact:
                ax.axvline(exact[0][axis], color="k", ls=":", lw=1, label="exact (cost)")
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.set_xlabel("products / sample" if axis == 2 else "seconds / call")
            if col == 0:
                ax.set_ylabel(f"{'value' if mode == 'value' else 'gradient'} rel. error")
            if row == 0:
                ax.set_title(f"{case['family']} ({case['dtype']})")
            ax.grid(True, which="major", lw=0.3)
    axes[0, 0].legend(fontsize=7)
    axes[2, 0].legend(fontsize=7)  # the gradient's peers differ
    fig.suptitle(result["header"], fontsize=7)
    return save_figure(fig, path)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="float32 only, 3 seeds, budgets 64/256, rtol 0.1, memory of one family "
                        "(~4 min on 2 busy cores)")
    p.add_argument("--families", nargs="+", default=list(ZOO_FAMILIES))
    p.add_argument("--dtypes", nargs="+", default=["float32", "float64"], choices=DTYPES)
    main_methods = ["ours", "ours_rtol", "gpytorch", "matfree", "hutchinson_cg", "exact"]
    p.add_argument("--methods", nargs="+", default=main_methods, choices=main_methods)
    p.add_argument("--k", type=int, default=256)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--seeds", type=int, default=16)
    p.add_argument("--budgets", type=int, nargs="+", default=[64, 256, 1024, 4096],
                   help="metric products per sample")
    p.add_argument("--rtols", type=float, nargs="+", default=[0.1, 0.03, 0.01])
    p.add_argument("--max-probes", type=int, default=1024)
    p.add_argument("--peer-steps", type=int, default=32,
                   help="Lanczos steps per probe for matfree and linear_operator")
    p.add_argument("--gpytorch-tol", type=float, default=1e-2)
    p.add_argument("--cg-tol", type=float, default=1e-4, help="hutchinson_cg's CG tolerance")
    p.add_argument("--model-seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--memory", action="store_true", help="peak memory per variant (subprocess)")
    p.add_argument("--memory-families", nargs="*", default=None)
    p.add_argument("--out", default="runs/bench_peers/bench_peers")
    p.add_argument("--memory-child", nargs=5, help=argparse.SUPPRESS)
    p.add_argument("--warm-jvp", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--plot", metavar="JSON", default=None,
                   help="no run: draw error against products and seconds from a results "
                        "JSON into the PNG beside it")
    args = p.parse_args(argv)
    if args.quick:
        args.seeds, args.budgets, args.rtols, args.dtypes = 3, [64, 256], [0.1], ["float32"]
        args.memory, args.memory_families = True, args.memory_families or ["dcgan_plain"]
    return args


if __name__ == "__main__":
    ARGS = parse_args()
    if ARGS.memory_child:
        memory_child(ARGS)
    elif ARGS.plot:
        print(plot(json.loads(Path(ARGS.plot).read_text()), Path(ARGS.plot).with_suffix(".png")))
    else:
        main(ARGS)
