"""Implicit likelihood and entropy against closed forms."""

import math

import pytest
import torch

from spectral_backprop import StandardNormal, entropy, implicit_log_prob


def test_affine_generator_gives_gaussian_density(device):
    # x = A z + b with z ~ N(0, I): on the image, density N(b, AAᵀ) restricted to it.
    A = torch.randn(3, 3, dtype=torch.float64, device=device)
    b = torch.randn(3, dtype=torch.float64, device=device)
    z = torch.randn(6, 3, dtype=torch.float64, device=device)
    ours = implicit_log_prob(lambda u: u @ A.T + b, z)
    ref = torch.distributions.MultivariateNormal(b, A @ A.T).log_prob(z @ A.T + b)
    torch.testing.assert_close(ours, ref)


def test_prior_objects_with_per_coordinate_log_prob():
    z = torch.randn(4, 2, dtype=torch.float64)
    prior = torch.distributions.Normal(torch.zeros(2, dtype=torch.float64), 2.0)
    ours = implicit_log_prob(lambda u: u, z, prior=prior)
    torch.testing.assert_close(ours, prior.log_prob(z).sum(1))
    torch.testing.assert_close(
        implicit_log_prob(lambda u: u, z), StandardNormal().log_prob(z)
    )
    with pytest.raises(TypeError, match="log_prob"):
        implicit_log_prob(lambda u: u, z, prior=object())


def test_entropy_of_scaled_gaussian_and_its_gradient(device):
    s = torch.tensor(2.0, dtype=torch.float64, device=device, requires_grad=True)
    k = 3
    h = entropy(lambda u: s * u, torch.randn(16, k, dtype=torch.float64, device=device))
    expected = 0.5 * k * (1 + math.log(2 * math.pi)) + k * math.log(2.0)
    assert h.value.item() == pytest.approx(expected)
    assert h.std_error.item() == pytest.approx(0.0, abs=1e-12)
    (g,) = torch.autograd.grad(h.value, s)
    assert g.item() == pytest.approx(k / 2.0)


def test_truncated_entropy_of_a_scaled_gaussian():
    # G(z) = a z in R³: ½ log det JᵀJ = 3 log a for every z.
    a = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)
    z = torch.randn(16, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    prior = StandardNormal().entropy(3)
    stretched = 3 * math.log(2.0)
    h = entropy(lambda v: a * v, z, cap=1.0)  # every sample is above the cap
    assert h.value.item() == pytest.approx(prior + 1.0, rel=1e-12)
    assert torch.autograd.grad(h.value, a)[0].item() == 0.0  # no reward beyond the cap
    h = entropy(lambda v: a * v, z, cap=10.0)  # every sample is below it
    assert h.value.item() == pytest.approx(prior + stretched, rel=1e-12)
    assert torch.autograd.grad(h.value, a)[0].item() == pytest.approx(3 / 2.0, rel=1e-10)
