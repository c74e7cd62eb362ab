"""The sampler contract: a sampler written here (one class: a grid and a step) runs for generation and for
MRI reconstruction with data consistency, through the one driver."""

from __future__ import annotations

import numpy as np
import torch

from app.engine.diffusion.base import make_process
from app.engine.recon.mri.fft import fft2c
from app.engine.recon.mri.masks import make_mask
from app.engine.recon.mri.operators import MaskedFFT
from app.engine.recon.mri.score import GaussianScoreNet, ScorePrior, image_scale, posterior_sample
from app.engine.sampling.base import Denoiser, ImageNoise, Monitor, Sampler, StepContext, StepOut

N = 16


class MidpointSampler(Sampler):
    """A deterministic sampler defined here: the DDIM (eta = 0) jump to the midpoint of (t, t_next) in
    log(sigma / alpha), then a second evaluation there to jump on to t_next."""

    name = "midpoint"
    processes = ("vpsde", "ddpm")

    def step(self, ctx: StepContext, x, t, t_next):
        pred = ctx.predict(x, t)
        if t_next is None:
            return StepOut(pred.x0, pred.x0)
        t_mid = 0.5 * (t + t_next)
        a_m, s_m = ctx.alpha_sigma(t_mid)
        x_mid = ctx.project(a_m * pred.x0 + s_m * pred.eps, t_mid)
        pred_mid = ctx.predict(x_mid, t_mid)
        a_n, s_n = ctx.alpha_sigma(t_next)
        return StepOut(ctx.project(a_n * pred_mid.x0 + s_n * pred_mid.eps, t_next), pred.x0)


def _gaussian(process, sd: float = 0.1):
    """A Gaussian image prior: a square with sharp edges (high frequencies), ``sd`` per pixel and part."""
    mean = np.zeros((N, N), np.complex64)
    mean[4:12, 5:11] = 1 + 0.3j
    return mean, np.full((2, N, N), sd, np.float32)


def test_a_sampler_written_in_a_test_generates_images_through_the_driver():
    proc = make_process("vpsde")
    mean, std = _gaussian(proc)
    net = GaussianScoreNet(np.stack([mean.real, mean.imag]), std, proc)
    sampler = MidpointSampler(steps=8)
    den = Denoiser(net, proc)
    seen = []
    x = ImageNoise(0, range(64)).prior(proc, (2, N, N))
    out = sampler.sample(den, x, ImageNoise(0, range(64)), Monitor(8, seen.append))
    assert len(seen) == 8 and den.n_evals == 2 * 7 + 1
    # the exact prior's samples have its mean and (about) its spread
    got = out[:, 0] + 1j * out[:, 1]
    assert np.abs(got.mean(0).numpy() - mean).max() < 0.06
    assert 0.06 < float(out.std(0).mean()) < 0.14


def test_the_same_sampler_reconstructs_mri_with_data_consistency_at_every_step():
    proc = make_process("vpsde")
    mean, std = _gaussian(proc, sd=0.02)
    rng = np.random.default_rng(1)
    x_true = (mean + 0.02 * (rng.standard_normal((N, N)) + 1j * rng.standard_normal((N, N)))).astype(np.complex64)
    mask, _ = make_mask("random", (N, N), 3, 0.2, seed=2)
    A = MaskedFFT(mask)
    y = np.asarray(A.forward(x_true))
    scale = image_scale(A.adjoint(y))
    net = GaussianScoreNet(np.stack([mean.real, mean.imag]) / scale, std / scale, proc)
    previews = []
    rec = posterior_sample(ScorePrior(net, proc), A, y, n_samples=3, corrector="dds", noise_sigma=0.0, seed=0,
                           sampler=MidpointSampler(steps=6), callback=lambda i, n, img: previews.append(img.clone()))
    sampled = mask > 0
    assert len(previews) == 6
    for img in previews:  # every step's clean estimate holds the measurements (the x0 hook)
        k = fft2c(img).numpy()
        assert np.abs(k[sampled] - y[sampled]).max() < 1e-4 * np.abs(y).max()
    for s in rec.samples:  # and so does every final sample
        k = np.asarray(fft2c(torch.as_tensor(s)))
        assert np.abs(k[sampled] - y[sampled]).max() < 1e-4 * np.abs(y).max()
    # the rest of k-space comes from the prior: closer to the truth than zero-filling
    zf = np.asarray(A.adjoint(y))
    assert np.linalg.norm(rec.image - x_true) < 0.3 * np.linalg.norm(zf - x_true)
