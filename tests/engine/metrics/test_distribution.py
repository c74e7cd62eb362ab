"""FID, KID and precision/recall: known values, unbiasedness, and agreement with clean-fid."""

from __future__ import annotations

import ast
import importlib.util
import random
from pathlib import Path

import numpy as np
import pytest
from scipy import linalg

from app.engine.jobs import UserError
from app.engine.metrics.distribution import fid, frechet_distance, gaussian_stats, kid, precision_recall


def test_frechet_distance_of_a_set_with_itself_is_zero_and_grows_with_a_mean_shift(rng):
    f = rng.normal(size=(400, 16))
    assert abs(fid(f, f)) < 1e-6
    prev = 0.0
    for shift in (0.5, 1.0, 2.0):
        d = fid(f, f + shift)
        # a pure mean shift adds exactly ||shift||^2 = 16 shift^2
        assert d == pytest.approx(16 * shift**2, rel=1e-4)
        assert d > prev
        prev = d


def test_kid_of_two_draws_of_one_distribution_is_near_zero_within_its_spread(rng):
    a, b = rng.normal(size=(600, 32)), rng.normal(size=(600, 32))
    mean, std = kid(a, b, n_subsets=50, subset_size=200, seed=1)
    assert abs(mean) < 3 * std + 1e-4
    shifted, _ = kid(a, b + 0.5, n_subsets=50, subset_size=200, seed=1)
    assert shifted > mean + 10 * std


def test_precision_and_recall_of_a_set_against_itself_are_one(rng):
    f = rng.normal(size=(300, 8))
    assert precision_recall(f, f, k=3) == (1.0, 1.0)
    far = precision_recall(f, f + 50.0, k=3)
    assert far == (0.0, 0.0)


def test_bad_features_are_refused_with_a_message():
    with pytest.raises(UserError, match="at least"):
        fid(np.zeros((1, 4)), np.zeros((5, 4)))
    with pytest.raises(UserError, match="NaN"):
        fid(np.full((5, 4), np.nan), np.zeros((5, 4)))


def _cleanfid_functions():
    """clean-fid's own frechet_distance / kernel_distance, taken from its installed fid.py source
    and run unchanged: importing the module imports torchvision, which cannot load beside this
    project's torch build."""
    spec = importlib.util.find_spec("cleanfid")
    if spec is None:
        pytest.skip("clean-fid is not installed (scripts/setup.sh installs it: pip install --no-deps clean-fid)")
    src = (Path(spec.submodule_search_locations[0]) / "fid.py").read_text()
    tree = ast.parse(src)
    keep = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name in ("frechet_distance", "kernel_distance")]
    ns = {"np": np, "linalg": linalg, "random": random}
    exec(compile(ast.Module(body=keep, type_ignores=[]), "cleanfid/fid.py", "exec"), ns)
    return ns["frechet_distance"], ns["kernel_distance"]


def test_fid_and_kid_agree_with_clean_fid_on_the_same_features(rng):
    cf_fid, cf_kid = _cleanfid_functions()
    a = rng.normal(size=(500, 64))
    b = rng.normal(size=(450, 64)) * 1.2 + 0.1
    mu1, s1 = gaussian_stats(a)
    mu2, s2 = gaussian_stats(b)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(cf_fid(mu1, s1, mu2, s2), abs=1e-3)
    # one subset holding every feature: no subset sampling, so both compute the same statistic
    theirs = cf_kid(a[:450], b, num_subsets=1, max_subset_size=450)
    ours, _ = kid(a[:450], b, n_subsets=1, subset_size=450, seed=0)
    assert ours == pytest.approx(theirs, abs=1e-3)


def test_fid_on_a_singular_covariance_uses_the_offset_and_stays_finite(rng):
    a = rng.normal(size=(10, 32))  # fewer samples than dimensions: singular covariances
    b = rng.normal(size=(10, 32))
    cf_fid, _ = _cleanfid_functions()
    mu1, s1 = gaussian_stats(a)
    mu2, s2 = gaussian_stats(b)
    ours = frechet_distance(mu1, s1, mu2, s2)
    assert np.isfinite(ours)
    assert ours == pytest.approx(cf_fid(mu1, s1, mu2, s2), abs=1e-3)
