"""Analysis tools: high-likelihood search, baselines, purity, likelihood gap, aberrance."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from helpers import ConvGenerator, mlp_generator
from spectral_backprop import implicit_log_prob
from spectral_backprop.analysis import (
    METHODS,
    AnalysisConfig,
    analyze_generator,
    bits_per_dim,
    classifier_scores,
    compare_directions,
    direction_purity,
    factor_spread,
    ganspace_directions,
    high_likelihood_search,
    nearest_distance,
    purity_from_changes,
    random_directions,
    sefa_directions,
    sprite_factors,
    summarize,
    train_classifier,
)
from spectral_backprop.data import render_sprites, sprites
from spectral_backprop.geometry import principal_directions


class ExpGenerator(torch.nn.Module):
    """``G(z) = exp(c ⊙ z)``: ``log det JᵀJ = Σ 2(log c_i + c_i z_i)``, so the implicit
    log-likelihood ``−½‖z‖² − Σ c_i z_i + const`` is concave with maximiser ``z = −c``."""

    def __init__(self, c: torch.Tensor):
        super().__init__()
        self.c = torch.nn.Parameter(c)

    def forward(self, z):
        return torch.exp(self.c * z)


def test_search_raises_objective_monotonically_on_concave_toy():
    c = torch.tensor([0.5, 1.0, 1.5], dtype=torch.float64)
    G = ExpGenerator(c)
    res = high_likelihood_search(G, torch.randn(4, 3, dtype=torch.float64), steps=40,
                                 optimizer="sgd", lr=0.2)
    assert res.latents.shape == (41, 4, 3) and res.outputs.shape == (41, 4, 3)
    assert (res.objective[1:] > res.objective[:-1]).all()
    torch.testing.assert_close(res.final_latents, -c.expand(4, 3), atol=1e-3, rtol=0)
    torch.testing.assert_close(res.log_likelihood[-1],
                               implicit_log_prob(G, res.final_latents).detach())
    # The search must leave G untouched: no gradients, requires_grad restored.
    assert G.c.grad is None and G.c.requires_grad


def test_search_logdet_objective_and_recording():
    c = torch.tensor([0.5, 1.0], dtype=torch.float64)
    res = high_likelihood_search(ExpGenerator(c), torch.zeros(2, 2, dtype=torch.float64),
                                 steps=10, optimizer="sgd", lr=0.1, objective="logdet",
                                 record_every=4, max_norm=0.5)
    assert res.steps.tolist() == [0, 4, 8, 10]
    torch.testing.assert_close(res.objective, -0.5 * res.logdet)
    assert (res.objective[1:] >= res.objective[:-1]).all()  # stops rising on the ball
    assert (res.latents.norm(dim=-1) <= 0.5 + 1e-12).all()


def test_search_bad_inputs():
    G = ExpGenerator(torch.ones(2, dtype=torch.float64))
    z = torch.zeros(1, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="objective"):
        high_likelihood_search(G, z, objective="entropy")
    with pytest.raises(ValueError, match="optimizer"):
        high_likelihood_search(G, z, optimizer="lbfgs")
    with pytest.raises(ValueError, match="steps"):
        high_likelihood_search(G, z, steps=-1)
    with pytest.raises(ValueError, match="2-D"):
        high_likelihood_search(G, torch.zeros(2, dtype=torch.float64))


def test_sefa_equals_metric_directions_of_a_linear_generator():
    G = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Linear(8, 8, bias=False)).double()
    with torch.no_grad():
        G[1].weight.copy_(torch.eye(8))  # G(z) = W z + b: SeFa is exact
    G.latent_dim = 3
    lam, V = sefa_directions(G, 2)
    lam_m, V_m = principal_directions(G, torch.zeros(1, 3, dtype=torch.float64), 2)
    torch.testing.assert_close(lam, lam_m[0])
    torch.testing.assert_close(V, V_m[0])  # both use canonical signs


def test_ganspace_on_pre_activations_recovers_sefa():
    # PCA of Wz + b carried back by regression gives W's right singular vectors.
    G = torch.nn.Sequential(torch.nn.Linear(3, 6), torch.nn.Tanh()).double()
    with torch.no_grad():
        U, _ = torch.linalg.qr(torch.randn(6, 3, dtype=torch.float64))
        G[0].weight.copy_(U @ torch.diag(torch.tensor([3.0, 2.0, 1.0], dtype=torch.float64)))
    G.latent_dim = 3
    _, D = ganspace_directions(G, 3, 20000, layer="0",
                               generator=torch.Generator().manual_seed(0))
    _, V = sefa_directions(G, 3)
    torch.testing.assert_close(D.norm(dim=0), torch.ones(3, dtype=torch.float64))
    torch.testing.assert_close((D.T @ V).abs(), torch.eye(3, dtype=torch.float64), atol=3e-2,
                               rtol=0)
    # Default layer: the activation after the first weight layer.
    _, D2 = ganspace_directions(G, 2, 500)
    assert D2.shape == (3, 2)


def test_random_directions_orthonormal():
    Q = random_directions(6, 4, generator=torch.Generator().manual_seed(0),
                          dtype=torch.float64)
    torch.testing.assert_close(Q.T @ Q, torch.eye(4, dtype=torch.float64))
    with pytest.raises(ValueError, match="r must be"):
        random_directions(3, 5)


def test_baselines_bad_inputs():
    with pytest.raises(TypeError, match="nn.Module"):
        sefa_directions(lambda z: z, 1)
    with pytest.raises(ValueError, match="no Linear"):
        sefa_directions(torch.nn.Tanh(), 1)
    G = mlp_generator()
    with pytest.raises(ValueError, match="no submodule"):
        ganspace_directions(G, 1, 100, layer="nope", latent_dim=3)


IMAGE = 28
# Base factors (x, y, size, aspect, orientation, brightness) and one scale per latent.
BASE = torch.tensor([14.0, 14.0, 1.8, 2.0, 0.6, 0.75], dtype=torch.float64)
SCALE = torch.tensor([1.0, 1.0, 0.1, 0.2, 0.3, 0.05], dtype=torch.float64)


class AlignedSprites(torch.nn.Module):
    """A generator whose latent coordinates are the sprite factors, one each."""

    latent_dim = 6

    def forward(self, z):
        return render_sprites(BASE + SCALE * z, IMAGE).to(z.dtype)


def test_sprite_factors_recover_rendered_factors():
    data = sprites(200, IMAGE, seed=1)
    est = sprite_factors(data.x).float()
    diff = est - data.factors
    diff[:, 4] = torch.remainder(diff[:, 4] + math.pi / 2, math.pi) - math.pi / 2
    assert diff.abs().max() < 0.02


def test_factor_aligned_generator_has_purity_one():
    G = AlignedSprites()
    spread = factor_spread(sprites(500, IMAGE).x)
    z = 0.5 * torch.randn(8, 6, dtype=torch.float64)
    p = direction_purity(G, z, torch.eye(6, dtype=torch.float64), spread, delta=0.3)
    assert p.shape == (8, 6)
    assert (p > 0.99).all(), p.min()
    # A direction moving x and y by the same normalised amount: purity 1/2.
    d = torch.zeros(6, 1, dtype=torch.float64)
    d[0], d[1] = spread[0] / SCALE[0], spread[1] / SCALE[1]
    q = direction_purity(G, z, d, spread, delta=0.3)
    torch.testing.assert_close(q, torch.full_like(q, 0.5), atol=0.02, rtol=0)


class LinearThenSprites(torch.nn.Module):
    """A first linear layer (for SeFa/GANSpace) feeding :class:`AlignedSprites`."""

    latent_dim = 6

    def __init__(self):
        super().__init__()
        self.first = torch.nn.Linear(6, 6).double()
        self.act = torch.nn.Identity()
        self.render = AlignedSprites()

    def forward(self, z):
        return self.render(self.act(self.first(z)))


def test_compare_directions_reports_every_method():
    G = LinearThenSprites()
    images = sprites(200, IMAGE).x
    res = compare_directions(G, images, r=2, n_latents=4, global_samples=8,
                             ganspace_samples=50)
    assert set(res) == set(METHODS)
    for scores in res.values():
        assert 1 / 6 - 1e-9 <= scores["mean"] <= 1 + 1e-9
        assert len(scores["per_direction"]) == 2
        shares = torch.tensor(scores["dominant_factor_share"], dtype=torch.float64)
        torch.testing.assert_close(shares.sum(-1), torch.ones(2, dtype=torch.float64))


def test_purity_edge_cases_and_errors():
    assert purity_from_changes(torch.tensor([0.0, 3.0, -1.0])).item() == pytest.approx(0.75)
    assert math.isnan(purity_from_changes(torch.zeros(3)).item())
    G = AlignedSprites()
    z = torch.zeros(2, 6, dtype=torch.float64)
    with pytest.raises(ValueError, match="directions must be"):
        direction_purity(G, z, torch.eye(5, dtype=torch.float64), torch.ones(6))
    with pytest.raises(ValueError, match="one channel"):
        sprite_factors(torch.zeros(2, 3, 8, 8))


def test_likelihood_summary_and_bits_per_dim():
    v = torch.tensor([-10.0, -12.0, float("-inf")])
    s = summarize(v, n=4)
    assert s["count"] == 2 and s["mean"] == pytest.approx(-11.0)
    assert s["se"] == pytest.approx(math.sqrt(2) / math.sqrt(2))
    assert s["bits_per_dim"] == pytest.approx(11.0 / (4 * math.log(2)))
    assert bits_per_dim(-math.log(2) * 8, 8) == pytest.approx(1.0)


def test_aberrance_scores():
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(2).repeat(100)
    x = (labels[:, None] * 2.0 - 1.0) + 0.1 * torch.randn(200, 4, generator=g)
    model, acc = train_classifier(x, labels, epochs=5, lr=1e-2, holdout=0.2)
    assert acc > 0.95
    s = classifier_scores(model, torch.cat([x[:5], torch.zeros(1, 4)]))
    assert (s["confidence"][:5] > 0.9).all()
    assert s["entropy"][5] > s["entropy"][:5].max()  # the midpoint is ambiguous
    d = nearest_distance(torch.stack([x[0], x[0] + 5.0]), x)
    assert d[0].item() == 0.0 and d[1].item() > 1.0
    with pytest.raises(ValueError, match="labels"):
        train_classifier(x, labels[:10])


def test_analyze_generator_writes_results(tmp_path):
    G = ConvGenerator(k=3, dtype=torch.float32)
    G.latent_dim = 3
    real = torch.tanh(torch.randn(40, 1, 8, 8))
    labels = torch.arange(40) % 2
    cfg = AnalysisConfig(n_typical=8, n_search=2, search_steps=3, n_real=3, invert_steps=5,
                         invert_restarts=1, n_directions=2, traverse_steps=3, global_samples=4,
                         classifier_epochs=1, n_train_reference=20, progress=False)
    res = analyze_generator(G, real, tmp_path / "out", labels=labels, config=cfg)
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    for key in ("loglik_typical", "loglik_search", "loglik_real",
                "classifier_confidence_typical", "classifier_confidence_search"):
        assert isinstance(saved[key], float) and saved[key] == pytest.approx(res[key])
    for name in saved["figures"]:
        assert (tmp_path / "out" / name).stat().st_size > 0
    assert (tmp_path / "out" / "arrays.npz").exists()


@pytest.mark.parametrize("name", ["spectral_backprop.geometry.directions",
                                  "spectral_backprop.analysis.search"])
def test_docstring_examples(name):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(name),
                             optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


class LinearImageGenerator(torch.nn.Module):
    """``G(z) = A z`` shaped as a 1×4×4 image: its manifold is a plane through 0."""

    def __init__(self, k: int = 2, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.A = torch.nn.Parameter(torch.linalg.qr(torch.randn(16, k, generator=g))[0])
        self.latent_dim = k

    def forward(self, z):
        return (z @ self.A.T).reshape(-1, 1, 4, 4)


def _off_plane(G, n: int, sigma: float, g: torch.Generator) -> torch.Tensor:
    """Points at distance RMS ``sigma`` per entry from the plane of ``G``."""
    with torch.no_grad():
        on = G(torch.randn(n, 2, generator=g)).reshape(n, 16)
        e = torch.randn(n, 16, generator=g)
        e = e - (e @ G.A) @ G.A.T  # the part orthogonal to the plane
        e = e / e.norm(dim=1, keepdim=True) * sigma * 4.0  # ‖e‖ / √16 = sigma
    return (on + e).reshape(n, 1, 4, 4)


def test_on_manifold_tolerance_is_calibrated_on_training_points(tmp_path):
    """Training points sit at RMS distances spread around σ = 0.05 from the plane; held-out
    points at the same spread are mostly within the calibrated tolerance, points 5× as far
    never are; a fixed tolerance is reported as such."""
    G = LinearImageGenerator()
    g = torch.Generator().manual_seed(1)
    spread = torch.linspace(0.5, 1.5, 64)[:, None]  # RMS distances 0.05 × spread
    base = _off_plane(G, 64, 0.05, g).reshape(64, 16)
    with torch.no_grad():
        proj = (base @ G.A) @ G.A.T
        train = (proj + (base - proj) * spread).reshape(64, 1, 4, 4)
    near = _off_plane(G, 8, 0.05, g)
    far = _off_plane(G, 8, 0.25, g)
    heldout = torch.cat([near, far])
    cfg = AnalysisConfig(n_typical=4, n_search=1, search_steps=2, n_real=16, invert_steps=300,
                         invert_restarts=1, n_directions=1, traverse_steps=2, global_samples=4,
                         classifier_epochs=0, n_train_reference=8, progress=False)
    res = analyze_generator(G, train, tmp_path / "cal", heldout=heldout, config=cfg)
    d = res["details"]
    # The 0.9 quantile of RMS distances 0.05 × U(0.5, 1.5) is 0.05 × 1.4 = 0.07.
    assert d["residual_tol"] == pytest.approx(0.07, abs=0.01)
    assert d["residual_tol_source"].startswith("calibrated")
    arrays = np.load(tmp_path / "cal" / "arrays.npz")
    flagged = torch.from_numpy(arrays["real_flagged"])
    residual = torch.from_numpy(arrays["real_residual"])
    assert (flagged == (residual > d["residual_tol"])).all()
    assert residual.max() > 0.2 and res["real_on_manifold_fraction"] == pytest.approx(0.5)

    # The pair's own projection G(E(x)): for this plane, E(x) = Aᵀx is the orthogonal
    # projection, so the residuals are the true distances and agree with the inversion's.
    class Encoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.A = torch.nn.Parameter(G.A.detach().clone())

        def forward(self, x):
            return x.reshape(x.shape[0], 16) @ self.A

    enc = analyze_generator(G, train, tmp_path / "enc", heldout=heldout, encoder=Encoder(),
                            config=cfg)
    assert enc["details"]["real_projection"] == "encoder"
    assert enc["details"]["residual_tol"] == pytest.approx(d["residual_tol"], abs=2e-3)
    enc_res = torch.from_numpy(np.load(tmp_path / "enc" / "arrays.npz")["real_residual"])
    # The orthogonal projection is the optimum the inversion (300 Adam steps) approaches.
    assert (enc_res <= residual + 1e-9).all() and (residual - enc_res).max() < 5e-3
    assert enc["real_on_manifold_fraction"] == res["real_on_manifold_fraction"]

    fixed = analyze_generator(G, train, tmp_path / "fixed", heldout=heldout,
                              config=AnalysisConfig(**{**cfg.__dict__, "residual_tol": 0.3}))
    assert fixed["details"]["residual_tol_source"] == "fixed"
    assert fixed["real_on_manifold_fraction"] == 1.0
    with pytest.raises(ValueError, match="needs training points besides"):
        analyze_generator(G, train[:16], tmp_path / "none", config=cfg)
    with pytest.raises(ValueError, match="heldout points have shape"):
        analyze_generator(G, train, tmp_path / "bad", heldout=heldout.reshape(16, 16), config=cfg)
    with pytest.raises(ValueError, match="residual_quantile"):
        AnalysisConfig(residual_quantile=0.0)


def test_coverage_of_predictions():
    from spectral_backprop.analysis.coverage import coverage_of

    pred = torch.tensor([0] * 50 + [1] * 46 + [2] * 4)
    c = coverage_of(pred, num_classes=3, covered_share=0.05)
    assert c["class_counts"] == [50, 46, 4] and c["classes_covered"] == 2
    assert c["class_shares"] == pytest.approx([0.5, 0.46, 0.04])
    expected = -sum(p * math.log(p) for p in (0.5, 0.46, 0.04))
    assert c["class_entropy"] == pytest.approx(expected)
    assert coverage_of(pred, 3, covered_share=0.04)["classes_covered"] == 3
