"""Devices and precision: the products with ``J`` run in full precision on every device.

The policy (``linalg/jacobian.py``, "Precision of the products"): TF32 and autocast off
inside the products, the user's settings restored afterwards, an explicit opt-out
(``reduced_precision_allowed``). Tests taking ``device`` run on ``--device`` (conftest);
the ``cuda`` ones need a GPU (``scripts/gpu_check.sh``).
"""

from __future__ import annotations

import pytest
import torch

from helpers import ConvGenerator
from spectral_backprop import logdet_jtj, spectral_sum
from spectral_backprop.linalg.jacobian import (
    _SWITCHES,
    full_precision,
    reduced_precision_allowed,
)

needs_switches = pytest.mark.skipif(not _SWITCHES, reason="torch < 2.9: legacy TF32 flags")


class Recorder(torch.nn.Module):
    """Wraps G; records the cuDNN conv precision and autocast state at every call."""

    def __init__(self, G: torch.nn.Module, device_type: str):
        super().__init__()
        self.G, self.device_type, self.seen = G, device_type, []

    def forward(self, z):
        conv = getattr(torch.backends.cudnn.conv, "fp32_precision", None)
        self.seen.append((conv, torch.is_autocast_enabled(self.device_type)))
        return self.G(z)


def _state():
    return [s.fp32_precision for s in _SWITCHES]


@needs_switches
def test_full_precision_sets_ieee_and_restores_even_after_an_error():
    before = _state()
    torch.backends.cudnn.conv.fp32_precision = "tf32"
    try:
        with full_precision("cpu"):
            assert set(_state()) == {"ieee"}
        assert torch.backends.cudnn.conv.fp32_precision == "tf32"
        with pytest.raises(RuntimeError, match="boom"), full_precision("cpu"):
            raise RuntimeError("boom")
        assert torch.backends.cudnn.conv.fp32_precision == "tf32"
        with reduced_precision_allowed(), full_precision("cpu"):
            assert torch.backends.cudnn.conv.fp32_precision == "tf32"
    finally:
        for switch, value in zip(_SWITCHES, before, strict=True):
            switch.fp32_precision = value
    assert _state() == before


@needs_switches
@pytest.mark.parametrize("method", ["exact", "lanczos"])
def test_products_run_without_tf32_or_autocast(method, device):
    G = Recorder(ConvGenerator(dtype=torch.float32).to(device), device.type)
    z = torch.randn(2, 4, device=device)
    before = _state()
    options = {} if method == "exact" else {
        "num_probes": 4, "generator": torch.Generator(device=device).manual_seed(0)}
    with torch.autocast(device.type, dtype=torch.bfloat16):
        v = spectral_sum(G, z, "logdet", method=method, **options)
    v.sum().backward()
    assert G.seen and all(seen == ("ieee", False) for seen in G.seen), G.seen
    assert _state() == before


def test_autocast_does_not_reach_the_log_det(device):
    """bfloat16 autocast around the call: the value is the float32 one (upcast)."""
    G = ConvGenerator(dtype=torch.float32).to(device)
    z = torch.randn(3, 4, device=device)
    plain = logdet_jtj(G, z)
    with torch.autocast(device.type, dtype=torch.bfloat16):
        cast = logdet_jtj(G, z)
        with reduced_precision_allowed():
            reduced = logdet_jtj(G, z)
    torch.testing.assert_close(cast, plain, rtol=1e-5, atol=1e-5)
    # Not a vacuous check: the same call in bfloat16 is off by far more.
    assert (reduced - plain).abs().max() > 100 * (cast - plain).abs().max()


def test_stochastic_estimate_on_device_is_exact_with_k_orthogonal_probes(device):
    G = ConvGenerator().to(device)
    z = torch.randn(3, 4, dtype=torch.float64, device=device)
    gen = torch.Generator(device=device).manual_seed(0)
    est = spectral_sum(G, z, "logdet", method="lanczos", num_probes=4, probes="orthogonal",
                       generator=gen, return_info=True)
    assert est.value.device == z.device
    torch.testing.assert_close(est.value, logdet_jtj(G, z), rtol=1e-6, atol=1e-6)


@pytest.mark.cuda
def test_float32_log_det_on_cuda_is_as_accurate_as_on_the_cpu():
    """cuDNN's default TF32 would give J ~1e-3 relative precision; with the policy a
    float32 log det of an ill-conditioned conv generator on CUDA is as good as float32
    on the CPU (both against float64)."""
    from spectral_backprop.models.zoo import zoo_generator

    G32 = zoo_generator("dcgan_plain", 64, seed=0, scale=100.0)
    G64 = zoo_generator("dcgan_plain", 64, seed=0, scale=100.0, dtype=torch.float64)
    z = torch.randn(2, 64, dtype=torch.float64)
    truth = logdet_jtj(G64, z).detach()
    err_cpu = (logdet_jtj(G32, z.float()).detach().double() - truth).abs().max()
    G32.cuda()
    err_cuda = (logdet_jtj(G32, z.float().cuda()).detach().cpu().double() - truth).abs().max()
    assert err_cuda <= max(10 * err_cpu, 1e-4 * truth.abs().max()), (err_cuda, err_cpu)
