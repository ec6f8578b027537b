"""Fuzz the public numerical functions with random bad shapes, dtypes, values and options.

Every call must end in one of three ways: a documented exception (``TypeError``,
``ValueError``, ``MemoryError``, :class:`NonConvergenceError`), a result without NaN,
or a result whose NaNs come with a warning (:class:`SingularMetricWarning`,
:class:`NonConvergenceWarning`, ...). The same holds for the gradient of a returned
value. No call may run longer than ``TIME_LIMIT`` seconds. Seeded: a failure prints the
case, which replays with ``_run(_case(random.Random(SEED), i))``. About 4 s on 2 cores.
"""

from __future__ import annotations

import math
import random
import signal
import warnings
from dataclasses import fields, is_dataclass

import pytest
import torch

from helpers import ConvGenerator, ExpNoJvp, coupled_generators, mlp_generator, rank_deficient
from spectral_backprop import (
    entropy,
    implicit_log_prob,
    invert,
    jacobian,
    latent_metric,
    logdet_jtj,
    metric_matvec,
    principal_directions,
    spectral_sum,
)
from spectral_backprop.spectral import NonConvergenceError

SEED = 20240613
CASES = 1000
TIME_LIMIT = 10.0  # seconds per call; the slowest legitimate call here takes ~0.2 s
DOCUMENTED = (TypeError, ValueError, MemoryError, NonConvergenceError)


def _generators() -> dict:
    nan_param = mlp_generator()
    with torch.no_grad():
        nan_param[0].bias[1] = float("nan")
    dropout = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Dropout(0.3),
                                  torch.nn.Linear(8, 7)).double()
    batchnorm = torch.nn.Sequential(torch.nn.Linear(3, 7), torch.nn.BatchNorm1d(7)).double()
    return {
        "mlp": (mlp_generator(), 3),
        "mlp float32": (mlp_generator(dtype=torch.float32), 3),
        "conv": (ConvGenerator(), 4),
        "rank deficient": (rank_deficient, 3),
        "coupled": (coupled_generators(mlp_generator())["minus batch mean"], 3),
        "log (non-finite outputs)": (lambda z: torch.log(z), 3),
        "sqrt |z| (non-finite Jacobian at 0)": (lambda z: torch.cat([z.abs().sqrt(), z], 1), 3),
        "nan parameter": (nan_param, 3),
        "dropout": (dropout, 3),
        "batchnorm training": (batchnorm, 3),
        "k > n": (torch.nn.Linear(3, 2).double(), 3),
        "custom Function without jvp": (lambda z: torch.cat([ExpNoJvp.apply(z), z], 1), 3),
        "returns a list": (lambda z: [z], 3),
        "drops the batch": (lambda z: z.sum(0), 3),
        "scalar output": (lambda z: z.sum(), 3),
    }


GENERATORS = _generators()
WELL_BEHAVED = ["mlp", "mlp float32", "conv", "rank deficient"]
DTYPES = [torch.float64] * 12 + [torch.float32] * 6 + [
    torch.float16, torch.bfloat16, torch.int64, torch.bool, torch.complex64]
OPTION_VALUES = {
    "num_probes": [1, 2, 4, 0, -1, 2.5, True, "8", 10**12],
    "num_matvecs": [None, 1, 3, 20, 0, -5, 1.5, 10**9],
    "tol": [1e-2, 1e-8, 0.0, -1.0, math.nan, math.inf, "x"],
    "probes": ["hadamard", "rademacher", "gaussian", "orthogonal", "sobol", 1],
    "deflate": [0, 1, 2, None, -1, 100, True],
    "jitter": [0.0, 1e-3, -1.0, math.nan, math.inf, "a"],
    "on_singular": ["warn", "raise", "ignore", None],
    "on_nonconvergence": ["warn", "raise", "no"],
    "chunk_size": [None, 1, 2, 0, -1, True, 2.5],
    "rank_tol": [None, 0.0, 1e-3, -1.0, math.nan],
    "symmetric": [True, False, "yes"],
    "return_info": [True, False],
    "check_coupling": [True, False, "no"],
    "generator": [None, "seeded", 0],
    "num_probe": [4],  # misspelt: no method uses it
}
VALID_VALUES = {
    "num_probes": [1, 2, 4], "num_matvecs": [None, 1, 3, 20], "tol": [1e-2, 1e-8, 0.0],
    "probes": ["hadamard", "rademacher", "gaussian", "orthogonal"], "deflate": [0, 1, 2],
    "jitter": [0.0, 1e-3], "on_singular": ["warn", "raise"],
    "on_nonconvergence": ["warn", "raise"], "chunk_size": [None, 1, 2],
    "rank_tol": [None, 0.0, 1e-3], "symmetric": [True, False], "return_info": [True, False],
    "check_coupling": [True, False], "generator": [None, "seeded"],
}
EXACT = ["chunk_size", "rank_tol", "jitter", "on_singular", "return_info", "check_coupling"]
STOCHASTIC = [name for name in VALID_VALUES if name not in ("chunk_size", "rank_tol")]
METHODS = ["exact", "lanczos", "chebyshev", "auto", "magic", None]
FNS = ["logdet", "trace", "nuclear", "det", None]


def _z(rng: random.Random, k: int, dtype: torch.dtype) -> torch.Tensor:
    shape = rng.choice([(3, k)] * 16 + [(1, k), (k,), (2, k + 1), (0, k), (3, 0), (2, 1, k)])
    z = torch.randn(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(
        rng.randrange(10**6)))
    if rng.random() < 0.1 and z.numel():
        z.view(-1)[rng.randrange(z.numel())] = rng.choice([math.nan, math.inf, -math.inf, 1e30])
    if rng.random() < 0.05:
        z = torch.zeros_like(z)
    dtype = dtype if rng.random() < 0.7 else rng.choice(DTYPES)
    z = z.to(dtype) if dtype not in (torch.int64, torch.bool) else z.round().to(dtype)
    if z.is_floating_point() and rng.random() < 0.5:
        z.requires_grad_()
    return z


def _options(rng: random.Random, method: str | None) -> dict:
    """Options: mostly valid for ``method`` (deep paths), at times one bad value or name."""
    if rng.random() < 0.4:
        pool, names = OPTION_VALUES, rng.sample(sorted(OPTION_VALUES), rng.randrange(0, 4))
    else:
        usable = EXACT if method in ("exact", "auto", None) else STOCHASTIC
        pool, names = VALID_VALUES, rng.sample(usable, rng.randrange(0, 5))
    options = {}
    for name in names:
        value = rng.choice(pool[name])
        options[name] = torch.Generator().manual_seed(1) if value == "seeded" else value
    if rng.random() < 0.2:  # one bad value on top of valid ones
        name = rng.choice(sorted(OPTION_VALUES))
        options[name] = rng.choice(OPTION_VALUES[name])
        if options[name] == "seeded":
            options[name] = torch.Generator().manual_seed(1)
    return options


def _case(rng: random.Random, index: int) -> tuple:
    # Half the cases use a well-behaved generator, so that the deep paths run too.
    name = rng.choice(sorted(GENERATORS) if rng.random() < 0.5 else WELL_BEHAVED)
    G, k = GENERATORS[name]
    if isinstance(G, torch.nn.Module):
        G.train(rng.random() < 0.5 or name in ("dropout", "batchnorm training"))
    params = list(G.parameters()) if isinstance(G, torch.nn.Module) else []
    z = _z(rng, k, params[0].dtype if params else torch.float64)
    function = rng.choice(["implicit_log_prob", "logdet_jtj", "spectral_sum", "entropy",
                           "latent_metric", "principal_directions", "invert", "jacobian",
                           "metric_matvec"])
    method = rng.choice(METHODS)
    options = _options(rng, method)
    if method is not None:
        options["method"] = method
    extra = {"fn": rng.choice(FNS), "top": rng.choice([None, 1, 2, 0, 10, 1.5]),
             "cap": rng.choice([None, 1.0, -1.0, math.nan, "x"]),
             "V": rng.choice([(3, k, 2), (3, k), (2, k, 1)])}
    return index, name, G, z, function, options, extra


def _call(case):
    _, _, G, z, function, options, extra = case
    if function == "implicit_log_prob":
        return implicit_log_prob(G, z, **options)
    if function == "logdet_jtj":
        return logdet_jtj(G, z, **options)
    if function == "spectral_sum":
        return spectral_sum(G, z, extra["fn"] or object(), **options)
    if function == "entropy":
        options.pop("return_info", None)
        return entropy(G, z, cap=extra["cap"], **options)
    if function == "latent_metric":
        return latent_metric(G, z, top=extra["top"], chunk_size=options.get("chunk_size"))
    if function == "principal_directions":
        return principal_directions(G, z, extra["top"], chunk_size=options.get("chunk_size"),
                                    check_coupling=options.get("check_coupling", True))
    if function == "invert":
        x = z.detach() if z.dim() == 2 else z.detach()[None]
        return invert(G, x, latent_dim=3, restarts=1, steps=3,
                      generator=torch.Generator().manual_seed(0))
    if function == "jacobian":
        return jacobian(G, z, chunk_size=options.get("chunk_size"),
                        check_coupling=options.get("check_coupling", True))
    matvec = metric_matvec(G, z, check_coupling=options.get("check_coupling", True))
    return matvec(torch.randn(extra["V"], dtype=torch.float64).to(
        z.dtype if z.is_floating_point() else torch.float64))


def _tensors(result) -> list[torch.Tensor]:
    if isinstance(result, torch.Tensor):
        return [result]
    if isinstance(result, (tuple, list)):
        return [t for r in result for t in _tensors(r)]
    if is_dataclass(result):
        return [t for f in fields(result) if f.name not in ("std_error", "info")
                for t in _tensors(getattr(result, f.name))]
    return []


class _TooSlow(Exception):
    pass


def _alarm(signum, frame):
    raise _TooSlow


def _run(case) -> str | None:
    """Run one case; ``None`` when it kept the promise, else what went wrong."""
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, TIME_LIMIT)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            try:
                result = _call(case)
            except DOCUMENTED:
                return None
            tensors = _tensors(result)
            nan = any(t.is_floating_point() and torch.isnan(t).any() for t in tensors)
            if nan and not caught:
                return "NaN without a warning"
            value = tensors[0] if tensors else None
            inputs = [t for t in _inputs(case) if t.requires_grad]
            if value is not None and value.requires_grad and inputs and not caught:
                finite = torch.where(torch.isfinite(value), value, 0)
                grads = torch.autograd.grad(finite.sum(), inputs, allow_unused=True)
                if any(g is not None and not torch.isfinite(g).all() for g in grads):
                    return "non-finite gradient without a warning"
    except _TooSlow:
        return f"took longer than {TIME_LIMIT} s"
    except Exception as err:  # noqa: BLE001 - an undocumented exception is the finding
        return f"undocumented {type(err).__name__}: {err}"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    return None


def _inputs(case) -> list[torch.Tensor]:
    _, _, G, z, *_ = case
    params = list(G.parameters()) if isinstance(G, torch.nn.Module) else []
    return [z, *params]


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs POSIX interval timers")
def test_public_functions_keep_their_promises_under_random_bad_input():
    rng = random.Random(SEED)
    failures = []
    for i in range(CASES):
        case = _case(rng, i)
        problem = _run(case)
        if problem:
            index, name, _, z, function, options, extra = case
            failures.append(f"case {index}: {function}(G={name!r}, z={z.dtype} "
                            f"{tuple(z.shape)}, {options}, {extra}): {problem}")
    assert not failures, "\n".join(failures[:20])
