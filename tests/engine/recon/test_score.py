"""Score-based posterior sampling with a tiny untrained network: finite mean and std, DC satisfied."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from app.engine.diffusion.base import make_process
from app.engine.nets.unet import NetConfig, UNet
from app.engine.recon.mri.fft import fft2c
from app.engine.recon.mri.masks import make_mask
from app.engine.recon.mri.methods import reconstruct
from app.engine.recon.mri.operators import MaskedFFT
from app.engine.recon.mri.score import ScorePrior, complex_training_images


def _tiny_prior(process: str) -> ScorePrior:
    torch.manual_seed(0)  # the test's own weights; sampling itself uses an explicit generator
    net = UNet(NetConfig(image_size=32, in_channels=2, base_channels=8, channel_mults=(1, 2), num_res_blocks=1,
                         attention_resolutions=()))
    proc = make_process(process, **({"sigma_max": 5.0, "num_levels": 10} if process == "ncsn" else {}))
    return ScorePrior(net.eval(), proc)


@pytest.fixture(scope="module")
def small_slice(siat_slice):
    # a 32x32 patch of the real slice's k-space centre: the low-resolution image keeps its phase
    k = fft2c(siat_slice)[112:144, 112:144]
    from app.engine.recon.mri.fft import ifft2c

    return ifft2c(k).astype(np.complex64)


@pytest.mark.parametrize("method, process", [("score-ald", "ncsn"), ("score-pc", "ncsn"), ("score-pc", "vpsde"),
                                             ("score-dds", "vpsde"), ("score-dds", "ncsn")])
def test_score_sampling_gives_finite_mean_and_std_and_keeps_the_measurements(method, process, small_slice):
    mask, _ = make_mask("random", small_slice.shape, 2, 0.2, seed=0)
    A = MaskedFFT(mask)
    y = A.forward(small_slice)
    seen = []
    rec = reconstruct(method, A, y, model=_tiny_prior(process), samples=2, steps=4, seed=0,
                      callback=lambda s, t, im: seen.append(s))
    assert rec.image.shape == small_slice.shape and np.all(np.isfinite(rec.image))
    assert rec.std.shape == small_slice.shape and np.all(np.isfinite(rec.std)) and rec.std.max() > 0
    assert rec.samples.shape == (2, *small_slice.shape)
    for s in rec.samples:  # every sample reproduces the measured k-space exactly
        assert np.allclose(mask * fft2c(s), y, atol=1e-4 * np.abs(y).max())
    assert seen == [1, 2, 3, 4]


def test_score_sampling_is_deterministic_for_a_seed(small_slice):
    mask, _ = make_mask("random", small_slice.shape, 2, 0.2, seed=0)
    A = MaskedFFT(mask)
    y = A.forward(small_slice)
    prior = _tiny_prior("ncsn")
    a = reconstruct("score-ald", A, y, model=prior, samples=2, steps=3, seed=5).image
    b = reconstruct("score-ald", A, y, model=prior, samples=2, steps=3, seed=5).image
    c = reconstruct("score-ald", A, y, model=prior, samples=2, steps=3, seed=6).image
    assert np.array_equal(a, b) and not np.allclose(a, c)


def test_noisy_measurements_use_a_weighted_step_and_stay_finite(small_slice):
    mask, _ = make_mask("random", small_slice.shape, 2, 0.2, seed=0)
    A = MaskedFFT(mask)
    y = A.forward(small_slice) + 0.01 * mask
    rec = reconstruct("score-pc", A, y, model=_tiny_prior("ncsn"), samples=2, steps=3, noise_sigma=0.01, seed=0)
    assert np.all(np.isfinite(rec.image)) and np.all(np.isfinite(rec.std))


def test_complex_training_images_hold_real_and_imaginary_channels_at_unit_scale(siat_slice):
    x = complex_training_images(siat_slice[None])
    assert x.shape == (1, 2, 256, 256) and x.dtype == np.float32
    mag = np.hypot(x[0, 0], x[0, 1])
    assert np.isclose(np.percentile(mag, 99), 1.0, rtol=1e-3)


def test_a_unet_that_halves_twice_runs_on_any_matrix_size():
    from app.engine.recon.mri.score import PaddedNet

    torch.manual_seed(0)
    net = UNet(NetConfig(image_size=32, in_channels=2, base_channels=8, channel_mults=(1, 2, 2), num_res_blocks=1,
                         attention_resolutions=())).eval()
    padded = PaddedNet(net, 4)
    level = torch.tensor([0.3])
    x = torch.randn(1, 2, 30, 35)  # the scanner's matrix: not a multiple of 4
    with pytest.raises(RuntimeError):
        net(x, level)
    with torch.no_grad():
        out = padded(x, level)
        assert out.shape == x.shape
        # the centred reflect padding (1 + 1 rows, 0 + 1 column), then the crop back
        full = net(torch.nn.functional.pad(x, (0, 1, 1, 1), mode="reflect"), level)
        assert torch.equal(out, full[..., 1:31, 0:35])
        x32 = torch.randn(1, 2, 32, 32)
        assert torch.equal(padded(x32, level), net(x32, level))  # sizes it can halve are left alone


def test_sense_samples_are_zero_outside_the_coil_maps_support(small_slice):
    from app.engine.recon.mri.coils import simulated_coil_maps
    from app.engine.recon.mri.operators import SenseOp

    maps = simulated_coil_maps(32, 32, 4)
    maps[:, :, :5] = 0  # no coil sees the first 5 columns
    mask, _ = make_mask("random", small_slice.shape, 2, 0.2, seed=0)
    A = SenseOp(maps, mask)
    y = A.forward(small_slice)
    rec = reconstruct("score-dds", A, y, model=_tiny_prior("vpsde"), samples=2, steps=3, seed=0)
    assert np.all(rec.samples[:, :, :5] == 0) and np.all(rec.std[:, :5] == 0) and np.all(rec.image[:, :5] == 0)
    assert np.all(np.abs(rec.samples[:, :, 5:]) > 0) and rec.std[:, 5:].max() > 0


def test_a_warm_start_begins_at_the_cs_tv_image_and_is_recorded(small_slice):
    """score-dds started from CS-TV: at a level just above the last one the sampler has nothing left to
    change, so it returns the CS-TV image (data-consistent); from pure noise it does not."""
    from app.engine.jobs import UserError

    mask, _ = make_mask("random", small_slice.shape, 2, 0.2, seed=0)
    A = MaskedFFT(mask)
    y = A.forward(small_slice)
    prior = _tiny_prior("vpsde")
    cs = reconstruct("cs-tv", A, y, lam=0.005, iterations=30).image
    warm = reconstruct("score-dds", A, y, model=prior, samples=2, steps=1, seed=0, lam=0.005, iterations=30,
                       warm_start=0.0025)
    cold = reconstruct("score-dds", A, y, model=prior, samples=2, steps=1, seed=0)

    def nmse(x):
        return float(np.sum(np.abs(x - cs) ** 2) / np.sum(np.abs(cs) ** 2))

    assert nmse(warm.image) < 1e-3 < nmse(cold.image), (nmse(warm.image), nmse(cold.image))
    assert np.allclose(mask * fft2c(warm.image), mask * y, atol=1e-5 * np.abs(y).max())
    assert warm.info["warm_start"] == {"from": "cs-tv", "sigma": 0.0025, "lam": 0.005, "iterations": 30}
    with pytest.raises(UserError, match="score-dds only"):
        reconstruct("score-pc", A, y, model=prior, samples=1, steps=2, warm_start=0.1)
