"""Studying a trained generator: the two findings of Ramesh & LeCun (2018, arXiv 1806.00499).

* :mod:`.search`: high-likelihood search (aberrant outputs of high implicit likelihood);
* :mod:`.likelihood`: the likelihood gap in nats and bits/dim, scoring real data;
* :mod:`.aberrance`: classifier confidence/entropy and nearest-training distance;
* :mod:`.baselines`: SeFa, GANSpace and random directions;
* :mod:`.purity`: factor purity of directions on the procedural sprites;
* :mod:`.factors`: eigen-directions against the baselines over seeds;
* :mod:`.pipeline`: :func:`analyze_generator`, everything above in one call;
* :mod:`.plots`: image grids, spectra, search curves.

Latent directions, paths and inversion live in :mod:`spectral_backprop.geometry`.
"""

from .aberrance import classifier_scores, nearest_distance, small_classifier, train_classifier
from .baselines import ganspace_directions, random_directions, sefa_directions
from .factors import METHODS, compare_directions, run_factor_experiment
from .likelihood import bits_per_dim, log_likelihoods, score_data, summarize
from .loading import load_gan_generator
from .pipeline import AnalysisConfig, analyze_generator
from .plots import image_grid, plot_search, plot_spectra, save_image_grid
from .purity import (
    direction_purity,
    factor_changes,
    factor_spread,
    purity_from_changes,
    sprite_factors,
)
from .search import SearchResult, high_likelihood_search

__all__ = [
    # finding 1
    "high_likelihood_search",
    "SearchResult",
    "log_likelihoods",
    "score_data",
    "summarize",
    "bits_per_dim",
    "train_classifier",
    "small_classifier",
    "classifier_scores",
    "nearest_distance",
    # finding 2
    "sefa_directions",
    "ganspace_directions",
    "random_directions",
    "sprite_factors",
    "factor_spread",
    "direction_purity",
    "factor_changes",
    "purity_from_changes",
    "compare_directions",
    "run_factor_experiment",
    "METHODS",
    # all together, and pictures
    "analyze_generator",
    "load_gan_generator",
    "AnalysisConfig",
    "image_grid",
    "save_image_grid",
    "plot_spectra",
    "plot_search",
]
