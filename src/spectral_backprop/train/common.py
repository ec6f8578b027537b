"""Pieces shared by the training loops (:mod:`.gan`, :mod:`.manifold`): a network run in
another precision, the learning-rate schedule, the pre-training probe of a log det
estimator, and the start of a run (resume check, restore, the log's first lines)."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from spectral_backprop.runfiles import CHECKPOINT
from spectral_backprop.spectral import accepts_option
from spectral_backprop.train.checkpoint import restore_checkpoint
from spectral_backprop.train.config import ConfigError, _Config
from spectral_backprop.train.run import check_run_dir

__all__ = ["estimator_options", "in_dtype", "make_schedule", "probe_estimator", "restore_run"]


def in_dtype(module: torch.nn.Module, dtype: torch.dtype) -> Callable[[Tensor], Tensor]:
    """``module`` evaluated with its parameters and buffers cast to ``dtype``, differentiably.

    Gradients flow back through the casts into the original (float32) parameters.
    """
    if dtype == next(module.parameters()).dtype:
        return module
    tensors = {n: t.to(dtype) if t.is_floating_point() else t
               for n, t in (*module.named_parameters(), *module.named_buffers())}
    return lambda x: torch.func.functional_call(module, tensors, (x.to(dtype),))


def estimator_options(method: str, options: dict[str, Any], k: int,
                      rng: torch.Generator | None, *, coupling_checked: bool = False
                      ) -> dict[str, Any]:
    """A training step's options for a log det estimator, on top of the configured ones.

    The run's generator draws a stochastic estimator's probes (so that resumes are
    bit-identical); the exact path takes none. With ``coupling_checked`` (the
    pre-training check, :func:`probe_estimator`, has tested this architecture for batch
    coupling) ``check_coupling=False`` spares every step the coupling lanes: one forward
    pass and ``⌈log₄ B⌉ + 1`` JVPs (:mod:`spectral_backprop.linalg.jacobian`).
    """
    options = dict(options)
    if rng is not None and accepts_option(method, "generator", k):
        options.setdefault("generator", rng)
    if coupling_checked and accepts_option(method, "check_coupling", k, unchecked=False):
        options.setdefault("check_coupling", False)
    return options


def make_schedule(opt: torch.optim.Optimizer, schedule: str, steps: int
                  ) -> torch.optim.lr_scheduler.LRScheduler:
    """The learning-rate schedule ``constant`` or ``cosine`` (decay to 0 over ``steps``),
    stepped once per update."""
    if schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)


_POLICIES = ("on_singular", "on_nonconvergence")


def probe_estimator(field: str, method: str, options: dict[str, Any],
                    device: torch.device | str, estimate: Callable[[dict[str, Any]], Any]
                    ) -> None:
    """Refuse an estimator whose options do not work, before training: one call of
    ``estimate(options)`` (on an untrained network, a couple of points).

    The untrained network may be singular or slow to converge where the trained one is
    not: ``"raise"`` policies are probed as ``"warn"``, and the warnings are not shown.
    Torch's random state is left as it was.

    Raises:
        ConfigError: naming ``field``, when the estimator refused its options (names or
            values: a ``TypeError`` or ``ValueError``).
    """
    probe = {k: "warn" if k in _POLICIES and v == "raise" else v for k, v in options.items()}
    device = torch.device(device)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            estimate(probe)
        except (TypeError, ValueError) as err:
            raise ConfigError(field, f"(method {method!r}, options {options}) cannot be "
                                     f"used: {err}") from err


def restore_run(s: Any, config: _Config, out: Path, resume: bool, data_line: str
                ) -> dict[str, Any] | None:
    """Check the run folder and, when resuming, restore its checkpoint into ``s``,
    writing nothing (:func:`~.run.check_run_dir`); the main process prints the config
    and ``data_line``. Returns the checkpoint's payload (``None``: a new run).

    ``s`` is a run's state: ``modules()``, ``optimizers()``, ``rng`` and ``dd``.
    """
    payload = check_run_dir(out, config, resume)
    if payload is not None:
        restore_checkpoint(payload, modules=s.modules(), optimizers=s.optimizers(),
                           generator=s.rng, path=out / CHECKPOINT)
    if s.dd.is_main:
        print(config.describe())
        print(data_line + (f", resuming at step {payload['step']}" if payload else ""))
    return payload
