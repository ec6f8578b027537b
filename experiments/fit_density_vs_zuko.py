"""Reverse KL on U1–U4: our coupling generator (log det by spectral backprop) against zuko
normalising flows trained in the same budget (steps, batch, learning-rate schedule).

Benchmark only: needs ``pip install zuko`` (the ``bench`` extra). Usage::

    python experiments/fit_density_vs_zuko.py --out runs/fit_density --steps 1500 --analytic
    python experiments/fit_density_vs_zuko.py --out runs/fit_density --targets U4 \
        --transform spline --layers 8 --flows
    python experiments/fit_density_vs_zuko.py --out runs/fit_density --targets U4 \
        --anneal-steps 500 --flows NSF NSF-large RealNVP

``--anneal-steps T`` tempers the target, ``β_t log p̃`` with ``β_t = min(1, β_0 + t/T)``
(Rezende & Mohamed 2015), for ours, the analytic control *and* the zuko flows of that
invocation, so that the comparison stays fair; their rows are named ``... anneal T``.

Writes ``OUT/<target>/row.json`` per target (so that targets can run in separate
processes), ``OUT/results.json`` and ``OUT/table.md`` over all finished targets, and
``OUT/<target>.png`` (target, ours, and each zuko flow, as sample histograms).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from spectral_backprop.pictures import save_density_png
from spectral_backprop.train import ReverseKLConfig, get_target, train_reverse_kl
from spectral_backprop.train.reverse_kl import (
    BOX,
    anneal_weight,
    reverse_kl_figures,
    sample_histogram,
    target_image,
)


def zuko_flow(kind: str):
    import zuko

    if kind == "NSF":
        return zuko.flows.NSF(2, transforms=4, hidden_features=(64, 64))
    if kind == "NSF-large":
        return zuko.flows.NSF(2, transforms=8, hidden_features=(128, 128))
    if kind == "MAF":
        return zuko.flows.MAF(2, transforms=8, hidden_features=(64, 64))
    if kind == "RealNVP":
        return zuko.flows.RealNVP(2, transforms=8, hidden_features=(64, 64))
    raise ValueError(kind)


def train_zuko(kind: str, target: str, config: ReverseKLConfig) -> tuple[dict, torch.Tensor]:
    """Same optimiser, schedule, batch, step count and annealing as ``train_reverse_kl``."""
    torch.manual_seed(config.seed)
    flow = zuko_flow(kind)
    log_p = get_target(target)
    opt = torch.optim.Adam(flow.parameters(), lr=config.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=config.steps)
    t0 = time.perf_counter()
    for step in range(config.steps):
        beta = anneal_weight(step, config.anneal_steps, config.anneal_start)
        x, log_q = flow().rsample_and_log_prob((config.batch_size,))
        loss = (log_q - beta * log_p(x)).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    seconds = time.perf_counter() - t0
    torch.manual_seed(10_000 + config.seed)
    with torch.no_grad():
        chunks = range(config.eval_samples // 10_000)
        parts = [flow().rsample_and_log_prob((10_000,)) for _ in chunks]
    x = torch.cat([p[0] for p in parts])
    terms = torch.cat([p[1] for p in parts]) - log_p(x)
    figures = reverse_kl_figures(terms, target)
    figures["seconds"] = seconds
    figures["parameters"] = sum(p.numel() for p in flow.parameters())
    return figures, x


def train_analytic(target: str, config: ReverseKLConfig) -> tuple[dict, torch.Tensor]:
    """Control: our coupling generator trained with its *analytic* log det, same budget.

    Separates the architecture from the estimator: if this matches the spectral run,
    any gap to zuko is the network's, not spectral backpropagation's.
    """
    from spectral_backprop.density import StandardNormal
    from spectral_backprop.train.reverse_kl import build_generator, evaluate_reverse_kl

    torch.manual_seed(config.seed)
    G = build_generator(config)
    log_p, prior = get_target(target), StandardNormal()
    opt = torch.optim.Adam(G.parameters(), lr=config.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=config.steps)
    rng = torch.Generator().manual_seed(config.seed + 1)
    t0 = time.perf_counter()
    for step in range(config.steps):
        beta = anneal_weight(step, config.anneal_steps, config.anneal_start)
        z = torch.randn(config.batch_size, 2, generator=rng)
        loss = (prior.log_prob(z) - G.log_abs_det(z) - beta * log_p(G(z))).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    seconds = time.perf_counter() - t0
    figures = evaluate_reverse_kl(G.eval(), target, config.eval_samples,
                                  seed=10_000 + config.seed)
    figures.update(seconds=seconds, parameters=sum(p.numel() for p in G.parameters()))
    with torch.no_grad():
        x = G(torch.randn(200_000, 2, generator=torch.Generator().manual_seed(1)))
    return figures, x


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/fit_density"))
    parser.add_argument("--targets", nargs="+", default=["U1", "U2", "U3", "U4"])
    parser.add_argument("--flows", nargs="*", default=["NSF", "NSF-large", "RealNVP"])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--layers", type=int, default=16, help="our coupling layers")
    parser.add_argument("--hidden", type=int, default=128, help="our conditioner width")
    parser.add_argument("--mixing", default="rotation", choices=["swap", "rotation"])
    parser.add_argument("--transform", default="affine", choices=["affine", "spline"],
                        help="our coupling transform")
    parser.add_argument("--bins", type=int, default=8, help="spline bins")
    parser.add_argument("--bound", type=float, default=5.0, help="spline interval [-B, B]")
    parser.add_argument("--anneal-steps", type=int, default=0,
                        help="temper the target over T steps, for every model (0: off)")
    parser.add_argument("--anneal-start", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0, help="training seed of every model")
    parser.add_argument("--analytic", action="store_true",
                        help="also train our architecture with its analytic log det (control)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    for target in args.targets:
        config = ReverseKLConfig(target=target, steps=args.steps, batch_size=args.batch_size,
                                 lr=args.lr, num_layers=args.layers, hidden=args.hidden,
                                 mixing=args.mixing, transform=args.transform,
                                 bins=args.bins, bound=args.bound,
                                 anneal_steps=args.anneal_steps,
                                 anneal_start=args.anneal_start,
                                 seed=args.seed, progress=False, ckpt_every=args.steps)
        suffix = f" anneal {args.anneal_steps}" if args.anneal_steps else ""
        suffix += f" seed {args.seed}" if args.seed else ""
        row_path = args.out / target / "row.json"
        row = json.loads(row_path.read_text()) if row_path.exists() else {}
        name = f"ours {args.layers}x{args.hidden} {args.mixing}"
        if args.transform == "spline":
            name += f" spline K={args.bins} B={args.bound:g}"
        name += suffix
        run_dir = args.out / target / name.replace(" ", "_")
        t0 = time.perf_counter()
        result = train_reverse_kl(config, run_dir, resume=True)
        ours = dict(result.metrics, seconds=time.perf_counter() - t0,
                    parameters=sum(p.numel() for p in result.generator.parameters()))
        row[name] = ours
        with torch.no_grad():
            g = torch.Generator().manual_seed(1)
            x_ours = result.generator(torch.randn(200_000, 2, generator=g))
        panels = [(f"target {target}", target_image(target)),
                  (f"{name}: KL {ours['reverse_kl']:.3f}", sample_histogram(x_ours))]
        if args.analytic:
            figures, x = train_analytic(target, config)
            row[f"{name}, analytic log det"] = figures
            panels.append((f"analytic log det: KL {figures['reverse_kl']:.3f}",
                           sample_histogram(x)))
            print(target, "analytic", json.dumps(figures), flush=True)
        for kind in args.flows:
            figures, x = train_zuko(kind, target, config)
            row[f"zuko {kind}{suffix}"] = figures
            panels.append((f"zuko {kind}{suffix}: KL {figures['reverse_kl']:.3f}",
                           sample_histogram(x)))
            print(target, kind, json.dumps(figures), flush=True)
        print(target, name, json.dumps(ours), flush=True)
        save_density_png(panels, (-BOX, BOX, -BOX, BOX), args.out / f"{target}_{name}.png".replace(
            " ", "_"), f"{target}: reverse KL in nats (same steps, batch, lr schedule)")
        # Merge with what other invocations wrote for this target meanwhile.
        merged = json.loads(row_path.read_text()) if row_path.exists() else {}
        row_path.write_text(json.dumps({**merged, **row}, indent=2) + "\n")

    results = {p.parent.name: json.loads(p.read_text())
               for p in sorted(args.out.glob("*/row.json"))}
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")

    lines = ["| target | model | parameters | reverse KL ± se | ESS | gap to best zuko |",
             "|---|---|---|---|---|---|"]
    for target, row in results.items():
        zuko = [v["reverse_kl"] for k, v in row.items() if k.startswith("zuko")]
        best = min(zuko) if zuko else float("nan")
        for model, f in sorted(row.items()):
            lines.append(
                f"| {target} | {model} | {f['parameters']} | {f['reverse_kl']:.3f} ± "
                f"{f['reverse_kl_se']:.3f} | {f['ess']:.2f} | {f['reverse_kl'] - best:+.3f} |")
    (args.out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
