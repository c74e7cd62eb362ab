"""CT reconstructions: FBP baselines and score-based sparse-view / denoising posterior sampling.

Score-based methods use a 1-channel prior trained on CT slices in [-1, 1] (``x_net = 2 mu - 1``,
mu from ``radon.hu_to_unit``) and any process of ``app.engine.diffusion``:

- **sparse view**: reverse-process sampling (ancestral steps, DDIM eta = 1) with a gradient data-
  consistency step in the sinogram after every step, ``x <- x - lam A^T (A x - y) / ||A||^2``
  (Song, Shen, Xing & Ermon, ICLR 2022, sec. 3 with the CT projector; Chung et al., "Improving
  diffusion models for inverse problems using manifold constraints", NeurIPS 2022, eq. 14);
- **denoising** of ``y = x + n``, n ~ N(0, s^2) with known s: the noisy image is a draw of the
  forward process at the time t* where sigma/alpha = s (in network units), so sampling starts from
  ``x_t* = alpha_t* y`` and runs the reverse process to 0 (Kawar, Vaksman & Elad, SNIPS,
  NeurIPS 2021, sec. 3; the "noise-level matching" start of SDEdit, Meng et al. ICLR 2022, eq. 2).

Both bound every clean-image estimate to the prior's data range, x0_hat in [-1, 1] (``X0_CLIP``;
DDPM's ``clip_sample``, Ho et al. 2020, official code; "static thresholding", Saharia et al. 2022,
sec. 2.3), and take the ancestral step's eps from the bounded estimate, as the MRI score methods do
(``sampling.base.clip_x0``): near t_max the estimate (x_t - sigma eps) / alpha amplifies any network
error by 1 / alpha, and an unbounded one drives the samples away.

N samples give the mean image and the per-pixel standard deviation.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from app.engine.diffusion.base import time_at_log_snr
from app.engine.recon.ct.radon import RadonOp
from app.engine.recon.prior import PriorHooks, ScorePrior, posterior_run

#: bound of x0_hat in network units: CT priors are trained on 2 mu - 1 in [-1, 1]
X0_CLIP = 1.0


def _times_from(proc, steps: int, t_start: float | None = None) -> torch.Tensor:
    times = proc.sampling_times(steps).to(torch.float32)
    if t_start is not None:
        times = times[times <= t_start + 1e-6]
        if len(times) == 0 or float(times[0]) < t_start - 1e-6:
            times = torch.cat([torch.tensor([t_start], dtype=torch.float32), times])
    return times


def match_time(proc, noise_over_signal: float) -> float:
    """The time t* at which sigma(t)/alpha(t) equals ``noise_over_signal``: log-SNR -2 log(sigma / alpha)."""
    return float(time_at_log_snr(proc, -2.0 * float(np.log(noise_over_signal))))


@torch.no_grad()
def score_sparse_view(prior: ScorePrior, A: RadonOp, sino, n_samples: int = 2, steps: int = 100,
                      dc_weight: float = 1.0, seed: int = 0,
                      callback: Callable[[int, int, np.ndarray], None] | None = None,
                      x0_clip: float | None = X0_CLIP):
    """Posterior samples of mu (N, N) given a sparse-view sinogram. Returns (mean, std, samples).

    ``x0_clip``: bound of |x0_hat| in network units (None: no bound)."""
    dev = prior.device
    g = torch.Generator().manual_seed(int(seed))
    proc = prior.process
    y = torch.as_tensor(np.asarray(sino, np.float32), device=dev)
    norm2 = A.norm_estimate(iterations=15) ** 2
    n = int(n_samples)
    times = _times_from(proc, steps)
    x = proc.prior((n, 1, A.n, A.n), g, dev)

    def dc(x_net: torch.Tensor, t) -> torch.Tensor:
        a_t = float(proc.alpha_sigma(torch.tensor([float(t)]))[0][0]) if t is not None else 1.0
        mu = (x_net[:, 0] / a_t + 1.0) / 2.0  # current estimate in mu units
        grad = A._adjoint(A._forward(mu) - y[None])
        mu = mu - dc_weight * grad / norm2
        return (a_t * (2.0 * mu - 1.0))[:, None]

    # one DDIM (eta = 1) step per time with one network evaluation: the bounded estimates drive the step,
    # every new sample gets a gradient step on the sinogram, and the clean estimate is made consistent too
    hooks = PriorHooks(proc, x0_clip, 1, sample_hook=lambda x_net, t, scale=1.0: dc(x_net, t))

    def on_step(info):
        if callback is not None:
            callback(info.step, info.total, ((dc(info.x0, None)[:, 0].mean(0) + 1) / 2).cpu().numpy())

    x0 = dc(posterior_run(prior, x, times, hooks, g, on_step), None)
    mu = ((x0[:, 0] + 1) / 2).clamp_min(0).cpu().numpy()
    return mu.mean(0), mu.std(0), mu


@torch.no_grad()
def score_denoise(prior: ScorePrior, noisy_mu, noise_sigma_mu: float, n_samples: int = 2, steps: int = 100,
                  seed: int = 0, callback: Callable[[int, int, np.ndarray], None] | None = None,
                  x0_clip: float | None = X0_CLIP):
    """Posterior samples of the clean mu image given mu + N(0, noise_sigma_mu^2). Returns (mean, std, samples).

    ``x0_clip``: bound of |x0_hat| in network units (None: no bound)."""
    dev = prior.device
    g = torch.Generator().manual_seed(int(seed))
    proc = prior.process
    y = torch.as_tensor(2.0 * np.asarray(noisy_mu, np.float32) - 1.0, device=dev)  # network units
    s_net = 2.0 * noise_sigma_mu
    t_star = match_time(proc, s_net)
    times = _times_from(proc, steps, t_star)
    a0 = float(proc.alpha_sigma(torch.tensor([float(times[0])]))[0][0])
    n = int(n_samples)
    x = (a0 * y)[None, None].expand(n, 1, -1, -1).clone()  # x_t* = alpha_t* (x0 + s z): the measurement itself
    def on_step(info):
        if callback is not None:
            callback(info.step, info.total, ((info.x0[:, 0].mean(0) + 1) / 2).cpu().numpy())

    x0 = posterior_run(prior, x, times, PriorHooks(proc, x0_clip, 1), g, on_step)
    mu = ((x0[:, 0] + 1) / 2).clamp_min(0).cpu().numpy()
    return mu.mean(0), mu.std(0), mu
