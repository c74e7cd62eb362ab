"""The audit's exhaustive search is exact: the projected and the int8-screened searches return what a float64
brute force does."""

from __future__ import annotations

import numpy as np
import pytest

from app.engine.audit.nn import pixel_candidates
from tests.engine.metrics.realdata import siat_magnitude


def _brute(query, train, k):
    x = query.reshape(len(query), -1).astype(np.float64)
    y = train.reshape(len(train), -1).astype(np.float64)
    d2 = ((x[:, None, :] - y[None]) ** 2).sum(-1)
    l2 = np.sqrt(d2 / x.shape[1])
    xc, yc = x - x.mean(1, keepdims=True), y - y.mean(1, keepdims=True)
    ncc = 1 - (xc @ yc.T) / np.outer(np.linalg.norm(xc, axis=1), np.linalg.norm(yc, axis=1))
    return {"l2": l2, "ncc": ncc}


@pytest.mark.parametrize("precision", ["proj", "int8"])
@pytest.mark.parametrize("data", ["white noise", "real slices with near-duplicates"])
def test_the_screened_searches_find_exactly_the_float64_neighbours(data, precision, rng):
    import torch

    if precision == "int8" and not hasattr(torch, "_int_mm"):
        pytest.skip("this torch has no int8 matrix product")
    if data == "white noise":  # nearly equidistant images: the screen must tighten its bounds
        train = rng.uniform(-1, 1, (300, 1, 48, 48)).astype(np.float32)
        query = rng.uniform(-1, 1, (40, 1, 48, 48)).astype(np.float32)
    else:  # training slices each present five times under faint noise: neighbours within 1e-3 of each other
        images, series = siat_magnitude(64)
        base = images[series < 12]
        train = np.concatenate([base + rng.normal(0, 0.01, base.shape).astype(np.float32) for _ in range(5)])
        query = np.concatenate([images[series >= 12], base[:10] + rng.normal(0, 0.01, base[:10].shape).astype(np.float32)])
    k = 3
    stats = {}
    ours = pixel_candidates(query, train, k=k, precision=precision, stats=stats)
    ref = _brute(query, train, k)
    for m in ("l2", "ncc"):
        best = np.sort(ref[m], axis=1)[:, :k]
        # the k returned are the k nearest (a tie within 1e-7 may come in either order) at their true distance
        np.testing.assert_allclose(np.take_along_axis(ref[m], ours[f"{m}_idx"], 1), best, atol=1e-7, rtol=0, err_msg=m)
        np.testing.assert_allclose(ours[m], best, atol=1e-6, rtol=0, err_msg=m)
        order = np.argsort(ref[m], axis=1, kind="stable")[:, :k]
        assert (ours[f"{m}_idx"] == order).mean() > 0.99
    assert stats["survivors"] < stats["pairs"] / 4  # the screen did drop most pairs
    if precision == "proj" and data == "white noise":
        assert stats["full_dimension_chunks"] > 0  # no basis captures noise: re-screened in full dimension
