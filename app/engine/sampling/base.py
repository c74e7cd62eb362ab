"""What every sampler shares: the Sampler contract, the guided denoiser, per-image noise and the step monitor.

A sampler turns prior noise into images with a ``Denoiser`` (network + process + class labels +
guidance), which returns the pair (x0_hat, eps_hat) at (x, t) for any process (see
``app.engine.diffusion.base``). Samplers only use alpha(t), sigma(t), x0_hat and eps_hat (score =
-eps_hat / sigma), so one implementation serves every process it supports.

Noise is per image: image i of a run with seed s draws from its own CPU ``torch.Generator`` seeded
from (s, i), so the result of an image depends only on the seed and its index, never on the batch
it happens to be in nor on the device.
"""

from __future__ import annotations

import contextlib
import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from app.engine.diffusion.base import Prediction, Process, batch_times, time_at_log_snr
from app.engine.errors import JobCancelled, UserError

# --------------------------------------------------------------------------------------------
# Per-image noise
# --------------------------------------------------------------------------------------------


def image_seed(seed: int, index: int) -> int:
    """A 63-bit seed for image ``index`` of a run seeded ``seed`` (numpy's SeedSequence mixing)."""
    state = np.random.SeedSequence([int(seed) & 0xFFFFFFFFFFFFFFFF, int(index)]).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31 | int(state[1]) >> 1) & 0x7FFFFFFFFFFFFFFF


class ImageNoise:
    """Standard normal noise for a batch, one CPU generator per image (see the module docstring)."""

    def __init__(self, seed: int, indices: list[int] | range, device: torch.device | str = "cpu"):
        self.indices = list(indices)
        self.generators = [torch.Generator().manual_seed(image_seed(seed, i)) for i in self.indices]
        self.device = torch.device(device)

    def __len__(self) -> int:
        return len(self.generators)

    def randn(self, shape_per_image: tuple[int, ...]) -> torch.Tensor:
        """(B, *shape_per_image) float32 on the target device; row i from generator i (drawn on CPU)."""
        z = torch.stack([torch.randn(shape_per_image, generator=g) for g in self.generators])
        return z.to(self.device)

    def prior(self, process: Process, shape_per_image: tuple[int, ...]) -> torch.Tensor:
        """The starting point x_{t_max}: process.prior for each image with its own generator."""
        x = torch.cat([process.prior((1, *shape_per_image), generator=g) for g in self.generators])
        return x.to(self.device)


# --------------------------------------------------------------------------------------------
# The denoiser a sampler calls
# --------------------------------------------------------------------------------------------


class Denoiser:
    """net + process + labels + guidance: ``denoiser(x, t) -> Prediction`` (float32 x0_hat, eps_hat).

    ``autocast_dtype`` (bfloat16 on CPU, float16 on CUDA) runs the network in half precision while
    the sampler's state stays float32. ``n_evals`` counts network evaluations (a guided one counts
    once although its batch is doubled).
    """

    def __init__(self, net: torch.nn.Module, process: Process, y: torch.Tensor | None = None,
                 guidance: float = 0.0, autocast_dtype: torch.dtype | None = None):
        self.net = net
        self.process = process
        self.y = y
        self.guidance = float(guidance)
        self.autocast_dtype = autocast_dtype
        self.n_evals = 0

    def alpha_sigma(self, t: float) -> tuple[float, float]:
        a, s = self.process.alpha_sigma(torch.tensor([float(t)], dtype=torch.float32))
        return float(a[0]), float(s[0])

    def __call__(self, x: torch.Tensor, t: float) -> Prediction:
        self.n_evals += 1
        if self.autocast_dtype is not None:
            ctx = torch.autocast(device_type=x.device.type, dtype=self.autocast_dtype)
        else:
            ctx = contextlib.nullcontext()
        with ctx:
            pred = self.process.predict(self.net, x, float(t), self.y, self.guidance)
        return Prediction(x0=pred.x0.float(), eps=pred.eps.float(),
                          output=None if pred.output is None else pred.output.float())

    def score(self, pred: Prediction, x: torch.Tensor, t: float) -> torch.Tensor:
        return self.process.score(pred, x, batch_times(float(t), x.shape[0], x.device))


def clip_x0(x0: torch.Tensor, bound: float | None, channels: int) -> torch.Tensor:
    """Bound x0 estimates to the training range: |x0| <= bound per complex pixel (phase kept) for
    2-channel images, x0 in [-bound, bound] for real ones. The x0 estimate (x_t - sigma eps) / alpha
    amplifies any network error by 1 / alpha (~1800 at the VP-SDE's t_max), so DDPM samplers clip it
    to the data range (Ho et al. 2020, official code; diffusers' ``clip_sample``; "static
    thresholding", Saharia et al. 2022, sec. 2.3). The exact (oracle) denoiser never reaches it."""
    if bound is None:
        return x0
    if channels == 2:
        mag = torch.sqrt(x0[:, 0] ** 2 + x0[:, 1] ** 2).clamp_min(1e-12)
        return x0 * (bound / mag).clamp(max=1.0)[:, None]
    return x0.clamp(-bound, bound)


def langevin_step(x: torch.Tensor, score: torch.Tensor, step, z: torch.Tensor) -> torch.Tensor:
    """One Langevin step x + step s(x) + sqrt(2 step) z (Song & Ermon 2019, Alg. 1, line 6, with their
    alpha_i = 2 step); ``step`` a number or one per image. The one Langevin update of the engine: the
    annealed Langevin samplers and the correctors of the predictor-corrector samplers."""
    noise = torch.sqrt(2.0 * step) if torch.is_tensor(step) else math.sqrt(2.0 * step)
    return x + step * score + noise * z


def clip_prediction(pred: Prediction, x: torch.Tensor, alpha: float, sigma: float,
                    rederive_eps: bool = True) -> Prediction:
    """Clip x0_hat to the data range [-1, 1]; by default re-derive eps_hat so x = alpha x0 + sigma eps holds.

    The "clip_sample" / static thresholding of Ho et al. 2020 (their code) and Saharia et al. 2022,
    sec. 2.3: keeps the few-step samplers from drifting outside the data range at high noise.
    ``rederive_eps=False`` keeps the network's eps_hat beside the clipped x0_hat (DDIM's update as
    in Song et al.'s and diffusers' code, ``use_clipped_model_output=False``): a re-derived eps_hat
    carries the clipped-away part of x into the next step, (s'/s)(x - a x0_clipped), so out-of-range
    noise is never removed by a deterministic path.
    """
    x0 = clip_x0(pred.x0, 1.0, channels=1)
    if not rederive_eps:
        return Prediction(x0=x0, eps=pred.eps, output=pred.output)
    eps = (x - alpha * x0) / sigma if sigma > 0 else pred.eps
    return Prediction(x0=x0, eps=eps, output=pred.output)


# --------------------------------------------------------------------------------------------
# Progress, previews and cancellation
# --------------------------------------------------------------------------------------------


@dataclass
class StepInfo:
    """One sampler step as seen by a callback: ``x0`` is the current clean-image estimate (preview)."""

    step: int  # 1-based within this batch
    total: int  # steps of this batch
    t: float
    sigma: float
    x: torch.Tensor
    x0: torch.Tensor


StepCallback = Callable[[StepInfo], None]


class Monitor:
    """Called by a sampler at every step: raises JobCancelled when asked to stop, then reports."""

    def __init__(self, total: int, callback: StepCallback | None = None,
                 should_stop: Callable[[], bool] | None = None):
        self.total = int(total)
        self.callback = callback
        self.should_stop = should_stop
        self.steps_done = 0

    def check(self) -> None:
        if self.should_stop is not None and self.should_stop():
            raise JobCancelled()

    def step(self, t: float, sigma: float, x: torch.Tensor, x0: torch.Tensor) -> None:
        self.steps_done += 1
        if self.callback is not None:
            self.callback(StepInfo(self.steps_done, self.total, float(t), float(sigma), x, x0))
        self.check()


# --------------------------------------------------------------------------------------------
# The sampler contract: a time grid and one step; one driver loop with hooks
# --------------------------------------------------------------------------------------------


@dataclass
class StepOut:
    """What a sampler's step returns: the sample at the next time (at the last step: the final image) and
    this step's clean-image estimate (the live preview)."""

    x: torch.Tensor
    x0: torch.Tensor


class Hooks:
    """Where reconstruction meets a sampler; generation uses these identities.

    - ``prediction(pred, x, t)``: every network prediction the sampler sees (bound x0, project x0 onto the
      measurements, add a likelihood score to eps...);
    - ``sample(x, t, scale)``: every new sample at time t (hard replacement of the measured k-space, a
      gradient step on the data), called by the samplers after each update of x, inner corrector steps
      included; ``scale`` is what x_t was divided by (alpha_t for a sampler on x_t / alpha_t, else 1).
    """

    def prediction(self, pred: Prediction, x: torch.Tensor, t: float) -> Prediction:
        return pred

    def sample(self, x: torch.Tensor, t: float, scale: float = 1.0) -> torch.Tensor:
        return x


class StepContext:
    """What a step sees: the model (with the hooks' prediction applied), the noise, the projection."""

    def __init__(self, denoiser: Denoiser, noise, hooks: Hooks | None = None):
        self.denoiser = denoiser
        self.noise = noise
        self.hooks = hooks or Hooks()
        self.process = denoiser.process

    def predict(self, x: torch.Tensor, t: float) -> Prediction:
        return self.hooks.prediction(self.denoiser(x, t), x, t)

    def project(self, x: torch.Tensor, t: float, scale: float = 1.0) -> torch.Tensor:
        return self.hooks.sample(x, t, scale)

    def alpha_sigma(self, t: float) -> tuple[float, float]:
        return self.denoiser.alpha_sigma(t)

    def score(self, pred: Prediction, x: torch.Tensor, t: float) -> torch.Tensor:
        return self.denoiser.score(pred, x, t)

    def randn(self, x: torch.Tensor) -> torch.Tensor:
        """Fresh standard normal noise shaped like the batch x (one generator per image for generation)."""
        return self.noise.randn(tuple(x.shape[1:]))


class BatchNoise:
    """Noise for a whole batch from one CPU generator (the posterior samplers' convention: a
    reconstruction's samples depend on its seed, drawn together)."""

    def __init__(self, generator: torch.Generator, n: int, device: torch.device | str = "cpu"):
        self.generator, self.n, self.device = generator, int(n), torch.device(device)

    def randn(self, shape_per_image: tuple[int, ...]) -> torch.Tensor:
        return torch.randn((self.n, *shape_per_image), generator=self.generator).to(self.device)


class Sampler(ABC):
    """A sampler is a time grid and a step: ``step(ctx, x, t, t_next) -> StepOut`` from the sample at t to
    the one at t_next (``None`` at the last step, which lands on the clean image). ``drive`` runs any
    sampler, for generation and for reconstruction (``Hooks``) alike; a new sampler is one file.

    Subclasses set ``name``, ``processes`` (the process names they support), ``stochastic`` and
    ``options`` (the constructor keywords they accept besides ``steps``); multistep samplers keep their
    history between steps and reset it in ``start``; ``finish`` may add a last denoising step.
    """

    name: ClassVar[str] = ""
    processes: ClassVar[tuple[str, ...]] = ()
    stochastic: ClassVar[bool] = False
    options: ClassVar[tuple[str, ...]] = ()
    summary: ClassVar[str] = ""
    #: how the time grid is spaced unless the ``spacing`` option says otherwise (see ``time_grid``)
    default_spacing: ClassVar[str] = "linspace"
    #: lowest log-SNR at which the grid starts (None: at the process's t_max; see time_grid)
    lambda_min: ClassVar[float | None] = None

    def __init__(self, steps: int = 50, spacing: str | None = None):
        if int(steps) < 1:
            raise UserError(f"sampler {self.name!r} needs at least 1 step, got {steps}")
        spacing = spacing or self.default_spacing
        if spacing not in TIME_SPACINGS:
            raise UserError(f"time spacing {spacing!r} is not one of {', '.join(TIME_SPACINGS)}")
        self.steps = int(steps)
        self.spacing = spacing

    def times(self, process: Process) -> list[float]:
        """The times at which this sampler evaluates the network."""
        return time_grid(process, self.steps, self.spacing, self.lambda_min)

    def grid(self, process: Process) -> list[float]:
        """The times of the driver's steps (one per progress step); by default ``times``."""
        return self.times(process)

    def check_process(self, process: Process) -> None:
        """Raise UserError when this sampler cannot sample ``process``."""
        if process.name not in self.processes:
            raise UserError(
                f"sampler {self.name!r} does not support the {process.name!r} process; it supports "
                f"{', '.join(self.processes)}. Samplers for {process.name!r}: "
                f"{', '.join(samplers_for(process.name)) or 'none'}"
            )

    def progress_steps(self, process: Process) -> int:
        """How many Monitor.step calls one batch makes (the progress total)."""
        return self.steps

    def network_evals(self, process: Process) -> int:
        """Network evaluations per image (guided evaluations count once)."""
        return self.steps

    def describe(self) -> dict[str, Any]:
        return {"sampler": self.name, "steps": self.steps, "spacing": self.spacing}

    def start(self, ctx: StepContext, times: list[float]) -> None:
        """Reset the state kept between steps (multistep solvers); called by ``drive`` before the first."""

    @abstractmethod
    def step(self, ctx: StepContext, x: torch.Tensor, t: float, t_next: float | None) -> StepOut:
        """One step from the sample x at time t to the one at ``t_next`` (None: the last step)."""

    def finish(self, ctx: StepContext, x: torch.Tensor, times: list[float]) -> torch.Tensor:
        """The image after the last step (a final denoising step for some samplers)."""
        return x

    def sample(self, denoiser: Denoiser, x: torch.Tensor, noise: ImageNoise, monitor: Monitor) -> torch.Tensor:
        """Integrate from the prior draw ``x`` to a clean image (float32, not yet clipped)."""
        return drive(self, StepContext(denoiser, noise), x, monitor)


def drive(sampler: Sampler, ctx: StepContext, x: torch.Tensor, monitor: Monitor | None = None,
          times: list[float] | None = None) -> torch.Tensor:
    """The one sampling loop: ``sampler.step`` over its grid (or ``times``), a report and a stop check
    (``monitor``) after every step, then ``sampler.finish``. Reconstruction passes ``ctx.hooks``."""
    times = list(sampler.grid(ctx.process) if times is None else times)
    sampler.start(ctx, times)
    for i, t in enumerate(times):
        out = sampler.step(ctx, x, t, times[i + 1] if i + 1 < len(times) else None)
        x = out.x
        if monitor is not None:
            monitor.step(t, ctx.alpha_sigma(t)[1], x, out.x0)
    return sampler.finish(ctx, x, times)


TIME_SPACINGS = ("linspace", "logsnr", "karras", "process")

#: Karras et al. 2022's rho (eq. 5): sigma_i = (s_max^(1/rho) + i / (N - 1) (s_min^(1/rho) - s_max^(1/rho)))^rho
KARRAS_RHO = 7.0

#: where the deterministic samplers (DDIM, Heun, DPM-Solver) start when the process's own t_max is
#: at a lower log-SNR: lambda = log(alpha / sigma) >= -5.1. With an epsilon network the clean-image
#: estimate is (x - sigma eps_hat) / alpha, so at cosine DDPM's t_max (alpha = 5e-5) any error of
#: eps_hat is multiplied by 2e4 and the first step writes a saturated +-1 pattern that a
#: deterministic path never washes out (seen on a trained PneumoniaMNIST model: half the DDIM and
#: nearly all DPM-Solver images were such noise). -5.1 is diffusers' ``lambda_min_clipped``
#: recommended for the cosine schedule (DPMSolverMultistepScheduler), which is also where the
#: linear schedule starts (lambda(T) = -5.06); x_T ~ N(0, I) is still the prior there (alpha 0.006).
LAMBDA_MIN_DETERMINISTIC = -5.1


def _alpha_sigma_f(process: Process, t: float) -> tuple[float, float]:
    a, s = process.alpha_sigma(torch.tensor([float(t)], dtype=torch.float32))
    return float(a[0]), float(s[0])


def _snap(process: Process, times: list[float]) -> list[float]:
    """Move times onto a discrete process's training grid (DDPM indices), keeping them distinct."""
    if not (getattr(process, "discrete", False) and hasattr(process, "index_of_t") and hasattr(process, "t_of_index")):
        return times
    idx = process.index_of_t(torch.tensor(times, dtype=torch.float64))
    out: list[float] = []
    last = None
    for i in idx.tolist():
        if i != last:
            out.append(float(process.t_of_index(i)))
            last = i
    return out


def _t_of_lambda(process: Process, lam: float, lo: float, hi: float) -> float:
    """The time in [lo, hi] where lambda(t) = log(alpha / sigma) (half the log-SNR) equals ``lam``."""
    return float(time_at_log_snr(process, 2.0 * lam, lo, hi))


def time_grid(process: Process, steps: int, spacing: str = "linspace", lambda_min: float | None = None) -> list[float]:
    """``steps`` decreasing times at which the network is evaluated, from t_max, all with sigma > 0.

    Every sampler ends by jumping to the clean estimate x0_hat from its last time, so that last
    time should be close to clean:

    - "linspace": uniform in t from t_max down to t_min, both included (diffusers' "linspace"
      spacing; for DDPM indices T-1 .. 0, so ``steps`` = T is the full chain of Ho et al. 2020);
    - "logsnr": uniform in lambda = log(alpha / sigma) over the same range (Lu et al. 2022a,
      sec. 3.3: the DPM-Solver default), snapped to DDPM's indices;
    - "karras": Karras et al. 2022, eq. 5 (rho = 7): uniform in (sigma / alpha)^(1/7) over the same range
      (diffusers' ``use_karras_sigmas``): finer steps than "logsnr" at high noise, coarser near the clean end;
    - "process": ``process.sampling_times(steps)`` as the process defines it (DDPM: "trailing").

    A time with sigma = 0 (flow matching's t = 0) is never evaluated: the grid then spans one
    more interval and drops that end point. ``lambda_min`` (linspace / logsnr): start instead at
    the time where lambda = log(alpha / sigma) rises to it, when lambda(t_max) is finite and lower
    (see LAMBDA_MIN_DETERMINISTIC).
    """
    if spacing not in TIME_SPACINGS:
        raise UserError(f"time spacing {spacing!r} is not one of {', '.join(TIME_SPACINGS)}")
    if int(steps) < 1:
        raise UserError(f"the number of sampling steps must be at least 1, got {steps}")
    steps = int(steps)
    t_max, t_min = float(process.t_max), float(process.t_min)
    end_clean = _alpha_sigma_f(process, t_min)[1] <= 0.0
    if lambda_min is not None and spacing != "process":
        lam_top = log_snr_half(*_alpha_sigma_f(process, t_max))
        if math.isfinite(lam_top) and lam_top < lambda_min < log_snr_half(*_alpha_sigma_f(process, t_min)):
            t_max = _t_of_lambda(process, float(lambda_min), t_min, t_max)
    if spacing == "process":
        times = process.sampling_times(steps)
        if float(process.alpha_sigma(times[-1:].float())[1][0]) <= 0.0:
            times = process.sampling_times(steps + 1)[:-1]
        return [float(t) for t in times]
    n = steps + 1 if end_clean else steps
    if n == 1:
        return [t_max]
    lin = np.linspace(t_max, t_min, n).tolist()
    if end_clean:
        lin = lin[:-1]
    if spacing == "linspace" or len(lin) < 3:
        times = lin
    else:
        start = 0
        if not math.isfinite(log_snr_half(*_alpha_sigma_f(process, t_max))):
            start = 1  # alpha(t_max) = 0 (flow): keep t_max, space the rest from the next point
        lam_lo = log_snr_half(*_alpha_sigma_f(process, lin[start]))
        lam_hi = log_snr_half(*_alpha_sigma_f(process, lin[-1]))
        if spacing == "karras":
            # sigma~ = e^{-lambda}; uniform in sigma~^(1 / rho) (Karras et al. 2022, eq. 5)
            r = np.linspace(math.exp(-lam_lo / KARRAS_RHO), math.exp(-lam_hi / KARRAS_RHO), len(lin) - start)
            lams = -KARRAS_RHO * np.log(r)
        else:
            lams = np.linspace(lam_lo, lam_hi, len(lin) - start)
        times = lin[:start] + [_t_of_lambda(process, float(lam), t_min, t_max) for lam in lams]
        times[start], times[-1] = lin[start], lin[-1]
    return _snap(process, times)


def log_snr_half(alpha: float, sigma: float) -> float:
    """lambda = log(alpha / sigma) (half the log-SNR, Lu et al. 2022's lambda_t), +-inf at the ends."""
    if alpha <= 0.0:
        return -math.inf
    if sigma <= 0.0:
        return math.inf
    return math.log(alpha) - math.log(sigma)


SAMPLER_PROCESS_SUPPORT: dict[str, tuple[str, ...]] = {}


def samplers_for(process_name: str) -> list[str]:
    """Names of the registered samplers that support a process (filled in by ``api``)."""
    return [name for name, procs in SAMPLER_PROCESS_SUPPORT.items() if process_name in procs]
