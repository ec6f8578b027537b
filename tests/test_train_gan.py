"""GAN training: short runs improve, entropy term acts, runs resume bit-identically."""

from __future__ import annotations

import json
import math

import pytest
import torch

from spectral_backprop.data import load_dataset
from spectral_backprop.train import (
    CheckpointError,
    GANConfig,
    generator_entropy,
    mode_coverage,
    read_metrics,
    train_gan,
)
from spectral_backprop.train import gan as gan_module

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_config(**overrides) -> GANConfig:
    values = dict(dataset="ring", data_options={"num_samples": 2000}, width=32, depth=2,
                  batch_size=64, steps=80, lr_g=2e-3, lr_d=2e-3, entropy_batch=16,
                  log_every=20, ckpt_every=40, progress=False)
    return GANConfig(**{**values, **overrides})


@pytest.fixture(scope="module")
def ring():
    return load_dataset("ring", num_samples=2000)


def _mean_mode_distance(G, modes, n=500):
    z = torch.randn(n, 2, generator=torch.Generator().manual_seed(123))
    with torch.no_grad():
        return torch.cdist(G(z), modes).min(dim=1).values.mean().item()


@pytest.mark.parametrize("beta", [0.0, 0.2])
def test_short_gan_run_moves_samples_to_the_data(tmp_path, ring, beta, capsys):
    config = tiny_config(entropy_weight=beta)
    torch.manual_seed(config.seed)
    from spectral_backprop.models import build_gan

    initial = _mean_mode_distance(build_gan("auto", (2,), 2, 32, 2)[0], ring.modes)
    result = train_gan(config, tmp_path, dataset=ring)
    final = _mean_mode_distance(result.generator, ring.modes)
    assert final < 0.7 * initial
    # The config is printed and saved; the metrics are JSON lines at the logging steps.
    assert "entropy_weight" in capsys.readouterr().out
    assert GANConfig.from_dict(json.loads((tmp_path / "config.json").read_text())) == config
    records = read_metrics(tmp_path)
    assert [r["step"] for r in records] == [20, 40, 60, 80]
    assert ("entropy" in records[-1]) == (beta > 0)


def test_entropy_term_raises_the_generator_entropy(tmp_path, ring):
    entropies = {}
    z = torch.randn(256, 2, generator=torch.Generator().manual_seed(7))
    for beta in (0.0, 1.0):
        config = tiny_config(entropy_weight=beta, steps=60)
        G = train_gan(config, tmp_path / str(beta), dataset=ring).generator
        entropies[beta] = generator_entropy(G, z, config).item()
    assert entropies[1.0] > entropies[0.0] + 0.5


def test_mode_coverage_metrics():
    modes = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
    samples = torch.tensor([[0.0, 0.01], [0.02, 0.0], [0.99, 0.0], [0.5, 0.0]])
    m = mode_coverage(samples, modes, std=0.01)
    assert m["modes"] == 2 and m["high_quality"] == 0.75
    p = torch.tensor([2 / 3, 1 / 3])
    assert m["reverse_kl"] == pytest.approx((p * (2 * p).log()).sum().item())
    assert mode_coverage(samples[:2], modes, 0.01)["reverse_kl"] == pytest.approx(torch.log(
        torch.tensor(2.0)).item())
    # Spread: offsets (0, .01), (.02, 0), (−.01, 0) → RMS per coordinate √(6e-4/6) = 0.01.
    assert m["spread"] == pytest.approx(1.0)


def test_mode_coverage_of_the_data_itself():
    # Samples of the mixture: every mode, almost all high quality, a near-uniform
    # histogram, and the truncated-Gaussian spread √(E[χ²₂ | χ²₂ < 9]/2).
    data = load_dataset("grid", num_samples=20_000, seed=3)
    m = mode_coverage(data.x[:2500], data.modes, data.mode_std)
    tail = math.exp(-4.5)
    assert m["modes"] == 25
    assert m["high_quality"] == pytest.approx(1 - tail, abs=4 * math.sqrt(tail / 2500))
    assert m["reverse_kl"] < 3 * 24 / (2 * 2500)  # sampling noise: E ≈ (M − 1)/(2N)
    expected = math.sqrt((2 - 9 * tail / (1 - tail)) / 2)
    # Standard error of a RMS over 2·2,500 coordinates is about spread/√(2·5000).
    assert m["spread"] == pytest.approx(expected, abs=4 * expected / math.sqrt(10_000))
    collapsed = mode_coverage(data.modes.repeat(100, 1), data.modes, data.mode_std)
    assert collapsed["high_quality"] == 1.0 and collapsed["spread"] == 0.0


class _Interrupted(Exception):
    pass


def test_resume_continues_bit_identically(tmp_path, ring, monkeypatch):
    config = tiny_config(entropy_weight=0.1, steps=60, ckpt_every=20, log_every=10,
                         lr_schedule="cosine")
    straight = train_gan(config, tmp_path / "straight", dataset=ring)

    real_save = gan_module.save_checkpoint

    def save_then_die(path, *, step, **kw):
        real_save(path, step=step, **kw)
        if step == 40:
            raise _Interrupted

    monkeypatch.setattr(gan_module, "save_checkpoint", save_then_die)
    with pytest.raises(_Interrupted):
        train_gan(config, tmp_path / "resumed", dataset=ring)
    monkeypatch.undo()
    resumed = train_gan(config, tmp_path / "resumed", resume=True, dataset=ring)

    for name in ("generator", "discriminator"):
        a, b = getattr(straight, name).state_dict(), getattr(resumed, name).state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a)

    def strip_time(records):
        return [{k: v for k, v in r.items() if k != "time"} for r in records]

    assert strip_time(read_metrics(tmp_path / "resumed")) == strip_time(
        read_metrics(tmp_path / "straight"))


def test_bad_checkpoints_give_clear_errors(tmp_path, ring):
    config = tiny_config(steps=10, ckpt_every=10, log_every=10)
    train_gan(config, tmp_path, dataset=ring)
    with pytest.raises(FileExistsError, match="--resume"):
        train_gan(config, tmp_path, dataset=ring)
    with pytest.raises(CheckpointError, match="different run.*lr_g"):
        train_gan(tiny_config(steps=10, lr_g=5e-4), tmp_path, resume=True, dataset=ring)
    with pytest.raises(CheckpointError, match="different run.*width"):
        train_gan(tiny_config(steps=10, width=8), tmp_path, resume=True, dataset=ring)
    ckpt = tmp_path / "checkpoint.pt"
    ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        train_gan(config, tmp_path, resume=True, dataset=ring)
    ckpt.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        train_gan(config, tmp_path, resume=True, dataset=ring)


def test_config_validation():
    with pytest.raises(ValueError, match="unknown GANConfig field"):
        GANConfig.from_dict({"lr": 1.0})
    with pytest.raises(ValueError, match="reg_schedule"):
        GANConfig(reg_schedule="exponential")
    for start in (-0.1, 1.0):
        with pytest.raises(ValueError, match="reg_decay_start"):
            GANConfig(reg_decay_start=start)
    for end in (0.3, 1.1):
        with pytest.raises(ValueError, match="reg_decay_end"):
            GANConfig(reg_decay_start=0.3, reg_decay_end=end)
    with pytest.raises(ValueError, match="entropy_batch"):
        GANConfig(batch_size=8, entropy_weight=1.0, entropy_batch=16)
    with pytest.raises(ValueError, match="entropy_decay needs reg_schedule"):
        GANConfig(entropy_decay=(0.0, 0.5))
    for window in ((0.5, 0.5), (-0.1, 0.5), (0.2, 1.5), (0.1, 0.2, 0.3)):
        with pytest.raises(ValueError, match="entropy_decay must be"):
            GANConfig(reg_schedule="cosine", entropy_decay=window)
    # R1's own window is no separate window: stored as None, so configs compare equal.
    same = GANConfig(reg_schedule="cosine", reg_decay_start=0.5, entropy_decay=[0.5, 1.0])
    assert same.entropy_decay is None
    assert not same.differences(GANConfig(reg_schedule="cosine", reg_decay_start=0.5).to_dict())
    with pytest.raises(ValueError, match="steps must be positive"):
        GANConfig(steps=0)


def test_stochastic_entropy_is_deterministic_given_the_seed(tmp_path, ring):
    # Probes are drawn from the run's generator, so a stochastic estimate repeats exactly.
    config = tiny_config(entropy_weight=0.1, entropy_method="lanczos", entropy_batch=8,
                         entropy_options={"num_probes": 2}, steps=6, log_every=3)
    a = train_gan(config, tmp_path / "a", dataset=ring)
    b = train_gan(config, tmp_path / "b", dataset=ring)
    assert all(torch.equal(p, q) for p, q in zip(a.generator.parameters(),
                                                 b.generator.parameters(), strict=True))
    assert read_metrics(tmp_path / "a")[-1]["entropy"] == read_metrics(tmp_path / "b")[-1][
        "entropy"]


@pytest.mark.parametrize("schedule", ["constant", "linear", "cosine"])
@pytest.mark.parametrize("start", [0.0, 0.5])
def test_regularizer_schedule(schedule, start):
    config = GANConfig(steps=1000, reg_schedule=schedule, reg_decay_start=start)
    scales = [gan_module.regularizer_scale(step, config) for step in range(1000)]
    # Held at 1 until the decay starts, then never increasing.
    held = int(start * 1000) + 1
    assert scales[:held] == [1.0] * held
    assert all(b <= a for a, b in zip(scales, scales[1:], strict=False))
    if schedule == "constant":
        assert set(scales) == {1.0}
        return
    # Analytic values: halfway through the decay, and at the last update.
    mid = int((start + (1 - start) / 2) * 1000)
    assert scales[mid] == pytest.approx(0.5)
    v_last = (0.999 - start) / (1 - start)
    last = 1 - v_last if schedule == "linear" else 0.5 * (1 + math.cos(math.pi * v_last))
    assert scales[-1] == pytest.approx(last)
    assert scales[-1] < 0.01
    # Ending the decay early: the same curve compressed into [start, end], then 0.
    end = start + (1 - start) / 2
    early = GANConfig(steps=1000, reg_schedule=schedule, reg_decay_start=start,
                      reg_decay_end=end)
    compressed = [gan_module.regularizer_scale(step, early) for step in range(1000)]
    assert compressed[int((start + end) / 2 * 1000)] == pytest.approx(0.5)
    assert set(compressed[int(end * 1000):]) == {0.0}


def test_decaying_regularizers_are_applied_and_logged(tmp_path, ring, monkeypatch):
    config = tiny_config(entropy_weight=0.2, r1_weight=0.5, reg_schedule="linear",
                         reg_decay_start=0.5, steps=40, log_every=10)
    seen = {"r1": [], "entropy": []}
    real_r1, real_entropy = gan_module.r1_penalty, gan_module.generator_entropy

    def r1(*args):
        seen["r1"].append(1)
        return real_r1(*args)

    def entropy(*args, **kwargs):
        seen["entropy"].append(1)
        return real_entropy(*args, **kwargs)

    monkeypatch.setattr(gan_module, "r1_penalty", r1)
    monkeypatch.setattr(gan_module, "generator_entropy", entropy)
    train_gan(config, tmp_path, dataset=ring)
    assert len(seen["r1"]) == len(seen["entropy"]) == 40  # the scale is > 0 until the end
    records = read_metrics(tmp_path)
    # The logged scale is the one of the last update before each record.
    expected = [gan_module.regularizer_scale(r["step"] - 1, config) for r in records]
    assert [r["reg_scale"] for r in records] == pytest.approx(expected)
    assert records[0]["reg_scale"] == 1.0 and records[-1]["reg_scale"] < 0.1


def test_entropy_decay_window_acts_on_beta_alone(tmp_path, ring, monkeypatch):
    # β decays over its own window (here: gone at 40% of training); γ keeps R1's.
    config = tiny_config(entropy_weight=0.2, r1_weight=0.5, reg_schedule="linear",
                         reg_decay_start=0.5, entropy_decay=[0.0, 0.4], steps=40,
                         log_every=5)
    assert config.entropy_decay == (0.0, 0.4) and "steps" not in config.resumable()
    calls = []
    real_entropy = gan_module.generator_entropy
    monkeypatch.setattr(gan_module, "generator_entropy",
                        lambda *a, **k: calls.append(1) or real_entropy(*a, **k))
    train_gan(config, tmp_path, dataset=ring)
    # β > 0 exactly for the updates before 40% of the steps: u = step/40 < 0.4.
    assert len(calls) == 16
    records = read_metrics(tmp_path)
    betas = [0.2 * (1 - (r["step"] - 1) / 16) if r["step"] - 1 < 16 else 0.0
             for r in records]
    assert [r["beta"] for r in records] == pytest.approx(betas)
    expected = [gan_module.regularizer_scale(r["step"] - 1, config) for r in records]
    assert [r["reg_scale"] for r in records] == pytest.approx(expected)
    assert records[-1]["reg_scale"] > 0  # R1 is still on when β is long gone


def test_old_checkpoints_without_new_fields_still_resume(tmp_path, ring):
    # A run saved before a config field existed used that field's default.
    config = tiny_config(steps=10, ckpt_every=10, log_every=10)
    saved = config.to_dict()
    del saved["g_activation"], saved["reg_schedule"], saved["r1_weight"]
    assert config.mismatches(saved) == []
    assert tiny_config(g_activation="leaky_relu").mismatches(saved) == ["g_activation"]
    # The message names the value the old run used (the default), not a missing one.
    assert tiny_config(g_activation="leaky_relu").mismatch_details(saved) == (
        "g_activation: checkpoint None, now 'leaky_relu'")
    assert tiny_config(r1_weight=0.5).mismatch_details(saved) == (
        "r1_weight: checkpoint 0.0, now 0.5")


def test_relu_generator_is_rank_deficient_where_leaky_relu_is_not():
    # Why the mode-coverage protocol uses a leaky-ReLU generator: with ReLU, a latent
    # region where fewer than k units are active maps through a rank-deficient J, so
    # log det JᵀJ = −inf and the entropy term has no gradient there.
    from spectral_backprop import logdet_jtj
    from spectral_backprop.models import build_gan

    G_relu, _ = build_gan("mlp", (2,), 2, width=3, depth=1)
    G_leaky, _ = build_gan("mlp", (2,), 2, width=3, depth=1, g_activation="leaky_relu")
    assert isinstance(G_leaky.net[1], torch.nn.LeakyReLU)
    with torch.no_grad():
        for G in (G_relu, G_leaky):
            # Hidden units z1, −z1 − 10, −z2 − 10: at z ≈ 0 only the first is active.
            G.net[0].weight.copy_(torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, -1.0]]))
            G.net[0].bias.copy_(torch.tensor([0.0, -10.0, -10.0]))
            G.net[2].weight.copy_(torch.eye(2, 3) + torch.tensor([[0.0, 0.0, 1.0]] * 2))
    z = torch.tensor([[0.5, 0.3], [1.0, -0.2]], dtype=torch.float64)
    with pytest.warns(UserWarning, match="singular"):
        assert torch.isneginf(logdet_jtj(G_relu.double(), z)).all()
    assert torch.isfinite(logdet_jtj(G_leaky.double(), z)).all()
    with pytest.raises(ValueError, match="mlp generator only"):
        build_gan("dcgan", (1, 28, 28), 2, g_activation="leaky_relu")


def test_r1_penalty_matches_the_analytic_input_gradient():
    # D(x) = wᵀx + ½ xᵀAx has ∇ₓD = w + A x (A symmetric).
    torch.manual_seed(0)
    w = torch.randn(3, dtype=torch.float64)
    A = torch.randn(3, 3, dtype=torch.float64)
    A = A + A.T
    x = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    d = x @ w + 0.5 * ((x @ A) * x).sum(1)
    expected = (w + x.detach() @ A).pow(2).sum(1).mean()
    penalty = gan_module.r1_penalty(d, x)
    assert penalty.item() == pytest.approx(expected.item(), rel=1e-12)
    # Differentiable in D's parameters (here w): ∂/∂w mean‖w + Ax‖² = 2·mean(w + Ax).
    w.requires_grad_(True)
    d = x @ w + 0.5 * ((x @ A) * x).sum(1)
    (g,) = torch.autograd.grad(gan_module.r1_penalty(d, x), w)
    assert torch.allclose(g, 2 * (w + x.detach() @ A).mean(0).detach())


def test_r1_penalty_smooths_the_discriminator(tmp_path, ring):
    with pytest.raises(ValueError, match="r1_weight"):
        tiny_config(r1_weight=-1.0)
    real = ring.x[:500].clone().requires_grad_(True)
    sq_grad = {}
    for gamma in (0.0, 10.0):
        D = train_gan(tiny_config(r1_weight=gamma, steps=40), tmp_path / str(gamma),
                      dataset=ring).discriminator
        sq_grad[gamma] = gan_module.r1_penalty(D(real), real).item()
    assert sq_grad[10.0] < 0.5 * sq_grad[0.0]


def test_modes_command_writes_the_documented_summary(tmp_path, capsys):
    # Tiny budget: checks the protocol's plumbing (both variants, same budget, the
    # results.json layout of the issue, seed splitting and reuse), not its figures.
    from spectral_backprop.cli import main

    tiny = ["--dataset", "grid", "--steps", "6", "--width", "8", "--depth", "1",
            "--batch-size", "32", "--entropy-batch", "4", "--log-every", "3",
            "--ckpt-every", "3", "--no-progress", "--out", str(tmp_path)]
    assert main(["modes", "--seeds", "1", *tiny]) == 0
    assert main(["modes", "--seeds", "2", "--first-seed", "1", *tiny]) == 0
    first = (tmp_path / "gan" / "seed0" / "eval.json").stat().st_mtime_ns
    assert main(["modes", "--seeds", "2", "--resume", *tiny]) == 0  # summary of both
    assert (tmp_path / "gan" / "seed0" / "eval.json").stat().st_mtime_ns == first
    res = json.loads((tmp_path / "results.json").read_text())
    assert res["seeds"] == 2 and set(res["variants"]) == {"gan", "entropy"}
    for variant in res["variants"].values():
        assert len(variant["per_seed"]) == 2
        for key in ("modes", "high_quality", "reverse_kl", "spread"):
            assert set(variant[key]) == {"mean", "se"}
    configs = {v: json.loads((tmp_path / v / "seed1" / "config.json").read_text())
               for v in ("gan", "entropy")}
    assert configs["gan"]["entropy_weight"] == 0.0
    assert configs["entropy"]["entropy_weight"] == res["entropy_weight"] > 0
    # Same budget: the configs differ in β only.
    differ = {k for k in configs["gan"] if configs["gan"][k] != configs["entropy"][k]}
    assert differ == {"entropy_weight"}
    assert configs["gan"]["r1_weight"] == 0.1  # the grid protocol's defaults apply
    assert main(["modes", "--seeds", "1", "--first-seed", "1", *tiny]) == 2
    assert "--first-seed" in capsys.readouterr().err


def test_truncated_entropy_matches_a_dense_reference():
    # G(z) = (z₁ e^{a z₂}, z₂): det J = e^{a z₂}, so ½ log det JᵀJ = a·z₂ exactly.
    class Shear(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a = torch.nn.Parameter(torch.tensor(1.5, dtype=torch.float64))

        def forward(self, z):
            return torch.stack([z[:, 0] * torch.exp(self.a * z[:, 1]), z[:, 1]], dim=1)

    G = Shear()
    a = G.a

    z = torch.randn(64, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    prior_entropy = 1.0 + math.log(2 * math.pi)  # H[N(0, I₂)]
    cap = 0.4
    value = generator_entropy(G, z, GANConfig(entropy_cap=cap))
    half_logdet = a.detach() * z[:, 1]
    expected = prior_entropy + half_logdet.clamp(max=cap).mean()
    assert value.item() == pytest.approx(expected.item(), rel=1e-6)
    # Only the samples below the cap carry gradient: ∂H_c/∂a = mean(z₂ · [a z₂ < c]).
    (grad,) = torch.autograd.grad(value, a)
    below = half_logdet < cap
    assert 0 < below.sum() < len(z)  # the test exercises both sides of the cap
    assert grad.item() == pytest.approx((z[:, 1] * below).mean().item(), rel=1e-5)
    # A cap above every sample gives the plain entropy.
    plain = generator_entropy(G, z, GANConfig())
    assert generator_entropy(G, z, GANConfig(entropy_cap=1e6)).item() == pytest.approx(
        plain.item(), rel=1e-12)
    assert plain.item() == pytest.approx((prior_entropy + half_logdet.mean()).item(), rel=1e-6)


def test_entropy_flags_reach_the_config():
    from spectral_backprop.cli import CLIError, build_parser
    from spectral_backprop.cli.train import config_from_args

    for command in ("train", "modes"):
        extra = ["--dataset", "grid"] if command == "modes" else []
        args = build_parser().parse_args([command, *extra, "--entropy-cap", "-0.5",
                                          "--reg-schedule", "cosine",
                                          "--entropy-decay", "0", "0.5", "--out", "x"])
        config = config_from_args(args)
        assert config.entropy_cap == -0.5 and config.entropy_decay == (0.0, 0.5)
    args = build_parser().parse_args(["train", "--out", "x"])
    config = config_from_args(args)
    assert config.entropy_cap is None and config.entropy_decay is None
    # "off" undoes a window that a base config (the modes protocol) sets.
    args = build_parser().parse_args(["modes", "--dataset", "grid", "--entropy-decay", "off",
                                      "--out", "x"])
    assert config_from_args(args, base={"entropy_decay": (0.0, 0.5)}).entropy_decay is None
    for bad in (["0.5"], ["a", "b"], ["0", "0.5", "1"]):
        args = build_parser().parse_args(["train", "--entropy-decay", *bad, "--out", "x"])
        with pytest.raises(CLIError, match="--entropy-decay takes START END or off"):
            config_from_args(args)


def test_modes_summary_refuses_runs_trained_under_other_settings(tmp_path, capsys):
    from spectral_backprop.cli import main

    tiny = ["--dataset", "grid", "--steps", "4", "--width", "8", "--depth", "1",
            "--batch-size", "32", "--entropy-batch", "4", "--log-every", "2",
            "--ckpt-every", "2", "--no-progress", "--out", str(tmp_path)]
    assert main(["modes", "--seeds", "1", *tiny]) == 0
    capsys.readouterr()
    # Summarising the same folder under another learning rate must not reuse those runs.
    assert main(["modes", "--seeds", "1", "--resume", "--lr-g", "5e-4", *tiny]) == 2
    err = capsys.readouterr().err
    assert "trained with other settings" in err and "lr_g: run 0.001, now 0.0005" in err
    assert main(["modes", "--seeds", "1", "--resume", *tiny]) == 0
