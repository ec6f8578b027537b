"""Exact spectral backpropagation against dense autograd, analytic cases and gradcheck."""

import math

import pytest
import torch

from helpers import ConvGenerator, gradients, helix, mlp_generator, sphere, torus
from spectral_backprop import (
    SingularMetricWarning,
    SpectralFunction,
    latent_metric,
    logdet_jtj,
    spectral_sum,
)
from spectral_backprop.linalg import dense_spectral_sum

G_FUNCS = {"logdet": torch.log, "trace": lambda x: x, "nuclear": torch.sqrt}


@pytest.mark.parametrize("fn", sorted(G_FUNCS))
@pytest.mark.parametrize("make,k", [(mlp_generator, 3), (ConvGenerator, 4)])
@pytest.mark.parametrize("chunk_size", [None, 2])
def test_values_and_gradients_match_dense_autograd(fn, make, k, chunk_size, device):
    G = make().to(device)
    z = torch.randn(4, k, dtype=torch.float64, device=device, requires_grad=True)
    ours = spectral_sum(G, z, fn, chunk_size=chunk_size)
    ref = dense_spectral_sum(G, z, G_FUNCS[fn])
    torch.testing.assert_close(ours, ref)
    for a, b in zip(gradients(ours, G, z), gradients(ref, G, z), strict=True):
        torch.testing.assert_close(a, b)


def test_user_spectral_function():
    class Square:
        def g(self, x):
            return x * x

        def dg(self, x):
            return 2 * x

    G = mlp_generator()
    z = torch.randn(3, 3, dtype=torch.float64, requires_grad=True)
    ours = spectral_sum(G, z, Square())
    ref = dense_spectral_sum(G, z, lambda x: x * x)
    torch.testing.assert_close(ours, ref)
    torch.testing.assert_close(gradients(ours, G, z)[1], gradients(ref, G, z)[1])


def test_unknown_function_and_method_are_refused():
    G, z = mlp_generator(), torch.zeros(1, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match="unknown spectral function 'det'"):
        spectral_sum(G, z, "det")
    with pytest.raises(TypeError, match="callables g and dg"):
        spectral_sum(G, z, object())
    with pytest.raises(ValueError, match="unknown method 'magic'"):
        logdet_jtj(G, z, method="magic")


def test_gradcheck_wrt_latents_and_closure_weights():
    W = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    z = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)

    def f(z, W):
        return logdet_jtj(lambda u: torch.tanh(u @ W.T) + 0.1 * u.sum(-1, keepdim=True), z)

    assert torch.autograd.gradcheck(f, (z, W))
    assert torch.autograd.gradcheck(lambda z, W: logdet_jtj(
        lambda u: torch.tanh(u @ W.T), z, chunk_size=1), (z, W))


# ---------------------------------------------------------------- analytic manifolds


def test_linear_map(device):
    A = torch.randn(7, 3, dtype=torch.float64, device=device, requires_grad=True)
    z = torch.randn(5, 3, dtype=torch.float64, device=device)
    ours = logdet_jtj(lambda u: u @ A.T, z)
    expected = torch.logdet(A.T @ A)
    torch.testing.assert_close(ours, expected.expand(5))
    # d log det(AᵀA)/dA = 2 A (AᵀA)⁻¹
    (gA,) = torch.autograd.grad(ours[0], A)
    torch.testing.assert_close(gA, 2 * A @ torch.linalg.inv(A.T @ A))


def test_sphere_area_element():
    r = torch.tensor(1.7, dtype=torch.float64, requires_grad=True)
    surface = sphere(r)
    z = torch.stack([torch.linspace(0.3, 2.8, 6), torch.linspace(-3, 3, 6)], 1).double()
    z.requires_grad_(True)
    half = 0.5 * logdet_jtj(surface.G, z)
    expected = surface.half_logdet(z)  # dA = r² sin θ dθ dφ
    torch.testing.assert_close(half, expected)
    g = torch.autograd.grad(half.sum(), [z, r])
    ge = torch.autograd.grad(expected.sum(), [z, r])
    torch.testing.assert_close(g[0], ge[0])
    torch.testing.assert_close(g[1], ge[1])


def test_torus_area_element():
    surface = torus(R=2.0, a=0.5)
    z = torch.rand(8, 2, dtype=torch.float64) * 2 * math.pi
    torch.testing.assert_close(0.5 * logdet_jtj(surface.G, z), surface.half_logdet(z))


def test_curve_speed():
    curve = helix()
    z = torch.randn(5, 1, dtype=torch.float64)
    # |γ'(t)| = sqrt(sin² + cos² + t²)
    torch.testing.assert_close(0.5 * logdet_jtj(curve.G, z), curve.half_logdet(z))


def test_elementwise_bijection_k_equals_n(device):
    z = torch.randn(4, 5, dtype=torch.float64, device=device, requires_grad=True)
    ours = logdet_jtj(lambda u: u + u**3, z)
    expected = 2 * torch.log1p(3 * z**2).sum(1)  # log det JᵀJ = 2 log|det J|
    torch.testing.assert_close(ours, expected)
    g, ge = torch.autograd.grad(ours.sum(), z)[0], torch.autograd.grad(expected.sum(), z)[0]
    torch.testing.assert_close(g, ge)


# ---------------------------------------------------------------- repeated eigenvalues


def test_repeated_eigenvalues_stay_finite_and_correct(device):
    """G(z) = [z, a‖z‖²]: M = I + 4a² z zᵀ has eigenvalue 1 with multiplicity k−1."""
    k = 4
    a = torch.tensor(0.7, dtype=torch.float64, device=device, requires_grad=True)
    z = torch.randn(3, k, dtype=torch.float64, device=device, requires_grad=True)

    def G(u):
        return torch.cat([u, a * (u * u).sum(1, keepdim=True)], 1)

    for fn in ("logdet", "nuclear"):
        val = spectral_sum(G, z, fn)
        gz, ga = torch.autograd.grad(val.sum(), [z, a])
        s = 4 * a**2 * (z * z).sum(1)
        expected = torch.log1p(s) if fn == "logdet" else (k - 1) + torch.sqrt(1 + s)
        gze, gae = torch.autograd.grad(expected.sum(), [z, a])
        assert torch.isfinite(gz).all() and torch.isfinite(ga)
        torch.testing.assert_close(val, expected)
        torch.testing.assert_close(gz, gze)
        torch.testing.assert_close(ga, gae)


def test_fully_degenerate_spectrum():
    """M = θ² I: every eigenvalue repeats; the gradient is the analytic 2k/θ per sample."""
    k = 3
    theta = torch.tensor(1.3, dtype=torch.float64, requires_grad=True)
    Q = torch.linalg.qr(torch.randn(6, k, dtype=torch.float64))[0]
    z = torch.randn(2, k, dtype=torch.float64, requires_grad=True)

    def G(u):
        return theta * u @ Q.T

    for cs in (None, 1):
        gt, gz = torch.autograd.grad(logdet_jtj(G, z, chunk_size=cs).sum(), [theta, z])
        torch.testing.assert_close(gt, torch.tensor(2 * 2 * k / 1.3, dtype=torch.float64))
        torch.testing.assert_close(gz, torch.zeros_like(gz))


# ---------------------------------------------------------------- invariances


def test_chunk_size_and_batch_composition_invariance(device):
    G = ConvGenerator().to(device)
    z = torch.randn(5, 4, dtype=torch.float64, device=device, requires_grad=True)
    full = logdet_jtj(G, z)
    gfull = gradients(full, G, z)
    for cs in (1, 3, 4, 100):
        v = logdet_jtj(G, z, chunk_size=cs)
        torch.testing.assert_close(v, full)
        for a, b in zip(gradients(v, G, z), gfull, strict=True):
            torch.testing.assert_close(a, b)
    perm = torch.tensor([3, 0, 4, 1, 2], device=device)
    torch.testing.assert_close(logdet_jtj(G, z[perm]), full[perm])
    torch.testing.assert_close(logdet_jtj(G, z[2:3]), full[2:3])


def test_no_graph_when_gradients_are_disabled():
    G = mlp_generator()
    z = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    with torch.no_grad():
        v = logdet_jtj(G, z, chunk_size=2)
    assert not v.requires_grad


# ---------------------------------------------------------------- singular metrics


def _rank_deficient(u):  # the output depends on z only through z0 + z1
    s = u[:, :1] + u[:, 1:2]
    return torch.cat([s, s.sin(), u[:, 2:] ** 3 + u[:, 2:]], 1)


def test_singular_metric_warns_by_default_and_excludes_gradient():
    z = torch.randn(3, 3, dtype=torch.float64, requires_grad=True)
    with pytest.warns(SingularMetricWarning, match=r"samples \[0, 1, 2\]"):
        v = logdet_jtj(_rank_deficient, z)
    assert torch.isneginf(v).all()
    (g,) = torch.autograd.grad(v.sum(), z)
    assert torch.equal(g, torch.zeros_like(g))


def test_singular_metric_raises_by_option_and_jitter_regularises():
    z = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    with pytest.raises(ValueError, match="numerically singular.*jitter"):
        logdet_jtj(_rank_deficient, z, on_singular="raise")
    v = logdet_jtj(_rank_deficient, z, jitter=1e-3, on_singular="raise")
    assert torch.isfinite(v).all()
    J = torch.stack([
        torch.autograd.functional.jacobian(lambda u: _rank_deficient(u[None])[0], zb) for zb in z
    ])
    ref = torch.logdet(J.mT @ J + 1e-3 * torch.eye(3, dtype=torch.float64))
    torch.testing.assert_close(v, ref)
    with pytest.raises(ValueError, match="on_singular"):
        logdet_jtj(_rank_deficient, z, on_singular="ignore")
    with pytest.raises(ValueError, match="jitter"):
        logdet_jtj(_rank_deficient, z, jitter=-1.0)


def test_trace_needs_no_positive_metric():
    z = torch.randn(2, 3, dtype=torch.float64)
    ours = spectral_sum(_rank_deficient, z, SpectralFunction("trace", lambda x: x, torch.ones_like))
    assert torch.isfinite(ours).all()
    torch.testing.assert_close(ours, dense_spectral_sum(_rank_deficient, z, lambda x: x))


# ---------------------------------------------------------------- latent metric


def test_latent_metric_of_linear_map_is_its_svd():
    A = torch.randn(6, 4, dtype=torch.float64)
    z = torch.randn(2, 4, dtype=torch.float64)
    lam, V = latent_metric(lambda u: u @ A.T, z, top=3)
    _, S, Vh = torch.linalg.svd(A)
    torch.testing.assert_close(lam, (S[:3] ** 2).expand(2, 3))
    assert lam.shape == (2, 3) and V.shape == (2, 4, 3)
    # Same subspaces up to sign; our signs are canonical (largest entry positive).
    torch.testing.assert_close((V[0].T @ Vh[:3].T).abs(), torch.eye(3, dtype=torch.float64))
    assert (V.gather(1, V.abs().argmax(1, keepdim=True)) > 0).all()
    with pytest.raises(ValueError, match="top"):
        latent_metric(lambda u: u @ A.T, z, top=5)


def test_latent_metric_eigenvalue_gradients_match_dense():
    G = mlp_generator()
    z = torch.randn(3, 3, dtype=torch.float64, requires_grad=True)
    lam, _ = latent_metric(G, z)
    ref = dense_spectral_sum(G, z, lambda x: x.log())
    torch.testing.assert_close(lam.log().sum(1), ref)
    torch.testing.assert_close(gradients(lam.log().sum(1), G, z)[0], gradients(ref, G, z)[0])


def test_cholesky_fast_path_agrees_with_eigh_and_defers_when_unsure():
    from spectral_backprop.spectral.exact import cholesky_logdet

    A = torch.randn(5, 9, 4, dtype=torch.float64)
    M = A.mT @ A
    value, W = cholesky_logdet(M)
    lam, V = torch.linalg.eigh(M)
    torch.testing.assert_close(value, lam.log().sum(-1))
    torch.testing.assert_close(W, (V / lam[:, None, :]) @ V.mT)
    # Rank-deficient, or too ill-conditioned to certify: eigh decides instead.
    A[2, :, 3] = A[2, :, 2]
    assert cholesky_logdet(A.mT @ A) is None
    B = torch.diag(torch.tensor([1.0, 1e-20], dtype=torch.float64))[None]
    assert cholesky_logdet(B) is None
    assert cholesky_logdet(torch.eye(2, dtype=torch.float64)[None], rank_tol=2.0) is None
