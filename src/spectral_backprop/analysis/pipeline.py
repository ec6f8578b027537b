r"""``analyze_generator``: the paper's findings, measured on any generator in one call.

Finding 1 (aberrant outputs): compare the implicit log-likelihood of typical samples,
of the outputs of a high-likelihood search started from them, and of real data scored
at their recovered latents; score how data-like the outputs are with a classifier
trained on the real data and the distance to the nearest training example.

Finding 2 (explanatory factors): save traversals along the top local eigenvectors of
``JᵀJ``, along the global ones, and along a curved eigen path; save spectra.

Artifacts in ``out_dir`` (simple formats, so reports can render them without torch):

=========================== =====================================================
``results.json``            all numbers (top-level means as floats, see below)
``arrays.npz``              log-likelihoods, spectra, search trajectory, distances
``search_trajectory.png``   images along the search, one row per chain
``search_loglik.png``       log-likelihood along the search vs reference levels
``typical.png``/``search_final.png``/``real.png`` sample grids
``spectra.png``             eigenvalues of ``JᵀJ`` at typical latents
``traverse_local_*.png``    rows = top local eigen-directions at one latent
``traverse_global.png``     rows = top global eigen-directions at one latent
``eigen_path.png``          curved paths following the leading eigenvector
=========================== =====================================================
"""

from __future__ import annotations

import copy
import math
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor

from ..geometry import (
    Inversion,
    eigen_path,
    encode_to_manifold,
    global_directions,
    infer_latent_dim,
    invert,
    principal_directions,
)
from ..geometry import traverse as traverse_line
from ..pictures import plot_search, plot_spectra, save_image_grid
from ..runfiles import ARRAYS, RESULTS, write_json
from ..spectral import SingularMetricWarning
from .aberrance import classifier_scores, nearest_distance, train_classifier
from .likelihood import log_likelihoods, summarize
from .search import OBJECTIVES, high_likelihood_search

__all__ = ["AnalysisConfig", "analyze_generator"]


@dataclass
class AnalysisConfig:
    """Budget of :func:`analyze_generator` (saved in ``results.json``).

    Attributes:
        n_typical: prior samples scored as "typical".
        n_search: search chains (started from the first typical latents).
        search_steps, search_lr, search_objective: the search (Adam).
        n_real: real data points inverted and scored.
        invert_steps, invert_restarts, invert_prior_weight: inversion.
        residual_tol: RMS residual per entry above which a real point counts as off the
            manifold. ``None`` (default): calibrated per generator, the
            ``residual_quantile`` quantile of the residuals of ``n_calibration``
            *calibration* points inverted the same way (training points, disjoint from
            the scored ones).
            A fixed constant means different things for different generators and data
            (0.1 flagged every MNIST digit under a DCGAN); the calibrated tolerance asks
            whether the scored points lie as close to the manifold as points the
            generator was fitted to.
        residual_quantile: the quantile of the calibration residuals used as tolerance.
        n_calibration: training points that calibrate the tolerance (a quantile of 32
            residuals moves by several percent from one draw to the next).
        n_directions: eigen-directions shown per traversal.
        traverse_steps, traverse_extent: traversal offsets in latent units.
        global_samples: prior samples in ``E_z[JᵀJ]``.
        classifier_epochs: epochs of the aberrance classifier (0: no classifier).
        n_train_reference: training examples searched for nearest neighbours.
        dtype: precision of the analysis (``"float64"`` by default: the search drives
            ``JᵀJ`` towards singularity, and in float32 its smallest eigenvalue is lost
            in round-off once the condition number passes ~10⁵, so the log det is
            reported as ``−∞``; a float64 copy of ``G`` is analysed).
        seed: seeds every random draw.
        progress: progress output.
    """

    n_typical: int = 256
    n_search: int = 16
    search_steps: int = 200
    search_lr: float = 0.05
    search_objective: str = "loglik"
    n_real: int = 64
    invert_steps: int = 300
    invert_restarts: int = 4
    invert_prior_weight: float = 0.0
    residual_tol: float | None = None
    residual_quantile: float = 0.9
    n_calibration: int = 128
    n_directions: int = 5
    traverse_steps: int = 7
    traverse_extent: float = 3.0
    global_samples: int = 256
    classifier_epochs: int = 3
    n_train_reference: int = 5000
    dtype: str = "float64"
    seed: int = 0
    progress: bool = True

    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {
        "search_objective": OBJECTIVES, "dtype": ("float32", "float64")}

    def __post_init__(self) -> None:
        for name in ("n_typical", "n_search", "search_steps", "n_real", "n_calibration",
                     "invert_steps",
                     "invert_restarts", "n_directions", "traverse_steps", "global_samples",
                     "n_train_reference"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name in ("search_lr", "traverse_extent"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")
        if self.residual_tol is not None and not self.residual_tol > 0:
            raise ValueError(f"residual_tol must be positive (or None: calibrated), "
                             f"got {self.residual_tol!r}")
        if not 0 < self.residual_quantile <= 1:
            raise ValueError(f"residual_quantile must be in (0, 1], "
                             f"got {self.residual_quantile!r}")
        if self.invert_prior_weight < 0 or self.classifier_epochs < 0:
            raise ValueError("invert_prior_weight and classifier_epochs must be >= 0")
        for name, allowed in self.CHOICES.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, "
                                 f"got {getattr(self, name)!r}")
        if self.n_search > self.n_typical:
            raise ValueError("n_search must not exceed n_typical "
                             "(chains start at typical latents)")


def _mean(x: Tensor) -> float:
    x = x.detach().double()
    x = x[torch.isfinite(x)]
    return x.mean().item() if x.numel() else float("nan")


def _search(G, z0: Tensor, cfg: AnalysisConfig):
    """The high-likelihood search, with singular-metric warnings counted, not repeated."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SingularMetricWarning)
        search = high_likelihood_search(
            G, z0, steps=cfg.search_steps, lr=cfg.search_lr, objective=cfg.search_objective,
            record_every=max(1, cfg.search_steps // 50), progress=cfg.progress,
        )
    singular_steps = sum(issubclass(w.category, SingularMetricWarning) for w in caught)
    for w in caught:
        if not issubclass(w.category, SingularMetricWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return search, singular_steps


def _real_points(real: Tensor, heldout: Tensor | None, cfg: AnalysisConfig,
                 g: torch.Generator) -> tuple[Tensor, Tensor | None]:
    """``(scored, calibration)``: the real points scored (from ``heldout`` when given) and
    the training points that calibrate the tolerance (``None`` with a fixed one); the two
    never share a point."""
    perm = torch.randperm(real.shape[0], generator=g)
    if heldout is not None:
        scored = heldout[torch.randperm(heldout.shape[0], generator=g)[: cfg.n_real]]
        calib = perm[: cfg.n_calibration]
    else:
        scored = real[perm[: cfg.n_real]]
        calib = perm[cfg.n_real: cfg.n_real + cfg.n_calibration]
    if cfg.residual_tol is not None:
        return scored, None
    if calib.numel() == 0:
        raise ValueError("a calibrated tolerance needs training points besides the scored "
                         f"ones: got {real.shape[0]} real points for n_real = {cfg.n_real}; "
                         "pass heldout points or set residual_tol")
    return scored, real[calib]


def _project(G, x: Tensor, k: int, cfg: AnalysisConfig, g: torch.Generator, encoder,
             tol: float) -> Inversion:
    """The closest points of ``G``'s manifold found for ``x``: by the encoder when there
    is one (the model's own projection), else by inversion."""
    if encoder is not None:
        return encode_to_manifold(G, encoder, x, tol)
    return invert(G, x, latent_dim=k, restarts=cfg.invert_restarts, steps=cfg.invert_steps,
                  prior_weight=cfg.invert_prior_weight, residual_tol=tol, generator=g,
                  progress=cfg.progress)


def _tolerance(G, calib: Tensor | None, k: int, cfg: AnalysisConfig, g: torch.Generator,
               encoder, say) -> tuple[float, dict]:
    """The residual tolerance and how it was set (details for ``results.json``)."""
    if calib is None:
        return cfg.residual_tol, {"residual_tol": cfg.residual_tol, "residual_tol_source": "fixed"}
    say(f"calibrating the on-manifold tolerance on {calib.shape[0]} training points")
    res = _project(G, calib, k, cfg, g, encoder, 1.0).residual.double()
    res = res[torch.isfinite(res)]
    # A generator that reproduces its calibration points exactly still gets a tolerance
    # above round-off (the inversion's own check needs a positive one).
    tol = max(res.quantile(cfg.residual_quantile).item(), 1e-6) if res.numel() else 1e-6
    return tol, {"residual_tol": tol, "residual_tol_source":
                 f"calibrated: the {cfg.residual_quantile:g} quantile of the residuals of "
                 f"{calib.shape[0]} training points",
                 "calibration_residual_median": res.median().item() if res.numel() else None}


def _finding1(G, real: Tensor, heldout: Tensor | None, encoder, k: int, n: int,
              cfg: AnalysisConfig, g: torch.Generator, say) -> tuple[dict, dict, dict]:
    """Likelihoods of typical samples, search outputs and real data: (results, details, state)."""
    x_real, calib = _real_points(real, heldout, cfg, g)
    z_typ = torch.randn(cfg.n_typical, k, generator=g, dtype=real.dtype)
    say(f"scoring {cfg.n_typical} typical samples")
    ll_typ = log_likelihoods(G, z_typ)
    with torch.no_grad():
        x_typ = G(z_typ)
    search, singular_steps = _search(G, z_typ[: cfg.n_search], cfg)
    ll_search = search.log_likelihood[-1]
    tol, tol_details = _tolerance(G, calib, k, cfg, g, encoder, say)
    inv = _project(G, x_real, k, cfg, g, encoder, tol)
    ll_real = log_likelihoods(G, inv.latents)
    on_manifold = ll_real[~inv.flagged]
    results = {
        "loglik_typical": _mean(ll_typ),
        "loglik_search": _mean(ll_search),
        "loglik_real": _mean(ll_real),
        "loglik_real_on_manifold": _mean(on_manifold),
        "loglik_gap_search_typical": _mean(ll_search) - _mean(ll_typ),
        "real_on_manifold_fraction": 1.0 - inv.flagged.double().mean().item(),
    }
    details = {
        "typical": summarize(ll_typ, n),
        "search": summarize(ll_search, n),
        "search_start": summarize(search.log_likelihood[0], n),
        "real": summarize(ll_real, n),
        "real_on_manifold": summarize(on_manifold, n),
        "real_flagged_fraction": inv.flagged.double().mean().item(),
        "real_residual_rms_mean": _mean(inv.residual),
        "real_residual_median": inv.residual.double().nanmedian().item(),
        "real_heldout": heldout is not None,
        "real_projection": "encoder" if encoder is not None else "inversion",
        **tol_details,
        "search_nonfinite": int((~torch.isfinite(ll_search)).sum()),
        "search_singular_warnings": singular_steps,
        "search_latent_norm_start": _mean(search.latents[0].norm(dim=-1)),
        "search_latent_norm_final": _mean(search.latents[-1].norm(dim=-1)),
        "n_output_entries": n,
        "latent_dim": k,
    }
    state = {"z_typ": z_typ, "x_typ": x_typ, "ll_typ": ll_typ, "search": search,
             "x_real": x_real, "ll_real": ll_real, "inv": inv}
    return results, details, state


def _aberrance(real: Tensor, labels: Tensor | None, clf: torch.nn.Module | None, st: dict,
               n: int, cfg: AnalysisConfig, g: torch.Generator, results: dict, details: dict,
               say) -> dict[str, np.ndarray]:
    """Classifier scores and nearest-training distances; per-point arrays to save."""
    sets = {"typical": st["x_typ"], "search": st["search"].final_outputs, "real": st["x_real"]}
    per_point: dict[str, np.ndarray] = {}
    if clf is None and labels is not None and cfg.classifier_epochs > 0:
        say("training the aberrance classifier")
        clf, acc = train_classifier(real, labels, epochs=cfg.classifier_epochs, seed=cfg.seed,
                                    progress=cfg.progress)
        details["classifier_heldout_accuracy"] = acc
    if clf is not None:
        for name, x in sets.items():
            s = classifier_scores(clf, x)
            for score in ("confidence", "entropy"):
                key = f"classifier_{score}_{name}"
                results[key] = _mean(s[score])
                details[f"{key}_se"] = summarize(s[score], n)["se"]
                per_point[key] = s[score].double().numpy()
    ref = real[torch.randperm(real.shape[0], generator=g)[: cfg.n_train_reference]]
    for name in ("typical", "search"):
        d = nearest_distance(sets[name], ref)
        results[f"nearest_distance_{name}"] = _mean(d)
        per_point[f"nearest_distance_{name}"] = d.numpy()
    return per_point


def _traversal_rows(G, z: Tensor, directions: Tensor, cfg: AnalysisConfig) -> Tensor:
    """``[r, steps, ...]``: one straight traversal per column of ``directions[k, r]``."""
    return torch.stack([traverse_line(G, z, directions[:, j], cfg.traverse_steps,
                                      extent=cfg.traverse_extent)[0]
                        for j in range(directions.shape[1])])


def _finding2(G, k: int, n: int, st: dict, cfg: AnalysisConfig, g: torch.Generator,
              out: Path) -> tuple[list[str], dict[str, np.ndarray]]:
    """Spectra, local and global traversals and eigen paths: figure names and arrays."""
    z_typ = st["z_typ"]
    lam_typ, V = principal_directions(G, z_typ[:32])
    r = min(cfg.n_directions, k)
    figures = [plot_spectra(lam_typ, out / "spectra.png").name]
    for i in range(min(2, cfg.n_typical)):
        figures.append(save_image_grid(
            _traversal_rows(G, z_typ[i:i + 1], V[i, :, :r], cfg), out / f"traverse_local_{i}.png",
            row_labels=[f"v{j + 1}" for j in range(r)],
            title=f"top local eigen-directions, offsets ±{cfg.traverse_extent}").name)
    lam_glob, V_glob = global_directions(G, r, cfg.global_samples, latent_dim=k, generator=g)
    figures.append(save_image_grid(
        _traversal_rows(G, z_typ[:1], V_glob, cfg), out / "traverse_global.png",
        row_labels=[f"g{j + 1}" for j in range(r)], title="top global eigen-directions").name)
    path = eigen_path(G, z_typ[:4], steps=cfg.traverse_steps - 1, output_step=True,
                      step_size=0.5 * math.sqrt(n) / max(cfg.traverse_steps - 1, 1))
    figures.append(save_image_grid(path.outputs.transpose(0, 1), out / "eigen_path.png",
                                   title="paths following the leading eigenvector").name)
    return figures, {"spectra": lam_typ.double().numpy(),
                     "global_spectrum": lam_glob.double().numpy()}


def _finding1_figures(st: dict, results: dict, out: Path) -> list[str]:
    """The search trajectory and curve, and grids of typical, searched and real outputs."""
    search = st["search"]
    rec = search.outputs
    pick = torch.linspace(0, rec.shape[0] - 1, min(8, rec.shape[0])).round().long()
    figures = [
        save_image_grid(rec[pick].transpose(0, 1)[:8], out / "search_trajectory.png",
                        title="high-likelihood search (left: start)").name,
        plot_search(search.steps, search.log_likelihood, out / "search_loglik.png",
                    reference={"typical (mean)": results["loglik_typical"],
                               "real, inverted (mean)": results["loglik_real"]}).name,
    ]
    for name, x in (("typical", st["x_typ"][:16]), ("search_final", search.final_outputs[:16]),
                    ("real", st["x_real"][:16])):
        figures.append(save_image_grid(x[None], out / f"{name}.png", title=name).name)
    return figures


def _finding1_arrays(st: dict) -> dict[str, np.ndarray]:
    search, inv = st["search"], st["inv"]
    return {
        "loglik_typical": st["ll_typ"].double().numpy(),
        "loglik_search": search.log_likelihood[-1].double().numpy(),
        "loglik_real": st["ll_real"].double().numpy(),
        "real_residual": inv.residual.double().numpy(), "real_flagged": inv.flagged.numpy(),
        "search_steps": search.steps.numpy(),
        "search_loglik": search.log_likelihood.double().numpy(),
        "search_logdet": search.logdet.double().numpy(),
    }


def analyze_generator(
    G: torch.nn.Module,
    real: Tensor,
    out_dir: str | Path,
    *,
    labels: Tensor | None = None,
    heldout: Tensor | None = None,
    classifier: torch.nn.Module | None = None,
    encoder: torch.nn.Module | None = None,
    config: AnalysisConfig | None = None,
    latent_dim: int | None = None,
) -> dict:
    r"""Measure both findings on ``G`` and write figures, ``results.json`` and ``arrays.npz``.

    Top-level keys of the returned dict (and ``results.json``), means in nats:
    ``loglik_typical``, ``loglik_search``, ``loglik_real`` (all inverted points),
    ``loglik_real_on_manifold`` (unflagged points only), ``loglik_gap_search_typical``,
    ``real_on_manifold_fraction`` (the scored real points within the residual tolerance,
    calibrated on training points unless ``config.residual_tol`` fixes it),
    and when ``labels`` are given ``classifier_confidence_{typical,search,real}`` and
    ``classifier_entropy_{typical,search,real}``; ``nearest_distance_{typical,search}``
    (RMS per entry). Details (standard errors, bits/dim, flags, classifier accuracy)
    sit under ``details``.

    Args:
        G: generator ``z[B, k] -> x[B, ...]`` (put in eval mode here).
        real: real data ``[N, ...]`` in ``G``'s output range.
        out_dir: folder for the artifacts (created).
        labels: optional class labels ``[N]`` of ``real`` for the aberrance classifier.
        heldout: optional real points ``[M, ...]`` not used to fit ``G``; the real points
            scored are drawn from them (else from ``real``, disjoint from the calibration
            points).
        classifier: a trained classifier of ``real``'s classes to score samples with
            (instead of training one on ``real`` and ``labels``).
        encoder: optional ``E: x -> z`` of ``G`` (a maximum-likelihood pair): real points
            are then projected by it, ``G(E(x))`` (the projection the pair's loss and
            test NLL use), instead of by inversion.
        config: budget (:class:`AnalysisConfig`).
        latent_dim: k (default ``G.latent_dim``).
    """
    cfg = config or AnalysisConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    k = infer_latent_dim(G, latent_dim)
    dtype = getattr(torch, cfg.dtype)
    G = copy.deepcopy(G).to(dtype).eval()  # the caller's module is left as it was
    real = real.to(dtype)
    if heldout is not None:
        if heldout.shape[1:] != real.shape[1:]:
            raise ValueError(f"heldout points have shape {tuple(heldout.shape[1:])}, real "
                             f"points {tuple(real.shape[1:])}")
        heldout = heldout.to(dtype)
    n = math.prod(real.shape[1:])
    g = torch.Generator().manual_seed(cfg.seed)
    say = print if cfg.progress else (lambda *a, **kw: None)

    if encoder is not None:
        encoder = copy.deepcopy(encoder).to(dtype).eval()
    results, details, state = _finding1(G, real, heldout, encoder, k, n, cfg, g, say)
    per_point = _aberrance(real, labels, classifier, state, n, cfg, g, results, details, say)
    say("eigen-directions and traversals")
    figures, spectra = _finding2(G, k, n, state, cfg, g, out)
    figures += _finding1_figures(state, results, out)
    np.savez_compressed(out / ARRAYS, **_finding1_arrays(state), **spectra, **per_point)
    results.update(details=details, figures=figures, config=asdict(cfg))
    write_json(out / RESULTS, results)
    return results
