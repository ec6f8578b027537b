"""Variance reduction for the stochastic log det at equal products: does any of it pay?

Side by side on the zoo (k = 256, float64, batch 2, value only), at equal products with
``M = JᵀJ`` per sample (sketches included), the RMS error of ``log det M`` against the
dense truth over seeds (2 samples per seed), for

* ``plain``: the default ``method="lanczos"`` (Rademacher probes, adaptive stopping);
* ``hutch++``: Meyer, Musco, Musco & Woodruff 2021 (arXiv 2010.09649) with Lanczos
  quadrature: ``Q = orth(M S)``, ``S`` Gaussian ``k × s`` (``s`` products), the exact part
  ``Σ_i q_iᵀ g(M) q_i`` by Lanczos quadrature started at each column of ``Q`` (weight
  1), and ``p`` Rademacher probes projected into the complement (weight ``1/p``):
  ``tr g(M) = tr(Qᵀ g(M) Q) + E[εᵀ P g(M) P ε]``, ``P = I − QQᵀ``;
* ``deflate``: the existing ``deflate=r`` (Ritz vectors of a 30-step Lanczos sketch);
* ``… +cv``: the same with a control variate for the projected probes' norm. A
  projected Rademacher probe ``x = Pε`` has ``‖x‖² = k − ‖Qᵀε‖²``, no longer the
  constant ``k``; with ``A = g(M)`` and ``c`` the mean of ``g`` (a few nats for log det)
  that adds about ``2 c² s`` to every probe's variance. ``E‖x‖² = k − s`` exactly, so
  ``q_j − c_{−j}(‖x_j‖² − (k − s))`` is unbiased for any ``c_{−j}`` independent of
  ``x_j``; we take the leave-one-out ratio ``c_{−j} = Σ_{i≠j} q_i / Σ_{i≠j} ‖x_i‖²``.

Probes per budget from a pilot call of each method that measures its products per
column, so the products used land near the budget; ``products`` reports what was used
and ``ratio`` is the RMS error relative to plain after scaling both to the budget
(``RMS·√(products/budget)``: error at equal products, assuming the ``1/√products`` law).
The error runs use a linear generator with the same metric (``G(z)_b = R_b z_b``,
``R_bᵀR_b = M_b``, the Cholesky factor) so that they are fast; the seconds are of one
call per cell on the real generator, timed with ``OMP_NUM_THREADS=1 nice -n 10`` on 2
cores shared with other jobs (contended: a rough guide only).

A second, noise-free table gives the RMS ratio at equal *columns* (each column, basis
vector or probe, one Lanczos run; sketch products not charged, which favours the
sketches) from the exact per-probe variances ``2Σ_{i≠j}(PAP)_ij²`` of the dense
``A = log M`` (:func:`analytic`), including an oracle basis: the exact eigenvectors with
the largest ``|log λ − c|``, the best any rank-``s`` deflation could do.

**Result** (k = 256, 8 seeds; the RMS of 16 draws is good to ±18%, a ratio to ±25%):
no sketch pays at 256–1,024 products. Hutch++ is 1.5–5.6× worse than plain at equal
products, 0.97–2.6× with the control variate (below 1 once, resnet at 256: within
noise); ``deflate`` 1.4–5.7×, 1.5–2.4× with the cv. At equal seconds the same or worse:
at equal products Hutch++ took 0.8–1.2× plain's time (its sketch is one batched
product), ``deflate`` 1.0–2.9× (its 30-step sketch is one sequential column); one cold
call per cell then, so the first method timed paid torch's first-use costs (each is now
warmed up first; not re-run).
Why: Rademacher probes already cancel the diagonal of ``log M`` (their variance is
``2Σ_{i≠j}A_ij²``, ~15× below the Gaussian ``2‖A − cI‖_F²`` on ``coupling``), which
projected probes lose; and the centred log-spectrum has no few dominant eigenvalues, so
even the oracle needs ≥ 128 columns (≈ 2,500–4,500 products at 20–36 per column)
before it gains, then 7–28%, and never on ``coupling``. XTrace (Epperly, Tropp & Webber 2024, arXiv
2301.07825) has the same low-rank premise and was not tried.

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/bench_variance.py [--quick]

(``--quick``: coupling and dcgan_plain, 4 seeds, 4 methods: ~2.5 min.) The Hutch++
here uses the library's kernel and stopping rule (:func:`~spectral_backprop.spectral.
slq.lanczos_forms`, the private ``_budget`` of :mod:`~spectral_backprop.spectral.
stochastic` with the basis vectors as deflated columns) and is checked unbiased by
``tests/test_spectral_variance.py``.
"""

from __future__ import annotations

import argparse
import math
import os
import time
import warnings

import torch
from torch import nn

from spectral_backprop import logdet_jtj
from spectral_backprop.linalg import jacobian, metric_matvec, sample_probes
from spectral_backprop.models.zoo import zoo_generator
from spectral_backprop.spectral.deflation import sketch_spectrum
from spectral_backprop.spectral.functions import resolve_function
from spectral_backprop.spectral.slq import lanczos_forms
from spectral_backprop.spectral.stochastic import _budget

LOG = resolve_function("logdet")


class LinearMetric(nn.Module):
    """``G(z)_b = R_b z_b``: a generator whose metric is ``R_bᵀ R_b`` at every z."""

    def __init__(self, R: torch.Tensor):
        super().__init__()
        self.R = R

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.einsum("bij,bj->bi", self.R, z)


def rademacher_variance(A: torch.Tensor) -> torch.Tensor:
    """Per-probe variance of ``εᵀAε`` for Rademacher ``ε``: ``2 Σ_{i≠j} A_ij²`` (Hutchinson
    1989; Avron & Toledo 2011), per sample of ``A[B, k, k]``."""
    return 2 * (A.pow(2).sum((-2, -1)) - torch.diagonal(A, dim1=-2, dim2=-1).pow(2).sum(-1))


def log_metric(M: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(λ, U, log M)`` of symmetric positive definite ``M[B, k, k]`` by ``eigh``."""
    lam, U = torch.linalg.eigh(M)
    return lam, U, U @ torch.diag_embed(lam.log()) @ U.mT


def analytic(M: torch.Tensor, s: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """Per-probe variances, from the dense metric, of the probes of each method.

    ``A = log M``; plain: ``2Σ_{i≠j}A_ij²``; hutch++: the same for ``PAP`` with
    ``Q = orth(M S)``; ``+cv``: for ``P(A − cI)P`` (``c`` the mean of ``log λ``, the
    control variate's target); oracle: ``P`` off the ``s`` exact eigenvectors with the
    largest ``|log λ − c|`` (the best any rank-``s`` deflation could do), with the cv.
    """
    B, k, _ = M.shape
    lam, U, A = log_metric(M)
    c = lam.log().mean(-1)[:, None, None]
    eye = torch.eye(k, dtype=M.dtype)
    S = torch.randn(B, k, s, generator=gen, dtype=M.dtype)
    Q = torch.linalg.qr(M @ S).Q
    P = eye - Q @ Q.mT
    idx = (lam.log() - c[..., 0]).abs().argsort(-1, descending=True)[:, :s]
    Qo = U.gather(-1, idx[:, None, :].expand(-1, k, -1))
    Po = eye - Qo @ Qo.mT
    return {"plain": rademacher_variance(A), "hutch++": rademacher_variance(P @ A @ P),
            "hutch++ +cv": rademacher_variance(P @ (A - c * eye) @ P),
            "oracle +cv": rademacher_variance(Po @ (A - c * eye) @ Po)}


def log_forms(matvec, Q: torch.Tensor, X: torch.Tensor):
    """Lanczos forms of ``log`` for the basis ``Q`` then the probes ``X``, under the
    library's stopping rule (its private ``_budget``, no earlier rounds, no ``rtol``)."""
    B = Q.shape[0]
    return lanczos_forms(matvec, torch.cat([Q, X], -1), LOG, num_matvecs=64, tol=None,
                         budget=_budget(Q.shape[-1], Q.new_zeros(B, 0), Q.new_zeros(B), None))


def two_part(matvec, z, Q, num_probes, gen, cv: bool):
    """``Σ_i q_iᵀ g(M) q_i + (1/p) Σ_j (x_jᵀ g(M) x_j [− c_{−j}(‖x_j‖² − (k − s))])``
    with ``matvec`` the products with ``M`` at ``z``.

    Returns (value[B], products per sample of the Lanczos runs).
    """
    B, k = z.shape
    s = Q.shape[-1]
    X = sample_probes(B, k, num_probes, "rademacher", basis=Q if s else None, generator=gen,
                      dtype=z.dtype)
    forms = log_forms(matvec, Q, X)
    exact, q = forms.values[:, :s].sum(-1), forms.values[:, s:]
    if cv and s and num_probes > 1:
        n2 = X.pow(2).sum(1)
        c = (q.sum(-1, keepdim=True) - q) / (n2.sum(-1, keepdim=True) - n2)
        q = q - c * (n2 - (k - s))
    return exact + q.mean(-1), forms.matvecs


def run_method(name, G, z, n_cols, seed):
    """One estimate of method ``name`` with ``n_cols = (s_or_r, p)``; (value, products)."""
    gen = torch.Generator().manual_seed(seed)
    s, p = n_cols
    B, k = z.shape
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if name in ("plain", "deflate"):
            est = logdet_jtj(G, z, method="lanczos", num_probes=p, generator=gen,
                             return_info=True, check_coupling=False,
                             **({"deflate": s} if name == "deflate" else {}))
            return est.value, est.info["matvecs"]
        matvec = metric_matvec(G, z, check_coupling=False)
        if name.startswith("hutch++"):
            S = torch.randn(B, k, s, generator=gen, dtype=z.dtype)
            Q = torch.linalg.qr(matvec(S)).Q
            used = s
        else:  # deflate+cv: the library's sketch and basis
            sk = sketch_spectrum(matvec, B, k, max(30, 4 * s), generator=gen, dtype=z.dtype,
                                 device=z.device)
            Q, _ = sk.deflation_basis(s, LOG.dg)
            used = sk.matvecs
        value, products = two_part(matvec, z, Q, p, gen, cv=name.endswith("+cv"))
        return value, used + products


def columns_for(name, budget, per_col, frac):
    """(s, p) so that the products land near ``budget`` given the products per column."""
    if name == "plain":
        return 0, max(2, round(budget / per_col["probe"]))
    if name.startswith("hutch++"):
        s = max(1, round(frac * budget / (1 + per_col["basis"])))
        return s, max(2, round((budget - s * (1 + per_col["basis"])) / per_col["probe"]))
    sketch = 30
    r = max(1, round(frac * (budget - sketch) / per_col["basis"]))
    rest = budget - max(sketch, 4 * r) - r * per_col["basis"]
    return r, max(2, round(rest / per_col["probe"]))


def pilot(name, G, z, frac):
    """Products per basis column and per probe, from one call at a small size."""
    B, k = z.shape
    gen = torch.Generator().manual_seed(10_000)
    s, p = (0, 8) if name == "plain" else (8, 8)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        matvec = metric_matvec(G, z, check_coupling=False)
        if name == "plain":
            Q = z.new_zeros(B, k, 0)
        elif name.startswith("hutch++"):
            Q = torch.linalg.qr(matvec(torch.randn(B, k, s, generator=gen, dtype=z.dtype))).Q
        else:
            Q, _ = sketch_spectrum(matvec, B, k, 32, generator=gen, dtype=z.dtype,
                                   device=z.device).deflation_basis(s, LOG.dg)
        X = sample_probes(B, k, p, "rademacher", basis=Q if s else None, generator=gen,
                          dtype=z.dtype)
        forms = log_forms(matvec, Q, X)
    steps = forms.iterations.double()
    # Products are counted per padded lane (the longest column of the batch), as in info.
    lane = forms.matvecs / (s + p)
    scale = lane / steps.mean().item()
    return {"basis": (steps[:, :s].mean().item() * scale) if s else 0.0,
            "probe": steps[:, s:].mean().item() * scale}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", nargs="+",
                        default=["mlp", "dcgan_plain", "coupling", "resnet"])
    parser.add_argument("--k", type=int, default=256)
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--budgets", type=int, nargs="+", default=[256, 1024])
    parser.add_argument("--methods", nargs="+",
                        default=["plain", "hutch++", "hutch++ +cv", "deflate", "deflate+cv"])
    parser.add_argument("--frac", type=float, default=1 / 3,
                        help="share of the budget spent on the sketch and its exact part")
    parser.add_argument("--no-time", action="store_true")
    parser.add_argument("--quick", action="store_true",
                        help="2 families, budget 256 and 1024, 4 seeds")
    args = parser.parse_args()
    if args.quick:
        args.families, args.seeds = ["coupling", "dcgan_plain"], 4
        args.methods = ["plain", "hutch++ +cv", "deflate", "deflate+cv"]
    oracle_rows = []
    print(f"# bench_variance: k={args.k}, float64, batch 2, {args.seeds} seeds, value only; "
          f"frac={args.frac:.2f}; torch {torch.__version__}, {os.cpu_count()} cores, "
          f"{torch.get_num_threads()} thread(s), OMP_NUM_THREADS="
          f"{os.environ.get('OMP_NUM_THREADS')}; times contended (shared machine)\n")
    print("| family | budget | method | s or r | probes | products | RMS error (nats) | "
          "ratio to plain at equal products | s/call (real G) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for family in args.families:
        G = zoo_generator(family, args.k, seed=0, dtype=torch.float64)
        z = torch.randn(2, args.k, dtype=torch.float64,
                        generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            J = jacobian(G, z)
        M = J.mT @ J
        truth = torch.linalg.slogdet(M)[1]
        R = torch.linalg.cholesky(M).mT
        lin = LinearMetric(R)
        for cols in ((8, 8), (16, 48), (32, 96), (64, 192)):
            var = analytic(M, cols[0], torch.Generator().manual_seed(2))
            n = sum(cols)
            ratio = {m: ((v / cols[1]) / (var["plain"] / n)).sqrt().mean().item()
                     for m, v in var.items() if m != "plain"}
            oracle_rows.append(
                f"| {family} | {n} = {cols[0]} + {cols[1]} | {var['plain'].mean().item():.0f} | "
                + " | ".join(f"{ratio[m]:.2f}" for m in ("hutch++", "hutch++ +cv",
                                                         "oracle +cv")) + " |")
        per = {m: pilot(m, lin, z, args.frac) for m in args.methods}
        for budget in args.budgets:
            base = None
            for m in args.methods:
                cols = columns_for(m, budget, per[m], args.frac)
                errs, prods = [], []
                for seed in range(args.seeds):
                    v, n = run_method(m, lin, z, cols, seed)
                    errs.append(v - truth)
                    prods.append(n)
                err = torch.cat(errs)
                rms = err.pow(2).mean().sqrt().item()
                products = sum(prods) / len(prods)
                eq = rms * math.sqrt(products / budget)
                base = eq if m == "plain" else base
                secs = ""
                if not args.no_time:
                    run_method(m, G, z, cols, 1)  # untimed: torch's first-use costs
                    start = time.perf_counter()
                    run_method(m, G, z, cols, 0)
                    secs = f"{time.perf_counter() - start:.2f}"
                ratio = f"{eq / base:.2f}" if base else ""
                print(f"| {family} | {budget} | {m} | {cols[0]} | {cols[1]} | {products:.0f} | "
                      f"{rms:.2f} | {ratio} | {secs} |", flush=True)
    print("\nNoise-free: RMS error at equal columns (basis vectors + probes, each one Lanczos "
          "run; sketch products not charged) relative to plain, from the per-probe variances "
          "of the dense metric (`analytic`), mean over the 2 samples:\n")
    print("| family | columns = s + p | plain per-probe variance | hutch++ | hutch++ +cv | "
          "oracle eigenvectors +cv |")
    print("|---|---|---|---|---|---|")
    print("\n".join(oracle_rows))


if __name__ == "__main__":
    main()
