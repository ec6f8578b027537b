"""Networks: shapes, per-sample independence, the coupling generator's log det and the
rational-quadratic spline."""

from __future__ import annotations

import pytest
import torch

from spectral_backprop.models import CouplingGenerator, build_gan
from spectral_backprop.models.spline import rational_quadratic_spline, spline_params_per_dim


@pytest.mark.parametrize(
    "shape, arch",
    [((2,), "auto"), ((1, 8, 8), "auto"), ((1, 28, 28), "auto"), ((3, 32, 32), "dcgan"),
     ((1, 16, 16), "mlp")],
)
def test_gan_shapes(shape, arch):
    G, D = build_gan(arch, shape, latent_dim=5, width=16, depth=2 if arch == "mlp" else None)
    x = G(torch.randn(3, 5))
    assert x.shape == (3, *shape)
    assert D(x).shape == (3,)
    if len(shape) == 3:
        assert x.abs().max() <= 1


@pytest.mark.parametrize("shape", [(2,), (1, 28, 28), (3, 32, 32)])
def test_generators_are_per_sample(shape):
    # ∂G(z_i)/∂z_j = 0 for i ≠ j: the implicit likelihood needs no batch coupling.
    G, _ = build_gan("auto", shape, latent_dim=3, width=8)
    z = torch.randn(4, 3)
    # Forward mode: 12 tangents, instead of one backward pass per output pixel.
    jac = torch.func.jacfwd(lambda z: G(z).flatten(1))(z)  # [4, n, 4, 3]
    off_diagonal = jac.sum(dim=(1, 3)) * (1 - torch.eye(4))
    assert off_diagonal.abs().max() == 0


def test_build_gan_errors():
    with pytest.raises(ValueError, match="unknown architecture"):
        build_gan("resnet", (2,), 2)
    with pytest.raises(ValueError, match="square images"):
        build_gan("dcgan", (2,), 2)
    with pytest.raises(ValueError, match="4·2\\^m or 7·2\\^m"):
        build_gan("dcgan", (1, 30, 30), 2)
    with pytest.raises(ValueError, match="mixing must be"):
        CouplingGenerator(mixing="shuffle")
    with pytest.raises(ValueError, match="transform must be"):
        CouplingGenerator(transform="cubic")
    with pytest.raises(ValueError, match="bins >= 2"):
        CouplingGenerator(transform="spline", bins=1)


def _perturbed(transform: str, mixing: str = "rotation", dim: int = 2, scale: float = 0.3,
               bound: float = 3.0) -> CouplingGenerator:
    """A float64 coupling generator moved away from its identity initialisation."""
    G = CouplingGenerator(dim=dim, num_layers=4, hidden=16, mixing=mixing, transform=transform,
                          bins=6, bound=bound)
    # The spline's bin sizes go through a softmax: a smaller kick keeps the composed map
    # well conditioned (its slopes range over e^±3 rather than e^±15).
    kick = scale if transform == "affine" else scale / 2
    with torch.no_grad():
        for p in G.parameters():
            p.add_(kick * torch.randn_like(p))
    return G


@pytest.mark.parametrize("transform", ["affine", "spline"])
@pytest.mark.parametrize("mixing", ["swap", "rotation"])
def test_coupling_log_det_matches_spectral_log_det(mixing, transform, float64):
    from spectral_backprop import logdet_jtj

    G = _perturbed(transform, mixing)
    # Spread the latents so that some spline inputs fall in the identity tails too.
    z = 2 * torch.randn(64, 2)
    analytic = G.log_abs_det(z)
    assert analytic.std() > 0.1
    torch.testing.assert_close(0.5 * logdet_jtj(G, z), analytic)
    # And G is invertible: distinct latents never collide (injectivity is what the
    # implicit likelihood assumes).
    assert torch.cdist(G(z), G(z)).add(torch.eye(64)).min() > 0


@pytest.mark.parametrize("transform", ["affine", "spline"])
def test_coupling_analytic_log_det_matches_dense_jacobian(transform, float64):
    G = _perturbed(transform, dim=3)
    z = 2 * torch.randn(32, 3)
    jac = torch.func.vmap(torch.func.jacrev(lambda v: G(v[None])[0]))(z)
    sign, dense = torch.linalg.slogdet(jac)
    assert (sign > 0).all()  # both transforms are orientation preserving
    torch.testing.assert_close(G.log_abs_det(z), dense)


@pytest.mark.parametrize("transform", ["affine", "spline"])
def test_coupling_generator_is_invertible(transform, float64):
    G = _perturbed(transform)
    z = 2 * torch.randn(500, 2)
    torch.testing.assert_close(G.inverse(G(z)), z)


def _random_spline(n: int, bins: int = 5, scale: float = 2.0) -> torch.Tensor:
    return scale * torch.randn(n, spline_params_per_dim(bins))


def test_spline_is_monotonic_with_identity_tails(float64):
    bound = 2.5
    raw = _random_spline(1).expand(4001, -1)
    v = torch.linspace(-2 * bound, 2 * bound, 4001)
    y, log_det = rational_quadratic_spline(v, raw, bound)
    assert (y.diff() > 0).all()
    tails = v.abs() >= bound
    assert torch.equal(y[tails], v[tails])
    assert torch.equal(log_det[tails], torch.zeros_like(log_det[tails]))
    # [-B, B] maps onto itself, and the spline is not the identity inside.
    inside = ~tails
    assert y[inside].min() >= -bound and y[inside].max() <= bound
    assert (y[inside] - v[inside]).abs().max() > 0.1


def test_spline_with_zero_parameters_is_the_identity(float64):
    v = torch.linspace(-4, 4, 101)
    y, log_det = rational_quadratic_spline(v, torch.zeros(101, spline_params_per_dim(7)), 3.0)
    torch.testing.assert_close(y, v)
    torch.testing.assert_close(log_det, torch.zeros_like(v))


def test_spline_inverse_and_log_det(float64):
    bound = 3.0
    raw = _random_spline(2000)
    v = 4 * torch.rand(2000) * bound - 2 * bound
    y, log_det = rational_quadratic_spline(v, raw, bound)
    x, log_det_inv = rational_quadratic_spline(y, raw, bound, inverse=True)
    torch.testing.assert_close(x, v)
    torch.testing.assert_close(log_det_inv, log_det)
    # log dy/dx against autograd's derivative (each output depends on its own input only).
    v_ = v.clone().requires_grad_(True)
    (slope,) = torch.autograd.grad(rational_quadratic_spline(v_, raw, bound)[0].sum(), v_)
    torch.testing.assert_close(log_det, slope.log())
    # ... and against forward mode, which the library's Jacobians use.
    _, tangent = torch.func.jvp(lambda t: rational_quadratic_spline(t, raw, bound)[0],
                                (v,), (torch.ones_like(v),))
    torch.testing.assert_close(log_det, tangent.log())


def test_spline_gradcheck(float64):
    bound = 2.0
    raw = _random_spline(7, bins=4, scale=1.0).requires_grad_(True)
    # Inputs inside (-B, B), where the parameters act (the tails do not depend on them).
    v = (1.8 * torch.rand(7) - 0.9).mul(bound).requires_grad_(True)

    def f(v, raw):
        return rational_quadratic_spline(v, raw, bound)

    assert torch.autograd.gradcheck(f, (v, raw))
    assert torch.autograd.gradcheck(lambda v, raw: rational_quadratic_spline(
        v, raw, bound, inverse=True), (v, raw))
