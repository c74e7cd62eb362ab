"""Downstream utility: the small ResNet learns PneumoniaMNIST; McNemar and AUC intervals behave."""

from __future__ import annotations

import numpy as np
import pytest

from app.engine.metrics.utility import auc_with_ci, downstream_utility, mcnemar
from tests.engine.metrics.realdata import pneumoniamnist


def test_mcnemar_is_one_for_identical_classifiers_and_small_for_a_lopsided_disagreement():
    a = np.array([True] * 50 + [False] * 50)
    assert mcnemar(a, a)["p_value"] == 1.0
    b = a.copy()
    b[50:80] = True  # the second is right on 30 more images, never worse
    assert mcnemar(a, b)["p_value"] < 1e-6


def test_auc_interval_contains_the_auc_and_perfect_scores_give_one(rng):
    y = rng.integers(0, 2, 200)
    s = y + rng.normal(0, 0.8, 200)
    r = auc_with_ci(y, s, n_boot=200)
    assert r["ci95"][0] <= r["auc"] <= r["ci95"][1]
    assert auc_with_ci(y, y.astype(float), n_boot=50)["auc"] == 1.0


@pytest.mark.slow
def test_classifier_trained_on_real_pneumoniamnist_beats_chance_on_held_out_real():
    (tr, ytr), _, (te, yte) = pneumoniamnist()
    pick = np.random.default_rng(0).permutation(len(tr))[:600]
    # "synthetic" stand-in: mirrored real images (a set the test can build without a generator)
    res = downstream_utility(tr[pick], ytr[pick], tr[pick[:200], :, :, ::-1].copy(), ytr[pick[:200]], te, yte,
                             epochs=2, width=16)
    assert res["real_only"]["auc"]["auc"] > 0.8
    assert res["real_only"]["confusion_matrix"] and np.sum(res["real_only"]["confusion_matrix"]) == len(te)
    assert 0 <= res["mcnemar"]["p_value"] <= 1
