"""The settings of the studies, read from the JSON files in ``studies/configs/``.

A protocol file is the one place where a study's budget and hyper-parameters are
written: the command line, the study functions and the scripts in ``experiments/``
all read it through :func:`load_protocol`, so a reported table and the command that
reproduces it cannot drift apart. An ``"about"`` entry says in words what the
settings are and how they were chosen; it is not a setting.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

__all__ = ["load_protocol", "protocol_names"]

_PACKAGE = "spectral_backprop.studies"


def _folder():
    return resources.files(_PACKAGE) / "configs"


def protocol_names() -> list[str]:
    """Names of the shipped protocols (``configs/<name>.json``)."""
    return sorted(p.name[:-5] for p in _folder().iterdir() if p.name.endswith(".json"))


def load_protocol(name: str) -> dict[str, Any]:
    """The settings of protocol ``name`` (without its ``"about"`` text).

    Raises:
        ValueError: no such protocol (the message lists the known ones).

    Example:
        >>> load_protocol("modes_ring")["entropy_weight"]
        0.03
    """
    path = _folder() / f"{name}.json"
    if not path.is_file():
        raise ValueError(f"unknown protocol {name!r}; known: {', '.join(protocol_names())}")
    values = json.loads(path.read_text())
    values.pop("about", None)
    return values
