r"""Maximum implicit likelihood on data: a generator and an encoder fitted to points near
a k-dimensional manifold.

For a generator ``G: R^k → R^n`` (any architecture, k ≤ n), an encoder ``E: R^n → R^k``
(any architecture) and a data point ``x``, with ``z = E(x)`` and ``x̂ = G(z)``:

.. math::

    L(x) = \underbrace{-\log p_Z(z) + \tfrac12 \log\det J_G(z)^\top J_G(z)}_{-\log p_G(\hat x)}
           + \beta \, \lVert x - \hat x \rVert^2 .

The first two terms are the implicit negative log-likelihood of the projection ``x̂`` of
``x`` on the learned manifold (the area formula, w.r.t. k-dimensional volume); the third
keeps the manifold on the data. This is the objective family of rectangular flows
(Caterini et al. 2021, arXiv 2106.01413), M-flows (Brehmer & Cranmer 2020, arXiv
2003.13913) and free-form injective flows (Sorrenson et al. 2024, arXiv 2306.01843),
without their architectural constraints: the gradient of the log det term comes from
spectral backpropagation (Ramesh & LeCun 2018, arXiv 1806.00499),

    d ½ log det M = ½ tr(M⁻¹ dM),    M = JᵀJ,

through the estimator registry (``method="exact" | "lanczos" | "chebyshev" | "auto"``),
so that its cost and bias are the library's: exact (k JVPs and a backward), or stochastic
(probes, no graph through the iterative solver).

:func:`manifold_terms` returns the per-sample terms, so the same code trains
(:func:`manifold_loss`) and evaluates: the test NLL of each point (``nll``) and its
distance to the learned manifold (``distance = ‖x − G(E(x))‖``, an upper bound on the
Euclidean distance from ``x`` to the image of ``G``, equal to it when ``E`` projects).

Example:
    >>> import torch
    >>> A = torch.tensor([[2.0], [0.0]])           # G(z) = (2z, 0): a line in R², |J| = 2
    >>> G = lambda z: z @ A.T
    >>> E = lambda x: x[:, :1] / 2
    >>> t = manifold_terms(G, E, torch.tensor([[2.0, 0.5]]))
    >>> t.z, t.distance                             # z = 1, x̂ = (2, 0)
    (tensor([[1.]]), tensor([0.5000]))
    >>> t.nll                                       # ½ + ½ log 2π + log 2
    tensor([2.1121])
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .density import prior_log_prob
from .spectral import SpectralEstimate, accepts_option, logdet_jtj

__all__ = ["ManifoldTerms", "check_data", "manifold_loss", "manifold_terms"]


@dataclass
class ManifoldTerms:
    """Per-sample terms of the maximum-implicit-likelihood loss (each ``[B]`` unless said).

    Attributes:
        nll: ``−log p_Z(z) + ½ log det JᵀJ``: the implicit negative log-likelihood of the
            projection ``x̂``, in nats w.r.t. k-dimensional volume.
        log_prior: ``log p_Z(z)``.
        half_logdet: ``½ log det J(z)ᵀJ(z)`` (differentiable by spectral backprop).
        distance: ``‖x − x̂‖`` (Euclidean, in data units).
        z: the latents ``E(x)``, ``[B, k]``.
        x_hat: the reconstructions ``G(z)``, shaped like ``x``.
        std_error: standard error of ``half_logdet`` (0 for ``exact``; a stochastic
            method's probe noise).
    """

    nll: Tensor
    log_prior: Tensor
    half_logdet: Tensor
    distance: Tensor
    z: Tensor
    x_hat: Tensor
    std_error: Tensor


def check_data(x: Tensor) -> None:
    """Raise a clear error when ``x`` cannot be a batch of data points ``[B, ...]``."""
    if not isinstance(x, Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() < 2 or x.shape[0] == 0 or x[0].numel() == 0:
        raise ValueError(f"x must be a batch of points [B, n] (or [B, C, H, W] images) with "
                         f"B, n >= 1, got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"x must be floating point, got {x.dtype}")
    finite = torch.isfinite(x.flatten(1)).all(1)
    if not finite.all():
        bad = (~finite).nonzero().flatten().tolist()
        raise ValueError(f"x has NaN or infinite values in samples {bad[:10]}"
                         + (" ..." if len(bad) > 10 else ""))


def _encode(E, x: Tensor) -> Tensor:
    z = E(x)
    if not isinstance(z, Tensor) or z.dim() != 2 or z.shape[0] != x.shape[0]:
        shape = tuple(z.shape) if isinstance(z, Tensor) else type(z).__name__
        raise ValueError(f"the encoder must map x [{x.shape[0]}, ...] to latents "
                         f"[{x.shape[0]}, k]; it returned {shape}")
    n = x[0].numel()
    if z.shape[1] > n:
        raise ValueError(f"latent dimension k={z.shape[1]} (the encoder's output) exceeds "
                         f"the data dimension n={n}: the area formula needs k <= n")
    return z


def _decode(G, z: Tensor, x: Tensor, known: Tensor | None = None) -> Tensor:
    """``G(z)`` shaped like ``x``. ``known`` is ``G(z[:m])`` flattened to ``[m, n]`` (the
    exact log det's by-product): only the other ``B − m`` latents are decoded."""
    m = 0 if known is None else known.shape[0]
    parts = [] if known is None else [known]
    if m < z.shape[0]:
        try:
            rest = G(z[m:])
        except RuntimeError as err:
            raise ValueError(f"the encoder's latents [B, {z.shape[1]}] do not fit the "
                             f"generator (G(z) failed: {err}); make the encoder's output "
                             "size G's latent size") from err
        if rest.shape[0] != z.shape[0] - m:
            raise ValueError(f"the generator maps {z.shape[0] - m} latents to "
                             f"{rest.shape[0]} outputs")
        parts.append(rest.reshape(rest.shape[0], -1))
    if parts[-1].shape[1] != x[0].numel():
        raise ValueError(f"the generator maps latents to {parts[-1].shape[1]} values, the "
                         f"data points have shape {tuple(x.shape[1:])}: they must hold "
                         "the same number of values")
    return (parts[0] if len(parts) == 1 else torch.cat(parts)).reshape(x.shape)


def manifold_terms(G, E, x: Tensor, *, prior: object | None = None, method: str = "exact",
                   volume_points: int | None = None, **options) -> ManifoldTerms:
    """The per-sample terms of ``L(x)`` (see the module docstring), differentiable.

    Gradients reach ``E``'s parameters through ``z`` (all three terms) and ``G``'s
    through ``x̂`` and the log det.

    Args:
        G: callable ``z[B, k] -> x[B, ...]`` (an ``nn.Module`` or a function).
        E: callable ``x[B, ...] -> z[B, k]``.
        x: data ``[B, n]`` or ``[B, C, H, W]``.
        prior: any object with ``log_prob`` (default standard normal).
        method: the log det estimator (``exact``, ``lanczos``, ``chebyshev``, ``auto``).
        volume_points: compute the log det at the first ``m`` points only (``None``: all);
            the others' ``half_logdet`` and ``nll`` are NaN. See :func:`manifold_loss`.
        **options: passed to the estimator (``chunk_size``, ``num_probes``, ``generator``,
            ``jitter``, ...); ``return_info`` is always used internally. An estimator
            registered with options named ``encoder`` and ``data`` (one that uses the
            encoder, as free-form injective flows do) receives ``E`` and ``x`` there.

    Raises:
        ValueError: ``x`` not a batch, with NaN or infinite values (the samples are named),
            the encoder's output not ``[B, k]``, ``k > n``, or ``G(E(x))`` not the shape of
            ``x``.
    """
    if "return_info" in options:
        raise TypeError("manifold_terms always reads the estimate's standard error: "
                        "drop return_info")
    check_data(x)
    z = _encode(E, x)
    if accepts_option(method, "encoder", z.shape[1], unchecked=False):
        options.setdefault("encoder", E)
    m = _volume_count(x.shape[0], volume_points)
    if accepts_option(method, "data", z.shape[1], unchecked=False):
        options.setdefault("data", x if m == x.shape[0] else x[:m])
    try:
        est = logdet_jtj(G, z[:m], method=method, return_info=True, **options)
    except (RuntimeError, ValueError):
        _decode(G, z, x)  # names the problem when the latents do not fit G at all
        raise
    assert isinstance(est, SpectralEstimate)
    # The exact mode's forward-mode products computed G(z[:m]) already: reused, which
    # saves a forward and a backward pass of G over those points.
    x_hat = _decode(G, z, x, est.info.get("output"))
    half = 0.5 * est.value.to(x.dtype)
    if m < x.shape[0]:
        half = torch.cat([half, half.new_full((x.shape[0] - m,), float("nan"))])
    log_prior = prior_log_prob(prior, z)
    distance = (x - x_hat).flatten(1).norm(dim=1)
    se = 0.5 * est.std_error.detach()
    if m < x.shape[0] and se.dim() == 1:
        se = torch.cat([se, se.new_full((x.shape[0] - m,), float("nan"))])
    return ManifoldTerms(half - log_prior, log_prior, half, distance, z, x_hat, se)


def manifold_loss(G, E, x: Tensor, *, beta: float, likelihood_weight: float = 1.0,
                  prior: object | None = None, method: str = "exact",
                  volume_points: int | None = None, **options
                  ) -> tuple[Tensor, ManifoldTerms]:
    """``mean_b [w · nll_b + β ‖x_b − x̂_b‖²]`` and the terms behind it.

    ``w = likelihood_weight`` (0: reconstruction only, as in a warm-up phase). With
    ``w = 0`` the log det is not computed (``half_logdet`` and ``nll`` are then NaN).

    With ``volume_points = m`` the log det term is averaged over the first ``m`` points
    of the batch only, the other terms over all ``B``:

        w · [−mean_{b≤B} log p_Z(z_b) + ½ mean_{b≤m} log det J_bᵀJ_b]
          + β · mean_{b≤B} ‖x_b − x̂_b‖²

    For a batch drawn at random this is an unbiased estimate of the full-batch loss and
    of its gradient, at ``m/B`` of the log det's cost (k products per point, exact): the
    log det is the expensive term, the reconstruction the one that needs many points.

    Args:
        beta: weight of the squared reconstruction distance (must be ≥ 0).
        likelihood_weight: weight of the implicit NLL (must be ≥ 0).
        prior, method, **options: as for :func:`manifold_terms`.
        volume_points: ``m`` above (``None``: every point).
    """
    if beta < 0 or likelihood_weight < 0:
        raise ValueError(f"beta and likelihood_weight must be >= 0, got {beta}, "
                         f"{likelihood_weight}")
    if likelihood_weight == 0:
        check_data(x)
        z = _encode(E, x)
        x_hat = _decode(G, z, x)
        distance = (x - x_hat).flatten(1).norm(dim=1)
        nan = torch.full_like(distance, float("nan"))
        terms = ManifoldTerms(nan, prior_log_prob(prior, z), nan, distance, z, x_hat,
                              torch.zeros((), dtype=distance.dtype))
        return beta * _squared_distance(x, x_hat).mean(), terms
    terms = manifold_terms(G, E, x, prior=prior, method=method, volume_points=volume_points,
                           **options)
    rec = _squared_distance(x, terms.x_hat).mean()
    m = _volume_count(x.shape[0], volume_points)
    nll = terms.half_logdet[:m].mean() - terms.log_prior.mean()  # = nll.mean() at m = B
    return likelihood_weight * nll + beta * rec, terms


def _volume_count(batch: int, volume_points: int | None) -> int:
    """The points whose log det enters: the first ``volume_points`` (default all)."""
    m = batch if volume_points is None else volume_points
    if not 1 <= m <= batch:
        raise ValueError(f"volume_points must be in [1, {batch}] (the batch), got {m}")
    return m


def _squared_distance(x: Tensor, x_hat: Tensor) -> Tensor:
    # Differentiated directly, not as ‖·‖²: the norm's gradient is undefined at 0.
    return (x - x_hat).flatten(1).pow(2).sum(1)
