"""The generator zoo (models/zoo.py): shapes, determinism, per-sample maps, and a
conditioning knob that really moves κ(JᵀJ), measured with the dense reference."""

import pytest
import torch

from spectral_backprop.linalg.jacobian import check_generator, jacobian
from spectral_backprop.models import ZOO_FAMILIES, zoo_generator

K = 16


def _kappa(G, z):
    J = jacobian(G, z)
    lam = torch.linalg.eigvalsh(J.mT @ J)
    return (lam[:, -1] / lam[:, 0]).min().item()


def test_the_issue_families_are_there():
    assert {"mlp", "dcgan_bn", "dcgan_plain", "coupling", "resnet"} <= set(ZOO_FAMILIES)


@pytest.mark.parametrize("family", ZOO_FAMILIES)
def test_shapes_dtype_and_eval_mode(family):
    for dtype in (torch.float32, torch.float64):
        G = zoo_generator(family, K, seed=0, dtype=dtype)
        x = G(torch.randn(3, K, dtype=dtype))
        assert x.dtype == dtype and x.shape[0] == 3 and torch.isfinite(x).all()
        assert x[0].numel() >= K and (family != "coupling" or x[0].numel() == K)
        assert tuple(x.shape[1:]) == G.out_shape and G.latent_dim == K
        assert not G.training and G.family == family


@pytest.mark.parametrize("family", ZOO_FAMILIES)
def test_deterministic_from_the_seed_and_leaves_the_global_rng_alone(family):
    state = torch.random.get_rng_state()
    a, b = zoo_generator(family, K, seed=3), zoo_generator(family, K, seed=3)
    c = zoo_generator(family, K, seed=4)
    assert torch.equal(torch.random.get_rng_state(), state)
    z = torch.randn(2, K)
    assert torch.equal(a(z), b(z))
    assert not torch.equal(a(z), c(z))
    # float64 is the same map as float32, up to float32 rounding of the activations
    d = zoo_generator(family, K, seed=3, dtype=torch.float64)
    torch.testing.assert_close(d(z.double()).float(), a(z), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("family", ZOO_FAMILIES)
def test_samples_are_independent(family):
    G = zoo_generator(family, K, seed=1, dtype=torch.float64)
    z = torch.randn(5, K, dtype=torch.float64)
    for module in (G, G.train()):  # frozen batch norm stays per sample after .train()
        alone = torch.cat([module(z[i : i + 1]) for i in range(5)])
        torch.testing.assert_close(module(z), alone)
        check_generator(module, z)  # the estimators' coupling check passes
    G.eval()


@pytest.mark.parametrize("family", ZOO_FAMILIES)
def test_scale_spans_condition_numbers(family):
    # Dense float64 reference at k = 16: κ(JᵀJ) grows with the knob, by more than 10×
    # per decade of scale from 10 to 100 (up to 100× is possible: scale² per decade).
    z = torch.randn(2, K, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    kappa = [_kappa(zoo_generator(family, K, seed=0, scale=s, dtype=torch.float64), z)
             for s in (1, 10, 100)]
    assert kappa[0] < kappa[1] < kappa[2], kappa
    assert kappa[2] > 10 * kappa[1], kappa


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="unknown zoo family 'vae'"):
        zoo_generator("vae", 8)
    with pytest.raises(ValueError, match="scale must be"):
        zoo_generator("mlp", 8, scale=0.5)
    with pytest.raises(ValueError, match="latent_dim must be"):
        zoo_generator("mlp", 1)
