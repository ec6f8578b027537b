"""Shared test set-up: seeded RNGs, float64 helpers, tiny generators."""

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


def mlp_generator(k: int = 3, n: int = 7, hidden: int = 16, dtype=torch.float64) -> torch.nn.Module:
    """A small smooth MLP generator R^k -> R^n."""
    return torch.nn.Sequential(
        torch.nn.Linear(k, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, n)
    ).to(dtype)


class ConvGenerator(torch.nn.Module):
    """A tiny DCGAN-shaped generator R^k -> R^{1×8×8}."""

    def __init__(self, k: int = 4, dtype=torch.float64):
        super().__init__()
        self.fc = torch.nn.Linear(k, 8 * 4 * 4)
        self.up = torch.nn.ConvTranspose2d(8, 4, 4, stride=2, padding=1)
        self.out = torch.nn.Conv2d(4, 1, 3, padding=1)
        self.to(dtype)

    def forward(self, z):
        h = torch.tanh(self.fc(z)).view(-1, 8, 4, 4)
        return torch.tanh(self.out(torch.nn.functional.softplus(self.up(h))))
