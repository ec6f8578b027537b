"""Stochastic spectral backpropagation (method="lanczos" | "chebyshev" | "auto").

Budgets are stated per test: ``num_probes`` random vectors, each with at most
``num_matvecs`` products ``Mv = Jᵀ(Jv)``.
"""

import pytest
import torch

from helpers import (
    ConvGenerator,
    check_estimator_convergence,
    flat_gradient,
    linear_problem,
    mlp_generator,
)
from spectral_backprop import SpectralFunction, implicit_log_prob, logdet_jtj, spectral_sum
from spectral_backprop.spectral import (
    AUTO_CROSSOVER,
    METHODS,
    NonConvergenceError,
    NonConvergenceWarning,
    SingularMetricWarning,
    SpectralEstimate,
)

STOCHASTIC = ["lanczos", "chebyshev"]


def _rng(seed):
    return torch.Generator().manual_seed(seed)


def test_methods_are_registered():
    assert {"lanczos", "chebyshev", "auto"} <= set(METHODS)


EXACT_LIMIT_CASES = [
    ("lanczos", fn, make, k)
    for fn in ("logdet", "nuclear", "trace")
    for make, k in ((mlp_generator, 3), (ConvGenerator, 4))
] + [("chebyshev", "logdet", mlp_generator, 3), ("chebyshev", "nuclear", mlp_generator, 3),
     ("chebyshev", "logdet", ConvGenerator, 4)]


@pytest.mark.parametrize("method,fn,make,k", EXACT_LIMIT_CASES)
def test_k_orthogonal_probes_with_full_order_are_exact(method, fn, make, k):
    # Orthogonal probes with p = k sum the trace over a basis; k Lanczos steps (or a
    # converged series and CG) make each quadratic form exact.
    G = make()
    z = torch.randn(3, k, dtype=torch.float64, requires_grad=True)
    exact = spectral_sum(G, z, fn)
    ours = spectral_sum(G, z, fn, method=method, num_probes=k, probes="orthogonal",
                        num_matvecs=k if method == "lanczos" else None, tol=1e-10,
                        generator=_rng(0))
    torch.testing.assert_close(ours, exact)
    torch.testing.assert_close(flat_gradient(ours, G, z), flat_gradient(exact, G, z))


def _z_scores(samples, truth):
    se = samples.std(0) / samples.shape[0] ** 0.5
    return (samples.mean(0) - truth).abs() / (se + 1e-12)


@pytest.mark.parametrize(
    "method,deflate,symmetric",
    [("lanczos", 0, True), ("lanczos", 2, True), ("lanczos", 0, False),
     ("chebyshev", 0, True), ("chebyshev", 2, False)],
)
def test_unbiased_over_seeds(method, deflate, symmetric):
    # Budget: 2 Rademacher probes per estimate, each converged to tol=1e-7 (≤ k = 6
    # Lanczos steps, or the Chebyshev degree for κ plus CG ≤ k). Every row of a batch
    # draws its own probes, so 200 copies of one latent are 200 independent estimates;
    # 20 calls with their own seeds give 20 independent parameter-gradient averages.
    # The averages must match the exact value and gradient: |z-score| ≤ 4.5 per
    # coordinate of the value and z-gradient, and for the ~300 correlated parameters
    # ‖mean − exact‖² within 4× its expected size tr(Cov)/N (about 1× when unbiased; a
    # bias makes the ratio grow with N).
    G = mlp_generator(6, 10, 16)
    z0 = torch.randn(1, 6, dtype=torch.float64)
    z = z0.repeat(200, 1).requires_grad_()
    options = dict(method=method, num_probes=2, tol=1e-7, deflate=deflate, symmetric=symmetric)
    z_ref = z0.clone().requires_grad_()
    exact = logdet_jtj(G, z_ref)
    g_exact = flat_gradient(exact, G, z_ref)
    value = logdet_jtj(G, z, generator=_rng(0), **options)
    z_grad = torch.autograd.grad(value.sum(), z)[0]
    assert (_z_scores(value.detach()[:, None], exact.detach()) < 4.5).all()
    g_z = _z_scores(z_grad, g_exact[:6])
    assert g_z.max() < 4.5
    params = []
    zp = z0.repeat(10, 1).requires_grad_()
    for seed in range(1, 21):
        v = logdet_jtj(G, zp, generator=_rng(seed), **options)
        params.append(flat_gradient(v, G, zp)[zp.numel():] / 10)
    params = torch.stack(params)
    ratio = (params.mean(0) - g_exact[6:]).pow(2).sum() / (params.var(0).sum() / len(params))
    assert ratio < 4


@pytest.mark.parametrize(
    "method,options,value_budget,grad_budget",
    [("lanczos", {}, 0.08, 0.35), ("lanczos", {"deflate": 2}, 0.08, 0.2),
     ("lanczos", {"symmetric": False}, 0.08, 0.6), ("chebyshev", {}, 0.08, 0.35),
     ("chebyshev", {"probes": "gaussian"}, 0.2, 0.4)],
)
def test_error_falls_like_one_over_sqrt_probes(method, options, value_budget, grad_budget):
    # Budget: 2, 8 and 32 probes per estimate, each vector converged to tol=1e-7. Each
    # call estimates 50 copies of one latent (every row draws its own probes), over 2
    # seeds: 100 independent estimates per probe count. The RMS error of the value and
    # of the z-gradient's entries against the exact ones must fall like 1/√p (within
    # 1.5×, see check_estimator_convergence) and, at 32 probes, stay within the stated
    # budgets, relative to |log det| = 16.2 and to the RMS entry ‖∇_z log det‖/√k = 1.04
    # of the gradient. The budgets are about twice the errors measured: value 4.6%,
    # gradient 20% by default; 3.5% and 11% deflated; gradient 36% with symmetric=False;
    # value 12% with Gaussian probes.
    G = mlp_generator(6, 10, 16)
    z0 = torch.randn(1, 6, dtype=torch.float64)
    z_ref = z0.clone().requires_grad_()
    exact = logdet_jtj(G, z_ref)
    g_exact = torch.autograd.grad(exact.sum(), z_ref)[0]

    def estimate(p, seed):
        z = z0.repeat(50, 1).requires_grad_()
        v = logdet_jtj(G, z, method=method, num_probes=p, tol=1e-7, generator=_rng(seed),
                       **options)
        return v.detach(), torch.autograd.grad(v.sum(), z)[0]

    check_estimator_convergence(lambda p, seed: estimate(p, seed)[0], exact.detach(),
                                seeds=range(2), budget=value_budget * exact.abs().item())
    check_estimator_convergence(lambda p, seed: estimate(p, seed)[1], g_exact,
                                seeds=range(2), budget=grad_budget * g_exact.norm().item() / 6**0.5)


def test_agreement_with_exact_on_conv_generator():
    G = ConvGenerator(k=6)
    z = torch.randn(2, 6, dtype=torch.float64, requires_grad=True)
    exact = logdet_jtj(G, z)
    est = logdet_jtj(G, z, method="lanczos", num_probes=64, generator=_rng(1), return_info=True)
    assert isinstance(est, SpectralEstimate)
    assert ((est.value - exact).abs() <= 5 * est.std_error).all()
    cos = torch.nn.functional.cosine_similarity(
        flat_gradient(est.value, G, z), flat_gradient(exact, G, z), 0
    )
    assert cos > 0.9


def test_deflation_reduces_gradient_variance():
    # Two tiny singular values dominate M⁻¹ = (AᵀA)⁻¹; each row of the batch has its
    # own copy of A, so one call gives 40 independent gradient estimates.
    s = torch.linspace(1.0, 2.0, 24, dtype=torch.float64)
    s[:2] = torch.tensor([0.02, 0.03])

    def mse(deflate, probes):
        lin = linear_problem(s, rows=40)
        v = logdet_jtj(lin.G, lin.z, method="lanczos", num_probes=probes, deflate=deflate,
                       generator=_rng(0), tol=1e-8)
        grad = torch.autograd.grad(v.sum(), lin.A)[0]
        return (grad - lin.grad).pow(2).sum((1, 2)).mean()

    # Deflating 2 vectors costs 2 more solves (and the sketch): compare with 6 more probes.
    assert mse(2, 4) < 0.1 * mse(0, 10)


def test_symmetric_split_reduces_gradient_variance():
    # ∂ log det(AᵀA)/∂A = 2A⁺ᵀ. With a spread spectrum the split w = M^{-1/2}ε has a much
    # smaller gradient variance than u = M^{-1}ε paired with ε, at the same budget.
    s = torch.logspace(-1.5, 0, 20, dtype=torch.float64)
    mse = {}
    for symmetric in (True, False):
        lin = linear_problem(s, rows=40)
        v = logdet_jtj(lin.G, lin.z, method="lanczos", num_probes=4, deflate=0,
                       symmetric=symmetric, generator=_rng(0), tol=1e-8)
        grad = torch.autograd.grad(v.sum(), lin.A)[0]
        mse[symmetric] = (grad - lin.grad).pow(2).sum((1, 2)).mean()
    assert mse[True] < 0.5 * mse[False]


def test_symmetric_split_needs_a_nonnegative_derivative():
    G, z = mlp_generator(), torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    neg = SpectralFunction("neglog", lambda x: -torch.log(x), lambda x: -1 / x)
    with pytest.raises(ValueError, match="symmetric=True needs g' >= 0"):
        spectral_sum(G, z, neg, method="lanczos")
    exact = spectral_sum(G, z, neg)
    ours = spectral_sum(G, z, neg, method="lanczos", symmetric=False, num_probes=3,
                        probes="orthogonal", tol=1e-10)
    torch.testing.assert_close(flat_gradient(ours, G, z), flat_gradient(exact, G, z))


def _saved_bytes(value: torch.Tensor) -> int:
    """Bytes of the tensors autograd keeps for the backward pass of ``value``."""
    seen, total, stack = set(), 0, [value.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        for name in dir(node):
            if name.startswith("_saved_"):
                t = getattr(node, name)
                if isinstance(t, torch.Tensor):
                    total += t.numel() * t.element_size()
        stack.extend(n for n, _ in node.next_functions)
    return total


@pytest.mark.filterwarnings("ignore::spectral_backprop.spectral.NonConvergenceWarning")
def test_memory_does_not_grow_with_iterations():
    # The graph kept for backward holds the surrogate's JVPs only: the same bytes for 2
    # or 8 Lanczos steps and for degree 10 or 80 (tol=0 makes every step run; the
    # resulting non-convergence warnings are checked in the next test).
    G = mlp_generator(8, 12, 32)
    z = torch.randn(2, 8, dtype=torch.float64, requires_grad=True)

    def saved(**options):
        return _saved_bytes(logdet_jtj(G, z, num_probes=4, generator=_rng(0), tol=0.0,
                                       **options))

    lanczos = [saved(method="lanczos", num_matvecs=m) for m in (2, 8)]
    cheb = [saved(method="chebyshev", num_matvecs=d) for d in (10, 80)]
    assert lanczos[0] == lanczos[1] > 0
    assert cheb[0] == cheb[1] > 0


@pytest.mark.parametrize("method", STOCHASTIC)
def test_nonconvergence_warns_raises_and_is_recorded(method):
    G = mlp_generator(8, 12, 32)
    z = torch.randn(2, 8, dtype=torch.float64)
    with pytest.warns(NonConvergenceWarning, match="num_matvecs=2"):
        est = logdet_jtj(G, z, method=method, num_matvecs=2, tol=1e-10, return_info=True)
    assert not est.info["converged"].all()
    assert (est.info["residual"] > 1e-10).any()
    with pytest.raises(NonConvergenceError, match="did not reach tol"):
        logdet_jtj(G, z, method=method, num_matvecs=2, tol=1e-10, on_nonconvergence="raise")


@pytest.mark.parametrize(
    "options,error",
    [
        ({"num_probes": 0}, "num_probes must be a positive integer"),
        ({"num_probes": 2.5}, "num_probes must be a positive integer"),
        ({"num_matvecs": 0}, "num_matvecs must be a positive integer"),
        ({"tol": -1.0}, "tol must be a number >= 0"),
        ({"probes": "sobol"}, "probes must be one of"),
        ({"deflate": -1}, "deflate must be an integer"),
        ({"deflate": 3}, "deflate=3 must be smaller than k=3"),
        ({"on_nonconvergence": "ignore"}, "on_nonconvergence must be"),
    ],
)
def test_bad_budgets_are_refused(options, error):
    G, z = mlp_generator(), torch.randn(2, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match=error):
        logdet_jtj(G, z, method="lanczos", **options)
    with pytest.raises(TypeError, match="generator must be a torch.Generator"):
        logdet_jtj(G, z, method="chebyshev", generator=0)


def test_generator_makes_results_repeatable_and_info_is_complete():
    G = mlp_generator(6, 10)
    z = torch.randn(2, 6, dtype=torch.float64)
    a = logdet_jtj(G, z, method="chebyshev", deflate=1, generator=_rng(3), return_info=True)
    b = logdet_jtj(G, z, method="chebyshev", deflate=1, generator=_rng(3), return_info=True)
    torch.testing.assert_close(a.value, b.value)
    assert a.info["degree"] >= 1 and a.info["matvecs"] > 0
    lo, hi = a.info["interval"]
    lam = torch.linalg.eigvalsh(
        (lambda J: J.mT @ J)(torch.func.vmap(torch.func.jacrev(lambda x: G(x[None])[0]))(z))
    )
    assert (lo <= lam[:, 0]).all() and (hi >= lam[:, -1]).all()
    assert a.info["deflated"].shape == (2, 1) and (a.std_error > 0).all()


def test_auto_dispatches_on_the_measured_crossover():
    G = mlp_generator(3, 7)
    z = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    with pytest.warns(UserWarning, match="chose 'exact'.*'num_probes'"):
        small = logdet_jtj(G, z, method="auto", num_probes=4)
    torch.testing.assert_close(small, logdet_jtj(G, z))
    big = AUTO_CROSSOVER
    Gb = torch.nn.Linear(big, 4 * big).double()
    zb = torch.randn(1, big, dtype=torch.float64)
    est = logdet_jtj(Gb, zb, method="auto", generator=_rng(0), return_info=True)
    assert est.info["method"] == "lanczos"
    assert abs(est.value - logdet_jtj(Gb, zb)).item() < 6 * est.std_error.item()


def test_public_density_and_float32_follow_z():
    G = mlp_generator(4, 9, dtype=torch.float32)
    z = torch.randn(3, 4, requires_grad=True)
    lp = implicit_log_prob(G, z, method="lanczos", generator=_rng(0))
    assert lp.dtype == torch.float32 and lp.shape == (3,)
    lp.sum().backward()
    assert z.grad is not None and torch.isfinite(z.grad).all()


def test_singular_metric_is_reported():
    G = lambda z: torch.cat([z[:, :1], 0 * z[:, 1:]], 1).repeat(1, 3)  # noqa: E731
    z = torch.randn(2, 16, dtype=torch.float64)
    with pytest.warns(SingularMetricWarning, match="numerically singular"):
        v = logdet_jtj(G, z, method="chebyshev")
    assert torch.isinf(v).all()
    with pytest.raises(ValueError, match="numerically singular"):
        logdet_jtj(G, z, method="lanczos", deflate=1, on_singular="raise")
