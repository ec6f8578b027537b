"""Study settings live in config files that build valid configs; the commands read them."""

from __future__ import annotations

import pytest

from spectral_backprop.analysis import AnalysisConfig
from spectral_backprop.cli import build_parser
from spectral_backprop.cli.flags import config_from_args
from spectral_backprop.studies import load_protocol, protocol_names
from spectral_backprop.studies.demo import DemoConfig
from spectral_backprop.studies.factors import FactorsConfig
from spectral_backprop.train import GANConfig


def test_every_shipped_protocol_builds_its_config():
    assert {"demo_quick", "modes_grid", "modes_ring", "paper_generators"} <= set(protocol_names())
    for dataset in ("grid", "ring"):
        protocol = load_protocol(f"modes_{dataset}")
        config = GANConfig.from_dict(protocol["config"])
        assert config.dataset == dataset and protocol["entropy_weight"] > 0
    grid = GANConfig.from_dict(load_protocol("modes_grid")["config"])
    assert (grid.r1.weight, grid.r1.decay.start, grid.entropy.decay.end) == (0.1, 0.5, 0.5)
    assert DemoConfig.quick().steps < DemoConfig().steps
    for settings in load_protocol("paper_generators").values():
        GANConfig.from_dict(settings)


def test_unknown_protocol_names_the_known_ones():
    with pytest.raises(ValueError, match="unknown protocol 'nope'; known: .*modes_grid"):
        load_protocol("nope")


@pytest.mark.parametrize(("argv", "cls", "expected"), [
    (["analyze", "RUN", "--out", "o", "--search-steps", "7", "--dtype", "float32"],
     AnalysisConfig, {"search_steps": 7, "dtype": "float32"}),
    (["factors", "--out", "o", "--directions", "2", "--latents", "16", "--no-progress"],
     FactorsConfig, {"directions": 2, "latents": 16, "progress": False}),
    (["demo", "--out", "o", "--steps", "9", "--entropy-weight", "0.1", "--jobs", "1"],
     DemoConfig, {"steps": 9, "entropy_weight": 0.1, "jobs": 1}),
])
def test_command_flags_are_generated_from_the_config(argv, cls, expected):
    args = build_parser().parse_args(argv)
    exclude = ("analysis",) if cls is DemoConfig else ()
    config = config_from_args(args, cls, exclude=exclude)
    assert {k: getattr(config, k) for k in expected} == expected
    # Every other field keeps the dataclass default (a flag not given sets nothing).
    default = cls()
    others = [f for f in vars(default) if f not in expected]
    assert {f: getattr(config, f) for f in others} == {f: getattr(default, f) for f in others}


def test_help_shows_docstring_and_default(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["analyze", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--search-steps" in text and "(default: 200)" in text
    assert "precision of the analysis" in text


@pytest.mark.parametrize(("values", "message"), [
    ({"n_typical": 0}, "n_typical must be a positive integer"),
    ({"search_objective": "x"}, "search_objective must be one of loglik, logdet"),
    ({"n_search": 300}, "n_search must not exceed n_typical"),
    ({"residual_tol": 0.0}, "residual_tol must be positive"),
])
def test_analysis_config_refuses_bad_settings(values, message):
    with pytest.raises(ValueError, match=message):
        AnalysisConfig(**values)


def test_factors_config_refuses_bad_settings():
    with pytest.raises(ValueError, match="directions must be in"):
        FactorsConfig(directions=9, latent_dim=8)
    with pytest.raises(ValueError, match="image_size must be"):
        FactorsConfig(image_size=20)
