"""The runnable examples in the public docstrings stay true."""

import doctest
import importlib

import pytest

MODULES = [
    "spectral_backprop.density",
    "spectral_backprop.linalg.jacobian",
    "spectral_backprop.models.spline",
    "spectral_backprop.spectral",
    "spectral_backprop.spectral.metric",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0, f"{name} has no examples"
    assert result.failed == 0
