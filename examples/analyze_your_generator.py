"""Analyse your own generator with spectral-backprop, from Python.

    python examples/analyze_your_generator.py [GENERATOR.pt] [--out my_analysis]

``GENERATOR.pt`` is any ``torch.nn.Module`` mapping latents ``[B, k]`` to images
``[B, 1, 28, 28]`` in ``[-1, 1]``, saved whole with ``torch.save(G, path)`` (or a
TorchScript file). Without it, the small untrained generator below stands in, so the
script runs anywhere in about a minute; its pictures are noise.

What a generator needs: each output depends on its own latent only (no batch norm in
training mode; the analysis calls ``G.eval()``), and it supports forward-mode
differentiation (standard layers do), which builds the Jacobian.
"""

from __future__ import annotations

import argparse

import torch
from torch import nn

from spectral_backprop import implicit_log_prob
from spectral_backprop.analysis import AnalysisConfig, analyze_generator
from spectral_backprop.data import load_dataset
from spectral_backprop.report import write_report


class TinyGenerator(nn.Module):
    """A stand-in generator: R^8 -> 28x28 images in [-1, 1]."""

    def __init__(self, latent_dim: int = 8):
        super().__init__()
        self.latent_dim = latent_dim  # lets the analysis infer k
        self.net = nn.Sequential(nn.Linear(latent_dim, 256), nn.Softplus(),
                                 nn.Linear(256, 28 * 28), nn.Tanh())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).view(-1, 1, 28, 28)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("generator", nargs="?", help="torch.save'd nn.Module or TorchScript file")
    p.add_argument("--latent-dim", type=int, help="k, if G has no latent_dim attribute")
    p.add_argument("--out", default="my_analysis")
    args = p.parse_args()

    torch.manual_seed(0)
    if args.generator is None:
        G = TinyGenerator()
    elif args.generator.endswith((".ts", ".jit")):
        G = torch.jit.load(args.generator)
    else:
        # A whole pickled module runs code when loaded: only for a file you made yourself.
        G = torch.load(args.generator, weights_only=False)
    G.eval()
    k = args.latent_dim or G.latent_dim

    # The likelihood a generator assigns to its own samples: log p_Z(z) − ½ log det JᵀJ.
    z = torch.randn(4, k)
    print("log p_G(G(z)) =", implicit_log_prob(G, z))

    # Real data in G's output range, scored at their recovered latents; the labels
    # train the classifier that scores how digit-like the outputs are.
    mnist = load_dataset("mnist")
    config = AnalysisConfig(n_typical=128, n_search=8, search_steps=100, n_real=32,
                            invert_steps=150, invert_restarts=2, global_samples=64,
                            classifier_epochs=2)
    results = analyze_generator(G, mnist.x, args.out, labels=mnist.labels, latent_dim=k,
                                config=config)
    for key in ("loglik_typical", "loglik_search", "loglik_real",
                "classifier_confidence_typical", "classifier_confidence_search"):
        print(f"{key:32s} {results[key]:10.3f}")
    print("report:", write_report(args.out))


if __name__ == "__main__":
    main()
