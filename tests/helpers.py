"""Helpers shared by the tests: tiny generators with known Jacobians and shapes."""

from __future__ import annotations

import torch


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
