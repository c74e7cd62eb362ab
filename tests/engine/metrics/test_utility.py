"""Downstream utility: the small ResNet learns PneumoniaMNIST; McNemar and AUC intervals behave."""

from __future__ import annotations

import numpy as np
import pytest

from app.engine.evaluation.utility import auc_with_ci, downstream_utility, mcnemar
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


# --- cross-checks against independent scipy / scikit-learn computations -----------------------------


def test_auc_matches_the_mann_whitney_u_statistic(rng):
    from scipy.stats import mannwhitneyu

    y = rng.integers(0, 2, 300)
    s = y * 0.7 + rng.normal(0, 1, 300)
    s[:20] = np.round(s[:20], 1)  # some ties
    u = mannwhitneyu(s[y == 1], s[y == 0]).statistic
    assert auc_with_ci(y, s, n_boot=50)["auc"] == pytest.approx(u / ((y == 1).sum() * (y == 0).sum()), abs=1e-12)


def test_macro_auc_of_three_classes_is_the_mean_of_one_vs_rest_mann_whitney(rng):
    from scipy.stats import mannwhitneyu

    y = rng.integers(0, 3, 240)
    logits = rng.normal(0, 1, (240, 3)) + 1.5 * np.eye(3)[y]
    prob = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    ref = np.mean([mannwhitneyu(prob[y == c, c], prob[y != c, c]).statistic / ((y == c).sum() * (y != c).sum())
                   for c in range(3)])
    r = auc_with_ci(y, prob, n_boot=50)
    assert r["auc"] == pytest.approx(ref, abs=1e-12)
    assert r["ci95"][0] < r["auc"] < r["ci95"][1]


@pytest.mark.parametrize("b, c", [(3, 11), (0, 7), (25, 40), (9, 9)])
def test_mcnemar_matches_the_exact_binomial_formula_and_the_chi_square_for_many_discordant_pairs(b, c):
    from scipy.stats import binom, chi2

    a = np.array([True] * b + [False] * c + [True] * 30 + [False] * 5)
    bb = np.array([False] * b + [True] * c + [True] * 30 + [False] * 5)
    r = mcnemar(a, bb)
    assert (r["only_first_correct"], r["only_second_correct"]) == (b, c)
    assert r["p_value"] == pytest.approx(min(1.0, 2 * binom.cdf(min(b, c), b + c, 0.5)), rel=1e-9)
    if b + c >= 60:  # the chi-square approximation with continuity correction agrees for large counts
        assert r["p_value"] == pytest.approx(chi2.sf((abs(b - c) - 1) ** 2 / (b + c), 1), abs=0.01)


def test_auc_difference_of_a_classifier_with_itself_is_zero_and_a_better_one_is_positive(rng):
    from app.engine.evaluation.utility import auc_difference

    y = rng.integers(0, 2, 200)
    weak, strong = y * 0.3 + rng.normal(0, 1, 200), y * 2.0 + rng.normal(0, 1, 200)
    same = auc_difference(y, weak, weak, n_boot=100)
    assert same["difference"] == 0 and same["ci95"] == [0.0, 0.0]
    better = auc_difference(y, weak, strong, n_boot=200)
    assert better["difference"] > 0 and better["ci95"][0] > 0  # clearly better: the interval excludes 0


def test_subgroups_report_each_group_and_list_small_ones_by_size_only(rng):
    from sklearn.metrics import roc_auc_score

    from app.engine.evaluation.utility import subgroup_reports

    y = rng.integers(0, 2, 120)
    p1 = np.clip(y * 0.4 + rng.uniform(0, 0.6, 120), 0, 1)
    prob = np.stack([1 - p1, p1], 1)
    site = np.array(["A"] * 60 + ["B"] * 55 + ["C"] * 5)
    r = subgroup_reports(y, {"m": prob}, {"site": site}, n_boot=50)["site"]
    assert r["A"]["n"] == 60 and r["C"] == {"n": 5}
    assert r["B"]["m"]["auc"]["auc"] == pytest.approx(roc_auc_score(y[60:115], p1[60:115]))
    assert r["A"]["m"]["accuracy"] == pytest.approx(np.mean(prob[:60].argmax(1) == y[:60]))


def test_utility_refuses_sets_without_labels_naming_the_set(rng):
    from app.engine.jobs import UserError

    x = rng.normal(0, 0.3, (10, 1, 8, 8)).astype(np.float32)
    y = np.array([0, 1] * 5)
    with pytest.raises(UserError, match="generated .*carry none"):
        downstream_utility(x, y, x, None, x, y, epochs=1)
    with pytest.raises(UserError, match="held-out real test images: class 2"):
        downstream_utility(x, y, x, y, x, y + 1, epochs=1)
