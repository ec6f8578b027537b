"""Markdown table of ``spectral-backprop modes`` results beside the published rows.

Usage: ``python experiments/modes_table.py runs/modes_grid runs/modes_ring``
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

from spectral_backprop.studies.modes import describe_terms
from spectral_backprop.train import GANConfig

# Lin et al. 2018 (PacGAN, arXiv 1712.04086), Table 1, 10 runs, and Srivastava et al.
# 2017 (VEEGAN, arXiv 1705.07761), Table 1 ("—": a
# figure we have not checked against the paper, so we do not quote it).
PUBLISHED = {
    "ring": [("GAN (published, PacGAN Table 1)", "6.3", "—", "—"),
             ("PacGAN4 (published)", "7.8", "95.9%", "0.07"),
             ("VEEGAN (published)", "8", "52.9%", "—")],
    "grid": [("GAN (published, PacGAN Table 1)", "17.3", "—", "—"),
             ("PacGAN4 (published)", "24.8", "93.6%", "0.04"),
             ("VEEGAN (published)", "24.6", "40%", "—")],
}


def fmt(stat: dict, scale: float = 1.0, digits: int = 2, suffix: str = "") -> str:
    if stat["mean"] != stat["mean"]:  # NaN: no run has this figure
        return "—"
    return (f"{stat['mean'] * scale:.{digits}f}{suffix} ± {stat['se'] * scale:.{digits}f}"
            f"{suffix}")


def main() -> None:
    for folder in map(Path, sys.argv[1:]):
        res = json.loads((folder / "results.json").read_text())
        name = res["dataset"]
        base = GANConfig.from_dict(res["config"])  # old flat results.json files too
        cfg = replace(base, entropy=replace(base.entropy, weight=res["entropy_weight"]))
        extras = f", width {cfg.width}; {describe_terms(cfg)}"
        print(f"\n**{name}** ({res['seeds']} seeds{extras}, {cfg.steps} steps, "
              "mean ± s.e.)\n")
        print("| variant | modes | high quality | reverse KL | spread (data: 0.97) |")
        print("|---|---|---|---|---|")
        for variant in ("gan", "entropy"):
            v = res["variants"][variant]
            label = {"gan": "GAN (ours, same budget)", "entropy": "GAN + entropy (ours)"}
            nan_kl = sum(1 for r in v["per_seed"] if r["reverse_kl"] != r["reverse_kl"])
            kl = fmt(v["reverse_kl"], digits=3) + (
                f" ({nan_kl} seed(s) with no high-quality sample left out)" if nan_kl else "")
            spread = fmt(v["spread"]) if "spread" in v else "—"  # older results
            print(f"| {label[variant]} | {fmt(v['modes'], digits=1)} | "
                  f"{fmt(v['high_quality'], 100, 1, '%')} | {kl} | {spread} |")
        for row in PUBLISHED[name]:
            print("| " + " | ".join(row) + " | — |")
        print("\nper seed (modes / high quality / reverse KL / spread):\n")
        for variant in ("gan", "entropy"):
            runs = res["variants"][variant]["per_seed"]
            cells = [f"{r['modes']} / {100 * r['high_quality']:.1f}% / {r['reverse_kl']:.3f}"
                     + (f" / {r['spread']:.2f}" if "spread" in r else "") for r in runs]
            print(f"- {variant}: " + "; ".join(cells))


if __name__ == "__main__":
    main()
