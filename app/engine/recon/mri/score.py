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
- noisy data (noise std ``noise_sigma`` given) or SENSE: a **weighted gradient step**
  ``x_t <- x_t - lam_t A^H (A x_t - y_t)`` with ``lam_t = sigma_t^2 / (sigma_t^2 + s_y^2)``
  (s_y the measurement noise in network units), the proximal weighting of Song et al. 2022 eq. 11.

``ald``: annealed Langevin dynamics (Song & Ermon, NeurIPS 2019, Algorithm 1) with the step size
set from a signal-to-noise ratio (Song et al., ICLR 2021, Algorithm 4/5: eps = 2 (r ||z|| / ||s||)^2);
``pc``: predictor-corrector (Song et al. 2021, Algorithm 2 / 3): an ancestral predictor step
(DDIM with eta = 1, Song, Meng & Ermon 2021 eq. 12/16 — valid for VE and VP paths) followed by one
Langevin corrector step. The final image is the last x0 estimate with a final data-consistency
step (exact for noiseless single-coil data). N posterior samples run as one batch; their mean is the
reconstruction and the per-pixel std of their magnitudes is the uncertainty map.

Intensity convention: the network sees ``x = image / scale`` with ``scale`` the 99th percentile of
the magnitude of the zero-filled image, the same normalisation ``complex_training_images`` uses
(on the fully sampled image) to build the prior's training set.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import torch

from app.engine.jobs import UserError
from app.engine.recon.mri.fft import fft2c, ifft2c
from app.engine.recon.mri.operators import LinearOperator, MaskedFFT

SCALE_PERCENTILE = 99.0


@dataclasses.dataclass
class ScorePrior:
    """A trained prior: network, noise process, device (``load_prior`` builds it from a checkpoint)."""

    net: torch.nn.Module
    process: object  # app.engine.diffusion.base.Process
    device: torch.device = torch.device("cpu")
    channels: int = 2
    name: str = ""


def load_prior(ref: str, workspace=None, device: str = "auto", ema: bool = True) -> ScorePrior:
    """Load a checkpoint of the generative engine as a reconstruction prior (2-channel complex nets)."""
    try:
        from app.engine.checkpoints import load_checkpoint
    except ImportError as exc:  # the generative engine is not installed in this build
        raise UserError(f"cannot load checkpoint {ref!r}: the checkpoint module is unavailable ({exc})") from None
    from app.engine.devices import resolve_device

    dev = resolve_device(device)
    lm = load_checkpoint(ref, workspace=workspace, ema=ema, device=str(dev))
    channels = int(getattr(lm, "channels", 1))
    if channels != 2:
        raise UserError(
            f"checkpoint {ref!r} models {channels}-channel images; MRI reconstruction needs a prior trained on "
            "complex images stored as 2 channels (real, imag)"
        )
    lm.net.eval()
    return ScorePrior(lm.net, lm.process, dev, channels, str(ref))


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
):
    """Draw ``n_samples`` posterior samples of the image given measurements y = A x (+ noise).

    ``corrector``: "ald" (annealed Langevin, ``langevin_steps`` per level) or "pc"
    (predictor-corrector). Returns a ``methods.Reconstruction`` (mean image, std of magnitudes, samples).
    """
    from app.engine.recon.mri.methods import Reconstruction

    if corrector not in ("ald", "pc"):
        raise ValueError(f"corrector must be 'ald' or 'pc', got {corrector!r}")
    if prior.channels != 2:
        raise UserError("score-based MRI reconstruction needs a 2-channel (complex) prior")
    dev = prior.device
    net, proc = prior.net, prior.process
    yt = torch.as_tensor(np.asarray(y, np.complex64), device=dev)
    A_dev = A if A.device == dev else _moved(A, dev)
    scale = image_scale(A_dev.adjoint(yt).cpu().numpy())
    y_net = yt / scale
    sy = noise_sigma / scale  # measurement noise std (per complex sample) in network units
    h, w = A.ishape[-2:]
    if len(A.ishape) != 2:
        raise UserError("score-based reconstruction supports single-set SENSE maps and single-coil data")
    hard = isinstance(A_dev, MaskedFFT) and noise_sigma == 0
    mask = A_dev.mask if isinstance(A_dev, MaskedFFT) else None
    g = torch.Generator().manual_seed(int(seed))
    n = int(n_samples)

    def randn(shape):
        return torch.randn(shape, generator=g).to(dev)

    def data_consistency(x: torch.Tensor, t: torch.Tensor | None) -> torch.Tensor:
        c = _to_c(x)
        if t is None:
            a_t, s_t = torch.ones(()), torch.zeros(())
        else:
            a_t, s_t = (v[0] for v in proc.alpha_sigma(t[:1].cpu()))
        a_t, s_t = float(a_t), float(s_t)
        # measurement carried to the noise level of x_t (Song et al. 2022, eq. 9); z is the image-space
        # noise of x_t = alpha x0 + sigma z, as a complex image (real, imag channels)
        z = torch.complex(randn((n, h, w)), randn((n, h, w)))
        if hard:
            y_t = a_t * y_net + s_t * mask * fft2c(z)
            return _to_x(ifft2c((1 - mask) * fft2c(c) + mask * y_t))
        lam = (s_t**2 + 1e-12) / (s_t**2 + (a_t * sy) ** 2 + 1e-12) if sy > 0 else 1.0
        out = []
        for ci, zi in zip(c, z):
            resid = A_dev._forward(ci) - (a_t * y_net + s_t * A_dev._forward(zi))
            out.append(ci - lam * A_dev._adjoint(resid))
        return _to_x(torch.stack(out))

    times = proc.sampling_times(steps).to(torch.float32)
    x = proc.prior((n, 2, h, w), g, dev)
    x0 = x
    total = len(times)
    for i, t in enumerate(times):
        tb = _expand(t, n, dev)
        if corrector == "pc" and i > 0:
            # predictor: ancestral step from the previous time to t (DDIM eta = 1, eq. 16)
            x = _ancestral(proc, net, x, _expand(times[i - 1], n, dev), tb, g)
            x = data_consistency(x, tb)
        n_lang = 1 if corrector == "pc" else langevin_steps
        for _ in range(n_lang):
            pred = proc.predict(net, x, tb)
            score = proc.score(pred, x, tb)
            z = randn(x.shape)
            # step size from a target signal-to-noise ratio (Song et al. 2021, Algorithm 4/5)
            gn = score.flatten(1).norm(dim=1).clamp_min(1e-12)
            zn = z.flatten(1).norm(dim=1)
            eps = 2 * (snr * zn / gn) ** 2
            # never larger than the step the exact score of x_t would give (||s|| ~ ||z|| / sigma):
            # keeps an untrained or collapsed score (||s|| ~ 0) from taking an unbounded step
            _, s_now = proc.alpha_sigma(tb)
            eps = torch.minimum(eps, 2 * (snr * s_now.to(dev)) ** 2).reshape(-1, 1, 1, 1)
            x = x + eps * score + torch.sqrt(2 * eps) * z  # Langevin step (Song & Ermon 2019, Alg. 1)
            x = data_consistency(x, tb)
        pred = proc.predict(net, x, tb)
        x0 = pred.x0
        if callback is not None:
            callback(i + 1, total, _to_c(x0).mean(0) * scale)
    x0 = data_consistency(x0, None)  # final projection onto the measurements (t = 0: alpha 1, sigma 0)
    samples = (_to_c(x0) * scale).cpu()
    mean = samples.mean(0).numpy()
    std = samples.abs().std(0, unbiased=n > 1).numpy() if n > 1 else np.zeros(mean.shape, np.float32)
    return Reconstruction("score", mean, std=std.astype(np.float32), samples=samples.numpy(),
                          info={"samples": n, "steps": steps, "corrector": corrector, "scale": scale})


def _ancestral(proc, net, x, t_from, t_to, g):
    """One stochastic step from t_from to t_to < t_from via the x0 / eps estimates (DDIM, eta = 1)."""
    pred = proc.predict(net, x, t_from)
    a_t, s_t = proc.alpha_sigma(t_from)
    a_s, s_s = proc.alpha_sigma(t_to)
    a_t, s_t, a_s, s_s = (v.reshape(-1, 1, 1, 1) for v in (a_t, s_t, a_s, s_s))
    # c^2 = s_s^2 (1 - (a_t s_s)^2 / (a_s s_t)^2): the posterior q(x_s | x_t, x0) noise (DDIM eq. 16)
    ratio = ((a_t * s_s) / (a_s * s_t).clamp_min(1e-12)) ** 2
    c = s_s * torch.sqrt((1 - ratio).clamp_min(0.0))
    mean = a_s * pred.x0 + torch.sqrt((s_s**2 - c**2).clamp_min(0.0)) * pred.eps
    z = torch.randn(x.shape, generator=g).to(x.device)
    return mean + c * z


def _moved(A: LinearOperator, device) -> LinearOperator:
    import copy

    B = copy.copy(A)
    B.device = torch.device(device)
    for name in ("mask", "maps"):
        if hasattr(B, name):
            setattr(B, name, getattr(B, name).to(device))
    return B
