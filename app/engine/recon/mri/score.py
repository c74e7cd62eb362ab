"""Score-based posterior sampling for MRI: annealed Langevin / predictor-corrector + data consistency.

The prior is a score / noise network trained by the generative engine on complex images stored as
two channels (real, imag) — ``in_channels = 2``. The sampler runs the reverse process of any
``app.engine.diffusion`` process (it only uses ``alpha_sigma``, ``predict`` -> (x0, eps), the score
``-eps / sigma``, ``prior`` and ``sampling_times``), and after every step enforces consistency with
the measured k-space (Song, Shen, Xing & Ermon, "Solving inverse problems in medical imaging with
score-based generative models", ICLR 2022, sec. 3; Chung & Ye, "Score-based diffusion models for
accelerated MRI", MedIA 2022):

- the measurement is carried to noise level t: ``y_t = alpha_t y + sigma_t M F z`` (Song et al.
  2022, eq. 9), then
- noiseless data: **hard replacement** of the sampled k-space of x_t by y_t (eq. 10 with
  lambda = 1): ``x_t <- F^H((1 - M) F x_t + M y_t)``;
- noisy data (noise std ``noise_sigma`` given) or SENSE: the **likelihood score**
  ``A^H (alpha_t y - A x_t) / (alpha_t^2 s_y^2 + sigma_t^2)`` (s_y the measurement noise in network
  units) added to the prior score (Jalal et al., NeurIPS 2021, Alg. 1; Song et al. 2021, eq. 14).

``ald``: annealed Langevin dynamics (Song & Ermon, NeurIPS 2019, Algorithm 1) in the variance-
exploding parametrisation ``x_ve = x_t / alpha_t = x0 + (sigma_t / alpha_t) z`` for every process:
a VP / DDPM network evaluated at ``alpha_t x_ve`` gives the score of x_ve as ``-eps / (sigma_t /
alpha_t)``. The levels are geometric in sigma / alpha (uniform in log-SNR) and the Langevin step is
``delta * sigma_i^2`` with delta from the level ratio and the number of steps per level (Song & Ermon,
"Improved techniques for training score-based generative models", NeurIPS 2020, technique 4);
``pc``: predictor-corrector (Song et al. 2021, Algorithm 2 / 3): an ancestral predictor step
(DDIM with eta = 1, Song, Meng & Ermon 2021 eq. 12/16 — valid for VE and VP paths) followed by one
Langevin corrector step with the signal-to-noise-ratio step rule; ``dds``: decomposed diffusion
sampling (Chung, Lee & Ye, ICLR 2024): data consistency applied to each clean-image estimate (exact
projection, or conjugate gradient for noisy / SENSE data), then a DDIM step — 20-50 network
evaluations where ALD and PC want hundreds (``_dds``). The three samplers are samplers of the sampling
contract run by its one driver (``sampling.base.drive``) with this module's data consistency as hooks
(``_PosteriorHooks`` for ALD and PC, ``recon.prior.PriorHooks`` for DDS): ``sampling.ald``,
``sampling.pc_ddim`` and the generation DDIM. All three bound the clean-image
estimate ``x0_hat`` by ``x0_clip`` (``sampling.base.clip_x0``); ALD and PC derive eps and the score from the
bounded estimate, DDS keeps the network's eps, bounded as well (``_EPS_BOUND``), so a poor network
cannot drive the sampler away: each ALD step is then a convex combination of x and a bounded x0
plus noise. The final image is the last x0 estimate with a final data-consistency step (exact for
noiseless single-coil data). N posterior samples run as one batch; their mean is the reconstruction
and the per-pixel std of their magnitudes is the uncertainty map.

Intensity convention: the network sees ``x = image / scale`` with ``scale`` the 99th percentile of
the magnitude of the zero-filled image times the prior's ``unit``, the same normalisation its
training set had on the fully sampled images: unit 1 for ``complex_training_images``, the headroom
2 for a dataset imported with ``ingest --complex`` (the checkpoint records it).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from app.engine.diffusion.base import Prediction
from app.engine.errors import UserError
from app.engine.recon.alg import ConjugateGradient, run
from app.engine.recon.mri.fft import fft2c, ifft2c
from app.engine.recon.mri.operators import LinearOperator, MaskedFFT, SenseOp
from app.engine.recon.mri.result import Reconstruction
from app.engine.recon.prior import (  # noqa: F401 (ScorePrior, load_prior, any_size: the prior, re-exported)
    PaddedNet,
    PriorHooks,
    ScorePrior,
    any_size,
    clip_x0,
    load_prior,
    posterior_run,
)
from app.engine.sampling.ald import ALD_SIGMA_RANGE, AnnealedLangevinVE, ald_levels, langevin_step_fraction  # noqa: F401
from app.engine.sampling.base import Hooks
from app.engine.sampling.pc_ddim import PredictorCorrectorDDIM

SCALE_PERCENTILE = 99.0


def image_scale(image) -> float:
    """The normalisation constant of a complex image: the 99th percentile of its magnitude."""
    s = float(np.percentile(np.abs(np.asarray(image)), SCALE_PERCENTILE))
    return s if s > 0 else 1.0


def complex_training_images(images: np.ndarray) -> np.ndarray:
    """(N, H, W) complex -> (N, 2, H, W) float32 (real, imag) / per-image scale: a prior's training set."""
    images = np.asarray(images)
    scales = np.array([image_scale(im) for im in images], np.float32)
    x = images / scales[:, None, None]
    return np.stack([x.real, x.imag], axis=1).astype(np.float32)


def _to_c(x: torch.Tensor) -> torch.Tensor:
    return torch.complex(x[:, 0], x[:, 1])


def _to_x(c: torch.Tensor) -> torch.Tensor:
    return torch.stack([c.real, c.imag], dim=1)


def _expand(v: torch.Tensor, n: int, device) -> torch.Tensor:
    v = torch.as_tensor(v, dtype=torch.float32, device=device)
    return v.expand(n) if v.ndim == 0 else v


class GaussianScoreNet(torch.nn.Module):
    """The exact denoiser of a Gaussian prior x0 ~ N(mean, diag(std^2)), wrapped in the net contract.

    For x_t = alpha x0 + sigma z the marginal is x_t ~ N(alpha mean, alpha^2 std^2 + sigma^2), so
    E[z | x_t] = sigma (x_t - alpha mean) / (alpha^2 std^2 + sigma^2) and
    E[x0 | x_t] = mean + alpha std^2 (x_t - alpha mean) / (alpha^2 std^2 + sigma^2) exactly at every
    noise level. ``forward(x, level)`` inverts the process's ``net_level`` (affine for every process)
    and returns what the process's ``prediction_type`` expects (``Process.target`` of the exact
    (x0, eps)), so any process and sampler can run on it. A reference prior for tests (posterior
    sampling can be checked against the closed-form Gaussian posterior) and a training-free baseline.
    """

    num_classes = 0

    def __init__(self, mean, std, process):
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(np.asarray(mean, np.float32)))
        self.register_buffer("std", torch.as_tensor(np.asarray(std, np.float32)))
        self.process = process
        l0, l1, lh = (float(process.net_level(torch.tensor([v]))[0]) for v in (0.0, 1.0, 0.5))
        if not np.isclose(lh, 0.5 * (l0 + l1), rtol=1e-5, atol=1e-5) or l1 == l0:
            raise ValueError(f"{process!r}: net_level is not affine in t; cannot invert it")
        self._l0, self._dl = l0, l1 - l0

    @classmethod
    def fit(cls, images: np.ndarray, process, min_std: float = 1e-3) -> "GaussianScoreNet":
        """Per-pixel mean and std of training images (N, C, H, W) in network units."""
        x = np.asarray(images, np.float64)
        return cls(x.mean(0), np.maximum(x.std(0), min_std), process)

    def forward(self, x: torch.Tensor, level: torch.Tensor, y=None) -> torch.Tensor:
        t = (level.float() - self._l0) / self._dl
        a, s = self.process.alpha_sigma(t)
        a, s = a.reshape(-1, 1, 1, 1), s.reshape(-1, 1, 1, 1)
        x = x.float()
        var = a**2 * self.std**2 + s**2
        eps = s * (x - a * self.mean) / var
        x0 = self.mean + a * self.std**2 * (x - a * self.mean) / var
        return self.process.target(x0, eps, a, s)


#: default bound of |x0| in network units (images at 99th-percentile magnitude 1; SIAT training
#: images reach 1.25..1.83, 5th..95th percentile of their maxima, 2.04 at most)
X0_CLIP = 3.0

#: DDIM stochasticity of the "dds" sampler: 0 is deterministic, 1 ancestral (fresh noise at every step).
#: Measured on two SIAT validation slices at R = 4 with the CPU-trained benchmark prior (30 steps, one
#: sample): eta 1 gave SSIM 0.813 / 0.706 (Poisson / random 1D) against 0.788 / 0.678 with 0.5 and
#: 0.787 / 0.671 with 0; fresh noise lets each step re-examine what the last DC step put in.
DDS_ETA = 1.0




#: the noise levels sigma / alpha the "dds" sampler walks through (network units, geometric). DC makes
#: the clean estimate carry the measured k-space from the first step, so levels far above the image's
#: own scale only waste steps; the last levels must be small, because the final image is a denoised
#: estimate and carries the network's error at the last level (uniform t on the cosine VP path ended
#: at sigma / alpha 0.08 with 20 steps, where the network's error was as large as CS-TV's)
DDS_SIGMA_RANGE = (2e-3, 20.0)






class _PosteriorHooks(Hooks):
    """Data consistency of the annealed Langevin and predictor-corrector samplers (module docstring).

    ``prediction``: the network's x0 bounded (its error is amplified by 1 / alpha), the prior score taken from
    it, -(x - alpha x0) / sigma^2 = -eps / sigma with the consistent eps; for noisy or SENSE data the
    likelihood score of y = A x0 + n at level t added: x_t / alpha = x0 + (sigma / alpha) z, so grad log p(y |
    x_t) ~ A^H (alpha y - A x_t) / (alpha^2 s_y^2 + sigma^2) (Jalal et al., "Robust compressed sensing MRI
    with deep generative priors", NeurIPS 2021, Alg. 1, written for VE; alpha = 1 gives theirs; exact as
    sigma -> 0), the conditional score of Song et al. 2021, eq. 14; the conditional x0 (Tweedie) bounded
    as well. ``sample``: for noiseless single-coil data, hard replacement of the sampled k-space at level t
    (``replace``)."""

    def __init__(self, process, A, y_net, sy, hard, mask, x0_clip, replace):
        self.process, self.A, self.y_net, self.sy, self.hard = process, A, y_net, sy, hard
        self.mask, self.x0_clip, self.replace = mask, x0_clip, replace

    def prediction(self, pred: Prediction, x: torch.Tensor, t: float) -> Prediction:
        a, s = (v.to(x.device).reshape(-1, 1, 1, 1) for v in self.process.alpha_sigma(torch.tensor([float(t)])))
        x0 = clip_x0(pred.x0, self.x0_clip, 2)
        score = -(x - a * x0) / s**2
        if not self.hard:
            c = _to_c(x)
            A = self.A
            if self.mask is not None:  # the masked FFT broadcasts over the batch
                grad = A._adjoint(a[:, 0] * self.y_net - A._forward(c))
            else:
                grad = torch.stack([A._adjoint(a[0, 0] * self.y_net - A._forward(ci)) for ci in c])
            score = score + _to_x(grad) / (a**2 * self.sy**2 + s**2)
            if self.x0_clip is not None:
                x0 = clip_x0((x + s**2 * score) / a, self.x0_clip, 2)
                score = -(x - a * x0) / s**2
        eps = -s * score
        return Prediction(x0=(x - s * eps) / a, eps=eps)

    def sample(self, x: torch.Tensor, t: float, scale: float = 1.0) -> torch.Tensor:
        if not self.hard:
            return x
        a, s = (float(v[0]) for v in self.process.alpha_sigma(torch.tensor([float(t)])))
        return self.replace(x, a / scale, s / scale)


def _drive(prior: ScorePrior, sampler, x: torch.Tensor, hooks: Hooks, g: torch.Generator, callback, scale):
    """A posterior sampler through the sampling driver, the callback fed the mean clean estimate (image units)."""
    def on_step(info):
        if callback is not None:
            callback(info.step, info.total, _to_c(info.x0).mean(0) * scale)

    return posterior_run(prior, x, sampler.grid(prior.process), hooks, g, on_step, sampler=sampler)


@torch.no_grad()
def posterior_sample(
    prior: ScorePrior,
    A: LinearOperator,
    y,
    n_samples: int = 4,
    steps: int = 100,
    corrector: str = "ald",
    langevin_steps: int = 2,
    snr: float = 0.16,
    noise_sigma: float = 0.0,
    seed: int = 0,
    callback: Callable[[int, int, torch.Tensor], None] | None = None,
    scale: float | None = None,
    x0_clip: float | None = X0_CLIP,
    eta: float = DDS_ETA,
    cg_iterations: int = 5,
    init=None,
    start_sigma: float | None = None,
    sampler=None,
):
    """Draw ``n_samples`` posterior samples of the image given measurements y = A x (+ noise).

    ``corrector``: "ald" (annealed Langevin over ``steps`` noise levels, ``langevin_steps`` per level,
    step size from ``langevin_step_fraction``) or "pc" (predictor-corrector: ancestral predictor + one
    Langevin step per level, step size from ``snr``) or "dds" (decomposed diffusion sampling: data
    consistency on each clean-image estimate, then a DDIM step with ``eta``; ``cg_iterations`` conjugate-
    gradient steps for noisy or SENSE data, ``_dds``). ``noise_sigma``: std of the real and of the
    imaginary part of the measurement noise (image units); 0 = noiseless.
    ``scale``: image units per network unit (default: ``image_scale`` of the zero-filled image times
    the prior's ``unit``).
    ``x0_clip``: bound on |x0_hat| in network units (None: no bound).
    ``init`` / ``start_sigma`` ("dds" only): start from a first estimate (a complex image, e.g. CS-TV's)
    noised to sigma / alpha = ``start_sigma`` (network units) instead of from pure noise (``_dds``).
    ``sampler`` ("dds" only): any sampler of the sampling contract (``sampling.base.Sampler``) in place of
    decomposed diffusion's DDIM, on its own time grid, with the same data consistency of every clean estimate.
    Returns a ``result.Reconstruction`` (mean image, std of magnitudes, samples).

    Annealed Langevin wants ~50 levels or more: with 20 (level ratio 2.1) a prior trained for only
    206 CPU steps left the excess noise in place and the samples sat at the x0 bound (NMSE ~5 on a
    SIAT slice, 0.058 with 50 levels on a 64x64 crop where zero-filled had 0.054); the exact
    Gaussian prior is fine with 50 (tests/engine/recon/test_score_oracle.py).
    """
    if corrector not in ("ald", "pc", "dds"):
        raise ValueError(f"corrector must be 'ald', 'pc' or 'dds', got {corrector!r}")
    if not 0.0 <= eta <= 1.0:
        raise UserError(f"eta must be in [0, 1], got {eta}")
    if prior.channels != 2:
        raise UserError("score-based MRI reconstruction needs a 2-channel (complex) prior")
    if noise_sigma < 0:
        raise UserError(f"noise_sigma must be >= 0, got {noise_sigma}")
    if langevin_steps < 1:
        raise UserError(f"langevin_steps must be at least 1, got {langevin_steps}")
    dev = prior.device
    proc = prior.process
    yt = torch.as_tensor(np.asarray(y, np.complex64), device=dev)
    A_dev = A if A.device == dev else _moved(A, dev)
    if len(A.ishape) != 2:
        raise UserError("score-based reconstruction supports single-set SENSE maps and single-coil data")
    scale = image_scale(A_dev.adjoint(yt).cpu().numpy()) * prior.unit if scale is None else float(scale)
    y_net = yt / scale
    sy = noise_sigma / scale  # measurement noise std (real and imaginary part) in network units
    h, w = A.ishape[-2:]
    hard = isinstance(A_dev, MaskedFFT) and noise_sigma == 0
    mask = A_dev.mask if isinstance(A_dev, MaskedFFT) else None
    g = torch.Generator().manual_seed(int(seed))
    n = int(n_samples)

    def randn(shape):
        return torch.randn(shape, generator=g).to(dev)

    def a_s(tb):
        a, s = proc.alpha_sigma(tb)
        return a.to(dev).reshape(-1, 1, 1, 1), s.to(dev).reshape(-1, 1, 1, 1)

    def replace(x: torch.Tensor, a_t: float, s_t: float) -> torch.Tensor:
        # noiseless single-coil data: the sampled k-space of x_t = alpha x0 + sigma z is exactly
        # alpha y + sigma M F z with M F z independent of the rest, so it is replaced by a fresh draw
        # y_t = alpha y + sigma M F z' (Song et al. 2022, eq. 9-10 with lambda = 1). The complex z'
        # has unit-variance real and imaginary parts, like the 2-channel noise of x_t; the orthonormal
        # FFT of such white noise is white noise of the same law, so F z' is drawn directly.
        c = _to_c(x)
        y_t = a_t * y_net
        if s_t > 0:
            y_t = y_t + s_t * mask * torch.complex(randn((n, h, w)), randn((n, h, w)))
        return _to_x(ifft2c((1 - mask) * fft2c(c) + mask * y_t))

    hooks = _PosteriorHooks(proc, A_dev, y_net, sy, hard, mask, x0_clip, replace)

    if (init is None) != (start_sigma is None):
        raise UserError("a warm start needs both the first estimate (init) and its noise level (start_sigma)")
    if init is not None and corrector != "dds":
        raise UserError("a warm start is implemented for the 'dds' sampler only")
    if start_sigma is not None and not start_sigma > DDS_SIGMA_RANGE[0]:
        raise UserError(f"start_sigma must be above {DDS_SIGMA_RANGE[0]}, got {start_sigma}")
    if corrector == "dds":
        start = None
        if init is not None:
            x_init = torch.as_tensor(np.asarray(init, np.complex64), device=dev)
            if tuple(x_init.shape) != (h, w):
                raise UserError(f"the first estimate has shape {tuple(x_init.shape)}, the image is {(h, w)}")
            start = (_to_x(x_init[None] / scale), float(start_sigma))
        x0 = _dds(prior, A_dev, y_net, sy, hard, replace, x0_clip, n, h, w, steps, eta, cg_iterations, randn, g,
                  dev, callback, scale, start, sampler)
    elif corrector == "ald":
        smp = sampler or AnnealedLangevinVE(steps, langevin_steps)
        x = smp.prior_scale(proc) * randn((n, 2, h, w))  # x_ve at the top level: N(0, sigma_max^2), the VE prior
        x0 = _drive(prior, smp, x, hooks, g, callback, scale)
    else:
        smp = sampler or PredictorCorrectorDDIM(steps, snr)
        x0 = _drive(prior, smp, proc.prior((n, 2, h, w), g, dev), hooks, g, callback, scale)
    if hard:  # the sampled k-space of the clean image is the measurement itself (alpha 1, sigma 0)
        x0 = replace(x0, 1.0, 0.0)
    samples = _to_c(x0) * scale
    if isinstance(A_dev, SenseOp):
        # no coil sees the pixels outside the maps' support: nothing is measured there, and SENSE takes
        # the object to be zero there (the zero-filled image A^H y is zero there too); left alone, the
        # prior would paint its own texture there, in the mean image and as large std
        samples = samples * ((A_dev.maps.abs() ** 2).sum(0) > 0)
    samples = samples.cpu()
    mean = samples.mean(0).numpy()
    std = samples.abs().std(0, unbiased=n > 1).numpy() if n > 1 else np.zeros(mean.shape, np.float32)
    return Reconstruction("score", mean, std=std.astype(np.float32), samples=samples.numpy(),
                          info={"samples": n, "steps": steps, "corrector": corrector, "scale": scale})


def _dds(prior, A, y_net, sy, hard, replace, x0_clip, n, h, w, steps, eta, cg_iterations, randn, generator, dev,
         callback, scale, start=None, sampler=None):
    """Decomposed diffusion sampling (Chung, Lee & Ye, "Decomposed diffusion sampler for accelerating
    large-scale inverse problems", ICLR 2024, Alg. 1 / 2; the same split as Zhu et al.'s DiffPIR 2023).

    At each time t: the network's clean-image estimate x0_hat (Tweedie, bounded by ``x0_clip``) is made
    consistent with the measurements *as a clean image*, then one DDIM step (eta) goes to the next
    time from that data-consistent x0 and the network's eps. Consistency acts on x0 instead of on the
    noisy x_t (as ALD / PC do), so every step moves towards an image that holds the measured k-space,
    and 20-50 network evaluations are enough where ALD needs hundreds:

    - noiseless single-coil data: exact projection onto {x : M F x = y}, i.e. hard replacement of the
      sampled k-space of x0_hat (the limit of DDS's conjugate-gradient step);
    - noisy or SENSE data: ``cg_iterations`` conjugate-gradient steps on
      (A^H A + lam_t I) x = A^H y + lam_t x0_hat started at x0_hat, with lam_t = s_y^2 / r_t^2 the
      measurement noise variance over the variance of x0_hat's error (r_t = sigma_t / sqrt(alpha_t^2 +
      sigma_t^2), that of a unit-variance Gaussian image); with noiseless SENSE data lam_t = 0 and the
      few CG steps from x0_hat stay near the data manifold's tangent (DDS sec. 3.2).
    """
    # warm start ("come closer, diffuse faster", Chung, Sim & Ye, CVPR 2022): the first estimate noised to
    # an intermediate level stands in for x_t there, so the steps go to the levels below it
    proc = prior.process
    x_init, top = start if start is not None else (None, DDS_SIGMA_RANGE[1])
    times = ald_levels(proc, steps, (DDS_SIGMA_RANGE[0], top)) if sampler is None else \
        torch.tensor(sampler.grid(proc), dtype=torch.float32)
    a_all, s_all = proc.alpha_sigma(times)
    # x_t at the first level: alpha x0 + sigma z; from noise, alpha x0 is negligible there (alpha / sigma <= 1 / 20)
    x = float(s_all[0]) * randn((n, 2, h, w))
    if x_init is not None:
        x = x + float(a_all[0]) * x_init
    # the expected ||A x - y||^2 of the true image: 2 s_y^2 per measured complex value (Morozov's
    # discrepancy principle: fitting the data closer than this fits the noise)
    measured = float((A._forward(torch.ones(A.ishape, dtype=torch.complex64, device=dev)) != 0).sum())
    noise_energy = 2.0 * sy**2 * measured

    def dc(x0: torch.Tensor, a_t: float, s_t: float) -> torch.Tensor:
        if hard:
            return replace(x0, 1.0, 0.0)
        lam = sy**2 * (a_t**2 + s_t**2) / max(s_t**2, 1e-12)
        out = [run(ConjugateGradient(lambda v: A._adjoint(A._forward(v)) + lam * v, A._adjoint(y_net) + lam * ci, ci,
                                     cg_iterations,
                                     misfit=(lambda v: float((A._forward(v) - y_net).abs().pow(2).sum()), noise_energy)))
               for ci in _to_c(x0)]
        return _to_x(torch.stack(out))

    if not hard and sy > 0:  # (a no-op at the default eta = 1)
        # noisy data: the part of x_t the denoiser removes as noise includes the measurement noise that
        # the last DC step put into x0, and eps carries it (x alpha / sigma) into the next x_t; with a
        # deterministic step it piles up from step to step (on the Gaussian oracle with 2 coils the error
        # grew 0.07 -> 0.41 from 20 to 100 steps at eta 0, uniform-t grid), so the noise of the next step is drawn fresh
        eta = 1.0
    # DDIM through the sampling driver: the network's eps is kept beside the bounded x0 (as the generative
    # engine's DDIM does; the eps re-derived from a clipped x0 would carry the clipped-away part of x into
    # the next step), bounded as well, and the clean estimate is made consistent with the data (``dc``)
    hooks = PriorHooks(proc, x0_clip, 2, rederive_eps=False, eps_bound=_EPS_BOUND, x0_hook=dc)

    def on_step(info):
        if callback is not None:
            callback(info.step, info.total, _to_c(info.x0).mean(0) * scale)

    return posterior_run(prior, x, times, hooks, generator, on_step, eta=eta, sampler=sampler)


#: eps of a unit-variance Gaussian is within +-6 with probability 1 - 2e-9 per pixel; a network eps
#: beyond that is an error, bounded like x0 so a poor network cannot push x far from the noise path
_EPS_BOUND = 6.0


def _moved(A: LinearOperator, device) -> LinearOperator:
    import copy

    B = copy.copy(A)
    B.device = torch.device(device)
    for name in ("mask", "maps"):
        if hasattr(B, name):
            setattr(B, name, getattr(B, name).to(device))
    return B
