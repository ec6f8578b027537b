"""The demo's findings: verdicts follow the numbers, standard errors are right."""

from __future__ import annotations

import math

import pytest
import torch

from spectral_backprop.studies.findings import demo_findings, entropy_se


def test_entropy_se_matches_monte_carlo():
    shares = [0.3, 0.25, 0.2, 0.15, 0.1]
    n = 1000
    g = torch.Generator().manual_seed(0)
    draws = torch.multinomial(torch.tensor(shares), n * 2000, replacement=True,
                              generator=g).reshape(2000, n)
    counts = torch.stack([torch.bincount(d, minlength=5) for d in draws]).double() / n
    h = -(counts * counts.clamp_min(1e-300).log()).sum(1)
    assert entropy_se(shares, n) == pytest.approx(h.std().item(), rel=0.1)
    assert entropy_se([1.0], n) == 0.0


def _variant(label, *, gap_search=5.0, conf_t=0.7, conf_s=0.5, shares=None, fd=20.0,
             ratio=0.9, covered=10, kind="GAN", **extra):
    shares = shares or [0.1] * 10
    analysis = {"loglik_gap_search_typical": gap_search,
                "classifier_confidence_typical": conf_t, "classifier_confidence_search": conf_s,
                "details": {"search": {"se": 0.5}, "typical": {"se": 0.5},
                            "classifier_confidence_typical_se": 0.02,
                            "classifier_confidence_search_se": 0.02}}
    entry = {"label": label, "kind": kind, "fd": fd, "classifier_confidence_ratio": ratio,
             "class_coverage": {"class_shares": shares, "covered_share": 0.05,
                                "classes_covered": covered,
                                "class_entropy": -sum(p * math.log(p) for p in shares if p > 0)},
             **extra}
    return entry, analysis


def _results(**variants):
    entries = {n: v[0] for n, v in variants.items()}
    analyses = {n: v[1] for n, v in variants.items()}
    results = {"variants": entries, "primary_variant": "gan",
               "reference": {"fd_train_vs_heldout": 3.0, "fd_train_samples": 1000},
               "config": {"quality_samples": 1000, "ml_latent_dim": 16,
                          "analysis": {"residual_quantile": 0.9}}}
    return {f["key"]: f for f in demo_findings(results, analyses)}


def test_verdicts_follow_the_numbers():
    ml = _variant("ML", kind="maximum likelihood", fd=80.0, ratio=0.6, covered=8,
                  test_nll=40.0, test_nll_se=1.0, reconstruction_rms_median=0.2,
                  real_on_manifold_fraction=0.9)
    f = _results(ml=ml, gan=_variant("GAN", shares=[0.5] + [0.5 / 9] * 9),
                 entropy=_variant("GAN + entropy"))
    assert f["search"]["verdict"].startswith("GAN: seen")
    assert f["entropy"]["verdict"] == "with the term the classes are more even at this budget"
    assert "worse than the best GAN's" in f["ml"]["verdict"] and "0.1 of held-out" in \
        f["ml"]["verdict"]
    assert "GAN, GAN + entropy" in f["quality"]["verdict"] and "ML" not in f["quality"]["verdict"]
    assert "40.0 ± 1 nats" in " ".join(f["ml"]["measured"])
    assert f["directions"]["verdict"].startswith("not tested")

    # The classifier as confident on search outputs: the paper's aberrance is not shown;
    # more confident: not seen.
    f = _results(ml=ml, gan=_variant("GAN", conf_s=0.72), entropy=_variant("E"))
    assert f["search"]["verdict"].startswith("GAN: not shown: the likelihood rises")
    f = _results(ml=ml, gan=_variant("GAN", conf_s=0.9), entropy=_variant("E"))
    assert f["search"]["verdict"].startswith("GAN: not seen: the likelihood rises and the "
                                             "outputs are more digit-like")
    # A gap within two standard errors (se of the gap 0.71): no clear rise.
    f = _results(ml=ml, gan=_variant("GAN", gap_search=1.0), entropy=_variant("E"))
    assert "did not raise the likelihood clearly" in f["search"]["verdict"]
    # Every held-out digit off the manifold reads as 1 flagged, not 0.
    ml_off = _variant("ML", kind="maximum likelihood", fd=80.0, test_nll=40.0,
                      test_nll_se=1.0, reconstruction_rms_median=0.2,
                      real_on_manifold_fraction=0.0)
    f = _results(ml=ml_off, gan=_variant("GAN"), entropy=_variant("E"))
    assert "; 1 of held-out digits flagged" in f["ml"]["verdict"]
    # Class entropies within their standard error are "about as even".
    f = _results(ml=ml, gan=_variant("GAN", shares=[0.101] + [0.899 / 9] * 9),
                 entropy=_variant("E"))
    assert "about as even" in f["entropy"]["verdict"]
