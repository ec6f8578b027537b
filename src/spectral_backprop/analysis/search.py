r"""High-likelihood search: gradient ascent on the implicit likelihood in latent space.

Ramesh & LeCun (2018, arXiv 1806.00499, §5) maximise

.. math::  \ell(z) = \log p_Z(z) - \tfrac12 \log\det J(z)^\top J(z)

over ``z`` and find outputs whose likelihood is far above that of typical samples yet
which look nothing like the data: a generator's density can be highest where it is
least sample-like, as with other deep likelihood models. The gradient of the log det
term comes from spectral backpropagation (:func:`~spectral_backprop.logdet_jtj`), so
each step costs one Jacobian (``k`` forward-mode products) plus one backward pass,
whatever the repeated eigenvalues.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..density import prior_log_prob
from ..geometry._util import frozen
from ..linalg.jacobian import Generator, check_latents
from ..progress import progress as progress_bar
from ..spectral import logdet_jtj

__all__ = ["OBJECTIVES", "SearchResult", "high_likelihood_search"]

OBJECTIVES = ("loglik", "logdet")


@dataclass
class SearchResult:
    """Trajectory of a high-likelihood search (``T`` recorded points after the start).

    Attributes:
        steps: ``[T + 1]`` optimiser step of each record (0 is the start).
        latents: ``[T + 1, B, k]``.
        log_likelihood: ``[T + 1, B]``, ``log p_Z(z) − ½ log det JᵀJ`` in nats.
        logdet: ``[T + 1, B]``, ``log det JᵀJ``.
        objective: ``[T + 1, B]``, the maximised quantity (equals ``log_likelihood`` for
            ``objective="loglik"`` and ``−½ logdet`` for ``"logdet"``).
        outputs: ``[T + 1, B, ...]``, ``G(z)`` at each record.
    """

    steps: Tensor
    latents: Tensor
    log_likelihood: Tensor
    logdet: Tensor
    objective: Tensor
    outputs: Tensor

    @property
    def final_latents(self) -> Tensor:
        return self.latents[-1]

    @property
    def final_outputs(self) -> Tensor:
        return self.outputs[-1]


def _check_search(steps, lr, objective: str, optimizer: str, record_every) -> None:
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
    if optimizer not in ("adam", "sgd"):
        raise ValueError(f"optimizer must be 'adam' or 'sgd', got {optimizer!r}")
    for name, value in (("steps", steps), ("record_every", record_every)):
        if not isinstance(value, int) or value < (0 if name == "steps" else 1):
            raise ValueError(f"{name} must be a {'non-negative' if name == 'steps' else 'positive'}"
                             f" integer, got {value!r}")
    if lr <= 0:
        raise ValueError(f"lr must be positive, got {lr}")


def high_likelihood_search(
    G: Generator,
    z0: Tensor,
    *,
    steps: int = 100,
    lr: float = 0.05,
    objective: str = "loglik",
    optimizer: str = "adam",
    prior: object | None = None,
    record_every: int = 1,
    max_norm: float | None = None,
    method: str = "exact",
    progress: bool = False,
    **options,
) -> SearchResult:
    r"""Gradient ascent on the implicit log-likelihood (or on ``−½ log det JᵀJ`` alone).

    Args:
        G: generator ``z[B, k] -> x[B, ...]``.
        z0: starting latents ``[B, k]`` (typically prior samples).
        steps: optimiser steps.
        lr: learning rate.
        objective: ``"loglik"`` maximises ``log p_Z(z) − ½ log det JᵀJ``; ``"logdet"``
            maximises ``−½ log det JᵀJ`` alone (the volume term without the prior pull,
            which can wander far from the prior's mass: see ``max_norm``).
        optimizer: ``"adam"`` (robust to the objective's scale) or ``"sgd"`` (plain
            gradient ascent, monotone for small enough ``lr`` on smooth objectives).
        prior: latent prior with ``log_prob`` (default standard normal).
        record_every: keep every this many steps in the trajectory (the last step is
            always kept).
        max_norm: optionally project each latent back onto the ball ``‖z‖ ≤ max_norm``
            after every step.
        method: log det estimator (``"exact"`` or a registered stochastic method).
        progress: show a progress bar.
        **options: passed to the log det estimator (``chunk_size``, ``jitter``, ...).

    Returns:
        :class:`SearchResult` with the trajectory.

    Example:
        >>> import torch
        >>> G = lambda z: torch.exp(0.5 * z)  # log det JᵀJ = Σ (z_i − 2 log 2)
        >>> res = high_likelihood_search(G, torch.ones(1, 2), steps=50, optimizer="sgd", lr=0.2)
        >>> res.final_latents  # maximiser of −½‖z‖² − ½ Σ z_i is z = −½
        tensor([[-0.5000, -0.5000]])
    """
    check_latents(G, z0)
    _check_search(steps, lr, objective, optimizer, record_every)
    z = z0.detach().clone().requires_grad_(True)
    opt = (torch.optim.Adam if optimizer == "adam" else torch.optim.SGD)([z], lr=lr)
    records: dict[str, list[Tensor]] = {k: [] for k in ("step", "z", "ll", "ld", "obj", "x")}
    with frozen(G):
        for t in progress_bar(range(steps + 1), desc="search", disable=not progress):
            logdet = logdet_jtj(G, z, method=method, **options)
            log_prior = prior_log_prob(prior, z)
            value = -0.5 * logdet + (log_prior if objective == "loglik" else 0.0)
            if t % record_every == 0 or t == steps:
                with torch.no_grad():
                    records["step"].append(torch.tensor(t))
                    records["z"].append(z.detach().clone())
                    records["ll"].append((log_prior - 0.5 * logdet).detach())
                    records["ld"].append(logdet.detach())
                    records["obj"].append(value.detach())
                    records["x"].append(G(z.detach()))
            if t == steps:
                break
            opt.zero_grad(set_to_none=True)
            (-value.sum()).backward()
            opt.step()
            if max_norm is not None:
                with torch.no_grad():
                    norm = z.norm(dim=-1, keepdim=True).clamp_min(max_norm)
                    z.mul_(max_norm / norm)
    return SearchResult(*(torch.stack(records[k]) for k in ("step", "z", "ll", "ld", "obj", "x")))
