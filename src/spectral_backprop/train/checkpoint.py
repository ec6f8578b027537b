"""Atomic checkpoints that resume a run bit-identically.

A checkpoint holds the step, the config, every module's and optimiser's state, and the
state of every random number generator the run draws from (the run's own
``torch.Generator`` and torch's global generators). It is written to a temporary file in
the same folder and moved into place with ``os.replace``, which is atomic on POSIX and
Windows: a run killed mid-write leaves the previous checkpoint intact.

A checkpoint holds only tensors and plain data (dicts, lists, numbers, strings), so it
is read with ``torch.load(..., weights_only=True)``: a file that holds any other
object is refused instead of unpickled, and so cannot run code when it is opened.
What the safe loader returns is checked too: every entry of the format present with
its type, nothing but tensors and plain data anywhere (:class:`CheckpointError`
otherwise), before any of it reaches a module, an optimiser or a random generator.
"""

from __future__ import annotations

import os
import pickle
import re
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


def _reason(err: BaseException) -> str:
    """The specific reason of a loader error, on one line of at most 300 characters (the
    safe loader's advice to load the file unsafely is left out)."""
    text = str(err)
    match = re.search(r"Unsupported (?:global: GLOBAL [\w.]+|operand \d+)", text)
    if match:
        return match.group(0)
    if "weights_only" in text:
        return "an object the safe loader refuses"
    line = " ".join(s.strip() for s in text.splitlines() if s.strip()) or type(err).__name__
    return line if len(line) <= 300 else line[:297] + "..."


_PLAIN = (str, int, float, bool, type(None), torch.Tensor)


def _check_plain(value: Any, where: str, depth: int = 0) -> None:
    """Refuse anything but tensors and plain data (dicts, lists, tuples, numbers, str)."""
    if depth > 32:
        raise CheckpointError(f"{where} is nested too deeply")
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str | int):
                raise CheckpointError(f"{where} has a key of type {type(key).__name__}")
            _check_plain(item, f"{where}.{key}", depth + 1)
    elif type(value) in (list, tuple):
        for i, item in enumerate(value):
            _check_plain(item, f"{where}[{i}]", depth + 1)
    elif not isinstance(value, _PLAIN):
        raise CheckpointError(f"{where} holds a {type(value).__name__}, not a tensor or "
                              "plain data")


# key: (type, what) of every entry of a checkpoint
_SCHEMA = {"format_version": (int, "an integer"), "kind": (str, "a string"),
           "step": (int, "an integer"), "config": (dict, "a dict"),
           "modules": (dict, "a dict"), "optimizers": (dict, "a dict"),
           "rng": (dict, "a dict"), "extra": (dict, "a dict")}


def _check_payload(payload: Any, path: Path) -> None:
    """Refuse a payload that is not a checkpoint of this format (see :data:`_SCHEMA`)."""
    if not isinstance(payload, dict) or payload.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path} is not a spectral-backprop checkpoint "
                              f"(format version {FORMAT_VERSION})")
    missing = sorted(set(_SCHEMA) - set(payload))
    if missing:
        raise CheckpointError(f"{path} is not a complete checkpoint: it lacks "
                              f"{', '.join(missing)}")
    try:
        for key, (kind, what) in _SCHEMA.items():
            if not isinstance(payload[key], kind) or isinstance(payload[key], bool):
                raise CheckpointError(f"{key} is a {type(payload[key]).__name__}, not {what}")
        if payload["step"] < 0:
            raise CheckpointError(f"step is {payload['step']}")
        for group in ("modules", "optimizers"):
            for name, state in payload[group].items():
                if not isinstance(state, dict):
                    raise CheckpointError(f"{group}.{name} is not a dict")
        for name in ("run", "torch"):
            state = payload["rng"].get(name)
            if not isinstance(state, torch.Tensor) or state.dtype != torch.uint8:
                raise CheckpointError(f"rng.{name} is not a generator state (uint8 tensor)")
        _check_plain(payload, "checkpoint")
    except CheckpointError as err:
        raise CheckpointError(f"{path} is not a valid checkpoint: {err}") from None


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The payload of a checkpoint file, read safely (tensors and plain data only).

    Raises:
        FileNotFoundError: no file at ``path``.
        CheckpointError: the file is unreadable, truncated, holds objects other than
            tensors and plain data, or is not a complete checkpoint of this format.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        with warnings.catch_warnings():
            # A file pickled by other means: it is refused below, or read if harmless.
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"cannot read checkpoint {path}: it is corrupt or truncated, or holds objects "
            f"other than tensors and plain data ({_reason(err)}), which are never "
            "unpickled; delete it (and its run folder) to start afresh") from err
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError, TypeError,
            AttributeError, KeyError, IndexError) as err:
        raise CheckpointError(
            f"cannot read checkpoint {path}: {_reason(err)}. The file is corrupt or "
            "truncated, or holds objects other than tensors and plain data (which are never "
            "unpickled); delete it (and its run folder) to start afresh") from err
    _check_payload(payload, path)
    return payload


def check_checkpoint(path: str | Path, config: _Config) -> dict[str, Any]:
    """The payload of ``path`` (:func:`read_checkpoint`) after checking that it was
    written by a run of ``config``'s kind and settings (fields outside ``RESUMABLE``).

    Reads and writes nothing else, so a run can be refused before it writes anything.

    Raises:
        CheckpointError: unreadable, another kind of run, or other settings.
    """
    payload = read_checkpoint(path)
    if payload["kind"] != type(config).__name__:
        raise CheckpointError(f"{path} was written by a {payload['kind']!r} run, "
                              f"not a {type(config).__name__} run")
    try:
        details = config.mismatch_details(payload["config"])
    except (TypeError, ValueError, KeyError, AttributeError) as err:
        raise CheckpointError(f"{path} holds a config that cannot be read: {err}") from err
    if details:
        raise CheckpointError(f"{path} belongs to a different run ({details}). Use a new "
                              "output folder, or the original settings to resume.")
    return payload


def restore_checkpoint(payload: dict[str, Any], *, modules: dict[str, torch.nn.Module],
                       optimizers: dict[str, torch.optim.Optimizer],
                       generator: torch.Generator, path: str | Path = "checkpoint") -> int:
    """Load a checked payload (:func:`check_checkpoint`) into live objects; returns its step.

    Raises:
        CheckpointError: the states do not fit the modules, optimisers or generators.
    """
    try:
        for name, module in modules.items():
            module.load_state_dict(payload["modules"][name])
        for name, opt in optimizers.items():
            opt.load_state_dict(payload["optimizers"][name])
        generator.set_state(payload["rng"]["run"])
        torch.set_rng_state(payload["rng"]["torch"])
        if "cuda" in payload["rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(payload["rng"]["cuda"])
    except (KeyError, RuntimeError, ValueError, TypeError, IndexError) as err:
        raise CheckpointError(f"{path} does not match the models of this run: "
                              f"{_reason(err)}") from err
    return payload["step"]


def load_checkpoint(path: str | Path, *, config: _Config, modules: dict[str, torch.nn.Module],
                    optimizers: dict[str, torch.optim.Optimizer],
                    generator: torch.Generator) -> dict[str, Any]:
    """Restore a checkpoint into live objects; returns the payload (``step``, ``extra``).

    :func:`check_checkpoint`, then :func:`restore_checkpoint`.

    Raises:
        CheckpointError: the file is unreadable or truncated (:func:`read_checkpoint`),
            was written by another kind of run, or by a config differing in a field
            outside ``RESUMABLE``, or does not fit the live objects.
    """
    payload = check_checkpoint(path, config)
    restore_checkpoint(payload, modules=modules, optimizers=optimizers, generator=generator,
                       path=path)
    return payload
