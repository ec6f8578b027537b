"""Shared test set-up: seeded RNGs, one-thread and float64 fixtures.

Helpers that tests import (tiny generators, ...) live in ``helpers.py``.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def _seed_everything():
    random.seed(0)
    np.random.seed(0)  # noqa: NPY002 - code under test may use the legacy global RNG
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="module")
def one_thread():
    """Train tiny networks on one thread for a module's tests.

    On a shared 2-core machine, OpenMP threads spin-waiting for a busy core made each
    training step ~40x slower (measured).
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def float64():
    """Run a test with float64 as the default dtype, then restore it."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)
