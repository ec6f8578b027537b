"""Helpers shared by the tests.

* tiny generators: :func:`mlp_generator`, :class:`ConvGenerator`;
* gradient flattening: :func:`gradients`, :func:`flat_gradient`;
* analytic generators with a known ``log det JᵀJ``: :func:`linear_generator`,
  :func:`linear_problem`, :func:`ill_conditioned_map`, and the manifolds :func:`sphere`,
  :func:`torus`, :func:`helix`;
* generators that break a rule: :func:`coupled_generators` (they mix samples),
  :func:`rank_deficient`, the custom autograd Functions :class:`ExpNoFunctorch`,
  :class:`ExpNoJvp` and :class:`ExpWithJvp`;
* :func:`check_estimator_convergence` for stochastic estimators;
* :func:`interrupted_then_resumed` and :func:`records_without` for resume tests;
  :func:`count_coupling_checks` for the training loops' skipped coupling test.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import pytest
import torch
from torch import Tensor

from spectral_backprop.runfiles import read_metrics


def mlp_generator(k: int = 3, n: int = 7, hidden: int = 16, dtype=torch.float64) -> torch.nn.Module:
    """A small smooth MLP generator R^k -> R^n."""
    return torch.nn.Sequential(
        torch.nn.Linear(k, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, n)
    ).to(dtype)


class ConvGenerator(torch.nn.Module):
    """A tiny DCGAN-shaped generator R^k -> R^{1×8×8}."""

    def __init__(self, k: int = 4, dtype=torch.float64):
        super().__init__()
        self.fc = torch.nn.Linear(k, 8 * 4 * 4)
        self.up = torch.nn.ConvTranspose2d(8, 4, 4, stride=2, padding=1)
        self.out = torch.nn.Conv2d(4, 1, 3, padding=1)
        self.to(dtype)

    def forward(self, z):
        h = torch.tanh(self.fc(z)).view(-1, 8, 4, 4)
        return torch.tanh(self.out(torch.nn.functional.softplus(self.up(h))))


# ---------------------------------------------------------------- gradients


def _inputs(G, z: Tensor) -> list[Tensor]:
    params = list(G.parameters()) if isinstance(G, torch.nn.Module) else []
    return [z, *params]


def gradients(value: Tensor, G, z: Tensor) -> list[Tensor]:
    """``∂ Σ value / ∂[z, *G.parameters()]``, zeros for inputs ``value`` does not use.

    (The output bias of a generator does not enter ``J``: autograd returns ``None`` there.)
    """
    inputs = _inputs(G, z)
    grads = torch.autograd.grad(value.sum(), inputs, allow_unused=True)
    return [torch.zeros_like(x) if g is None else g for x, g in zip(inputs, grads, strict=True)]


def flat_gradient(value: Tensor, G, z: Tensor) -> Tensor:
    """:func:`gradients` flattened into one vector, ``z`` first."""
    return torch.cat([g.flatten() for g in gradients(value, G, z)])


# ---------------------------------------------------------------- analytic generators


def linear_generator(n: int = 6, k: int = 3) -> tuple[torch.nn.Linear, Tensor]:
    """``G(z) = Az + b`` with well-separated singular values ``k, k−1, …, 1``.

    ``log det JᵀJ = 2 Σ log s_i = 2 log k!`` everywhere; ``G.latent_dim = k``. Draws from
    the global RNG (seeded per test).
    """
    U, _ = torch.linalg.qr(torch.randn(n, k, dtype=torch.float64))
    V, _ = torch.linalg.qr(torch.randn(k, k, dtype=torch.float64))
    s = torch.arange(k, 0, -1, dtype=torch.float64)
    A = U @ torch.diag(s) @ V.T
    G = torch.nn.Linear(k, n).double()
    with torch.no_grad():
        G.weight.copy_(A)
    G.latent_dim = k
    return G, A


@dataclass
class LinearProblem:
    """Rows of copies of ``z ↦ A z`` with prescribed singular values ``s``.

    Attributes:
        G: ``z[rows, k] ↦ A_b z_b``; every row has its own copy ``A[rows, n, k]`` of ``A₀``,
            so one batched call gives ``rows`` independent estimates of the gradient.
        A: the copies, ``requires_grad``.
        z: ``zeros[rows, k]`` (a linear map has the same metric everywhere).
        logdet: ``log det A₀ᵀA₀ = 2 Σ log s_i``.
        grad: ``∂ log det(AᵀA)/∂A = 2 A⁺ᵀ``, ``[n, k]``.
    """

    G: Callable[[Tensor], Tensor]
    A: Tensor
    z: Tensor
    logdet: float
    grad: Tensor


def linear_problem(s: Tensor, rows: int, seed: int = 0, extra_rows: int = 6) -> LinearProblem:
    """A :class:`LinearProblem` with singular values ``s`` (``n = len(s) + extra_rows``)."""
    g = torch.Generator().manual_seed(seed)
    k, n = len(s), len(s) + extra_rows
    U = torch.linalg.qr(torch.randn(n, k, generator=g, dtype=torch.float64)).Q
    V = torch.linalg.qr(torch.randn(k, k, generator=g, dtype=torch.float64)).Q
    A0 = (U * s) @ V.T
    A = A0.repeat(rows, 1, 1).requires_grad_()
    G = lambda z: torch.einsum("bnk,bk->bn", A, z)  # noqa: E731
    z = torch.zeros(rows, k, dtype=torch.float64)
    return LinearProblem(G, A, z, 2 * s.log().sum().item(), 2 * torch.linalg.pinv(A0).T)


@dataclass
class Manifold:
    """A parametrised surface or curve with its known area element.

    ``half_logdet(z) = ½ log det J(z)ᵀJ(z) = log`` of the k-volume element at ``z``.
    """

    G: Callable[[Tensor], Tensor]
    half_logdet: Callable[[Tensor], Tensor]


def sphere(r: Tensor | float) -> Manifold:
    """The sphere of radius ``r`` in (θ, φ): ``dA = r² sin θ dθ dφ``."""

    def G(u):
        th, ph = u[:, 0], u[:, 1]
        return r * torch.stack([th.sin() * ph.cos(), th.sin() * ph.sin(), th.cos()], 1)

    log_r = torch.log(r) if isinstance(r, Tensor) else math.log(r)
    return Manifold(G, lambda z: 2 * log_r + torch.log(torch.sin(z[:, 0])))


def torus(R: float = 2.0, a: float = 0.5) -> Manifold:
    """The torus with radii ``R > a``: ``dA = a (R + a cos t) ds dt``."""

    def G(u):
        s, t = u[:, 0], u[:, 1]
        w = R + a * t.cos()
        return torch.stack([w * s.cos(), w * s.sin(), a * t.sin()], 1)

    return Manifold(G, lambda z: torch.log(a * (R + a * torch.cos(z[:, 1]))))


def helix() -> Manifold:
    """The curve ``(cos t, sin t, t²/2)``: speed ``|γ'(t)| = √(1 + t²)``."""

    def G(u):
        t = u[:, 0]
        return torch.stack([t.cos(), t.sin(), 0.5 * t * t], 1)

    return Manifold(G, lambda z: torch.log(torch.sqrt(1 + z[:, 0] ** 2)))


def ill_conditioned_map(k: int, n: int, cond: float, dtype: torch.dtype, seed: int = 0):
    """``(G, A, logdet)``: ``G(z) = z Aᵀ`` with singular values log-spaced from 1 to ``1/cond``.

    ``A`` (``requires_grad``) is rounded to ``dtype``; ``logdet = log det AᵀA`` of that
    rounded matrix, from its singular values in float64 (so the rounding of ``A`` is not
    counted as an error of the code under test).
    """
    g = torch.Generator().manual_seed(seed)
    U = torch.linalg.qr(torch.randn(n, k, generator=g, dtype=torch.float64)).Q
    V = torch.linalg.qr(torch.randn(k, k, generator=g, dtype=torch.float64)).Q
    s = torch.logspace(0, -math.log10(cond), k, dtype=torch.float64)
    A = ((U * s) @ V.T).to(dtype).requires_grad_()
    logdet = 2 * torch.linalg.svdvals(A.detach().double()).log().sum().item()
    return (lambda z: z @ A.T), A, logdet


# ---------------------------------------------------------------- rule breakers


def rank_deficient(u: Tensor) -> Tensor:
    """``R^k → R^k`` whose output depends on ``z`` only through ``z0 + z1``: ``JᵀJ`` is singular."""
    s = u[:, :1] + u[:, 1:2]
    return torch.cat([s, s.sin(), u[:, 2:] ** 3 + u[:, 2:]], 1)


def coupled_generators(G: Callable[[Tensor], Tensor]) -> dict[str, Callable[[Tensor], Tensor]]:
    """Variants of a per-sample ``G`` that mix the samples of a batch."""
    F = torch.nn.functional
    return {
        "minus batch mean": lambda z: G(z) - G(z).mean(0),
        "F.batch_norm(training=True)": lambda z: F.batch_norm(G(z), None, None, training=True),
        "broadcast of sample 0": lambda z: G(z) + 0.1 * G(z)[:1],
        "roll over the batch": lambda z: G(z) + 0.1 * G(z).roll(1, 0),
    }


class ExpNoFunctorch(torch.autograd.Function):
    """``exp`` as an old-style custom Function: no ``setup_context``, no ``jvp``."""

    @staticmethod
    def forward(ctx, x):
        y = x.exp()
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        return grad * y


class ExpNoJvp(torch.autograd.Function):
    """``exp`` in the torch.func form (``setup_context``, a vmap rule) but without ``jvp``."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x):
        return x.exp()

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(output)

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        return grad * y


class ExpWithJvp(ExpNoJvp):
    """:class:`ExpNoJvp` with the ``jvp`` staticmethod forward mode needs."""

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(output)
        ctx.y = output

    @staticmethod
    def jvp(ctx, tangent):
        return tangent * ctx.y


# ---------------------------------------------------------------- stochastic estimators


def check_estimator_convergence(
    estimate: Callable[[int, int], Tensor],
    truth: Tensor,
    *,
    num_probes: Sequence[int] = (2, 8, 32),
    seeds: Iterable[int] = range(4),
    slack: float = 1.5,
    max_z: float = 4.5,
    budget: float | None = None,
) -> dict[int, float]:
    """Assert that a stochastic estimator is unbiased and its error falls like ``1/√p``.

    ``estimate(p, seed)`` returns independent estimates with ``p`` probes each along
    its first dimension (e.g. rows of a batch of copies of one latent, each drawing its
    own probes), of quantities that broadcast against ``truth`` on the other dimensions
    (a scalar, or the entries of a gradient). Over all seeds, for every ``p``:

    * **unbiased:** the mean error of each quantity is within ``max_z`` of its
      standard errors (a z-test; ``4.5`` keeps false alarms below 1e-5 per quantity);
    * **falls like 1/√p:** the RMS error ``e(p)`` over draws and quantities is at most
      ``slack · e(p₀) · √(p₀/p)``, ``p₀`` the smallest count. An unbiased estimator has
      ``e(p) = σ/√p``; a bias levels it off. The RMS of ``N`` draws is off by about
      ``1/√(2N)`` relative, so ``slack = 1.5`` leaves room from ``N ≈ 50`` draws on;
    * **budget:** ``e(p_max) ≤ budget`` when one is given.

    Returns ``{p: e(p)}``.
    """
    seeds = list(seeds)
    errors = {}
    for p in num_probes:
        err = torch.cat([estimate(p, seed).detach() - truth for seed in seeds])
        n = err.shape[0]
        z_scores = err.mean(0).abs() / (err.std(0) / math.sqrt(n)).clamp_min(1e-300)
        assert bool((z_scores <= max_z).all()), (
            f"mean error at {p} probes is {z_scores.max().item():.3g} standard errors from 0 "
            f"over {n} estimates (allowed {max_z}): the estimator is biased"
        )
        errors[p] = err.pow(2).mean().sqrt().item()
    p0 = min(num_probes)
    for p, e in errors.items():
        allowed = slack * errors[p0] * math.sqrt(p0 / p)
        assert e <= allowed, (
            f"error {e:.3g} at {p} probes does not fall like 1/√p from {errors[p0]:.3g} at "
            f"{p0} probes (allowed {allowed:.3g}): the estimator is biased. All: {errors}"
        )
    if budget is not None:
        p_max = max(num_probes)
        assert errors[p_max] <= budget, (
            f"error {errors[p_max]:.3g} at {p_max} probes exceeds the budget {budget:.3g}"
        )
    return errors


def torchrun(command: list[str], nproc: int) -> None:
    """Run ``spectral-backprop *command`` under ``torchrun`` with ``nproc`` gloo processes
    (one thread each) and fail the test with the tail of its stderr if it fails."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    import spectral_backprop

    env = dict(os.environ, OMP_NUM_THREADS="1",
               PYTHONPATH=str(Path(spectral_backprop.__file__).parents[1]))
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                f"--nproc_per_node={nproc}"]
    proc = subprocess.run([*launcher, "-m", "spectral_backprop", *command], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]


class Interrupted(Exception):
    """What :func:`interrupted_then_resumed` raises to stop a run, as a kill would."""


def interrupted_then_resumed(monkeypatch, module, train: Callable, config, out, dataset, *,
                             at_step: int, before_stop: Callable[[], None] | None = None):
    """Run ``train(config, out, dataset=dataset)`` (``train_gan``, ``train_manifold``)
    until ``module.save_checkpoint`` has written the checkpoint of ``at_step``, stop it
    there (after ``before_stop()``, e.g. to tear a file), then resume it to the end and
    return the resumed run's result."""
    real_save = module.save_checkpoint

    def save_then_die(path, *, step, **kw):
        real_save(path, step=step, **kw)
        if step == at_step:
            if before_stop is not None:
                before_stop()
            raise Interrupted

    # Only this patch is undone before the resume: the caller's own patches stay.
    with monkeypatch.context() as patch, pytest.raises(Interrupted):
        patch.setattr(module, "save_checkpoint", save_then_die)
        train(config, out, dataset=dataset)
    return train(config, out, resume=True, dataset=dataset)


def records_without(run_dir, key: str) -> list[dict]:
    """The run's ``metrics.jsonl`` records without ``key`` (a wall-clock time)."""
    return [{k: v for k, v in r.items() if k != key} for r in read_metrics(run_dir)]


def count_coupling_checks(monkeypatch) -> list:
    """Record every coupling test with lanes (``check_coupling=True``) that ``G`` gets."""
    # The module, not the function of the same name that spectral_backprop.linalg exports.
    jacobian_module = importlib.import_module("spectral_backprop.linalg.jacobian")
    calls, real = [], jacobian_module._check_coupling

    def counting(cols, scales):
        if scales.shape[0]:
            calls.append(cols.shape)
        return real(cols, scales)

    monkeypatch.setattr(jacobian_module, "_check_coupling", counting)
    return calls

