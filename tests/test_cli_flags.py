"""Command-line flags generated from the config dataclasses (``cli/flags.py``)."""

from __future__ import annotations

import argparse
import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Literal

import pytest

from spectral_backprop.cli import CLIError
from spectral_backprop.cli.flags import (
    add_config_arguments,
    config_fields,
    config_from_args,
    field_docs,
)
from spectral_backprop.train import Decay, GANConfig, ReverseKLConfig


def parser_for(cls, **kw) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="test", exit_on_error=True)
    add_config_arguments(parser, cls, **kw)
    return parser


def help_of(parser: argparse.ArgumentParser, option: str) -> str:
    (action,) = [a for a in parser._actions if option in a.option_strings]
    return action.help


def test_every_config_field_is_documented():
    for cls in (GANConfig, ReverseKLConfig, *GANConfig.sections().values(), Decay):
        names = {f.name for f in dataclasses.fields(cls)}
        assert names <= set(field_docs(cls)), cls.__name__


def test_help_text_is_the_docstring_and_the_default():
    parser = parser_for(GANConfig)
    assert help_of(parser, "--lr-g") == "the generator's Adam learning rate. (default: 0.0002)"
    assert help_of(parser, "--steps") == "generator updates. (default: 2000)"
    # A nested field: its section's entry, then its own, then the default.
    start = help_of(parser, "--r1-decay-start")
    assert start == ("the decay of γ to 0 over training: fraction of the steps at which the "
                     "decay begins. (default: 0.0)")
    assert "β; 0 trains a plain GAN. (default: 0.0)" in help_of(parser, "--entropy-weight")
    assert "(default: 0.5 0.999)" in help_of(parser, "--adam-betas")
    assert "(repeatable)" in help_of(parser, "--entropy-option")
    assert help_of(parser, "--progress").endswith("(default: on)")
    # Markup is gone; choices come from the class's CHOICES.
    assert "``" not in parser.format_help() and ":class:" not in parser.format_help()
    (shape,) = [a for a in parser._actions if "--entropy-decay-shape" in a.option_strings]
    assert shape.choices == ["constant", "linear", "cosine"]
    # Every flag of train and fit-density, with its path, and no default but None.
    flags = config_fields(GANConfig)
    assert {f.option for f in flags} >= {
        "--entropy-weight", "--entropy-batch", "--entropy-method", "--entropy-option",
        "--entropy-dtype", "--entropy-cap", "--entropy-decay-shape", "--entropy-decay-start",
        "--entropy-decay-end", "--r1-weight", "--r1-decay-shape", "--r1-decay-start",
        "--r1-decay-end", "--data-option", "--lr-schedule", "--g-activation"}
    assert all(a.default is None for a in parser._actions if a.dest != "help")
    assert "(default: spline)" in help_of(parser_for(ReverseKLConfig), "--transform")


def test_a_flag_sets_a_nested_field_and_keeps_the_rest():
    parser = parser_for(GANConfig)
    args = parser.parse_args(["--r1-weight", "0.1", "--r1-decay-shape", "cosine",
                              "--entropy-decay-end", "0.5", "--entropy-option", "num_probes=8",
                              "--entropy-option", "jitter=1e-6", "--adam-betas", "0", "0.9",
                              "--no-progress"])
    base = {"steps": 100, "entropy": {"weight": 0.01, "decay": {"shape": "linear"}}}
    config = config_from_args(args, GANConfig, base)
    assert config.r1.weight == 0.1 and config.r1.decay == Decay("cosine", 0.0, 1.0)
    assert config.entropy.decay == Decay("linear", 0.0, 0.5)  # the shape of the base
    assert config.entropy.weight == 0.01 and config.steps == 100
    assert config.entropy.options == {"num_probes": 8, "jitter": 1e-6}
    assert config.adam_betas == (0.0, 0.9) and config.progress is False
    # "none" sets an optional field to None, over a base that set it.
    args = parser.parse_args(["--latent-dim", "none", "--g-activation", "none"])
    config = config_from_args(args, GANConfig, {"latent_dim": 5, "g_activation": "elu"})
    assert config.latent_dim is None and config.g_activation is None


def test_layers_defaults_base_file_flags(tmp_path):
    parser = parser_for(GANConfig)
    path = tmp_path / "config.json"
    # An old run's config.json (flat fields) on top of a nested base.
    path.write_text(json.dumps({"steps": 300, "entropy_weight": 0.2, "r1_weight": 0.5}))
    args = parser.parse_args(["--config", str(path), "--steps", "400"])
    config = config_from_args(args, GANConfig, base={"steps": 200, "width": 16,
                                                     "r1": {"weight": 0.1}})
    assert (config.steps, config.width, config.r1.weight, config.entropy.weight) == (
        400, 16, 0.5, 0.2)
    path.write_text("[1, 2]")
    with pytest.raises(CLIError, match="must hold a JSON object"):
        config_from_args(parser.parse_args(["--config", str(path)]), GANConfig)
    with pytest.raises(CLIError, match="cannot read config"):
        config_from_args(parser.parse_args(["--config", str(tmp_path / "no.json")]), GANConfig)


@pytest.mark.parametrize("argv", [["--steps", "many"], ["--r1-decay-shape", "exponential"],
                                  ["--entropy-option", "num_probes"], ["--adam-betas", "0.5"],
                                  ["--device", "tpu"]])
def test_malformed_flags_exit_with_code_2(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        parser_for(GANConfig).parse_args(argv)
    assert exit_info.value.code == 2
    assert "error: argument" in capsys.readouterr().err


def test_invalid_values_are_cli_errors_naming_the_field():
    parser = parser_for(GANConfig)
    for argv, message in ((["--r1-decay-start", "1.5"], "r1.decay.start must be in"),
                          (["--entropy-weight", "-1"], "entropy.weight must be >= 0"),
                          (["--steps", "0"], "steps must be positive")):
        with pytest.raises(CLIError, match=message):
            config_from_args(parser.parse_args(argv), GANConfig)


def test_cli_errors_exit_with_code_2(tmp_path, capsys):
    from spectral_backprop.cli import main

    assert main(["train", "--r1-decay-start", "1.5", "--out", str(tmp_path)]) == 2
    assert "r1.decay.start must be in [0, 1), got 1.5" in capsys.readouterr().err
    assert main(["fit-density", "--bins", "0", "--out", str(tmp_path)]) == 2
    assert "bins must be positive" in capsys.readouterr().err


def test_exclude_and_prefix():
    parser = argparse.ArgumentParser()
    parser.add_argument("--entropy-weight", type=float)  # the command's own
    add_config_arguments(parser, GANConfig, exclude=("entropy.weight", "r1"))
    add_config_arguments(parser, Decay, prefix="lr-decay-", config_file=False)
    options = {o for a in parser._actions for o in a.option_strings}
    assert "--r1-weight" not in options and "--r1-decay-start" not in options
    args = parser.parse_args(["--entropy-weight", "0.5", "--entropy-batch", "8",
                              "--lr-decay-shape", "linear"])
    config = config_from_args(args, GANConfig)
    assert config.entropy.weight == 0.0 and config.entropy.batch == 8
    assert config_from_args(args, Decay, prefix="lr-decay-") == Decay("linear")


@dataclass
class Toy:
    """A plain dataclass: any such class gets flags.

    Attributes:
        name: what to call it.
        mode, level: ``fast`` or ``slow``, and how much.
        size: a pair.
        scale: optional factor.
        verbose: say more.
        extra: free options.
    """

    name: str = "toy"
    mode: Literal["fast", "slow"] = "fast"
    level: int = 1
    size: tuple[int, int] = (2, 3)
    scale: float | None = None
    verbose: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def test_any_dataclass_with_an_attributes_docstring():
    parser = parser_for(Toy, config_file=False)
    assert help_of(parser, "--mode") == "fast or slow, and how much. (default: fast)"
    assert help_of(parser, "--size") == "a pair. (default: 2 3)"
    args = parser.parse_args(["--mode", "slow", "--size", "4", "5", "--scale", "0.5",
                              "--verbose", "--extra", "a=[1, 2]", "--extra", "b=text"])
    toy = config_from_args(args, Toy, base={"level": 3})
    assert toy == Toy("toy", "slow", 3, (4, 5), 0.5, True, {"a": [1, 2], "b": "text"})
    with pytest.raises(SystemExit):
        parser.parse_args(["--mode", "medium"])
