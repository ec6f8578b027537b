"""Forward-mode per-sample Jacobians and input validation."""

import pytest
import torch

from helpers import ConvGenerator, mlp_generator
from spectral_backprop import jacobian, metric_matvec
from spectral_backprop.linalg import dense_jacobian


@pytest.mark.parametrize("make", [mlp_generator, ConvGenerator])
@pytest.mark.parametrize("chunk_size", [None, 1, 3])
def test_jacobian_matches_dense(make, chunk_size, device):
    G = make().to(device)
    z = torch.randn(3, 3 if make is mlp_generator else 4, dtype=torch.float64, device=device)
    J = jacobian(G, z, chunk_size=chunk_size)
    torch.testing.assert_close(J, dense_jacobian(G, z))


def test_jacobian_is_differentiable_wrt_closure_tensors():
    A = torch.randn(5, 2, dtype=torch.float64, requires_grad=True)

    def G(z):
        return torch.sin(z @ A.T)

    z = torch.randn(4, 2, dtype=torch.float64)
    (gA,) = torch.autograd.grad(jacobian(G, z).square().sum(), A)
    (gA_ref,) = torch.autograd.grad(dense_jacobian(G, z).square().sum(), A)
    torch.testing.assert_close(gA, gA_ref)


def test_metric_matvec_matches_dense_and_records_no_graph(device):
    G = mlp_generator().to(device)
    z = torch.randn(3, 3, dtype=torch.float64, device=device, requires_grad=True)
    V = torch.randn(3, 3, 5, dtype=torch.float64, device=device)
    J = dense_jacobian(G, z).detach()
    out = metric_matvec(G, z)(V)
    torch.testing.assert_close(out, J.mT @ J @ V)
    assert not out.requires_grad


def test_bad_latents_are_named():
    G = mlp_generator()
    with pytest.raises(ValueError, match="2-D"):
        jacobian(G, torch.zeros(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="match G's latent size"):
        jacobian(G, torch.zeros(2, 5, dtype=torch.float64))
    with pytest.raises(ValueError, match="non-finite entries in samples \\[1\\]"):
        jacobian(G, torch.tensor([[0.0, 0, 0], [float("nan"), 0, 0]], dtype=torch.float64))
    with pytest.raises(TypeError, match="floating point"):
        jacobian(G, torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="chunk_size"):
        jacobian(G, torch.zeros(2, 3, dtype=torch.float64), chunk_size=0)


def test_k_greater_than_n_is_refused():
    with pytest.raises(ValueError, match="k=4 exceeds output dimension n=2"):
        jacobian(torch.nn.Linear(4, 2), torch.zeros(3, 4))


def test_non_finite_outputs_name_the_samples():
    def G(z):
        return torch.log(z)  # -inf at 0, nan below

    with pytest.raises(ValueError, match=r"non-finite outputs for samples \[0, 2\]"):
        jacobian(G, torch.tensor([[0.0, 1.0], [1.0, 2.0], [-1.0, 1.0]]))


def test_batch_output_mismatch_is_named():
    with pytest.raises(ValueError, match="first dimension of the output must be the batch"):
        jacobian(lambda z: z.sum(0), torch.zeros(3, 2))


def test_batchnorm_in_training_mode_is_refused_and_eval_mode_works():
    G = torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 5))
    z = torch.randn(6, 2)
    with pytest.raises(ValueError, match=r"BatchNorm1d .* training mode.*G\.eval"):
        jacobian(G, z)
    G(z)  # populate running statistics
    G.eval()
    J = jacobian(G, z)
    # In eval mode samples are independent: each Jacobian is that of the sample alone.
    torch.testing.assert_close(J[2:3], jacobian(G, z[2:3]))


def test_random_layers_are_refused_with_a_hint():
    G = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Dropout(0.5), torch.nn.Linear(8, 4))
    with pytest.raises(ValueError, match="random numbers.*G.eval"):
        jacobian(G, torch.randn(3, 2))
    G.eval()
    assert jacobian(G, torch.randn(3, 2)).shape == (3, 4, 2)
