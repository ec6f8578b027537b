"""Command-line flags generated from config dataclasses, so that a default is written once.

:func:`add_config_arguments` adds one flag per field of a dataclass; the fields of a
nested dataclass are flattened with their path::

    GANConfig.steps               --steps STEPS
    GANConfig.r1.decay.start      --r1-decay-start START
    GANConfig.entropy.options     --entropy-option KEY=VALUE   (repeatable)

* **Type** from the field's annotation: ``int``, ``float``, ``str``; ``bool`` as
  ``--x/--no-x``; ``X | None`` as X, where the word ``none`` sets ``None``; a tuple as
  that many values (``--adam-betas 0.5 0.999``); a ``dict`` as a repeatable, singular
  ``--name KEY=VALUE`` (``--data-option num_samples=1000``; values are read as JSON when
  they parse, else kept as strings), each adding one key.
* **Choices** from the class's ``CHOICES`` mapping (field name → allowed values), the
  one place where the config's validation reads them too; ``Literal`` annotations work
  as well.
* **Help** from the ``Attributes:`` section of the class's docstring (Google style, one
  ``name: text`` entry per field, or ``a, b: text`` for several), followed by
  ``(default: X)`` read from the field's default. A field of a nested section is
  introduced by its section's entry in the parent class.
* **Default** ``None`` for every flag: a flag not given keeps the value that the
  config already has (its default, a base's, or a ``--config`` file's).

:func:`config_from_args` then builds the config: the defaults, a ``base`` dict, the
``--config FILE.json`` (if any), an ``extra`` dict, then the flags given, each layer
over the last. Any dataclass with an ``Attributes:`` docstring works; configs of
:mod:`spectral_backprop.train.config` also upgrade old field names in every layer.

Example:
    >>> import argparse
    >>> from spectral_backprop.train import GANConfig
    >>> parser = argparse.ArgumentParser()
    >>> _ = add_config_arguments(parser, GANConfig)
    >>> args = parser.parse_args(["--r1-weight", "0.1", "--entropy-decay-shape", "cosine"])
    >>> config = config_from_args(args, GANConfig, base={"steps": 100})
    >>> config.steps, config.r1.weight, config.entropy.decay.shape
    (100, 0.1, 'cosine')
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import re
import types
import typing
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spectral_backprop.cli import CLIError

__all__ = ["NONE", "Flag", "add_config_arguments", "config_fields", "config_from_args",
           "field_docs", "given_values", "read_config_file"]


class _NoneWord:
    """What a flag of an ``X | None`` field parses ``none`` to (``None`` means "not given")."""

    def __repr__(self) -> str:
        return "none"


NONE = _NoneWord()


@dataclass(frozen=True)
class Flag:
    """One generated flag: the field's dotted ``path`` (``r1.decay.start``), the
    argparse ``dest`` (the path after the prefix), the option string, the resolved
    annotation, the default, the class that owns the field and the help text."""

    path: str
    dest: str
    option: str
    annotation: Any
    default: Any
    owner: type
    help: str

    @property
    def kind(self) -> str:
        """``dict``, ``tuple``, ``bool`` or ``value``."""
        base = _strip_optional(self.annotation)[0]
        origin = typing.get_origin(base) or base
        if origin in (dict, tuple, bool):
            return origin.__name__
        return "value"


# --- reading the dataclass ---------------------------------------------------------------

def field_docs(cls: type) -> dict[str, str]:
    """``{field: text}`` from the ``Attributes:`` section of ``cls``'s docstring.

    Example:
        >>> from spectral_backprop.train.config import Decay
        >>> field_docs(Decay)["shape"]
        'constant (no decay), linear or cosine.'
    """
    lines = (inspect.getdoc(cls) or "").splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip() == "Attributes:"), None)
    if start is None:
        return {}
    docs: dict[str, str] = {}
    names: list[str] = []
    entry_indent = None
    for line in lines[start + 1:]:
        indent = len(line) - len(line.lstrip())
        if not line.strip():
            continue
        if entry_indent is None:
            entry_indent = indent
        if indent < entry_indent:
            break
        match = re.match(r"\s*([\w, ]+):(?:\s+(.*))?$", line) if indent == entry_indent else None
        if match:
            names = [n.strip() for n in match.group(1).split(",")]
            for name in names:
                docs[name] = match.group(2) or ""
        else:
            for name in names:
                docs[name] += " " + line.strip()
    return {name: _plain(text) for name, text in docs.items()}


def _plain(text: str) -> str:
    """reStructuredText markup as plain text (for ``--help``)."""
    text = re.sub(r"\s*\(:\w+:`[^`]*`\)", "", text)  # "(:class:`R1`)": a cross-reference only
    text = re.sub(r":\w+:`~?([^`]*)`", lambda m: m.group(1).rsplit(".", 1)[-1], text)
    text = re.sub(r"``([^`]*)``", r"\1", text)
    return " ".join(text.split())


def _strip_optional(annotation: Any) -> tuple[Any, bool]:
    """``(X, True)`` for ``X | None``, else ``(annotation, False)``."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return annotation, False


def _default(field: dataclasses.Field, holder: Any) -> Any:
    if holder is not None:
        return getattr(holder, field.name)
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return dataclasses.MISSING


def _first_sentence(text: str) -> str:
    return re.split(r"(?<=[.;])\s", text, maxsplit=1)[0].rstrip(".;")


def config_fields(cls: type, *, prefix: str = "", exclude: Iterable[str] = ()) -> list[Flag]:
    """The :class:`Flag` of every leaf field of dataclass ``cls``, in field order.

    Args:
        prefix: put before every option and dest (``"analysis-"``: ``--analysis-steps``),
            to give two dataclasses' flags one parser.
        exclude: dotted field paths to leave out (a section's path leaves out all of it).
    """
    exclude = set(exclude)
    flags: list[Flag] = []

    def walk(owner: type, holder: Any, path: str, intro: str) -> None:
        hints, docs = typing.get_type_hints(owner), field_docs(owner)
        for f in dataclasses.fields(owner):
            name, annotation = f"{path}{f.name}", hints[f.name]
            if name in exclude:
                continue
            default = _default(f, holder)
            if dataclasses.is_dataclass(annotation):
                walk(annotation, default if dataclasses.is_dataclass(default) else None,
                     f"{name}.", _first_sentence(docs.get(f.name, "")))
                continue
            text = f"{intro}: {docs.get(f.name, '')}" if intro else docs.get(f.name, "")
            option = prefix + name.replace(".", "-").replace("_", "-")
            if typing.get_origin(annotation) is dict or annotation is dict:
                option = option.removesuffix("s")  # one KEY=VALUE per use: --data-option
            flags.append(Flag(name, prefix + name, f"--{option}", annotation, default, owner,
                              text))

    walk(cls, None, "", "")
    return flags


# --- the parser --------------------------------------------------------------------------

def _format_default(value: Any) -> str:
    if value is None or value is dataclasses.MISSING:
        return "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, tuple | list):
        return " ".join(map(str, value))
    return str(value)


def _key_value(item: str) -> tuple[str, Any]:
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"must look like KEY=VALUE, got {item!r}")
    return key, _json_or_string(value)


def _scalar_type(annotation: Any, optional: bool):
    convert = annotation if annotation in (int, float, str) else _json_or_string

    def parse(text: str):
        if optional and text.lower() == "none":
            return NONE
        return convert(text)

    parse.__name__ = getattr(convert, "__name__", "value")  # argparse names it in errors
    return parse


def _json_or_string(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _argument(flag: Flag) -> dict[str, Any]:
    """The ``add_argument`` keywords of a flag."""
    annotation, optional = _strip_optional(flag.annotation)
    leaf = flag.path.rsplit(".", 1)[-1]
    shown = f"(default: {_format_default(flag.default)})"
    if optional and flag.default is not None:
        shown = shown[:-1] + "; none: unset)"
    kw: dict[str, Any] = {"dest": flag.dest, "default": None,
                          "help": f"{flag.help} {shown}".strip().replace("%", "%%")}
    kind = flag.kind
    if kind == "bool":
        return kw | {"action": argparse.BooleanOptionalAction}
    if kind == "dict":
        kw["help"] = kw["help"].replace("(default: {})", "(repeatable)")
        return kw | {"action": "append", "type": _key_value, "metavar": "KEY=VALUE"}
    if kind == "tuple":
        args = typing.get_args(annotation)
        item = args[0] if args else str
        nargs = "+" if not args or (len(args) == 2 and args[1] is Ellipsis) else len(args)
        return kw | {"nargs": nargs, "type": _scalar_type(item, False), "metavar": leaf.upper()}
    choices = getattr(flag.owner, "CHOICES", {}).get(leaf)
    if typing.get_origin(annotation) is typing.Literal:
        choices = typing.get_args(annotation)
    kw |= {"type": _scalar_type(annotation, optional), "metavar": leaf.upper()}
    if choices is not None:
        names = [*choices, *(["none"] if optional else [])]
        kw |= {"choices": [*choices, *([NONE] if optional else [])],
               "metavar": "{" + ",".join(map(str, names)) + "}"}
    return kw


def add_config_arguments(parser: argparse.ArgumentParser | Any, cls: type, *,
                         exclude: Iterable[str] = (), prefix: str = "",
                         title: str | None = None, config_file: bool = True) -> list[Flag]:
    """Add one flag per (leaf) field of dataclass ``cls`` to ``parser``; returns them.

    Args:
        parser: an ``ArgumentParser`` (the flags go into a new argument group) or an
            argument group.
        exclude: dotted field paths that get no flag (the command sets them otherwise).
        prefix: put before every option and dest (see :func:`config_fields`).
        title: the group's title (default: names the class).
        config_file: also add ``--config FILE`` (a JSON file of settings).
    """
    group = parser
    if isinstance(parser, argparse.ArgumentParser):
        group = parser.add_argument_group(
            title or f"settings ({cls.__module__.split('.')[0]}.{cls.__qualname__}; "
                     "a flag not given keeps the default)")
    flags = config_fields(cls, prefix=prefix, exclude=exclude)
    for flag in flags:
        group.add_argument(flag.option, **_argument(flag))
    if config_file:
        group.add_argument("--config", type=Path, metavar="FILE",
                           help="start from the settings in this JSON file (a saved "
                                "config.json, or any part of one); flags override them")
    return flags


# --- building the config -----------------------------------------------------------------

def given_values(args: argparse.Namespace, cls: type, *, prefix: str = "",
                 exclude: Iterable[str] = ()) -> dict[str, Any]:
    """The nested dict of the fields whose flags were given on the command line."""
    values: dict[str, Any] = {}
    for flag in config_fields(cls, prefix=prefix, exclude=exclude):
        value = getattr(args, flag.dest, None)
        if value is None:
            continue
        if value is NONE:
            value = None
        elif flag.kind == "dict":
            value = dict(value)
        elif flag.kind == "tuple":
            value = tuple(value)
        *parents, leaf = flag.path.split(".")
        node = values
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return values


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The settings of a JSON file, as a dict (a ``CLIError`` if it cannot be read)."""
    try:
        values = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise CLIError(f"cannot read config {path}: {err}") from err
    if not isinstance(values, dict):
        raise CLIError(f"config {path} must hold a JSON object, got {type(values).__name__}")
    return values


def config_from_args(args: argparse.Namespace, cls: type, base: dict[str, Any] | None = None,
                     *, extra: dict[str, Any] | None = None, prefix: str = "",
                     exclude: Iterable[str] = ()):
    """A ``cls`` from its defaults, ``base``, ``--config FILE``, ``extra``, then the flags
    given (:func:`given_values`), each layer over the last.

    A class with a ``from_layers`` classmethod (the training configs) builds itself from
    the layers, upgrading old field names in each; any other dataclass gets the layers
    merged and passed to its constructor.

    Raises:
        CLIError: the file cannot be read, or the settings are invalid (the message of
            the config's ``ValueError`` or ``TypeError``).
    """
    from spectral_backprop.train.config import merge_dicts

    path = getattr(args, "config", None)
    layers = [base, read_config_file(path) if path is not None else None, extra,
              given_values(args, cls, prefix=prefix, exclude=exclude)]
    try:
        if hasattr(cls, "from_layers"):
            return cls.from_layers(*layers)
        values: dict[str, Any] = {}
        for layer in layers:
            values = merge_dicts(values, layer or {})
        return cls(**values)
    except (TypeError, ValueError) as err:
        raise CLIError(str(err)) from err
