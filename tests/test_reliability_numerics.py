"""What the numerical core promises under bad input: an error or a warning that names the
samples and the fix, never a silently wrong number.

Sections: sample coupling; one front door for every method; singular and non-finite
values in every configuration; ill-conditioned Jacobians; second derivatives; custom
autograd Functions; resource guards and half precision.
"""

from __future__ import annotations

import copy
import math
import time
import warnings

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from helpers import (
    ConvGenerator,
    ExpNoFunctorch,
    ExpNoJvp,
    ExpWithJvp,
    coupled_generators,
    flat_gradient,
    ill_conditioned_map,
    mlp_generator,
    rank_deficient,
)
from spectral_backprop import (
    entropy,
    implicit_log_prob,
    jacobian,
    latent_metric,
    logdet_jtj,
    metric_matvec,
    principal_directions,
    spectral_sum,
)
from spectral_backprop.linalg import memory
from spectral_backprop.spectral import (
    CORE_OPTIONS,
    NonConvergenceWarning,
    SingularMetricWarning,
    SpectralFunction,
)
from spectral_backprop.spectral.exact import cholesky_logdet, gram

METHODS = ["exact", "lanczos", "chebyshev", "auto"]


def _options(method: str) -> dict:
    return {"generator": torch.Generator().manual_seed(0)} if method in (
        "lanczos", "chebyshev") else {}


# ---------------------------------------------------------------- sample coupling


@pytest.mark.parametrize("coupling", sorted(coupled_generators(lambda z: z)))
@pytest.mark.parametrize("method", METHODS)
def test_generators_that_couple_samples_are_refused_by_every_method(coupling, method):
    G = coupled_generators(mlp_generator(3, 7))[coupling]
    z = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    with pytest.raises(ValueError, match=r"G couples the samples of a batch: the outputs of "
                                         r"samples \[[0-9, ]+\].*check_coupling=False"):
        logdet_jtj(G, z, method=method, **_options(method))


@pytest.mark.parametrize("coupling", sorted(coupled_generators(lambda z: z)))
def test_coupling_is_refused_by_every_public_function(coupling):
    G = coupled_generators(mlp_generator(3, 7))[coupling]
    z = torch.randn(5, 3, dtype=torch.float64)
    calls = {
        "jacobian": lambda: jacobian(G, z),
        "latent_metric": lambda: latent_metric(G, z),
        "principal_directions": lambda: principal_directions(G, z, 2),
        "metric_matvec": lambda: metric_matvec(G, z),
        "implicit_log_prob": lambda: implicit_log_prob(G, z),
        "entropy": lambda: entropy(G, z, method="lanczos"),
        "spectral_sum nuclear": lambda: spectral_sum(G, z, "nuclear", method="chebyshev"),
    }
    for name, call in calls.items():
        with pytest.raises(ValueError, match="couples the samples"):
            call()
            pytest.fail(f"{name} accepted a G that couples samples")


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16])
def test_the_coupling_check_passes_per_sample_generators(dtype):
    # Scaling a tangent by a power of two is exact in every binary format: no false alarm
    # in half precision either, for any batch size (1 to 17: up to three digit lanes).
    for G, k in ((mlp_generator(3, 7, dtype=dtype), 3), (ConvGenerator(4, dtype=dtype), 4)):
        for batch in (1, 2, 5, 17):
            z = torch.randn(batch, k, dtype=torch.float64).to(dtype)
            torch.testing.assert_close(jacobian(G, z), jacobian(G, z, check_coupling=False),
                                       rtol=0, atol=0)
    G, z = mlp_generator(), torch.randn(6, 3, dtype=torch.float64)
    for method in METHODS:
        a = logdet_jtj(G, z, method=method, **_options(method))
        b = logdet_jtj(G, z, method=method, check_coupling=False, **_options(method))
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.filterwarnings("ignore::UserWarning")  # the metric of a coupled G is anything
def test_check_coupling_is_a_core_option_and_opts_out():
    assert "check_coupling" in CORE_OPTIONS
    G = coupled_generators(mlp_generator(3, 7))["minus batch mean"]
    z = torch.randn(4, 3, dtype=torch.float64)
    for method in METHODS:  # the user says G is per-sample: no check, a value comes back
        v = logdet_jtj(G, z, method=method, check_coupling=False, **_options(method))
        assert v.shape == (4,)
        with pytest.raises(TypeError, match="check_coupling must be True or False"):
            logdet_jtj(G, z, method=method, check_coupling="no", **_options(method))


# ---------------------------------------------------------------- one front door


class _Const(torch.nn.Module):
    latent_dim = 3

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(3, 7).double()

    def forward(self, z):
        return self.lin(z)


def _nan_parameter():
    G = mlp_generator()
    with torch.no_grad():
        G[0].weight[0, 0] = float("nan")
    return G


def _dropout():
    return torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Dropout(0.5),
                               torch.nn.Linear(8, 7)).double()


Z = torch.randn(3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
BAD_INPUTS = {
    "z not 2-D": (mlp_generator, Z[0], ValueError, "z must be 2-D"),
    "z of integers": (mlp_generator, Z.long(), TypeError, "floating point"),
    "z with NaN": (mlp_generator, torch.where(torch.arange(3)[:, None] == 1, torch.nan, Z),
                   ValueError, r"non-finite entries in samples \[1\]"),
    "wrong latent size": (mlp_generator, torch.randn(3, 5, dtype=torch.float64), ValueError,
                          "does k=5 match G's latent size"),
    "G.latent_dim differs": (_Const, torch.randn(3, 4, dtype=torch.float64), ValueError,
                             "k=4 latents per sample but G.latent_dim = 3"),
    "k > n": (lambda: torch.nn.Linear(3, 2).double(), Z, ValueError,
              "latent dimension k=3 exceeds output dimension n=2"),
    "non-finite output": (lambda: (lambda u: torch.log(u)), Z.abs() * torch.tensor(
        [[1.0], [0.0], [1.0]], dtype=torch.float64), ValueError,
        r"non-finite outputs for samples \[1\]"),
    "non-finite parameter": (_nan_parameter, Z, ValueError,
                             r"non-finite outputs .*non-finite parameters .*0\.weight"),
    "dropout in training mode": (_dropout, Z, ValueError, "random numbers.*G.eval"),
    "Jacobian not finite": (lambda: (lambda u: torch.cat([u.abs().sqrt(), u], 1)),
                            torch.zeros(2, 3, dtype=torch.float64), ValueError,
                            r"Jacobian of G is not finite for samples \[0, 1\]"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_every_method_refuses_bad_input_with_the_same_error(case):
    make, z, error, message = BAD_INPUTS[case]
    G = make()
    for method in METHODS:
        with pytest.raises(error, match=message):
            logdet_jtj(G, z, method=method, **_options(method))
            pytest.fail(f"method={method!r} accepted {case}")
    with pytest.raises(error, match=message):
        metric_matvec(G, z)


def _singular_at_zero(u):
    # Sample b is singular exactly when z[b, 2] = 0: the first column of J is (z2, 0, 0, z1).
    return torch.cat([u[:, :1] * u[:, 2:3], u[:, 1:], u[:, 1:2] * u[:, 2:3]], 1)


STOCHASTIC_CONFIGS = {
    "lanczos": {"method": "lanczos"},
    "lanczos, symmetric=False": {"method": "lanczos", "symmetric": False},
    "lanczos, deflate=1": {"method": "lanczos", "deflate": 1},
    "lanczos, no_grad": {"method": "lanczos", "no_grad": True},
    "lanczos, orthogonal probes": {"method": "lanczos", "probes": "orthogonal", "num_probes": 3},
    "chebyshev": {"method": "chebyshev"},
    "chebyshev, symmetric=False": {"method": "chebyshev", "symmetric": False},
    "exact": {"method": "exact"},
}


@pytest.mark.parametrize("config", sorted(STOCHASTIC_CONFIGS))
def test_a_singular_metric_is_reported_never_a_silent_nan(config):
    options = dict(STOCHASTIC_CONFIGS[config])
    no_grad = options.pop("no_grad", False)
    options |= _options(options["method"])
    z = torch.randn(4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    z[0, 2] = 0.0
    z.requires_grad_(not no_grad)
    with torch.set_grad_enabled(not no_grad):
        with pytest.warns(SingularMetricWarning, match=r"singular for samples \[0\]"):
            est = logdet_jtj(_singular_at_zero, z, return_info=True, **options)
        assert est.info["singular"].tolist() == [True, False, False, False]
        assert torch.isneginf(est.value[0]) and torch.isfinite(est.value[1:]).all()
        if not no_grad:
            (g,) = torch.autograd.grad(est.value.sum(), z)
            assert torch.isfinite(g).all() and (g[0] == 0).all()
        with pytest.raises(ValueError, match=r"numerically singular for samples \[0\]"):
            logdet_jtj(_singular_at_zero, z, on_singular="raise", **options)


@pytest.mark.parametrize("method", ["exact", "lanczos"])
def test_a_non_finite_value_of_a_user_function_is_reported_and_kept_out_of_the_gradient(
        method):
    # A log that does not declare needs_positive: the singular metric is not expected, the
    # NaN / -inf it produces must still be reported, and no NaN may reach the gradient.
    user_log = SpectralFunction("user_log", torch.log, torch.reciprocal)
    z = torch.randn(3, 3, dtype=torch.float64, requires_grad=True)
    with pytest.warns(SingularMetricWarning, match="non-finite user_log for samples"):
        v = spectral_sum(rank_deficient, z, user_log, method=method, **_options(method))
    finite = torch.isfinite(v)
    (g,) = torch.autograd.grad(torch.where(finite, v, 0).sum(), z)
    assert torch.isfinite(g).all()


# ---------------------------------------------------------------- ill-conditioned J


@pytest.mark.parametrize("k,n,cond,dtype,tol", [
    (8, 8, 1e4, torch.float32, 5e-4), (8, 12, 1e4, torch.float32, 5e-4),
    (16, 16, 1e4, torch.float32, 5e-4), (8, 8, 1e8, torch.float64, 1e-7),
    (8, 12, 1e8, torch.float64, 1e-7),
])
def test_log_det_of_an_ill_conditioned_jacobian_is_accurate(k, n, cond, dtype, tol):
    # Forming JᵀJ squares cond(J): before, 0.1–1.5 nats off with a "singular" warning; a
    # QR factor of J keeps slogdet's accuracy (measured 2e-5–4e-5 in float32, 2e-9 in
    # float64; slogdet of the same square J: 4e-5–7e-5 and 8e-11).
    G, A, truth = ill_conditioned_map(k, n, cond, dtype)
    z = torch.randn(3, k, dtype=dtype)
    value = logdet_jtj(G, z)
    assert (value.double() - truth).abs().max() < tol
    if k == n:
        slogdet_error = abs(2 * torch.linalg.slogdet(A.detach().double())[1].item() - truth)
        assert (value.double() - truth).abs().max() < 10 * slogdet_error + tol / 10
    # d log det(AᵀA)/dA = 2 A⁺ᵀ, per sample.
    (grad,) = torch.autograd.grad(value.sum(), A)
    expected = 3 * 2 * torch.linalg.pinv(A.detach().double()).T
    assert ((grad.double() - expected).norm() / expected.norm()) < 1e3 * tol


def test_cholesky_serves_only_well_conditioned_metrics():
    good, _, _ = ill_conditioned_map(8, 12, 3.0, torch.float64)
    bad, _, _ = ill_conditioned_map(8, 12, 1e3, torch.float64)
    z = torch.zeros(1, 8, dtype=torch.float64)
    assert cholesky_logdet(gram(jacobian(good, z))) is not None
    assert cholesky_logdet(gram(jacobian(bad, z))) is None  # QR takes it


def test_a_singular_float32_metric_gives_minus_inf_not_round_off():
    # Before: 19 of 20 seeds returned finite values such as -11.3 for samples flagged
    # singular, while the warning said "not finite". Log det (QR) and any other g singular
    # at 0 (eigh: this log is not the built-in object) alike.
    other_log = SpectralFunction("log", torch.log, torch.reciprocal, needs_positive=True)
    for seed in range(20):
        g = torch.Generator().manual_seed(seed)
        A = torch.randn(12, 8, generator=g)
        A[:, -1] = A[:, 0] + 0.5 * A[:, 1]
        z = 0.1 * torch.randn(4, 8, generator=g)
        for fn in ("logdet", other_log):
            with pytest.warns(SingularMetricWarning, match=r"samples \[0, 1, 2, 3\]"):
                value = spectral_sum(lambda u, A=A: torch.tanh(u @ A.T), z, fn)
            assert torch.isneginf(value).all(), (seed, fn, value)


# ---------------------------------------------------------------- second derivatives


@pytest.mark.parametrize("method", ["exact", "lanczos", "chebyshev"])
def test_second_derivatives_are_refused_first_derivatives_kept(method):
    G = mlp_generator()
    z = torch.randn(3, 3, dtype=torch.float64, requires_grad=True)

    def log_p():
        return implicit_log_prob(G, z, method=method, **_options(method))

    (plain,) = torch.autograd.grad(log_p().sum(), z)
    (g,) = torch.autograd.grad(log_p().sum(), z, create_graph=True)
    torch.testing.assert_close(g, plain)
    penalty = g.pow(2).sum()  # a gradient penalty on the log-likelihood
    with pytest.raises(RuntimeError, match="second derivatives through spectral "
                                           "backpropagation are not supported"):
        penalty.backward()


# ---------------------------------------------------------------- custom autograd


@pytest.mark.parametrize("function", [ExpNoFunctorch, ExpNoJvp])
@pytest.mark.parametrize("method", METHODS + ["jacobian"])
def test_a_custom_function_without_forward_mode_is_named(function, method):
    G = lambda u: torch.cat([function.apply(u), u], 1)  # noqa: E731
    z = torch.randn(2, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match="custom torch.autograd.Function without a jvp "
                                         "staticmethod.*Extending torch.func"):
        jacobian(G, z) if method == "jacobian" else logdet_jtj(G, z, method=method,
                                                                 **_options(method))


def test_a_custom_function_with_forward_mode_works():
    z = torch.randn(3, 4, dtype=torch.float64)
    torch.testing.assert_close(logdet_jtj(lambda u: ExpWithJvp.apply(u), z), 2 * z.sum(1))


# ---------------------------------------------------------------- resources


def test_a_huge_chebyshev_degree_is_refused_before_any_work():
    G, z = mlp_generator(), torch.randn(2, 3, dtype=torch.float64)
    start = time.perf_counter()
    with pytest.raises(ValueError, match="exceeds the largest Chebyshev degree"):
        logdet_jtj(G, z, method="chebyshev", num_matvecs=10**9)
    assert time.perf_counter() - start < 5


def test_an_allocation_that_cannot_fit_raises_memory_error_naming_the_option():
    G, z = mlp_generator(), torch.randn(2, 3, dtype=torch.float64)
    with pytest.raises(MemoryError, match="probes .*num_probes=1000000000000.*Lower num_probes"):
        # i.i.d. probes: Hadamard ones stop at their population (4 here), never allocating
        logdet_jtj(G, z, method="lanczos", num_probes=10**12, probes="rademacher")


@pytest.mark.parametrize("method,what", [("exact", "exact mode's Jacobian"),
                                         ("lanczos", "Lanczos basis"),
                                         ("chebyshev", "Chebyshev recurrence")])
def test_the_memory_guard_fires_before_the_allocation(monkeypatch, method, what):
    monkeypatch.setattr(memory, "available_bytes", lambda device: 4096)
    monkeypatch.setattr(memory, "UNCHECKED_BYTES", 0)  # check even these small arrays
    G, z = mlp_generator(8, 40, 16), torch.randn(4, 8, dtype=torch.float64)
    # 4 probes: they fit in 4 KiB (with their int32 temporaries), the Lanczos basis not
    options = {**_options(method), "num_probes": 4} if method != "exact" else {}
    with pytest.raises(MemoryError, match=f"{what}.* needs .* but cpu has 4 KiB"):
        logdet_jtj(G, z, method=method, **options)


class _LargestOutput(TorchDispatchMode):
    """Records the largest number of elements of any tensor an operation returns."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


def test_chunk_size_bounds_the_largest_array():
    # With chunk_size = c no array of the Jacobian's size B·n·k is formed, forward or
    # backward (before: J, J̄W, J ⊙ J̄W and the gradient of J, each B·n·k).
    B, k, n, c = 3, 8, 400, 2
    G = torch.nn.Sequential(torch.nn.Linear(k, n), torch.nn.Tanh()).double()
    z = torch.randn(B, k, dtype=torch.float64)
    with _LargestOutput() as mode:
        logdet_jtj(G, z, chunk_size=c).sum().backward()
    assert mode.largest < B * n * k / 2, mode.largest


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("method", ["exact", "lanczos", "chebyshev"])
def test_half_precision_inputs_are_computed_in_float32(method, dtype):
    G = mlp_generator(4, 9, dtype=torch.float32)
    G_half = mlp_generator(4, 9, dtype=dtype)
    G_half.load_state_dict(G.state_dict())
    z = torch.randn(3, 4)
    options = {"probes": "orthogonal", "num_probes": 4} if method != "exact" else {}
    ref = logdet_jtj(copy.deepcopy(G_half).float(), z.to(dtype).float(), method=method,
                     **_options(method), **options)
    zh = z.to(dtype).requires_grad_()
    with warnings.catch_warnings():
        if dtype == torch.bfloat16 and method == "chebyshev":
            # Products with M carry ~1% error in bfloat16: the series' certificate may
            # say so (NonConvergenceWarning), which is the honest answer.
            warnings.simplefilter("ignore", NonConvergenceWarning)
        value = logdet_jtj(G_half, zh, method=method, **_options(method), **options)
    assert value.dtype == torch.float32
    # The forward-mode products keep G's precision (3 digits in float16, 2 in bfloat16).
    assert (value - ref).abs().max() < (0.1 if dtype == torch.float16 else 0.5)
    grads = flat_gradient(value, G_half, zh)
    assert torch.isfinite(grads).all() and grads.abs().sum() > 0
    lam, V = latent_metric(G_half, zh.detach(), top=2)
    assert lam.dtype == V.dtype == torch.float32


def test_finiteness_checks_do_not_flag_huge_finite_outputs():
    # The one-reduction finiteness test overflows here: each entry is checked then.
    z = torch.randn(2, 3, dtype=torch.float64)
    value = logdet_jtj(lambda u: torch.cat([u, u], 1) + 1e308, z)
    torch.testing.assert_close(value, torch.full((2,), 3 * math.log(2.0), dtype=torch.float64))
