"""Studying a trained generator: the two findings of Ramesh & LeCun (2018, arXiv 1806.00499).

* :mod:`.search`: high-likelihood search (aberrant outputs of high implicit likelihood);
* :mod:`.likelihood`: the likelihood gap in nats and bits/dim, scoring real data;
* :mod:`.aberrance`: classifier confidence/entropy and nearest-training distance;
* :mod:`.baselines`: SeFa, GANSpace and random directions;
* :mod:`.purity`: factor purity of directions on the procedural sprites;
* :mod:`.factors`: eigen-directions against the baselines on one generator;
* :mod:`.modes`: mode coverage on the 2-D mixtures (VEEGAN / PacGAN protocol);
* :mod:`.coverage`: class coverage of generated samples under a classifier;
* :mod:`.pipeline`: :func:`analyze_generator`, the paper's findings in one call.

Latent directions, paths and inversion live in :mod:`spectral_backprop.geometry`;
pictures in :mod:`spectral_backprop.pictures`. This package measures a generator it is
given: it knows nothing of how it was trained (:mod:`spectral_backprop.train`).
"""

from .aberrance import classifier_scores, nearest_distance, small_classifier, train_classifier
from .baselines import ganspace_directions, random_directions, sefa_directions
from .coverage import class_coverage, class_shares, sample_quality
from .factors import METHODS, compare_directions
from .likelihood import bits_per_dim, log_likelihoods, score_data, summarize
from .modes import evaluate_generator, mode_coverage
from .pipeline import AnalysisConfig, analyze_generator
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
    "METHODS",
    # coverage of modes and classes
    "mode_coverage",
    "evaluate_generator",
    "class_coverage",
    "sample_quality",
    "class_shares",
    # all together
    "analyze_generator",
    "AnalysisConfig",
]
