"""The noise-process interface shared by training (losses) and sampling (samplers).

Every process here is a Gaussian path from data to noise over a continuous time t:

    x_t = alpha(t) * x0 + sigma(t) * z,        z ~ N(0, I),   t in [t_min, t_max]

with ``alpha(t_min) ~ 1, sigma(t_min) ~ 0`` (clean) and the prior ``x_{t_max} ~ N(0, s^2 I)`` at
the other end. The four processes only differ in alpha / sigma, how t is drawn for training, what
the network predicts, and how the loss is weighted:

=========  ============================================  ==========================================
name       path                                          network output (``prediction_type``)
=========  ============================================  ==========================================
``ncsn``   VE: alpha = 1, sigma geometric min..max       "score" (= sigma * score, NCSNv2) | "epsilon"
``ddpm``   discrete VP: alpha^2 = prod(1 - beta_i)       "epsilon" | "v"
``vpsde``  continuous VP, cosine: alpha^2 + sigma^2 = 1  "epsilon" | "v"
``flow``   rectified flow: alpha = 1 - t, sigma = t      "velocity" (= z - x0)
=========  ============================================  ==========================================

Whatever the network predicts, ``Process.predict`` turns it into the pair (x0_hat, eps_hat) with
``x = alpha * x0_hat + sigma * eps_hat`` holding exactly, so a sampler written against
(alpha, sigma, x0_hat, eps_hat) — DDIM, Heun, DPM-Solver, ancestral, Langevin with
``score = -eps / sigma`` — works for every process.

The network contract (see ``ScoreNet``): ``net(x, level, y=None) -> output`` with x (B, C, H, W),
level (B,) float = ``process.net_level(t)`` (about 0..1000 for every process, fed to a sinusoidal
embedding), y (B,) int64 class labels or None. A class-conditional net has ``num_classes > 0``
and treats label ``num_classes`` (and y=None) as the null class used by classifier-free guidance.

Time grids: ``sampling_times(n)`` returns n decreasing times from t_max to t_min. A sampler takes
its last step from ``times[-1]`` to the clean image by using the ``x0`` estimate there (alpha and
sigma are also defined at t = 0: alpha = 1, sigma = 0 for ddpm, vpsde, flow).

Randomness always comes from an explicit ``torch.Generator``; noise for the prior is drawn on the
generator's device (CPU by default) and then moved, so the same seed gives the same images on any
device.
"""

from __future__ import annotations

import importlib
import inspect
from abc import ABC, abstractmethod
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar, Protocol

import torch

from app.engine.errors import UserError

# --------------------------------------------------------------------------------------------
# Small types
# --------------------------------------------------------------------------------------------


class PredictionType(StrEnum):
    """What the network outputs."""

    EPSILON = "epsilon"  # the noise z
    V = "v"  # v = alpha * z - sigma * x0 (Salimans & Ho 2022, eq. 9-10); VP processes only
    SCORE = "score"  # sigma * score = -z (NCSNv2's s(x, sigma) = s(x) / sigma, Song & Ermon 2020)
    VELOCITY = "velocity"  # dx/dt = z - x0 along the straight path (rectified flow)


@dataclass
class LossOutput:
    """``loss``: scalar to backpropagate; ``per_sample``: (B,) weighted losses; ``t``: (B,) times."""

    loss: torch.Tensor
    per_sample: torch.Tensor
    t: torch.Tensor


@dataclass
class Prediction:
    """Clean-image and noise estimates at (x, t); ``x = alpha * x0 + sigma * eps`` holds exactly.

    ``output`` is the raw (guided) network output, e.g. for velocity-based ODE steps.
    """

    x0: torch.Tensor
    eps: torch.Tensor
    output: torch.Tensor | None = None


class ScoreNet(Protocol):
    """What a process needs from a network (app.engine.nets.unet.UNet is one)."""

    num_classes: int  # 0 = unconditional; label num_classes is the null class

    def __call__(self, x: torch.Tensor, level: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor: ...


def batch_times(t: float | torch.Tensor, n: int, device: torch.device | str) -> torch.Tensor:
    """A (n,) float32 tensor of times on ``device`` from a scalar or a (n,) / () tensor."""
    t = torch.as_tensor(t, dtype=torch.float32, device=device)
    if t.ndim == 0:
        t = t.expand(n)
    if t.shape != (n,):
        raise ValueError(f"t must be a scalar or have shape ({n},), got {tuple(t.shape)}")
    return t


def expand_as_image(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """(B,) -> (B, 1, 1, 1) (as many trailing ones as x has extra dims)."""
    return v.reshape(v.shape + (1,) * (x.ndim - v.ndim))


def randn(shape, generator: torch.Generator | None, device: torch.device | str = "cpu",
          dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Standard normal noise drawn on the generator's device (CPU when None) and moved to ``device``."""
    gen_device = generator.device if generator is not None else torch.device("cpu")
    z = torch.randn(shape, generator=generator, device=gen_device, dtype=torch.float32)
    return z.to(device=device, dtype=dtype)


# --------------------------------------------------------------------------------------------
# The process interface
# --------------------------------------------------------------------------------------------


class Process(ABC):
    """A Gaussian noise path x_t = alpha(t) x0 + sigma(t) z with its training loss and converters.

    Subclasses set ``name``, ``t_min``, ``t_max``, ``prediction_type`` and implement
    ``alpha_sigma``; everything else has a generic implementation that they may refine.
    """

    name: ClassVar[str] = ""
    #: prediction types this process accepts; the first is the default
    prediction_types: ClassVar[tuple[PredictionType, ...]] = (PredictionType.EPSILON,)
    #: True for processes trained on a finite grid of times (ddpm: T indices, ncsn: L levels)
    discrete: ClassVar[bool] = False

    t_min: float = 0.0
    t_max: float = 1.0

    def __init__(self, prediction_type: str | None = None):
        allowed = [p.value for p in self.prediction_types]
        value = prediction_type or allowed[0]
        if value not in allowed:
            raise UserError(
                f"prediction_type {value!r} is not valid for process {self.name!r}; use one of {', '.join(allowed)}"
            )
        self.prediction_type = PredictionType(value)

    # -- the path --------------------------------------------------------------------------
    @abstractmethod
    def alpha_sigma(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(alpha(t), sigma(t)) elementwise, same shape and device as t (float32)."""

    def net_level(self, t: torch.Tensor) -> torch.Tensor:
        """What the network's noise embedding receives for time t: 1000 * t by default."""
        return 1000.0 * t

    def log_snr(self, t: torch.Tensor) -> torch.Tensor:
        """lambda(t) = log(alpha^2 / sigma^2) (Kingma et al. 2021, VDM, eq. 3); -inf..inf."""
        a, s = self.alpha_sigma(t)
        return 2.0 * (torch.log(a) - torch.log(s))

    def sde(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Drift coefficient f(t) and squared diffusion g^2(t) of the forward SDE dx = f x dt + g dW.

        For a Gaussian path, f = d log(alpha)/dt and g^2 = d(sigma^2)/dt - 2 f sigma^2 (Kingma et al.
        2021, VDM, appendix; Song et al. 2021, eq. 5 and 11 are the VE / VP special cases).
        Computed by autograd through ``alpha_sigma`` so every schedule gets it right.
        """
        with torch.enable_grad():
            tt = t.detach().to(torch.float32).clone().requires_grad_(True)
            a, s = self.alpha_sigma(tt)
            a, s = a + 0.0 * tt, s + 0.0 * tt  # keeps constant schedules (alpha = 1) in the graph
            (da,) = torch.autograd.grad(a.sum(), tt, retain_graph=True)
            (ds2,) = torch.autograd.grad((s * s).sum(), tt)
        a, s = a.detach(), s.detach()
        f = da / a
        g2 = ds2 - 2.0 * f * s * s
        return f, g2.clamp_min(0.0)

    def prior_std(self) -> float:
        """Standard deviation of the prior x_{t_max}: sqrt(alpha^2 + sigma^2) at t_max by default."""
        a, s = self.alpha_sigma(torch.tensor([self.t_max]))
        return float(torch.sqrt(a * a + s * s)[0])

    def prior(self, shape, generator: torch.Generator | None = None, device: torch.device | str = "cpu",
              dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """A draw of x at t_max: prior_std * z, z drawn on the generator's device (CPU) then moved."""
        return self.prior_std() * randn(shape, generator, device, dtype)

    def sampling_times(self, n_steps: int) -> torch.Tensor:
        """n_steps decreasing times t_max .. t_min (float32, CPU); uniform in t by default."""
        if n_steps < 1:
            raise UserError(f"the number of sampling steps must be at least 1, got {n_steps}")
        if n_steps == 1:
            return torch.tensor([self.t_max], dtype=torch.float32)
        return torch.linspace(self.t_max, self.t_min, n_steps, dtype=torch.float32)

    # -- training --------------------------------------------------------------------------
    def sample_train_t(self, n: int, generator: torch.Generator | None = None,
                       device: torch.device | str = "cpu") -> torch.Tensor:
        """(n,) training times, uniform on [t_min, t_max] by default, drawn on the generator's device."""
        gen_device = generator.device if generator is not None else torch.device("cpu")
        u = torch.rand(n, generator=generator, device=gen_device)
        return (self.t_min + (self.t_max - self.t_min) * u).to(device)

    def target(self, x0: torch.Tensor, z: torch.Tensor, alpha: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """The regression target of the network output for this prediction type."""
        p = self.prediction_type
        if p == PredictionType.EPSILON:
            return z
        if p == PredictionType.SCORE:
            return -z  # sigma * grad log p(x_t | x0) = -z (Vincent 2011; Song & Ermon 2019, eq. 2)
        if p == PredictionType.V:
            return alpha * z - sigma * x0  # Salimans & Ho 2022, eq. 9
        if p == PredictionType.VELOCITY:
            return z - x0  # d/dt [(1 - t) x0 + t z] (Liu et al. 2023, eq. 1; Lipman et al. 2023, eq. 23)
        raise AssertionError(p)

    def loss_weight(self, t: torch.Tensor) -> torch.Tensor:
        """Per-sample weight of the squared error in output space (1 by default)."""
        return torch.ones_like(t)

    def loss(self, net: ScoreNet, x0: torch.Tensor, y: torch.Tensor | None = None,
             generator: torch.Generator | None = None, t: torch.Tensor | None = None) -> LossOutput:
        """Denoising loss on a batch of clean images: E_t,z [ w(t) * mean ||net(x_t) - target||^2 ].

        t (B,) may be given (validation at fixed noise levels); otherwise ``sample_train_t``.
        Noise is drawn with ``generator`` on its own device and moved to x0's device.
        """
        b = x0.shape[0]
        if t is None:
            t = self.sample_train_t(b, generator, x0.device)
        t = batch_times(t, b, x0.device)
        z = randn(x0.shape, generator, x0.device, torch.float32)
        a, s = self.alpha_sigma(t)
        a4, s4 = expand_as_image(a, x0), expand_as_image(s, x0)
        x0f = x0.float()
        xt = a4 * x0f + s4 * z  # the forward path
        out = net(xt.to(x0.dtype), self.net_level(t), y).float()
        target = self.target(x0f, z, a4, s4)
        per_sample = self.loss_weight(t) * (out - target).pow(2).flatten(1).mean(1)
        per_sample = per_sample + self.extra_loss(out, xt, t, x0f)
        return LossOutput(per_sample.mean(), per_sample, t)

    def extra_loss(self, out: torch.Tensor, xt: torch.Tensor, t: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        """Additional per-sample loss terms (e.g. vpsde's frequency L1); zero by default."""
        return torch.zeros(out.shape[0], device=out.device)

    # -- inference -------------------------------------------------------------------------
    def output_to_prediction(self, out: torch.Tensor, x: torch.Tensor, t: torch.Tensor) -> Prediction:
        """Convert a raw network output at (x, t) into (x0_hat, eps_hat). Inverse of ``target``."""
        a, s = self.alpha_sigma(batch_times(t, x.shape[0], x.device))
        a, s = expand_as_image(a, x), expand_as_image(s, x)
        out = out.float()
        x = x.float()
        p = self.prediction_type
        if p in (PredictionType.EPSILON, PredictionType.SCORE):
            eps = out if p == PredictionType.EPSILON else -out
            x0 = (x - s * eps) / a
        elif p == PredictionType.V:  # Salimans & Ho 2022, eq. 11 (alpha^2 + sigma^2 = 1)
            x0 = a * x - s * out
            eps = s * x + a * out
        elif p == PredictionType.VELOCITY:  # x = (1 - t) x0 + t z, v = z - x0
            x0 = (x - s * out) / (a + s)
            eps = x0 + out
        else:
            raise AssertionError(p)
        return Prediction(x0=x0, eps=eps, output=out)

    def predict(self, net: ScoreNet, x: torch.Tensor, t: float | torch.Tensor, y: torch.Tensor | None = None,
                guidance: float = 0.0) -> Prediction:
        """Run the network at (x, t) and return (x0_hat, eps_hat).

        With class labels y and ``guidance`` w != 0, classifier-free guidance (Ho & Salimans 2022,
        eq. 6): out = (1 + w) * out(x, y) - w * out(x, null), computed as one doubled batch. The
        conversions to x0 / eps are affine in the output, so guiding the raw output equals guiding eps.
        y=None on a conditional net samples unconditionally (the null class).
        """
        tb = batch_times(t, x.shape[0], x.device)
        level = self.net_level(tb)
        if y is not None and guidance != 0.0:
            null = torch.full_like(y, int(getattr(net, "num_classes", 0)))
            both = net(torch.cat([x, x]), torch.cat([level, level]), torch.cat([y, null]))
            cond, uncond = both.float().chunk(2)
            out = (1.0 + guidance) * cond - guidance * uncond
        else:
            out = net(x, level, y)
        return self.output_to_prediction(out, x, tb)

    def score(self, pred: Prediction, x: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
        """grad_x log p_t(x) estimated from a prediction: -eps_hat / sigma(t)."""
        _, s = self.alpha_sigma(batch_times(t, x.shape[0], x.device))
        return -pred.eps / expand_as_image(s, x)

    # -- description -----------------------------------------------------------------------
    def options(self) -> dict[str, Any]:
        """The constructor options that rebuild this process: ``make_process(name, **options())``."""
        return {"prediction_type": self.prediction_type.value}

    def config(self) -> dict[str, Any]:
        return {"name": self.name, **self.options()}

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options().items())
        return f"{type(self).__name__}({opts})"


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------

#: process name -> "module:Class"; imported on first use
PROCESSES: dict[str, str] = {
    "ncsn": "app.engine.diffusion.ncsn:NCSN",
    "ddpm": "app.engine.diffusion.ddpm:DDPM",
    "vpsde": "app.engine.diffusion.vpsde:VPSDE",
    "flow": "app.engine.diffusion.flow:RectifiedFlow",
}
PROCESS_NAMES = tuple(PROCESSES)


def process_class(name: str) -> type[Process]:
    if name not in PROCESSES:
        raise UserError(f"process {name!r} is not one of {', '.join(PROCESSES)}")
    module, cls = PROCESSES[name].split(":")
    return getattr(importlib.import_module(module), cls)


def time_at_log_snr(process: Process, target, lo: float | None = None, hi: float | None = None,
                    iterations: int = 60) -> torch.Tensor:
    """The times t in [lo, hi] (default [t_min, t_max]) where ``process.log_snr(t)`` equals ``target``
    (a number or a tensor of them), float64. The one inversion of a noise schedule in the engine: the
    log-SNR decreases with t for every process, so bisection finds it, to float32 resolution of the
    times the process is evaluated at (alpha / sigma are computed in float32, as the samplers do)."""
    target = torch.as_tensor(target, dtype=torch.float64)
    t_lo = torch.full_like(target, float(process.t_min if lo is None else lo))
    t_hi = torch.full_like(target, float(process.t_max if hi is None else hi))
    for _ in range(int(iterations)):
        mid = 0.5 * (t_lo + t_hi)
        cleaner = process.log_snr(mid.float().reshape(-1)).reshape(mid.shape).double() > target
        t_lo = torch.where(cleaner, mid, t_lo)
        t_hi = torch.where(cleaner, t_hi, mid)
    return 0.5 * (t_lo + t_hi)


def make_process(name: str, **options: Any) -> Process:
    """Build a process by name with its options; options set to None take their defaults.

    Raises UserError for an unknown name or an option the process does not take.
    """
    cls = process_class(name)
    params = inspect.signature(cls.__init__).parameters
    unknown = [k for k in options if k not in params]
    if unknown:
        allowed = [p for p in params if p != "self"]
        raise UserError(
            f"process {name!r} has no option {', '.join(map(repr, unknown))}; its options are {', '.join(allowed)}"
        )
    return cls(**{k: v for k, v in options.items() if v is not None})
