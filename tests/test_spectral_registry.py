"""The estimator contract: one signature, one result type, no option silently dropped."""

import inspect

import pytest
import torch

from helpers import linear_generator, mlp_generator
from spectral_backprop import SpectralEstimate, entropy, implicit_log_prob, logdet_jtj
from spectral_backprop.spectral import (
    AUTO_CROSSOVER,
    CORE_OPTIONS,
    EXACT_OPTIONS,
    METHOD_OPTIONS,
    METHODS,
    STOCHASTIC_OPTIONS,
    SingularMetricWarning,
    auto_choice,
    register_method,
    spectral_sum,
)
from spectral_backprop.spectral.exact import exact_spectral_sum
from spectral_backprop.spectral.stochastic import (
    DEFAULT_NUM_PROBES,
    DEFAULT_TOL,
    stochastic_spectral_sum,
)

BUILT_IN = ["exact", "lanczos", "chebyshev", "auto"]


def _rng(seed=0):
    return torch.Generator().manual_seed(seed)


def test_option_sets_are_the_estimators_keywords():
    assert CORE_OPTIONS <= EXACT_OPTIONS & STOCHASTIC_OPTIONS
    assert EXACT_OPTIONS == {"chunk_size", "jitter", "on_singular", "rank_tol", "return_info",
                             "check_coupling"}
    assert CORE_OPTIONS == {"return_info", "jitter", "on_singular", "check_coupling"}
    assert {"num_probes", "num_matvecs", "tol", "rtol", "max_probes", "probes", "generator",
            "deflate", "on_nonconvergence", "symmetric"} <= STOCHASTIC_OPTIONS
    assert "method" not in STOCHASTIC_OPTIONS
    assert METHOD_OPTIONS["auto"] == EXACT_OPTIONS | STOCHASTIC_OPTIONS
    assert DEFAULT_NUM_PROBES == 8 and DEFAULT_TOL == 1e-2  # what benchmarks import
    # the default stopping rule is the adaptive one; tol is an explicit override
    assert inspect.signature(stochastic_spectral_sum).parameters["tol"].default is None


@pytest.mark.parametrize("method", BUILT_IN)
def test_every_method_returns_a_tensor_or_an_estimate(method):
    G = mlp_generator(4, 9)
    z = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    options = {} if method == "exact" else {"generator": _rng()}
    if method == "auto":
        options = {}
    value = logdet_jtj(G, z, method=method, **options)
    assert isinstance(value, torch.Tensor) and value.shape == (3,)
    est = logdet_jtj(G, z, method=method, return_info=True, **options)
    assert isinstance(est, SpectralEstimate)
    assert est.value.shape == est.std_error.shape == (3,)
    assert est.info["method"] == ("exact" if method == "auto" else method)
    assert est.info["singular"].shape == (3,) and not est.info["singular"].any()
    if method in ("exact", "auto"):  # below the crossover auto is exact
        assert torch.equal(est.std_error, torch.zeros(3, dtype=torch.float64))
        torch.testing.assert_close(est.value, value)
    else:  # k = 4: the 8 default probes stop at all 4 Hadamard ones, exact but for the
        # quadrature, whose estimated error is then the standard error (0 for Lanczos,
        # which is exact after 4 steps), and covers the error
        assert est.info["num_probes"] == 4
        assert torch.equal(est.std_error, est.info["quadrature_error"])
        exact = logdet_jtj(G, z)
        assert ((est.value - exact).abs() <= 3 * est.std_error + 1e-9 * exact.abs()).all()
        iid = logdet_jtj(G, z, method=method, return_info=True, probes="rademacher", **options)
        assert iid.info["num_probes"] == 8 and (iid.std_error > 0).all()
    (g,) = torch.autograd.grad(est.value.sum(), z)
    assert torch.isfinite(g).all()


def _rank_deficient(u):  # the output depends on z only through z0 + z1
    s = u[:, :1] + u[:, 1:2]
    return torch.cat([s, s.sin(), u[:, 2:] ** 3 + u[:, 2:]], 1)


@pytest.mark.parametrize("method", BUILT_IN)
def test_every_method_takes_jitter_and_on_singular(method):
    z = torch.randn(2, 3, dtype=torch.float64)
    options = {"generator": _rng()} if method in ("lanczos", "chebyshev") else {}
    if method == "lanczos":
        options["deflate"] = 1  # Lanczos sees a singular metric through its sketch
    # jitter=0.1: κ ≈ 2·10³, within reach of a Chebyshev series of degree <= 500.
    v = logdet_jtj(_rank_deficient, z, method=method, jitter=0.1, on_singular="raise", **options)
    assert torch.isfinite(v).all()
    with pytest.raises(ValueError, match="numerically singular"):
        logdet_jtj(_rank_deficient, z, method=method, on_singular="raise", **options)
    with pytest.warns(SingularMetricWarning):
        est = logdet_jtj(_rank_deficient, z, method=method, return_info=True, **options)
    assert est.info["singular"].all() and torch.isneginf(est.value).all()


@pytest.mark.parametrize(
    "method,option,users",
    [("exact", "num_probes", "'lanczos', 'chebyshev', 'auto'"),
     ("exact", "generator", "'lanczos', 'chebyshev', 'auto'"),
     ("lanczos", "chunk_size", "'exact', 'auto'"),
     ("chebyshev", "rank_tol", "'exact', 'auto'")],
)
def test_options_a_method_does_not_use_raise_and_name_who_does(method, option, users):
    G, z = mlp_generator(), torch.randn(2, 3, dtype=torch.float64)
    with pytest.raises(TypeError, match=rf"'{option}' is not used by method='{method}': "
                                         rf"it is used by method={users}"):
        logdet_jtj(G, z, method=method, **{option: 1})


@pytest.mark.parametrize("method", BUILT_IN)
def test_unknown_options_raise_for_every_method(method):
    G, z = mlp_generator(), torch.randn(2, 3, dtype=torch.float64)
    with pytest.raises(TypeError, match=rf"'num_probe' is not used by method='{method}': "
                                         "no method uses it; .* takes .*num_"
                       if method != "exact" else "'num_probe'.*no method uses it"):
        logdet_jtj(G, z, method=method, num_probe=4)


def test_auto_warns_about_options_for_the_path_not_taken():
    G, z = mlp_generator(), torch.randn(2, 3, dtype=torch.float64)
    with pytest.warns(UserWarning, match=r"chose 'exact' \(k=3 < AUTO_CROSSOVER=64\); "
                                         "option 'num_probes'"):
        est = logdet_jtj(G, z, method="auto", num_probes=4, jitter=0.0, return_info=True)
    assert est.info["method"] == "exact"
    k = 2 * AUTO_CROSSOVER  # a diagonal map: products cost O(k), the dense algebra O(k³)
    d = torch.linspace(1.0, 2.0, k, dtype=torch.float64)
    zb = torch.randn(1, k, dtype=torch.float64)

    def G(u):
        return u * d + 0.1 * u.sin()

    path, costs = auto_choice(G, zb)  # measured once, cached for G: the call below agrees
    with pytest.warns(UserWarning, match=rf"chose '{path}' \(predicted .* s for 'exact', "
                                         r".* s for 'lanczos'\); option "):
        logdet_jtj(G, zb, method="auto",
                   **({"chunk_size": 8} if path == "lanczos" else {"num_probes": 4}))


def test_registered_methods_are_checked_by_their_signature_or_declared_options():
    def doubled(G, z, fn, *, jitter=0.0, on_singular="warn", check_coupling=True,
                return_info=False):
        return 2 * exact_spectral_sum(G, z, fn, jitter=jitter, on_singular=on_singular,
                                      check_coupling=check_coupling, return_info=return_info)

    def loose(G, z, fn, **options):
        return exact_spectral_sum(G, z, fn, **options)

    G, z = mlp_generator(), torch.randn(2, 3, dtype=torch.float64)
    try:
        register_method("doubled", doubled)
        register_method("loose", loose)
        register_method("declared", loose, options=["return_info"])
        assert METHOD_OPTIONS["doubled"] == CORE_OPTIONS
        torch.testing.assert_close(logdet_jtj(G, z, method="doubled"), 2 * logdet_jtj(G, z))
        with pytest.raises(TypeError, match="'chunk_size' is not used by method='doubled'"):
            logdet_jtj(G, z, method="doubled", chunk_size=2)
        torch.testing.assert_close(logdet_jtj(G, z, method="loose", chunk_size=2),
                                   logdet_jtj(G, z))  # checked by the estimator itself
        with pytest.raises(TypeError, match="'jitter' is not used by method='declared'"):
            logdet_jtj(G, z, method="declared", jitter=1.0)
    finally:
        for name in ("doubled", "loose", "declared"):
            METHODS.pop(name, None)
            METHOD_OPTIONS.pop(name, None)


def test_built_in_estimators_share_the_core_keywords():
    for name in BUILT_IN:
        assert CORE_OPTIONS <= METHOD_OPTIONS[name], name
    params = inspect.signature(METHODS["exact"]).parameters
    assert CORE_OPTIONS <= {p for p, v in params.items() if v.kind is v.KEYWORD_ONLY}


def test_spectral_sum_of_a_linear_map_by_every_method():
    G, A = linear_generator(8, 3)  # singular values 3, 2, 1: log det = 2 log 6
    z = torch.randn(2, 3, dtype=torch.float64)
    for method in BUILT_IN:
        options = {"probes": "orthogonal", "num_probes": 3, "tol": 1e-10, "generator": _rng()}
        v = spectral_sum(G, z, "logdet", method=method,
                         **(options if method in ("lanczos", "chebyshev") else {}))
        torch.testing.assert_close(v, torch.full((2,), 2 * torch.log(torch.tensor(6.0)).item(),
                                                 dtype=torch.float64))


def test_implicit_log_prob_passes_return_info_through():
    z = torch.zeros(2, 2, dtype=torch.float64)
    est = implicit_log_prob(lambda u: 2 * u, z, return_info=True)
    assert isinstance(est, SpectralEstimate) and est.info["method"] == "exact"
    torch.testing.assert_close(est.value, implicit_log_prob(lambda u: 2 * u, z))
    assert torch.equal(est.std_error, torch.zeros(2, dtype=torch.float64))
    G = mlp_generator(4, 9)
    z = torch.randn(3, 4, dtype=torch.float64)
    est = implicit_log_prob(G, z, method="lanczos", generator=_rng(), return_info=True)
    ld = logdet_jtj(G, z, method="lanczos", generator=_rng(), return_info=True)
    torch.testing.assert_close(est.std_error, 0.5 * ld.std_error)


def test_entropy_returns_a_spectral_estimate_and_stderr_is_deprecated():
    z = torch.randn(16, 3, dtype=torch.float64)
    h = entropy(lambda u: u * torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64) * (1 + u[:, :1]),
                z)
    assert isinstance(h, SpectralEstimate)
    assert h.value.shape == h.std_error.shape == ()
    assert h.std_error > 0 and h.info == {"method": "exact", "num_samples": 16}
    with pytest.warns(DeprecationWarning, match="use .std_error"):
        assert torch.equal(h.stderr, h.std_error)
    one = entropy(lambda u: 2 * u, z[:1])
    assert torch.isnan(one.std_error)  # one sample: undefined, never 0
    with pytest.raises(TypeError, match="return_info"):
        entropy(lambda u: 2 * u, z, return_info=True)
    with pytest.raises(TypeError, match="'num_probes' is not used by method='exact'"):
        entropy(lambda u: 2 * u, z, num_probes=4)


def test_warnings_point_at_the_callers_line():
    z = torch.randn(2, 3, dtype=torch.float64)
    with pytest.warns(SingularMetricWarning) as record:
        logdet_jtj(_rank_deficient, z)
    assert record[0].filename == __file__
    with pytest.warns(UserWarning, match="option 'num_probes'") as record:
        logdet_jtj(mlp_generator(), z, method="auto", num_probes=2)
    assert record[0].filename == __file__
