"""Classical reconstructions on a real SIAT slice: zero-filled, data consistency, CS-TV."""

from __future__ import annotations

import numpy as np
import pytest

from app.engine.metrics.image import psnr, ssim
from app.engine.recon.mri.fft import fft2c
from app.engine.recon.mri.masks import make_mask
from app.engine.recon.mri.methods import hard_data_consistency, reconstruct
from app.engine.recon.mri.operators import MaskedFFT


def test_zero_filled_of_a_fully_sampled_mask_returns_the_image_exactly(siat_slice):
    A = MaskedFFT(np.ones(siat_slice.shape, np.float32))
    rec = reconstruct("zero-filled", A, A.forward(siat_slice))
    assert np.allclose(rec.image, siat_slice, atol=1e-5)


def test_zero_filled_keeps_the_measurements_at_sampled_locations(siat_slice):
    mask, _ = make_mask("random", siat_slice.shape, 4, 0.08, seed=0)
    A = MaskedFFT(mask)
    y = A.forward(siat_slice)
    rec = reconstruct("zero-filled", A, y).image
    assert np.allclose(mask * fft2c(rec), y, atol=1e-5)


def test_hard_data_consistency_puts_the_measurements_back(siat_slice, rng):
    mask, _ = make_mask("poisson2d", siat_slice.shape, 4, 0.08, seed=0)
    A = MaskedFFT(mask)
    y = A.forward(siat_slice)
    guess = rng.standard_normal(siat_slice.shape).astype(np.complex64)
    x = hard_data_consistency(A, guess, y)
    assert np.allclose(mask * fft2c(x), y, atol=1e-5)
    assert np.allclose((1 - mask) * fft2c(x), (1 - mask) * fft2c(guess), atol=1e-5)


def test_cs_tv_beats_zero_filled_on_a_real_slice_at_r4_with_a_poisson_disc_mask(siat_slice):
    mask, achieved = make_mask("poisson2d", siat_slice.shape, 4, 0.08, seed=0)
    A = MaskedFFT(mask)
    y = A.forward(siat_slice)
    gt = np.abs(siat_slice)
    zf = np.abs(reconstruct("zero-filled", A, y).image)
    tv = np.abs(reconstruct("cs-tv", A, y, lam=0.005, iterations=100).image)
    assert psnr(gt, tv) > psnr(gt, zf) + 1.0
    assert ssim(gt, tv) > ssim(gt, zf) + 0.03


def test_cs_tv_streams_intermediate_images(siat_slice):
    mask, _ = make_mask("random", siat_slice.shape, 4, 0.08, seed=0)
    A = MaskedFFT(mask)
    seen = []
    reconstruct("cs-tv", A, A.forward(siat_slice), iterations=20, callback=lambda s, t, im: seen.append((s, t, im.shape)))
    assert [s for s, _, _ in seen] == [10, 20] and seen[-1][2] == siat_slice.shape


def test_an_auto_warm_start_follows_the_mask_and_r_and_keeps_steps_that_were_given():
    from app.engine.recon.mri.warm import resolve_warm_start, warm_default

    assert resolve_warm_start("auto", 100, False, "poisson2d", 4.0) == warm_default("poisson2d", 4.0) == (0.1, 5)
    assert resolve_warm_start("auto", 100, False, "random", 4.0) == (0.3, 15)
    assert resolve_warm_start("auto", 100, False, "radial", 8.0) == (0.5, 20)
    # a pattern measured with the data (kind unknown) gets the safer, higher start of the 1D masks
    assert resolve_warm_start("auto", 100, False, "measured", 4.0) == (0.3, 15)
    assert resolve_warm_start("auto", 7, True, "poisson2d", 4.0) == (0.1, 7)  # steps given: kept
    assert resolve_warm_start(0.2, 12, True, "poisson2d", 8.0) == (0.2, 12)  # a number is used as it is
    assert resolve_warm_start(None, 30, False, "random", 8.0) == (None, 30)  # from noise: the steps asked
    with pytest.raises(ValueError, match="auto"):
        resolve_warm_start("high", 30, False, "random", 4.0)
