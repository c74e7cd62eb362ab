"""The fastMRI-style image metrics equal scikit-image's on the same arrays."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from app.engine.metrics.image import aggregate, center_crop, image_metrics, nmse, psnr, slice_metrics, ssim


def test_psnr_and_ssim_equal_scikit_image_with_the_reference_max_as_data_range(siat_slice, rng):
    gt = np.abs(siat_slice)
    pred = gt + 0.05 * rng.standard_normal(gt.shape)
    dr = gt.max()
    assert np.isclose(psnr(gt, pred), peak_signal_noise_ratio(gt, pred, data_range=dr), rtol=1e-10)
    assert np.isclose(ssim(gt, pred), structural_similarity(gt, pred, data_range=dr), rtol=1e-10)
    assert np.isclose(nmse(gt, pred), np.sum((gt - pred) ** 2) / np.sum(gt**2))


def test_volume_metrics_use_the_volume_max_and_aggregate_per_slice(rng):
    gt = np.abs(rng.standard_normal((3, 40, 40))) * np.array([1.0, 2.0, 4.0])[:, None, None]
    pred = gt + 0.1 * rng.standard_normal(gt.shape)
    rows = slice_metrics(gt, pred)
    expected = [structural_similarity(g, p, data_range=gt.max()) for g, p in zip(gt, pred)]
    assert np.allclose([r["ssim"] for r in rows], expected)
    agg = aggregate(rows)
    assert np.isclose(agg["ssim"]["mean"], np.mean(expected)) and np.isclose(agg["ssim"]["std"], np.std(expected))
    assert agg["psnr"]["n"] == 3
    # one slice scored alone, with the volume's data range, equals its row of the volume
    one = slice_metrics(gt[0], pred[0], data_range=float(gt.max()))[0]
    assert one == pytest.approx(rows[0], rel=1e-12)
    assert slice_metrics(gt[0], pred[0])[0]["psnr"] < rows[0]["psnr"]  # its own max (1/4 of it) is no volume range


def test_centre_crop_restricts_the_metrics_to_the_middle(rng):
    gt = np.ones((64, 64))
    pred = gt.copy()
    pred[:8] = 0.0  # error only on the border rows
    assert image_metrics(gt, pred, crop=(40, 40))["nmse"] == 0.0
    assert image_metrics(gt, pred)["nmse"] > 0.0
    assert center_crop(np.zeros((5, 64, 64)), (40, 32)).shape == (5, 40, 32)


def test_complex_inputs_are_scored_on_their_magnitude(siat_slice):
    assert psnr(siat_slice, np.abs(siat_slice)) == float("inf")
