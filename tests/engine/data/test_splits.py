"""Grouped splits: no group on two sides, same seed same split, fractions and classes respected."""

from __future__ import annotations

import numpy as np
import pytest

from app.engine.data.splits import grouped_split, split_counts


def _groups_and_labels(rng, n_groups=60):
    sizes = rng.integers(1, 12, n_groups)
    groups = np.repeat([f"patient-{i}" for i in range(n_groups)], sizes)
    labels = np.repeat(rng.integers(0, 3, n_groups), sizes)
    return groups, labels


def test_no_group_is_in_two_splits(rng):
    groups, labels = _groups_and_labels(rng)
    split = grouped_split(groups, labels, 0.15, 0.15, seed=1)
    for g in np.unique(groups):
        assert len(set(split[groups == g].tolist())) == 1


def test_same_seed_same_split_and_another_seed_another(rng):
    groups, labels = _groups_and_labels(rng)
    a = grouped_split(groups, labels, 0.1, 0.2, seed=7)
    b = grouped_split(list(groups), labels.tolist(), 0.1, 0.2, seed=7)
    c = grouped_split(groups, labels, 0.1, 0.2, seed=8)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_fractions_are_close_to_the_request_in_images_and_per_class(rng):
    groups, labels = _groups_and_labels(rng, 200)
    split = grouped_split(groups, labels, 0.1, 0.2, seed=0)
    counts = split_counts(split)
    n = len(groups)
    assert abs(counts["test"] / n - 0.2) < 0.03 and abs(counts["val"] / n - 0.1) < 0.03
    for c in np.unique(labels):
        in_class = split[labels == c]
        assert abs((in_class == 2).mean() - 0.2) < 0.06  # stratified: each class split alike


def test_tiny_sets_still_get_val_and_test_when_there_are_three_groups():
    split = grouped_split(["a", "b", "c"], None, 0.1, 0.1, seed=0)
    assert sorted(split.tolist()) == [0, 1, 2]
    assert grouped_split(["a", "a"], None, 0.1, 0.1).tolist() == [0, 0]


def test_impossible_fractions_are_refused():
    with pytest.raises(ValueError, match="sum below 1"):
        grouped_split(["a"], None, 0.6, 0.5)
