"""Latent geometry: eigen-directions (local, global), eigen paths, traversals, inversion."""

from __future__ import annotations

import pytest
import torch

from helpers import linear_generator, mlp_generator
from spectral_backprop.geometry import (
    eigen_path,
    global_directions,
    global_metric,
    infer_latent_dim,
    invert,
    principal_directions,
    traverse,
)
from spectral_backprop.linalg import dense_metric
from spectral_backprop.spectral import latent_metric


def same_up_to_sign(V: torch.Tensor, W: torch.Tensor, atol: float = 1e-8) -> bool:
    return torch.allclose((V.mT @ W).abs(), torch.eye(V.shape[-1], dtype=V.dtype), atol=atol)


def test_principal_directions_linear_are_right_singular_vectors():
    G, A = linear_generator()
    z = torch.randn(4, 3, dtype=torch.float64)
    lam, V = principal_directions(G, z, 2)
    _, S, Vh = torch.linalg.svd(A)
    assert lam.shape == (4, 2) and V.shape == (4, 3, 2)
    torch.testing.assert_close(lam, (S[:2] ** 2).expand(4, 2))
    for b in range(4):
        assert same_up_to_sign(V[b], Vh[:2].T)


def test_principal_directions_orthonormal_and_match_dense_metric():
    G = mlp_generator(k=4, n=9)
    z = torch.randn(5, 4, dtype=torch.float64)
    lam, V = principal_directions(G, z)
    torch.testing.assert_close(V.mT @ V, torch.eye(4, dtype=torch.float64).expand(5, 4, 4))
    M = dense_metric(G, z).detach()
    torch.testing.assert_close(M @ V, V * lam[:, None, :])
    assert (lam[:, :-1] >= lam[:, 1:]).all()


def test_principal_directions_is_latent_metric_without_a_graph():
    G = mlp_generator(k=4, n=9)
    z = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    lam, V = principal_directions(G, z, 2, chunk_size=3)
    lam_ref, V_ref = latent_metric(G, z, top=2)
    assert not lam.requires_grad and lam_ref.requires_grad
    torch.testing.assert_close(lam, lam_ref.detach())
    torch.testing.assert_close(V, V_ref.detach())


def test_global_directions_linear_and_average():
    G, A = linear_generator()
    lam, V = global_directions(G, 3, 16, generator=torch.Generator().manual_seed(1))
    _, S, Vh = torch.linalg.svd(A)
    torch.testing.assert_close(lam, S**2)
    assert same_up_to_sign(V, Vh.T)
    # Nonlinear: the plain average of per-sample metrics, orthonormal eigenvectors.
    H = mlp_generator(k=3, n=7)
    z = torch.randn(10, 3, dtype=torch.float64)
    M = global_metric(H, z=z, batch_size=3)
    torch.testing.assert_close(M, dense_metric(H, z).detach().mean(0))
    _, W = global_directions(H, 2, z=z)
    torch.testing.assert_close(W.T @ W, torch.eye(2, dtype=torch.float64))


def test_eigen_path_linear_is_straight_and_sign_consistent():
    G, A = linear_generator()
    z0 = torch.randn(2, 3, dtype=torch.float64)
    path = eigen_path(G, z0, steps=5, step_size=0.3)
    v1 = torch.linalg.svd(A).Vh[0]
    assert path.latents.shape == (6, 2, 3) and path.outputs.shape == (6, 2, 6)
    step = path.latents[1:] - path.latents[:-1]
    torch.testing.assert_close(step, step[:1].expand_as(step))  # never turns back
    torch.testing.assert_close(step[0].abs(), (0.3 * v1).abs().expand(2, 3))
    torch.testing.assert_close(path.eigenvalues, torch.full((6, 2), 9.0, dtype=torch.float64))


def test_eigen_path_nonlinear_follows_leading_eigenvector():
    G = mlp_generator(k=3, n=7)
    z0 = torch.randn(3, 3, dtype=torch.float64)
    path = eigen_path(G, z0, steps=8, step_size=0.05, output_step=True)
    cos = (path.directions[1:] * path.directions[:-1]).sum(-1)
    assert (cos > 0).all()
    moved = (path.outputs[1:] - path.outputs[:-1]).norm(dim=-1)
    torch.testing.assert_close(moved, torch.full_like(moved, 0.05), rtol=0.1, atol=0)


def test_traverse_shape_and_values():
    G = mlp_generator(k=3, n=7)
    z = torch.randn(2, 3, dtype=torch.float64)
    d = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    out = traverse(G, z, d, 5, extent=2.0)
    assert out.shape == (2, 5, 7)
    torch.testing.assert_close(out[1, 0], G(z[1:2] - 2 * d)[0])
    out = traverse(G, z, d.expand(2, 3), torch.tensor([0.0, 1.0]))
    torch.testing.assert_close(out[:, 0], G(z))


def test_invert_recovers_known_latent_and_flags_off_manifold_points():
    torch.manual_seed(3)
    G = torch.nn.Sequential(torch.nn.Linear(2, 12), torch.nn.Tanh()).double()
    z_true = 0.8 * torch.randn(5, 2, dtype=torch.float64)
    with torch.no_grad():
        x = G(z_true)
    off = torch.full((1, 12), 0.9, dtype=torch.float64)  # far from a 2-D manifold
    inv = invert(G, torch.cat([x, off]), latent_dim=2, restarts=3, steps=250, lr=0.1,
                 generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(inv.latents[:5], z_true, atol=1e-3, rtol=0)
    assert (inv.residual[:5] < 1e-4).all()
    assert inv.flagged.tolist() == [False] * 5 + [True]
    assert inv.reconstructions.shape == (6, 12)
    assert all(p.grad is None and p.requires_grad for p in G.parameters())


def test_bad_inputs_raise_clear_errors():
    G, _ = linear_generator()
    z = torch.randn(2, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match="r must be"):
        principal_directions(G, z, 4)
    with pytest.raises(ValueError, match="latent dimension"):
        infer_latent_dim(lambda z: z)
    with pytest.raises(ValueError, match="sample shape"):
        invert(G, torch.zeros(2, 5, dtype=torch.float64))
    with pytest.raises(ValueError, match="restarts"):
        invert(G, torch.zeros(2, 6, dtype=torch.float64), restarts=0)
    with pytest.raises(ValueError, match="index"):
        eigen_path(G, z, index=3)
    with pytest.raises(ValueError, match="direction must have shape"):
        traverse(G, z, torch.zeros(4, dtype=torch.float64))
    with pytest.raises(ValueError, match="2-D"):
        principal_directions(G, torch.zeros(3, dtype=torch.float64))
