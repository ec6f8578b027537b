"""Lanczos, conjugate gradients, Chebyshev series and probes on explicit SPD matrices."""

import math

import pytest
import torch

from spectral_backprop.linalg.cg import conjugate_gradient
from spectral_backprop.linalg.chebyshev import (
    chebyshev_coefficients,
    chebyshev_degree,
    chebyshev_error,
    chebyshev_recurrence,
)
from spectral_backprop.linalg.lanczos import (
    lanczos,
    lanczos_function,
    lanczos_quadrature,
    ritz_pairs,
)
from spectral_backprop.linalg.probes import ProbeStream, sample_probes


def spd(batch, k, cond=100.0, seed=0):
    """Random SPD matrices ``[batch, k, k]`` with eigenvalues log-spaced in [1/cond, 1]."""
    g = torch.Generator().manual_seed(seed)
    Q = torch.linalg.qr(torch.randn(batch, k, k, generator=g, dtype=torch.float64)).Q
    lam = torch.logspace(-math.log10(cond), 0, k, dtype=torch.float64)
    return (Q * lam) @ Q.mT


def as_matvec(A):
    return lambda V: A @ V


def test_full_order_lanczos_is_exact():
    A = spd(2, 7)
    x = torch.randn(2, 7, 3, dtype=torch.float64)
    dec = lanczos(as_matvec(A), x, 7)
    Q = dec.basis  # [B, c, m, k]
    eye = torch.eye(7, dtype=torch.float64).expand(2, 3, 7, 7)
    torch.testing.assert_close(Q @ Q.mT, eye)  # full reorthogonalisation
    assert dec.steps.eq(7).all()
    # Gauss quadrature with k nodes is exact for xᵀ log(A) x.
    theta, w = lanczos_quadrature(dec.alpha, dec.beta, dec.steps)
    quad = dec.norm**2 * (w * theta.log()).sum(-1)
    lam, V = torch.linalg.eigh(A)
    logA = (V * lam.log()[:, None, :]) @ V.mT
    torch.testing.assert_close(quad, (x * (logA @ x)).sum(1))
    torch.testing.assert_close(lanczos_function(dec, torch.reciprocal), torch.linalg.solve(A, x))


def test_lanczos_breaks_down_on_an_invariant_subspace():
    A = torch.diag(torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64))[None]
    x = torch.tensor([1.0, 1.0, 0.0, 0.0], dtype=torch.float64)[None, :, None]
    dec = lanczos(as_matvec(A), x, 4)
    assert dec.breakdown.all() and dec.steps.item() == 2
    theta, Y, res = ritz_pairs(dec)
    torch.testing.assert_close(theta[0, 0, :2], torch.tensor([1.0, 2.0], dtype=torch.float64))
    assert torch.isinf(theta[0, 0, 2:]).all()


def test_ritz_pairs_find_extreme_eigenvalues_with_small_residuals():
    A = spd(1, 60, cond=1e3)
    dec = lanczos(as_matvec(A), torch.randn(1, 60, 1, dtype=torch.float64), 30)
    theta, Y, res = ritz_pairs(dec)
    lam = torch.linalg.eigvalsh(A)[0]
    true_res = torch.linalg.vector_norm(A[0] @ Y[0, 0] - Y[0, 0] * theta[0, 0], dim=0)
    torch.testing.assert_close(res[0, 0], true_res, atol=1e-10, rtol=1e-6)
    assert abs(theta[0, 0, -1] - lam[-1]) < 1e-6 * lam[-1]
    assert theta[0, 0, 0] >= lam[0] - 1e-12  # Ritz values never leave the spectrum


def test_cg_solves_and_reports_nonconvergence():
    A = spd(2, 20, cond=1e4)
    b = torch.randn(2, 20, 3, dtype=torch.float64)
    res = conjugate_gradient(as_matvec(A), b, max_iters=200, tol=1e-10)
    assert res.converged.all()
    torch.testing.assert_close(res.solution, torch.linalg.solve(A, b))
    short = conjugate_gradient(as_matvec(A), b, max_iters=3, tol=1e-10)
    assert not short.converged.any() and short.iterations.eq(3).all()
    assert (short.residual > 1e-10).all()
    zero = conjugate_gradient(as_matvec(A), torch.zeros_like(b), max_iters=5, tol=1e-8)
    assert zero.converged.all() and zero.solution.eq(0).all() and zero.matvecs == 0
    with pytest.raises(ValueError, match="max_iters"):
        conjugate_gradient(as_matvec(A), b, max_iters=0, tol=1e-8)


def test_chebyshev_series_and_degree_follow_the_condition_number():
    a = torch.tensor([0.01, 0.5], dtype=torch.float64)
    b = torch.tensor([2.0, 2.0], dtype=torch.float64)
    c = chebyshev_coefficients(torch.log, a, b, 120)
    x = a[:, None] + torch.linspace(0, 1, 50, dtype=torch.float64) * (b - a)[:, None]
    t = (2 * x - (a + b)[:, None]) / (b - a)[:, None]
    series = torch.stack([torch.special.chebyshev_polynomial_t(t, j) for j in range(121)], -1)
    torch.testing.assert_close((series * c[:, None, :]).sum(-1), x.log())
    well = chebyshev_degree(torch.log, a[1:], b[1:], 1e-6, 400)
    ill = chebyshev_degree(torch.log, a[:1], b[:1], 1e-6, 400)
    assert well < ill <= 400  # κ = 4 vs κ = 200
    assert chebyshev_degree(torch.log, a[:1], b[:1], 1e-12, 5) == 6  # "not enough" sentinel


def test_chebyshev_degree_of_several_functions_suffices_for_each():
    a = torch.tensor([0.01, 0.5], dtype=torch.float64)
    b = torch.tensor([2.0, 2.0], dtype=torch.float64)
    fns = [torch.log, torch.rsqrt, torch.reciprocal]
    single = [chebyshev_degree(f, a, b, 1e-6, 400) for f in fns]
    assert chebyshev_degree(fns, a, b, 1e-6, 400) == max(single)
    errors = chebyshev_error(fns, a, b, 50)
    torch.testing.assert_close(
        errors, torch.stack([chebyshev_error(f, a, b, 50) for f in fns]).amax(0), rtol=0, atol=0
    )
    assert chebyshev_degree(fns, a, b, 1e-12, 5) == 6  # the "not enough" sentinel


def test_lanczos_quadrature_eigenvectors_give_the_nodes_and_weights():
    A = spd(2, 6)
    dec = lanczos(as_matvec(A), torch.randn(2, 6, 2, dtype=torch.float64), 4)
    theta, w = lanczos_quadrature(dec.alpha, dec.beta, dec.steps)
    theta2, w2, S = lanczos_quadrature(dec.alpha, dec.beta, dec.steps, eigenvectors=True)
    assert torch.equal(theta, theta2) and torch.equal(w, w2)
    torch.testing.assert_close(S[..., 0, :] ** 2, w)
    T = (S * theta[..., None, :]) @ S.mT
    torch.testing.assert_close(T.diagonal(dim1=-2, dim2=-1), dec.alpha)


def test_chebyshev_recurrence_matches_dense_and_certifies_the_interval():
    A = spd(1, 12, cond=20)
    lam = torch.linalg.eigvalsh(A)[0]
    x = torch.randn(1, 12, 2, dtype=torch.float64)
    a, b = lam[:1] * 0.9, lam[-1:] * 1.1
    c = chebyshev_coefficients(torch.log, a, b, 60)
    (q,), (v,), growth = chebyshev_recurrence(as_matvec(A), x, a, b, [c], [c])
    lam_, V = torch.linalg.eigh(A)
    logA = (V * lam_.log()[:, None, :]) @ V.mT
    torch.testing.assert_close(q, (x * (logA @ x)).sum(1))
    torch.testing.assert_close(v, logA @ x)
    assert (growth <= 1 + 1e-8).all()
    *_, missed = chebyshev_recurrence(as_matvec(A), x, lam[:1] * 2, b, [c], [])
    assert (missed > 2).all()  # interval above λ_min: the recurrence blows up, visibly


@pytest.mark.parametrize("kind", ["hadamard", "rademacher", "gaussian", "orthogonal"])
def test_probes_are_isotropic_and_avoid_the_basis(kind):
    g = torch.Generator().manual_seed(0)
    eps = sample_probes(1, 6, 4000, kind, generator=g, dtype=torch.float64)
    torch.testing.assert_close(eps[0] @ eps[0].T / 4000, torch.eye(6, dtype=torch.float64),
                               atol=0.1, rtol=0)
    V = torch.linalg.qr(torch.randn(1, 6, 2, dtype=torch.float64)).Q
    eps = sample_probes(1, 6, 4, kind, basis=V, generator=g, dtype=torch.float64)
    assert (V.mT @ eps).abs().max() < 1e-12


def test_orthogonal_probes_are_exact_with_k_probes():
    A = spd(3, 9)
    eps = sample_probes(3, 9, 9, "orthogonal", dtype=torch.float64)
    est = (eps * (A @ eps)).sum(1).mean(-1)
    torch.testing.assert_close(est, torch.diagonal(A, dim1=-2, dim2=-1).sum(-1))


@pytest.mark.parametrize("kind,k", [("hadamard", 9), ("hadamard", 16), ("orthogonal", 9)])
def test_a_probe_stream_draws_without_replacement_and_ends_exact(kind, k):
    # Round after round, the stream continues one draw: all K probes together sum the
    # trace exactly (K = 16 Hadamard probes for k = 9 or 16, k orthogonal ones), also
    # in the complement of a basis; a 17th is refused.
    A = spd(3, k)
    V = torch.linalg.qr(torch.randn(3, k, 2, dtype=torch.float64)).Q
    P = torch.eye(k, dtype=torch.float64) - V @ V.mT
    for basis, target in ((None, A), (V, P @ A @ P)):
        stream = ProbeStream(3, k, kind, basis=basis, generator=torch.Generator().manual_seed(1),
                             dtype=torch.float64)
        K = stream.population
        assert K == (16 if kind == "hadamard" else k - (0 if basis is None else 2))
        eps = torch.cat([stream.draw(3), stream.draw(K - 3)], -1)
        assert stream.remaining == 0
        est = (eps * (A @ eps)).sum(1).mean(-1)
        torch.testing.assert_close(est, torch.diagonal(target, dim1=-2, dim2=-1).sum(-1))
        with pytest.raises(ValueError, match="left of"):
            stream.draw(1)
        if kind == "hadamard" and basis is None:  # ±1, no two alike (orthogonal if k = K)
            assert eps.abs().eq(1).all() and torch.unique(eps[0], dim=-1).shape[-1] == K
            if k == K:
                torch.testing.assert_close(eps.mT @ eps, k * torch.eye(k, dtype=torch.float64)
                                           .expand(3, k, k))


def test_hadamard_probes_are_each_rademacher_smoke():
    # A smoke test of D: D h_j with D random signs has independent ±1 entries whatever
    # the ±1 column h_j, so this cannot catch a wrong Hadamard column (the stream test
    # above guards those: ±1, distinct, summing to K·I). The mean of ε_a ε_b over many
    # draws vanishes for a ≠ b: over N = 3000 independent draws of 3 probes (one D each)
    # its standard error is at most 1/√N; allowed: 4.5 of them.
    g = torch.Generator().manual_seed(0)
    eps = torch.cat([sample_probes(1, 12, 3, "hadamard", generator=g, dtype=torch.float64)
                     for _ in range(3000)], -1)[0]  # [12, 9000]
    outer = eps @ eps.T / eps.shape[-1]
    off = outer - torch.diag(outer.diagonal())
    assert off.abs().max() < 4.5 / 3000**0.5
    assert torch.equal(outer.diagonal(), torch.ones(12, dtype=torch.float64))


def test_probe_options_are_checked():
    with pytest.raises(ValueError, match="probes must be one of"):
        sample_probes(1, 3, 2, "sobol")
    with pytest.raises(ValueError, match="num_probes must be a positive integer"):
        sample_probes(1, 3, 0)
    with pytest.raises(ValueError, match="nothing left to probe"):
        sample_probes(1, 3, 2, basis=torch.eye(3)[None])
