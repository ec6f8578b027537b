"""Networks: shapes, per-sample independence, and the coupling generator's log det."""

from __future__ import annotations

import pytest
import torch

from spectral_backprop.models import CouplingGenerator, build_gan


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


@pytest.mark.parametrize("mixing", ["swap", "rotation"])
def test_coupling_log_det_matches_spectral_log_det(mixing):
    from spectral_backprop import logdet_jtj

    G = CouplingGenerator(dim=2, num_layers=4, hidden=16, mixing=mixing).double()
    # Move away from the identity initialisation so the test is not trivial.
    with torch.no_grad():
        for p in G.parameters():
            p.add_(0.3 * torch.randn_like(p))
    z = torch.randn(6, 2, dtype=torch.float64)
    analytic = G.log_abs_det(z)
    assert analytic.std() > 0.01
    torch.testing.assert_close(0.5 * logdet_jtj(G, z), analytic)
    # And G is invertible: distinct latents never collide (injectivity is what the
    # implicit likelihood assumes).
    assert torch.cdist(G(z), G(z)).add(torch.eye(6)).min() > 0
