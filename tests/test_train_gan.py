"""GAN training: short runs improve, entropy term acts, runs resume bit-identically."""

from __future__ import annotations

import json
import math

import pytest
import torch

from helpers import count_coupling_checks, interrupted_then_resumed, records_without
from spectral_backprop.data import load_dataset
from spectral_backprop.train import (
    CheckpointError,
    Decay,
    EntropyTerm,
    GANConfig,
    generator_entropy,
    read_metrics,
    train_gan,
)
from spectral_backprop.train import gan as gan_module
from spectral_backprop.train.config import ConfigError, merge_dicts
from spectral_backprop.train.distributed import setup_distributed
from spectral_backprop.train.gan import build_state

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_config(**overrides) -> GANConfig:
    """A tiny ring run; nested ``overrides`` (``entropy={"weight": 0.1}``) are merged."""
    values = dict(dataset="ring", data_options={"num_samples": 2000}, width=32, depth=2,
                  batch_size=64, steps=80, lr_g=2e-3, lr_d=2e-3, entropy={"batch": 16},
                  log_every=20, ckpt_every=40, progress=False)
    return GANConfig.from_dict(merge_dicts(values, overrides))


@pytest.fixture(scope="module")
def ring():
    return load_dataset("ring", num_samples=2000)


def _mean_mode_distance(G, modes, n=500):
    z = torch.randn(n, 2, generator=torch.Generator().manual_seed(123))
    with torch.no_grad():
        return torch.cdist(G(z), modes).min(dim=1).values.mean().item()


@pytest.mark.parametrize("beta", [0.0, 0.2])
def test_short_gan_run_moves_samples_to_the_data(tmp_path, ring, beta, capsys):
    config = tiny_config(entropy={"weight": beta})
    torch.manual_seed(config.seed)
    from spectral_backprop.models import build_gan

    initial = _mean_mode_distance(build_gan("auto", (2,), 2, 32, 2)[0], ring.modes)
    result = train_gan(config, tmp_path, dataset=ring)
    final = _mean_mode_distance(result.generator, ring.modes)
    assert final < 0.7 * initial
    # The config is printed and saved; the metrics are JSON lines at the logging steps.
    assert "entropy.weight" in capsys.readouterr().out
    assert GANConfig.from_dict(json.loads((tmp_path / "config.json").read_text())) == config
    records = read_metrics(tmp_path)
    assert [r["step"] for r in records] == [20, 40, 60, 80]
    assert ("entropy" in records[-1]) == (beta > 0)


def test_entropy_term_raises_the_generator_entropy(tmp_path, ring):
    entropies = {}
    z = torch.randn(256, 2, generator=torch.Generator().manual_seed(7))
    for beta in (0.0, 1.0):
        config = tiny_config(entropy={"weight": beta}, steps=60)
        G = train_gan(config, tmp_path / str(beta), dataset=ring).generator
        entropies[beta] = generator_entropy(G, z, config).item()
    assert entropies[1.0] > entropies[0.0] + 0.5


@pytest.mark.parametrize("ema", [0.0, 0.9])
def test_resume_continues_bit_identically(tmp_path, ring, monkeypatch, ema):
    config = tiny_config(entropy={"weight": 0.1}, steps=60, ckpt_every=20, log_every=10,
                         lr_schedule="cosine", ema=ema)
    straight = train_gan(config, tmp_path / "straight", dataset=ring)
    resumed = interrupted_then_resumed(monkeypatch, gan_module, train_gan, config,
                                       tmp_path / "resumed", ring, at_step=40)
    for name in ("generator", "discriminator"):
        a, b = getattr(straight, name).state_dict(), getattr(resumed, name).state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert records_without(tmp_path / "resumed", "time") == records_without(
        tmp_path / "straight", "time")


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


class _RunsCodeWhenUnpickled:
    """A pickle payload that creates a file when unpickled (stands for any code)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def test_checkpoints_are_read_without_unpickling_code(tmp_path, ring):
    import pickle

    from spectral_backprop.train import read_checkpoint

    config = tiny_config(steps=10, ckpt_every=10, log_every=10)
    train_gan(config, tmp_path, dataset=ring)
    payload = read_checkpoint(tmp_path / "checkpoint.pt")  # the safe loader reads ours
    assert payload["step"] == 10 and payload["kind"] == "GANConfig"
    marker = tmp_path / "payload_ran"
    evil = _RunsCodeWhenUnpickled(marker)
    pickle.loads(pickle.dumps(evil)).close()  # the payload does run under plain pickle
    assert marker.exists()
    marker.unlink()
    ckpt = tmp_path / "checkpoint.pt"
    for write in (lambda: torch.save({**payload, "extra": {"x": evil}}, ckpt),
                  lambda: ckpt.write_bytes(pickle.dumps(evil))):
        write()
        with pytest.raises(CheckpointError, match="other than tensors and plain data"):
            train_gan(config, tmp_path, resume=True, dataset=ring)
        with pytest.raises(ValueError, match="cannot read checkpoint"):
            read_checkpoint(ckpt)
        assert not marker.exists()


def test_load_gan_generator(tmp_path, ring):
    from spectral_backprop.train import ReverseKLConfig, load_gan_generator, save_checkpoint

    config = tiny_config(steps=10, ckpt_every=10, log_every=10)
    trained = train_gan(config, tmp_path / "run", dataset=ring)
    G, loaded, data = load_gan_generator(tmp_path / "run")
    assert loaded == config and data.name == ring.name and G.latent_dim == 2
    assert not G.training
    z = torch.randn(5, 2)
    with torch.no_grad():
        assert torch.equal(G(z), trained.generator(z))
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        load_gan_generator(tmp_path / "nowhere")
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot read checkpoint"):
        load_gan_generator(tmp_path / "garbage.pt")
    save_checkpoint(tmp_path / "rkl.pt", step=0, config=ReverseKLConfig(), modules={},
                    optimizers={}, generator=torch.Generator())
    with pytest.raises(ValueError, match="not a GAN training checkpoint"):
        load_gan_generator(tmp_path / "rkl.pt")


def test_config_validation():
    with pytest.raises(ValueError, match="unknown GANConfig field"):
        GANConfig.from_dict({"lr": 1.0})
    with pytest.raises(ValueError, match="r1 has no field.*foo"):
        GANConfig.from_dict({"r1": {"foo": 1.0}})
    with pytest.raises(ValueError, match="r1.decay.shape must be constant, linear or cosine"):
        GANConfig(r1={"decay": {"shape": "exponential"}})
    for start in (-0.1, 1.0):
        with pytest.raises(ValueError, match="entropy.decay.start must be in"):
            GANConfig(entropy={"decay": {"start": start}})
    for end in (0.3, 1.1):
        with pytest.raises(ValueError, match="r1.decay.end must be in"):
            GANConfig.from_dict({"r1": {"decay": {"start": 0.3, "end": end}}})
    with pytest.raises(ValueError, match="entropy.batch"):
        GANConfig(batch_size=8, entropy=EntropyTerm(weight=1.0, batch=16))
    with pytest.raises(ValueError, match="lr_schedule must be constant or cosine"):
        GANConfig(lr_schedule="linear")
    with pytest.raises(ValueError, match="steps must be positive"):
        GANConfig(steps=0)
    # The flat fields of old runs keep their old checks.
    with pytest.raises(ValueError, match="entropy_decay needs reg_schedule"):
        GANConfig.from_dict({"entropy_decay": (0.0, 0.5)})
    for window in ((0.5, 0.5), (-0.1, 0.5), (0.2, 1.5), (0.1, 0.2, 0.3)):
        with pytest.raises(ValueError, match="entropy_decay must be"):
            GANConfig.from_dict({"reg_schedule": "cosine", "entropy_decay": window})
    with pytest.raises(ValueError, match="r1.decay.start must be in"):
        GANConfig.from_dict({"reg_decay_start": 1.0})
    # R1's own window given to β is the same run as β following R1: equal configs.
    same = GANConfig.from_dict({"reg_schedule": "cosine", "reg_decay_start": 0.5,
                                "entropy_decay": [0.5, 1.0]})
    assert same.entropy.decay == same.r1.decay == Decay("cosine", 0.5, 1.0)
    follows = GANConfig.from_dict({"reg_schedule": "cosine", "reg_decay_start": 0.5})
    assert follows == same and not same.differences(follows.to_dict())


def test_stochastic_entropy_is_deterministic_given_the_seed(tmp_path, ring):
    # Probes are drawn from the run's generator, so a stochastic estimate repeats exactly.
    config = tiny_config(entropy={"weight": 0.1, "method": "lanczos", "batch": 8,
                                  "options": {"num_probes": 2}}, steps=6, log_every=3)
    a = train_gan(config, tmp_path / "a", dataset=ring)
    b = train_gan(config, tmp_path / "b", dataset=ring)
    assert all(torch.equal(p, q) for p, q in zip(a.generator.parameters(),
                                                 b.generator.parameters(), strict=True))
    assert read_metrics(tmp_path / "a")[-1]["entropy"] == read_metrics(tmp_path / "b")[-1][
        "entropy"]


@pytest.mark.parametrize("schedule", ["constant", "linear", "cosine"])
@pytest.mark.parametrize("start", [0.0, 0.5])
def test_regularizer_schedule(schedule, start):
    decay = Decay(schedule, start)
    scales = [decay.scale(step, 1000) for step in range(1000)]
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
    early = Decay(schedule, start, end)
    compressed = [early.scale(step, 1000) for step in range(1000)]
    assert compressed[int((start + end) / 2 * 1000)] == pytest.approx(0.5)
    assert set(compressed[int(end * 1000):]) == {0.0}
    # The old flat spelling gives both terms this decay.
    old = GANConfig.from_dict({"reg_schedule": schedule, "reg_decay_start": start,
                               "reg_decay_end": end})
    assert old.r1.decay == old.entropy.decay == early


def test_decaying_regularizers_are_applied_and_logged(tmp_path, ring, monkeypatch):
    decay = {"shape": "linear", "start": 0.5}
    config = tiny_config(entropy={"weight": 0.2, "decay": decay},
                         r1={"weight": 0.5, "decay": decay}, steps=40, log_every=10)
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
    expected = [config.r1.decay.scale(r["step"] - 1, config.steps) for r in records]
    assert [r["reg_scale"] for r in records] == pytest.approx(expected)
    assert records[0]["reg_scale"] == 1.0 and records[-1]["reg_scale"] < 0.1
    assert [r["beta"] for r in records] == pytest.approx([0.2 * e for e in expected])


def test_entropy_decay_window_acts_on_beta_alone(tmp_path, ring, monkeypatch):
    # β decays over its own window (here: gone at 40% of training); γ keeps R1's. Spelt
    # with the flat fields of old runs, which keep their meaning.
    config = tiny_config(entropy_weight=0.2, r1_weight=0.5, reg_schedule="linear",
                         reg_decay_start=0.5, entropy_decay=[0.0, 0.4], steps=40,
                         log_every=5)
    assert config.entropy.decay == Decay("linear", 0.0, 0.4) and config.entropy.weight == 0.2
    assert config.r1 == GANConfig(r1={"weight": 0.5, "decay": Decay("linear", 0.5)}).r1
    assert config.entropy.batch == 16 and "steps" not in config.resumable()
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
    expected = [config.r1.decay.scale(r["step"] - 1, config.steps) for r in records]
    assert [r["reg_scale"] for r in records] == pytest.approx(expected)
    assert records[-1]["reg_scale"] > 0  # R1 is still on when β is long gone


def test_old_checkpoints_without_new_fields_still_resume(tmp_path, ring):
    # A run saved before a config field existed used that field's default.
    config = tiny_config(steps=10, ckpt_every=10, log_every=10)
    saved = config.to_dict()
    del saved["g_activation"], saved["r1"]["weight"], saved["entropy"]["decay"]
    assert config.mismatches(saved) == []
    assert tiny_config(g_activation="leaky_relu").mismatches(saved) == ["g_activation"]
    # The message names the value the old run used (the default), not a missing one.
    assert tiny_config(g_activation="leaky_relu").mismatch_details(saved) == (
        "g_activation: checkpoint None, now 'leaky_relu'")
    assert tiny_config(r1={"weight": 0.5}).mismatch_details(saved) == (
        "r1.weight: checkpoint 0.0, now 0.5")


# config.json of the grid protocol's entropy variant, as written before R1 and
# EntropyTerm existed (flat fields).
OLD_GRID_CONFIG = {
    "dataset": "grid", "data_options": {}, "arch": "auto", "latent_dim": None, "width": 128,
    "depth": None, "g_activation": None, "steps": 20000, "batch_size": 256, "d_steps": 1,
    "lr_g": 0.001, "lr_d": 0.001, "adam_betas": [0.5, 0.999], "lr_schedule": "cosine",
    "r1_weight": 0.1, "entropy_weight": 0.01, "reg_schedule": "cosine",
    "reg_decay_start": 0.5, "reg_decay_end": 1.0, "entropy_decay": [0.0, 0.5],
    "entropy_batch": 32, "entropy_method": "exact", "entropy_options": {},
    "entropy_dtype": "float64", "entropy_cap": None, "seed": 0, "log_every": 100,
    "ckpt_every": 1000, "device": "auto", "progress": True}


def test_old_flat_config_migrates_to_the_nested_one():
    new = GANConfig(
        dataset="grid", width=128, batch_size=256, steps=20000, lr_g=1e-3, lr_d=1e-3,
        lr_schedule="cosine", r1={"weight": 0.1, "decay": Decay("cosine", 0.5, 1.0)},
        entropy=EntropyTerm(weight=0.01, batch=32, decay=Decay("cosine", 0.0, 0.5)),
        log_every=100, ckpt_every=1000)
    assert GANConfig.from_dict(OLD_GRID_CONFIG) == new
    assert new.differences(OLD_GRID_CONFIG) == {}  # an old run resumes under the new config
    # β without a window of its own (entropy_decay None) decays as R1 does.
    follows = GANConfig.from_dict({**OLD_GRID_CONFIG, "entropy_decay": None})
    assert follows.entropy.decay == follows.r1.decay == Decay("cosine", 0.5, 1.0)
    # A difference is named by its nested path, with the old run's value first.
    assert new.differences({**OLD_GRID_CONFIG, "entropy_decay": None}) == {
        "entropy.decay.end": (1.0, 0.5), "entropy.decay.start": (0.5, 0.0)}
    assert new.mismatch_details({**OLD_GRID_CONFIG, "r1_weight": 0.2}, label="run") == (
        "r1.weight: run 0.2, now 0.1")
    # Nested values print one per line and save as nested JSON that reads back.
    assert "r1.decay.start      = 0.5" in new.describe()
    assert GANConfig.from_dict(json.loads(json.dumps(new.to_dict()))) == new


def test_differences_compare_nested_values():
    config = GANConfig(r1={"weight": 0.1}, entropy={"weight": 0.2, "options": {"jitter": 1}})
    saved = config.to_dict()
    assert config.differences(saved) == {}
    saved["entropy"]["options"] = {"jitter": 2}
    saved["r1"]["decay"]["shape"] = "cosine"
    saved["steps"] = 10  # resumable: a constant schedule does not depend on it
    assert config.differences(saved) == {
        "entropy.options": ({"jitter": 2}, {"jitter": 1}),
        "r1.decay.shape": ("cosine", "constant")}
    # A decaying term pins steps (the schedule depends on it).
    decaying = GANConfig(entropy={"decay": {"shape": "linear"}})
    assert "steps" not in decaying.resumable() and "steps" in GANConfig().resumable()
    assert list(decaying.differences({**decaying.to_dict(), "steps": 10})) == ["steps"]


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
    with pytest.raises(ValueError, match="r1.weight must be >= 0"):
        tiny_config(r1={"weight": -1.0})
    real = ring.x[:500].clone().requires_grad_(True)
    sq_grad = {}
    for gamma in (0.0, 10.0):
        D = train_gan(tiny_config(r1={"weight": gamma}, steps=40), tmp_path / str(gamma),
                      dataset=ring).discriminator
        sq_grad[gamma] = gan_module.r1_penalty(D(real), real).item()
    assert sq_grad[10.0] < 0.5 * sq_grad[0.0]


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
    value = generator_entropy(G, z, EntropyTerm(cap=cap))
    half_logdet = a.detach() * z[:, 1]
    expected = prior_entropy + half_logdet.clamp(max=cap).mean()
    assert value.item() == pytest.approx(expected.item(), rel=1e-6)
    # Only the samples below the cap carry gradient: ∂H_c/∂a = mean(z₂ · [a z₂ < c]).
    (grad,) = torch.autograd.grad(value, a)
    below = half_logdet < cap
    assert 0 < below.sum() < len(z)  # the test exercises both sides of the cap
    assert grad.item() == pytest.approx((z[:, 1] * below).mean().item(), rel=1e-5)
    # A cap above every sample gives the plain entropy.
    plain = generator_entropy(G, z, GANConfig())  # a whole config: its entropy term
    assert generator_entropy(G, z, GANConfig(entropy={"cap": 1e6})).item() == pytest.approx(
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
        assert config.entropy.cap == -0.5 and config.entropy.decay == Decay("cosine", 0, 0.5)
        assert config.r1.decay == Decay("cosine", 0.0, 1.0)
    args = build_parser().parse_args(["train", "--out", "x"])
    config = config_from_args(args)
    assert config.entropy.cap is None and config.entropy.decay == Decay()
    # "off" undoes a window that a base config (the modes protocol) sets: β decays as R1.
    args = build_parser().parse_args(["modes", "--dataset", "grid", "--entropy-decay", "off",
                                      "--out", "x"])
    base = {"r1": {"decay": {"shape": "cosine", "start": 0.5}},
            "entropy": {"decay": {"shape": "cosine", "end": 0.5}}}
    assert config_from_args(args, base=base).entropy.decay == Decay("cosine", 0.5, 1.0)
    old_base = {"reg_schedule": "cosine", "entropy_decay": (0.0, 0.5)}
    assert config_from_args(args, base=old_base).entropy.decay == Decay("cosine", 0.0, 1.0)
    for bad in (["0.5"], ["a", "b"], ["0", "0.5", "1"]):
        args = build_parser().parse_args(["train", "--entropy-decay", *bad, "--out", "x"])
        with pytest.raises(CLIError, match="--entropy-decay takes START END or off"):
            config_from_args(args)


def test_deprecated_schedule_flags_match_the_new_ones():
    # The scripts' old spellings on top of the grid protocol give the configs that the
    # new spellings give (experiments/modes.sh, docs/training.md).
    from spectral_backprop.cli import build_parser
    from spectral_backprop.cli.train import config_from_args

    base = {"r1": {"weight": 0.1, "decay": {"shape": "cosine", "start": 0.5}},
            "entropy": {"decay": {"shape": "cosine", "end": 0.5}}}
    pairs = [
        ("--r1-weight 0 --reg-schedule constant --reg-decay-start 0 --entropy-decay off",
         "--r1-weight 0 --r1-decay-shape constant --r1-decay-start 0 "
         "--entropy-decay-shape constant --entropy-decay-end 1"),
        ("--entropy-decay off", "--entropy-decay-start 0.5 --entropy-decay-end 1"),
        ("--reg-decay-end 0.75", "--r1-decay-end 0.75"),
        ("--reg-schedule cosine --reg-decay-start 0.5 --entropy-decay 0 0.5",
         "--r1-decay-shape cosine --r1-decay-start 0.5 --entropy-decay-shape cosine "
         "--entropy-decay-end 0.5"),
    ]
    for old, new in pairs:
        configs = [config_from_args(build_parser().parse_args(
            ["modes", "--dataset", "grid", *flags.split(), "--out", "x"]), base=base)
            for flags in (old, new)]
        assert configs[0] == configs[1], old
    # From the defaults of train: --reg-decay-start moves β's window along with R1's.
    args = build_parser().parse_args(["train", "--reg-schedule", "linear",
                                      "--reg-decay-start", "0.5", "--out", "x"])
    config = config_from_args(args)
    assert config.r1.decay == config.entropy.decay == Decay("linear", 0.5, 1.0)


@pytest.mark.parametrize(("method", "k"), [("auto", 4), ("exact", 4), ("lanczos", 4)])
def test_generator_entropy_passes_the_run_generator_only_to_stochastic_paths(method, k):
    # auto below its crossover runs the exact path, which takes no generator: passing one
    # would warn that it is ignored (warnings are errors here).
    from spectral_backprop.train import EntropyTerm
    from spectral_backprop.train.gan import generator_entropy

    G = torch.nn.Sequential(torch.nn.Linear(k, 8), torch.nn.Tanh(), torch.nn.Linear(8, 6))
    z = torch.randn(3, k)
    options = {"num_probes": 2} if method == "lanczos" else {}
    term = EntropyTerm(weight=1.0, method=method, options=options)
    h = generator_entropy(G, z, term, torch.Generator().manual_seed(0))
    assert h.shape == () and torch.isfinite(h)


def test_weight_average_follows_its_recursion_and_is_what_loads(tmp_path, ring):
    """θ̄ after n steps equals the recursion θ̄ ← d·θ̄ + (1 − d)·θ over the live weights of
    each step (replayed from runs of 1..n steps, which take the same steps), and the
    run hands out (and load_gan_generator loads) the average, not the live weights."""
    from spectral_backprop.train import load_gan_generator

    d, n = 0.6, 3
    lives = [build_state(tiny_config(ema=d), ring, setup_distributed("cpu")).G]
    for steps in range(1, n + 1):
        res = train_gan(tiny_config(ema=d, steps=steps), tmp_path / f"r{steps}", dataset=ring)
        payload = torch.load(tmp_path / f"r{steps}" / "checkpoint.pt", weights_only=True)
        live = build_state(tiny_config(ema=d), ring, setup_distributed("cpu")).G
        live.load_state_dict(payload["modules"]["G"])
        lives.append(live)
    avg = {k: v.clone() for k, v in lives[0].state_dict().items()}
    for live in lives[1:]:
        for k, v in live.named_parameters():
            avg[k] = d * avg[k] + (1 - d) * v.detach()
    got = res.generator.state_dict()
    for k, _ in lives[0].named_parameters():
        torch.testing.assert_close(got[k], avg[k], rtol=1e-6, atol=1e-7)
        assert not torch.equal(got[k], lives[-1].state_dict()[k])
    loaded, _, _ = load_gan_generator(tmp_path / f"r{n}")
    assert all(torch.equal(loaded.state_dict()[k], got[k]) for k in got)
    with pytest.raises(ConfigError, match="ema"):
        tiny_config(ema=1.0)


def test_entropy_steps_skip_the_coupling_test_the_pre_training_check_ran(tmp_path, ring,
                                                                        monkeypatch):
    # The pre-training check tests G for batch coupling; the steps then pass
    # check_coupling=False (train/common.estimator_options): the count of coupling tests
    # does not grow with the steps. Without the skip every step would add one.
    counts = {}
    for steps in (4, 12):
        calls = count_coupling_checks(monkeypatch)
        config = tiny_config(entropy={"weight": 0.1}, steps=steps, log_every=steps,
                             ckpt_every=steps)
        train_gan(config, tmp_path / str(steps), dataset=ring)
        counts[steps] = len(calls)
        monkeypatch.undo()
    assert counts[4] >= 1 and counts[12] == counts[4], counts
