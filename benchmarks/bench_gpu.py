"""Exact and stochastic spectral backprop on one device, and the float32 / TF32 / bf16 check.

Part of ``scripts/gpu_check.sh``; runs on any device (``--device cpu`` for a dry run).

1. **Exact vs stochastic** on a DCGAN-style generator with 3×64×64 output
   (``DCGANGenerator(k, 3, 64, width)``), float32, random initialisation, batch B, at each
   ``--sizes`` k (128, 512, 1024 by default): the time of value + parameter gradient of
   ``method="exact"`` and ``method="lanczos"`` (its defaults; and ``rtol=0.02`` with at
   most 256 probes when the library has it), interleaved, medians after a warm-up
   (``bench_stochastic.interleaved``,
   with a device synchronisation in each timed call); peak device memory per variant
   (``torch.cuda.max_memory_allocated`` above the set-up; not measured on the CPU, where
   ``bench_stochastic.py`` measures it); the stochastic value's relative error and the
   gradient's cosine against exact.
2. **Precision** (DESIGN.md §5): the float32 exact log det and its gradient against
   float64 on the same map, for a DCGAN 3×64×64 and the ill-conditioned zoo generator
   ``dcgan_plain`` with ``scale=100``, under (a) the library's policy (products in full
   float32: TF32 and autocast off inside, ``linalg/jacobian.py``), (b) TF32 allowed
   (``reduced_precision_allowed()`` with cuDNN and matmul TF32 on), (c) bf16 autocast
   around the call with the policy, (d) bf16 autocast with reduced precision allowed;
   with the time of (a) against (b), the price of the policy.

Usage::

    .venv/bin/python benchmarks/bench_gpu.py --device cuda            # ~2 min on an H200
    .venv/bin/python benchmarks/bench_gpu.py --device cpu --sizes 8 16 --batch 2 \\
        --width 8 --repeats 1 --precision-k 16                         # dry run
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import statistics
import warnings

import torch

from bench_stochastic import cosine, flat_grad, interleaved, run_exact
from spectral_backprop.linalg.jacobian import reduced_precision_allowed
from spectral_backprop.models import DCGANGenerator
from spectral_backprop.models.zoo import zoo_generator
from spectral_backprop.spectral import spectral_sum
from spectral_backprop.spectral.registry import accepts_option

# rtol bounds the error at 95% confidence (about two standard errors): 0.02 asks for the
# ~1% standard error the check was sized for, and max_probes caps the surrogate's graph
# (one JVP per probe) and the time within the script's step limit.
RTOL = 0.02
RTOL_OPTIONS = {"rtol": RTOL, "max_probes": 256}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_lanczos(G, z, params, seed: int, **options):
    """``method="lanczos"`` with a generator on z's device; value, gradient, info."""
    gen = torch.Generator(device=z.device).manual_seed(seed)
    est = spectral_sum(G, z, "logdet", method="lanczos", generator=gen, return_info=True,
                       **options)
    return est.value.detach(), flat_grad(est.value, params), est.info


def peak_mib(fn, device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    sync(device)
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    fn()
    sync(device)
    return (torch.cuda.max_memory_allocated(device) - base) / 2**20


def _fmt_mib(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.0f} MiB"


def speed_table(args, device: torch.device) -> list[dict]:
    print(f"\n## 1. exact vs lanczos, DCGANGenerator(k, 3, 64, width={args.width}), float32, "
          f"batch {args.batch}, {args.repeats} repeats\n")
    print("| k | exact | lanczos (defaults) | exact / lanczos | peak mem exact | peak mem "
          "lanczos | lanczos value rel. err | gradient cosine | products/sample |")
    print("|---|---|---|---|---|---|---|---|---|")
    rows = []
    for k in args.sizes:
        torch.manual_seed(0)
        G = DCGANGenerator(k, 3, 64, args.width).to(device).eval()
        z = torch.randn(args.batch, k, device=device)
        params = [p for p in G.parameters() if p.requires_grad]
        variants = {"exact": lambda s, G=G, z=z, p=params: run_exact(G, z, p),
                    "lanczos": lambda s, G=G, z=z, p=params: run_lanczos(G, z, p, s)}
        if accepts_option("lanczos", "rtol", k, unchecked=False):
            variants[f"lanczos rtol={RTOL}"] = (
                lambda s, G=G, z=z, p=params: run_lanczos(G, z, p, s, **RTOL_OPTIONS))
        t = interleaved({name: (lambda s, fn=fn: (fn(s), sync(device)))
                         for name, fn in variants.items()}, args.repeats)
        mem = {name: peak_mib(lambda fn=fn: fn(99), device) for name, fn in variants.items()}
        v_ex, g_ex, _ = run_exact(G, z, params)
        row = {"k": k, "seconds": t, "peak_mib": mem}
        for name in variants:
            if name == "exact":
                continue
            outs = [run_lanczos(G, z, params, s, **(RTOL_OPTIONS if "rtol" in name else {}))
                    for s in range(args.seeds)]
            row[name] = {
                "value_rel_error": statistics.mean(
                    float(((o[0] - v_ex) / v_ex).abs().mean()) for o in outs),
                "grad_cosine": statistics.mean(cosine(o[1], g_ex) for o in outs),
                "products": statistics.mean(
                    float(torch.as_tensor(o[2]["matvecs"]).float().mean()) for o in outs)}
            print(f"| {k} | {t['exact']:.3f} s | {t[name]:.3f} s ({name}) | "
                  f"{t['exact'] / t[name]:.2f} | {_fmt_mib(mem['exact'])} | "
                  f"{_fmt_mib(mem[name])} | {row[name]['value_rel_error']:.2%} | "
                  f"{row[name]['grad_cosine']:.3f} | {row[name]['products']:.0f} |", flush=True)
        rows.append(row)
    return rows


@contextlib.contextmanager
def tf32_on():
    """cuDNN convolutions and CUDA matmuls in TF32 (cuDNN's own default for convolutions)."""
    b = torch.backends
    switches = [b.cudnn.conv, b.cuda.matmul]
    if all(hasattr(s, "fp32_precision") for s in switches):
        saved = [s.fp32_precision for s in switches]
        for s in switches:
            s.fp32_precision = "tf32"
        try:
            yield
        finally:
            for s, v in zip(switches, saved, strict=True):
                s.fp32_precision = v
    else:  # torch < 2.9
        saved = (b.cudnn.allow_tf32, b.cuda.matmul.allow_tf32)
        b.cudnn.allow_tf32 = b.cuda.matmul.allow_tf32 = True
        try:
            yield
        finally:
            b.cudnn.allow_tf32, b.cuda.matmul.allow_tf32 = saved


def precision_table(args, device: torch.device) -> list[dict]:
    k = args.precision_k
    print(f"\n## 2. float32 exact log det vs float64 on the same map, k={k}, batch "
          f"{args.batch}\n")
    print("(a) policy: products in full float32 (default); (b) TF32 allowed "
          "(`reduced_precision_allowed()`, cuDNN + matmul TF32 on); (c) bf16 autocast around "
          "the call, policy; (d) bf16 autocast, reduced precision allowed. Time: median of "
          f"{args.repeats} of value + gradient.\n")
    print("| generator | κ(JᵀJ) | setting | max rel. error log det | max abs. error (nats) | "
          "gradient cosine | time | time / (a) |")
    print("|---|---|---|---|---|---|---|---|")
    generators = {
        f"DCGAN 3x64x64 width {args.width}": lambda dt: DCGANGenerator(k, 3, 64, args.width)
        .to(dt),
        "zoo dcgan_plain scale=100": lambda dt: zoo_generator("dcgan_plain", k, seed=0,
                                                              scale=100.0, dtype=dt),
    }
    ac = device.type if torch.amp.is_autocast_available(device.type) else None
    settings = {
        "(a) policy": contextlib.nullcontext,
        "(b) TF32 allowed": lambda: _stack(reduced_precision_allowed(), tf32_on()),
        "(c) bf16 autocast, policy": lambda: _stack(
            torch.autocast(ac, dtype=torch.bfloat16) if ac else contextlib.nullcontext()),
        "(d) bf16 autocast, reduced": lambda: _stack(
            reduced_precision_allowed(), tf32_on(),
            torch.autocast(ac, dtype=torch.bfloat16) if ac else contextlib.nullcontext()),
    }
    rows = []
    for gname, make in generators.items():
        torch.manual_seed(0)
        G64 = make(torch.float64).to(device).eval()
        G32 = copy.deepcopy(G64).float()  # the same map, rounded to float32
        z64 = torch.randn(args.batch, k, device=device, dtype=torch.float64,
                          generator=torch.Generator(device=device).manual_seed(1))
        p64 = [p for p in G64.parameters() if p.requires_grad]
        v64 = spectral_sum(G64, z64, "logdet")
        g64 = flat_grad(v64, p64)
        kappa = _condition(G64, z64)
        z32, p32 = z64.float(), [p for p in G32.parameters() if p.requires_grad]

        def run(ctx, G32=G32, z32=z32, p32=p32):
            with ctx():
                v = spectral_sum(G32, z32, "logdet")
            return v.detach(), flat_grad(v, p32)

        results, failed = {}, {}
        for name, ctx in settings.items():
            try:
                results[name] = run(ctx)
            except Exception as e:  # noqa: BLE001 - reported, the table goes on
                failed[name] = f"{type(e).__name__}: {str(e).splitlines()[0][:160]}"
        t = interleaved({name: (lambda s, ctx=settings[name]: (run(ctx), sync(device)))
                         for name in results}, args.repeats)
        for name in settings:
            row = {"generator": gname, "kappa": kappa, "setting": name}
            if name in failed:
                row["error"] = failed[name]
                print(f"| {gname} | {kappa:.3g} | {name} | fails: {failed[name]} | | | | |")
            else:
                v, g = results[name]
                err = (v.double() - v64.detach()).abs()
                row.update(max_rel_error=float((err / v64.detach().abs()).max()),
                           max_abs_error=float(err.max()), grad_cosine=cosine(g.double(), g64),
                           seconds=t[name])
                print(f"| {gname} | {kappa:.3g} | {name} | {row['max_rel_error']:.2e} | "
                      f"{row['max_abs_error']:.3g} | {row['grad_cosine']:.6f} | "
                      f"{t[name]:.3f} s | {t[name] / t['(a) policy']:.2f} |", flush=True)
            rows.append(row)
    return rows


@contextlib.contextmanager
def _stack(*contexts):
    with contextlib.ExitStack() as stack:
        for c in contexts:
            stack.enter_context(c)
        yield


def _condition(G, z) -> float:
    from spectral_backprop.linalg import jacobian

    with torch.no_grad():
        J = jacobian(G, z)
        s = torch.linalg.svdvals(J)
    return float((s[:, 0] / s[:, -1]).pow(2).max())


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--sizes", type=int, nargs="+", default=[128, 512, 1024])
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seeds", type=int, default=3, help="seeds of the stochastic errors")
    p.add_argument("--precision-k", type=int, default=128)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    warnings.simplefilter("ignore")  # non-convergence shows in the errors
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    b = torch.backends
    switches = {"cudnn.conv": b.cudnn.conv, "cuda.matmul": b.cuda.matmul}
    flags = {n: s.fp32_precision for n, s in switches.items() if hasattr(s, "fp32_precision")}
    print(f"# bench_gpu: {name}; torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN "
          f"{b.cudnn.version() if b.cudnn.is_available() else None}; {os.cpu_count()} CPU "
          f"cores, {torch.get_num_threads()} threads; float32 precision flags {flags}")
    result = {"device": name, "speed": speed_table(args, device),
              "precision": precision_table(args, device)}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1, default=str)


if __name__ == "__main__":
    main()
