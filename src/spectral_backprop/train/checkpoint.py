"""Atomic checkpoints that resume a run bit-identically.

A checkpoint holds the step, the config, every module's and optimiser's state, and the
state of every random number generator the run draws from (the run's own
``torch.Generator`` and torch's global generators). It is written to a temporary file in
the same folder and moved into place with ``os.replace``, which is atomic on POSIX and
Windows: a run killed mid-write leaves the previous checkpoint intact.

A checkpoint holds only tensors and plain data (dicts, lists, numbers, strings), so it
is read with ``torch.load(..., weights_only=True)``: a file that holds any other
object is refused instead of unpickled, and so cannot run code when it is opened.
"""

from __future__ import annotations

import os
import pickle
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch

from spectral_backprop.train.config import _Config

FORMAT_VERSION = 1


class CheckpointError(RuntimeError, ValueError):
    """A checkpoint that cannot be used: unreadable, or from a different run.

    A ``RuntimeError`` (as it always was) and a ``ValueError`` (a bad input file, as
    :func:`~spectral_backprop.train.loading.load_gan_generator` has always raised).
    """


def _rng_state(generator: torch.Generator) -> dict[str, Any]:
    state = {"run": generator.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def save_checkpoint(path: str | Path, *, step: int, config: _Config,
                    modules: dict[str, torch.nn.Module],
                    optimizers: dict[str, torch.optim.Optimizer],
                    generator: torch.Generator, extra: dict[str, Any] | None = None) -> None:
    """Write a checkpoint atomically (temporary file, then ``os.replace``)."""
    path = Path(path)
    payload = {
        "format_version": FORMAT_VERSION,
        "kind": type(config).__name__,
        "step": step,
        "config": config.to_dict(),
        "modules": {k: m.state_dict() for k, m in modules.items()},
        "optimizers": {k: o.state_dict() for k, o in optimizers.items()},
        "rng": _rng_state(generator),
        "extra": extra or {},
    }
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The payload of a checkpoint file, read safely (tensors and plain data only).

    Raises:
        FileNotFoundError: no file at ``path``.
        CheckpointError: the file is unreadable, truncated, holds objects other than
            tensors and plain data, or is not a checkpoint of this format.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        with warnings.catch_warnings():
            # A file pickled by other means: it is refused below, or read if harmless.
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError, zipfile.BadZipFile,
            ValueError) as err:
        raise CheckpointError(
            f"cannot read checkpoint {path}: {err}. The file is corrupt or truncated, or "
            "holds objects other than tensors and plain data (which are never unpickled); "
            "delete it (and its run folder) to start afresh."
        ) from err
    if not isinstance(payload, dict) or payload.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path} is not a spectral-backprop checkpoint "
                              f"(format version {FORMAT_VERSION})")
    return payload


def load_checkpoint(path: str | Path, *, config: _Config, modules: dict[str, torch.nn.Module],
                    optimizers: dict[str, torch.optim.Optimizer],
                    generator: torch.Generator) -> dict[str, Any]:
    """Restore a checkpoint into live objects; returns the payload (``step``, ``extra``).

    Raises:
        CheckpointError: the file is unreadable or truncated (:func:`read_checkpoint`),
            was written by another kind of run, or by a config differing in a field
            outside ``RESUMABLE``.
    """
    payload = read_checkpoint(path)
    if payload.get("kind") != type(config).__name__:
        raise CheckpointError(f"{path} was written by a {payload.get('kind')} run, "
                              f"not a {type(config).__name__} run")
    details = config.mismatch_details(payload["config"])
    if details:
        raise CheckpointError(f"{path} belongs to a different run ({details}). Use a new "
                              "output folder, or the original settings to resume.")
    try:
        for name, module in modules.items():
            module.load_state_dict(payload["modules"][name])
        for name, opt in optimizers.items():
            opt.load_state_dict(payload["optimizers"][name])
    except (KeyError, RuntimeError, ValueError) as err:
        raise CheckpointError(f"{path} does not match the models of this run: {err}") from err
    generator.set_state(payload["rng"]["run"])
    torch.set_rng_state(payload["rng"]["torch"])
    if "cuda" in payload["rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(payload["rng"]["cuda"])
    return payload
