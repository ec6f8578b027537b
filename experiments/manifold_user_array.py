"""A user's array end to end: ``spectral-backprop fit-manifold --data sheet.npy``.

The file holds points of a wavy sheet in R³ with a known density,

    x = (u, v, a sin(u) cos(v)),    (u, v) ~ N(0, I₂),    a = 0.5,

a graph over the plane, so one chart covers it (unlike a torus or a sphere, whose
one-chart gaps would blur what this demo checks: that a plain ``[N, n]`` file goes
through the command line and comes back with a calibrated likelihood). Its density
w.r.t. surface area is ``p(u, v) / √(1 + f_u² + f_v²)`` (the area element of a graph
``x₃ = f(u, v)``), so its entropy is

    H = log(2πe) + E[½ log(1 + f_u² + f_v²)],

the expectation by Monte Carlo on 10⁶ fresh points (standard error printed). The
command line knows nothing of this: it reports ``test_nll``; ``kl = test_nll − H``
is computed here.

Usage::

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python experiments/manifold_user_array.py \
        --steps 3000
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

A = 0.5


def sample(n: int, rng: np.random.Generator) -> np.ndarray:
    u, v = rng.standard_normal((2, n))
    return np.stack([u, v, A * np.sin(u) * np.cos(v)], 1)


def entropy(n: int = 1_000_000, seed: int = 1) -> tuple[float, float]:
    """``(H, standard error)`` in nats w.r.t. area (see the module docstring)."""
    u, v = np.random.default_rng(seed).standard_normal((2, n))
    fu, fv = A * np.cos(u) * np.cos(v), -A * np.sin(u) * np.sin(v)
    half = 0.5 * np.log1p(fu**2 + fv**2)
    return math.log(2 * math.pi * math.e) + half.mean(), half.std() / math.sqrt(n)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--num-points", type=int, default=12_000)
    p.add_argument("--out", type=Path, default=None, help="run folder (default: temporary)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "sheet.npy"
        np.save(path, sample(args.num_points, np.random.default_rng(0)))
        out = args.out or Path(tmp) / "run"
        cmd = [sys.executable, "-m", "spectral_backprop", "fit-manifold", "--data", str(path),
               "--latent-dim", "2", "--steps", str(args.steps), "--no-progress",
               "--out", str(out)]
        print("$", " ".join(cmd[1:]), flush=True)
        subprocess.run(cmd, check=True, env=dict(os.environ, OMP_NUM_THREADS="1"),
                       stdout=subprocess.DEVNULL)
        results = json.loads((out / "results.json").read_text())["exact"]
    h, se = entropy()
    nll = results["test_nll"]["mean"]
    print(f"entropy {h:.5f} ± {se:.5f} nats (Monte Carlo, 10⁶ points)")
    print(f"test_nll {nll:.4f} (results.json entropy: {results['entropy']})")
    print(f"kl = test_nll − entropy = {nll - h:.4f}; median distance "
          f"{results['manifold_distance']['mean']:.4f}; "
          f"{results['seconds_per_step']['mean'] * 1e3:.1f} ms / step")


if __name__ == "__main__":
    main()
