"""MNIST: the maximum-implicit-likelihood generator against a VAE at equal wall-clock time.

Both models use the same networks: the DCGAN generator ``G: R^20 → [−1, 1]^{28×28}`` and
the convolutional encoder of :func:`~spectral_backprop.models.encoders.build_manifold_pair`
(``arch="conv"``, k = 20 as rectangular flows used), on the 4,500 training digits of
:func:`~spectral_backprop.data.manifolds.mnist_manifold` (500 held out). Each trains for
``--seconds`` of wall-clock time (Adam 1e-3, batch 64, one torch thread):

* **ML** — ``−log p_Z(E(x)) + ½ log det J_GᵀJ_G + β‖x − G(E(x))‖²`` with the exact log det
  (:func:`~spectral_backprop.manifold.manifold_loss`), β = 100, reconstruction only for
  the first 10% of the budget, the likelihood weight then ramped to 1 over 10%
  (the trainer's schedule, by time instead of steps).
* **VAE** (Kingma & Welling 2014, arXiv 1312.6114) — the encoder's head doubled to a mean
  and a log-variance, ``p(x|z) = N(G(z), σ² I)`` with a learned scalar σ (the explicit
  Gaussian likelihood), the negative ELBO with one reparameterised sample.

Measured on the held-out digits: test NLL (ML: nats w.r.t. 20-dimensional volume on the
learned manifold, exact, float64; VAE: the negative ELBO in nats on R^784 — two
different measures, not comparable with each other), reconstruction RMS
(``‖x − G(E(x))‖ / √784``, the VAE at its posterior mean) and a feature Fréchet distance
(:mod:`spectral_backprop.analysis.frechet`, features of a small classifier trained on
the training digits) between 500 samples ``G(z), z ~ N(0, I)`` and the 500 held-out
digits; beside it the FD of 500 training digits against the same held-out digits (the
floor that finite samples allow). Writes ``docs/figures/manifold_mnist.png``.

Usage::

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python experiments/manifold_mnist_vae.py \
        --seconds 300
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch
from torch import nn

from spectral_backprop.analysis.aberrance import train_classifier
from spectral_backprop.analysis.frechet import feature_frechet_distance
from spectral_backprop.data.manifolds import mnist_manifold
from spectral_backprop.manifold import manifold_loss, manifold_terms
from spectral_backprop.models.encoders import ConvEncoder, build_manifold_pair

ROOT = Path(__file__).resolve().parents[1]
K, BATCH, LR, BETA = 20, 64, 1e-3, 100.0


def _weight(frac: float, warmup: float = 0.1, ramp: float = 0.1) -> float:
    return 0.0 if frac < warmup else min(1.0, (frac - warmup) / ramp)


def train_ml(x: torch.Tensor, seconds: float, seed: int):
    torch.manual_seed(seed)
    G, E = build_manifold_pair("conv", x.shape[1:], K)
    opt = torch.optim.Adam([*G.parameters(), *E.parameters()], lr=LR)
    g = torch.Generator().manual_seed(seed + 1)
    t0, steps, singular = time.perf_counter(), 0, 0
    while (elapsed := time.perf_counter() - t0) < seconds:
        xb = x[torch.randint(len(x), (BATCH,), generator=g)]
        loss, terms = manifold_loss(G, E, xb, beta=BETA,
                                    likelihood_weight=_weight(elapsed / seconds))
        if not torch.isfinite(loss):
            singular += 1
            continue
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        steps += 1
    return G.eval(), E.eval(), steps, singular


class VAE(nn.Module):
    def __init__(self, shape):
        super().__init__()
        self.G, _ = build_manifold_pair("conv", shape, K)
        self.E = ConvEncoder(shape[0], shape[1], 2 * K)
        self.log_sigma = nn.Parameter(torch.tensor(math.log(0.3)))

    def encode(self, x):
        mu, logvar = self.E(x).chunk(2, dim=1)
        return mu, logvar

    def neg_elbo(self, x, g=None):
        """Per-sample ``−ELBO`` (nats): Gaussian reconstruction term + KL to N(0, I)."""
        mu, logvar = self.encode(x)
        eps = torch.randn(mu.shape, generator=g)
        x_hat = self.G(mu + (0.5 * logvar).exp() * eps)
        n = x[0].numel()
        rec = ((x - x_hat).flatten(1).pow(2).sum(1) / (2 * self.log_sigma.exp() ** 2)
               + n * (self.log_sigma + 0.5 * math.log(2 * math.pi)))
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1)
        return rec + kl


def train_vae(x: torch.Tensor, seconds: float, seed: int):
    torch.manual_seed(seed)
    vae = VAE(tuple(x.shape[1:]))
    opt = torch.optim.Adam(vae.parameters(), lr=LR)
    g = torch.Generator().manual_seed(seed + 1)
    t0, steps = time.perf_counter(), 0
    while time.perf_counter() - t0 < seconds:
        xb = x[torch.randint(len(x), (BATCH,), generator=g)]
        loss = vae.neg_elbo(xb, g).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        steps += 1
    return vae.eval(), steps


def _double(module):
    import copy

    return copy.deepcopy(module).double()


def evaluate(data, classifier, ml, vae) -> dict:
    test = data.test
    g = torch.Generator().manual_seed(123)
    z = torch.randn(len(test), K, generator=g)
    out = {}
    G, E, _, _ = ml
    with torch.enable_grad():
        t = manifold_terms(_double(G), _double(E), test.double())
    with torch.no_grad():
        out["ml"] = {"test_nll": t.nll.mean().item(),
                     "test_nll_se": (t.nll.std() / len(t.nll) ** 0.5).item(),
                     "rms": (t.distance.pow(2).mean() / test[0].numel()).sqrt().item(),
                     "fd": feature_frechet_distance(classifier, test, G(z))}
        model = vae[0]
        nelbo = torch.cat([model.neg_elbo(xb, g) for xb in test.split(250)])
        rec = model.G(model.encode(test)[0])
        out["vae"] = {"test_nll": nelbo.mean().item(),
                      "test_nll_se": (nelbo.std() / len(nelbo) ** 0.5).item(),
                      "rms": (test - rec).pow(2).mean().sqrt().item(),
                      "fd": feature_frechet_distance(classifier, test, model.G(z))}
        out["floor_fd"] = feature_frechet_distance(classifier, test, data.x[:len(test)])
    return out


@torch.no_grad()
def picture(data, ml, vae, path: Path) -> Path:
    from spectral_backprop.pictures import save_image_grid

    G, E = ml[0], ml[1]
    z = torch.randn(12, K, generator=torch.Generator().manual_seed(0))
    x = data.test[:12]
    v = vae[0]
    rows = torch.stack([G(z), G(E(x)), x, v.G(v.encode(x)[0]), v.G(z)])
    return save_image_grid(rows, path, row_labels=["ML samples", "ML recon.", "held out",
                                                   "VAE recon.", "VAE samples"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=300.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "figures")
    args = p.parse_args()
    torch.set_num_threads(1)
    data = mnist_manifold()
    classifier, acc = train_classifier(data.x, data.labels, epochs=5, seed=0)
    ml = train_ml(data.x, args.seconds, args.seed)
    vae = train_vae(data.x, args.seconds, args.seed)
    res = evaluate(data, classifier, ml, vae)
    print(f"classifier held-out accuracy {acc:.3f}; budget {args.seconds:.0f} s each; "
          f"ML {ml[2]} steps ({ml[3]} batches skipped: non-finite loss), VAE {vae[1]} steps\n")
    print("| model | steps | test NLL (nats) | reconstruction RMS | feature FD |")
    print("|---|---|---|---|---|")
    for name, steps in (("ml", ml[2]), ("vae", vae[1])):
        r = res[name]
        unit = "w.r.t. 20-d volume" if name == "ml" else "−ELBO on R^784"
        print(f"| {name} | {steps} | {r['test_nll']:.1f} ± {r['test_nll_se']:.1f} ({unit}) | "
              f"{r['rms']:.4f} | {r['fd']:.2f} |")
    print(f"| 500 training digits (floor) | – | – | – | {res['floor_fd']:.2f} |")
    print("wrote", picture(data, ml, vae, args.out / "manifold_mnist.png"))


if __name__ == "__main__":
    main()
