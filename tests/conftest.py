"""Shared test set-up: seeded RNGs, one-thread, float64 and device fixtures.

Helpers that tests import (tiny generators, ...) live in ``helpers.py``.

**Devices.** ``pytest --device cuda`` (or ``SPECTRAL_BACKPROP_TEST_DEVICE=cuda``) runs every
test that takes the ``device`` fixture with its tensors on that device; the default is
``cpu``. Such tests are marked ``device`` automatically, so ``-m device`` selects them
(``scripts/gpu_check.sh`` does). Tests marked ``cuda`` need a CUDA device and are skipped,
with the reason, on a machine without one.
"""

from __future__ import annotations

import os
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


DEVICE_ENV = "SPECTRAL_BACKPROP_TEST_DEVICE"


def pytest_addoption(parser):
    parser.addoption("--device", default=os.environ.get(DEVICE_ENV, "cpu"),
                     help=f"device of the tests that take the `device` fixture (cpu, cuda, "
                          f"cuda:1, ...; default ${DEVICE_ENV} or cpu)")


def pytest_configure(config):
    config.addinivalue_line("markers", "device: takes the `device` fixture (set by conftest)")
    config.addinivalue_line("markers", "cuda: needs a CUDA device; skipped without one")
    device = torch.device(config.getoption("--device"))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise pytest.UsageError(f"--device {device} asked for, but torch.cuda.is_available() "
                                f"is False (torch {torch.__version__})")


def pytest_collection_modifyitems(config, items):
    no_cuda = pytest.mark.skip(reason="needs a CUDA device (torch.cuda.is_available() is "
                                      "False); scripts/gpu_check.sh runs it on a GPU")
    for item in items:
        if "device" in getattr(item, "fixturenames", ()):
            item.add_marker("device")
        if item.get_closest_marker("cuda") and not torch.cuda.is_available():
            item.add_marker(no_cuda)


@pytest.fixture(scope="session")
def device(pytestconfig) -> torch.device:
    """The device of the run (``--device``), for tests whose numerics do not depend on it."""
    return torch.device(pytestconfig.getoption("--device"))
