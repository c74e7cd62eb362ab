"""Fast deterministic ODE samplers: Heun (Karras et al. 2022), DPM-Solver++(2M) and (3M) (Lu et al. 2022), Euler for flow matching."""

from __future__ import annotations

import math
from typing import ClassVar

import torch

from app.engine.diffusion.base import Prediction
from app.engine.sampling.base import (
    LAMBDA_MIN_DETERMINISTIC,
    Sampler,
    StepContext,
    StepOut,
    clip_prediction,
    log_snr_half,
)


class HeunSampler(Sampler):
    """Heun's 2nd-order method on the probability-flow ODE (Karras et al. 2022, Algorithm 1).

    For DDPM / VP-SDE / NCSN the ODE is integrated in the scaled variables x~ = x / alpha and
    sigma~ = sigma / alpha, where dx~/dsigma~ = eps_hat (Karras et al. 2022, eq. 4 with s(t) =
    alpha); for flow matching, whose alpha reaches 0 at the prior, in t with dx/dt = v =
    eps_hat - x0_hat (Liu et al. 2023, eq. 1). Uses 2 * steps - 1 network evaluations: the
    correction is skipped on the last step, which goes to the clean image (Alg. 1, line 7).
    """

    name: ClassVar[str] = "heun"
    processes: ClassVar[tuple[str, ...]] = ("ddpm", "vpsde", "ncsn", "flow")
    options: ClassVar[tuple[str, ...]] = ("clip_x0", "spacing")
    summary: ClassVar[str] = "Heun 2nd order ODE (Karras et al. 2022, Alg. 1); 10-25 steps, 2 evals per step"
    lambda_min: ClassVar[float | None] = LAMBDA_MIN_DETERMINISTIC
    #: steps uniform in log(sigma / alpha), i.e. geometric in the ODE's variable sigma~ (the role of
    #: Karras et al.'s rho spacing). Uniform in t, the first Euler step of a cosine DDPM goes from
    #: sigma~ 160 to 10: an eps_hat error is multiplied by 150 there, and on a trained PneumoniaMNIST
    #: model all 40 of 40 images came out as noise (15 / 40 with this spacing; 18 steps, same seeds).
    default_spacing: ClassVar[str] = "logsnr"

    def __init__(self, steps: int = 18, clip_x0: bool = False, spacing: str | None = None):
        super().__init__(steps, spacing)
        self.clip_x0 = bool(clip_x0)

    def describe(self):
        return {**super().describe(), "clip_x0": self.clip_x0}

    def network_evals(self, process) -> int:
        return 2 * self.steps - 1

    def _pred(self, ctx: StepContext, x: torch.Tensor, t: float) -> Prediction:
        pred = ctx.predict(x, t)
        if self.clip_x0:
            a, s = ctx.alpha_sigma(t)
            pred = clip_prediction(pred, x, a, s)
        return pred

    def step(self, ctx: StepContext, x: torch.Tensor, t: float, t_next: float | None) -> StepOut:
        a, s = ctx.alpha_sigma(t)
        pred = self._pred(ctx, x, t)
        if t_next is None:
            return StepOut(pred.x0, pred.x0)  # the last step lands on sigma = 0: Euler there is exactly x0_hat
        a_next, s_next = ctx.alpha_sigma(t_next)
        if ctx.process.name == "flow":
            d = pred.eps - pred.x0  # dx/dt (Liu et al. 2023, eq. 1)
            x_euler = x + (t_next - t) * d  # Alg. 1, line 5 (Euler step)
            pred2 = self._pred(ctx, x_euler, t_next)
            d2 = pred2.eps - pred2.x0
            x = x + (t_next - t) * 0.5 * (d + d2)  # Alg. 1, line 8 (trapezoidal correction)
        else:
            st, st_next = s / a, s_next / a_next
            xt = x / a
            d = pred.eps  # dx~/dsigma~ = (x~ - x0_hat) / sigma~ = eps_hat (Karras et al. 2022, eq. 4)
            xt_euler = xt + (st_next - st) * d
            pred2 = self._pred(ctx, a_next * xt_euler, t_next)
            xt = xt + (st_next - st) * 0.5 * (d + pred2.eps)
            x = a_next * xt
        return StepOut(ctx.project(x, t_next), pred.x0)


class DPMSolverPP2MSampler(Sampler):
    """DPM-Solver++(2M): second-order multistep solver in data (x0) prediction (Lu et al. 2022b, Alg. 2).

    lambda = log(alpha / sigma); h_i = lambda_i - lambda_{i-1};
    x_i = (sigma_i / sigma_{i-1}) x_{i-1} - alpha_i (e^{-h_i} - 1) D_i with D_i = x0_{i-1} at the
    first step and D_i = (1 + 1/(2 r_i)) x0_{i-1} - 1/(2 r_i) x0_{i-2}, r_i = h_{i-1} / h_i, after.
    The last step, to sigma = 0, is first order (``lower_order_final`` in the reference code).
    ``clip_x0`` (default on, as DDIM's and ancestral's): each x0_hat clipped to the data range, the
    thresholding Lu et al. 2022b recommend for pixel-space models; without it an undertrained
    network's early, amplified x0_hat errors saturated most images (PneumoniaMNIST bench, 20 steps).
    """

    name: ClassVar[str] = "dpmpp2m"
    processes: ClassVar[tuple[str, ...]] = ("ddpm", "vpsde", "ncsn", "flow")
    options: ClassVar[tuple[str, ...]] = ("clip_x0", "spacing")
    summary: ClassVar[str] = "DPM-Solver++(2M) (Lu et al. 2022); 10-25 steps, 1 eval per step"
    default_spacing: ClassVar[str] = "logsnr"
    lambda_min: ClassVar[float | None] = LAMBDA_MIN_DETERMINISTIC

    def __init__(self, steps: int = 20, clip_x0: bool = True, spacing: str | None = None):
        super().__init__(steps, spacing)
        self.clip_x0 = bool(clip_x0)

    def describe(self):
        return {**super().describe(), "clip_x0": self.clip_x0}

    def start(self, ctx: StepContext, times: list[float]) -> None:
        self._x0_prev: torch.Tensor | None = None
        self._h_prev = math.nan

    def step(self, ctx: StepContext, x: torch.Tensor, t: float, t_next: float | None) -> StepOut:
        a, s = ctx.alpha_sigma(t)
        pred = ctx.predict(x, t)
        if self.clip_x0:
            pred = clip_prediction(pred, x, a, s)
        x0 = pred.x0
        if t_next is None:
            return StepOut(x0, x0)  # to sigma = 0, first order: x = alpha_end * x0_hat with alpha_end = 1
        a_next, s_next = ctx.alpha_sigma(t_next)
        lam, lam_next = log_snr_half(a, s), log_snr_half(a_next, s_next)
        h = lam_next - lam
        phi = -math.expm1(-h)  # 1 - e^{-h}; exact 1 when the step starts at alpha = 0 (h = inf)
        if self._x0_prev is None or not math.isfinite(self._h_prev):
            d = x0  # first order (DPM-Solver++(1) = DDIM)
        else:
            r = self._h_prev / h
            d = (1.0 + 0.5 / r) * x0 - (0.5 / r) * self._x0_prev  # Lu et al. 2022b, Alg. 2, line 6
        # Lu et al. 2022b, eq. 9 / Alg. 2, line 7
        x = (s_next / s) * x + a_next * phi * d
        self._x0_prev, self._h_prev = x0, h
        return StepOut(ctx.project(x, t_next), x0)


class DPMSolverPP3MSampler(Sampler):
    """DPM-Solver++(3M): third-order multistep solver in data (x0) prediction (Lu et al. 2022b, sec. 4 and
    appendix B; the reference code's ``multistep_dpm_solver_third_order_update``, as in diffusers'
    ``DPMSolverMultistepScheduler(solver_order=3)``).

    With lambda = log(alpha / sigma), h = lambda_{i+1} - lambda_i, the last three clean-image estimates
    m0, m1, m2 (newest first) and r0 = h_{i-1} / h, r1 = h_{i-2} / h:
    D1_0 = (m0 - m1) / r0, D1_1 = (m1 - m2) / r1, D1 = D1_0 + r0 / (r0 + r1) (D1_0 - D1_1),
    D2 = (D1_0 - D1_1) / (r0 + r1), and
    x_{i+1} = (sigma_{i+1} / sigma_i) x_i + alpha_{i+1} [phi1 m0 + (1 - phi1 / h) D1 - ((h - phi1) / h^2 - 1/2) D2]
    with phi1 = 1 - e^{-h}. The first two steps warm up at orders 1 and 2; the last step, to sigma = 0, is
    first order (it lands on x0_hat), and with fewer than 15 steps the one before it is at most second
    order (``lower_order_final`` of the reference code: third-order extrapolation over the few large last
    steps is unstable). ``clip_x0`` as for DPM-Solver++(2M).
    """

    name: ClassVar[str] = "dpmpp3m"
    processes: ClassVar[tuple[str, ...]] = ("ddpm", "vpsde", "ncsn", "flow")
    options: ClassVar[tuple[str, ...]] = ("clip_x0", "spacing")
    summary: ClassVar[str] = "DPM-Solver++(3M) (Lu et al. 2022); 8-20 steps, 1 eval per step"
    default_spacing: ClassVar[str] = "logsnr"
    lambda_min: ClassVar[float | None] = LAMBDA_MIN_DETERMINISTIC
    #: below this many steps the step before the last is at most second order (as the reference code)
    LOWER_ORDER_FINAL_BELOW: ClassVar[int] = 15

    def __init__(self, steps: int = 10, clip_x0: bool = True, spacing: str | None = None):
        super().__init__(steps, spacing)
        self.clip_x0 = bool(clip_x0)

    def describe(self):
        return {**super().describe(), "clip_x0": self.clip_x0}

    def start(self, ctx: StepContext, times: list[float]) -> None:
        self._hist: list[tuple[float, torch.Tensor]] = []  # (lambda, x0_hat) of the earlier steps, newest last
        self._n = len(times)
        self._i = 0

    def step(self, ctx: StepContext, x: torch.Tensor, t: float, t_next: float | None) -> StepOut:
        a, s = ctx.alpha_sigma(t)
        pred = ctx.predict(x, t)
        if self.clip_x0:
            pred = clip_prediction(pred, x, a, s)
        m0 = pred.x0
        i, self._i = self._i, self._i + 1
        if t_next is None:
            return StepOut(m0, m0)  # to sigma = 0, first order: x = x0_hat
        a_next, s_next = ctx.alpha_sigma(t_next)
        lam, lam_next = log_snr_half(a, s), log_snr_half(a_next, s_next)
        h = lam_next - lam
        phi1 = -math.expm1(-h)  # 1 - e^{-h}; exact 1 when the step starts at alpha = 0 (h = inf)
        usable = [(lm, m) for lm, m in self._hist[-2:] if math.isfinite(lm)] if math.isfinite(lam) else []
        order = 1 + len(usable)
        if self._n < self.LOWER_ORDER_FINAL_BELOW and i == self._n - 2:
            order = min(order, 2)
        x_new = (s_next / s) * x + a_next * phi1 * m0
        if order >= 2:
            lam1, m1 = usable[-1]
            r0 = (lam - lam1) / h
            d1_0 = (m0 - m1) / r0
            if order == 2:
                x_new = x_new + (0.5 * a_next * phi1) * d1_0  # DPM-Solver++(2M), Lu et al. 2022b, Alg. 2
            else:
                lam2, m2 = usable[-2]
                r1 = (lam1 - lam2) / h
                d1_1 = (m1 - m2) / r1
                d1 = d1_0 + (r0 / (r0 + r1)) * (d1_0 - d1_1)
                d2 = (d1_0 - d1_1) / (r0 + r1)
                x_new = x_new + (a_next * (1.0 - phi1 / h)) * d1 - (a_next * ((h - phi1) / (h * h) - 0.5)) * d2
        self._hist = (self._hist + [(lam, m0)])[-2:]
        return StepOut(ctx.project(x_new, t_next), m0)


class EulerFlowSampler(Sampler):
    """Euler's method on the flow-matching ODE dx/dt = v(x, t) from t = 1 to 0 (Liu et al. 2023, sec. 2)."""

    name: ClassVar[str] = "euler"
    processes: ClassVar[tuple[str, ...]] = ("flow",)
    summary: ClassVar[str] = "Euler ODE for flow matching (rectified flow); 10-50 steps"
    options: ClassVar[tuple[str, ...]] = ("spacing",)

    def __init__(self, steps: int = 25, spacing: str | None = None):
        super().__init__(steps, spacing)

    def step(self, ctx: StepContext, x: torch.Tensor, t: float, t_next: float | None) -> StepOut:
        pred = ctx.predict(x, t)
        v = pred.output if pred.output is not None else pred.eps - pred.x0
        t_to = 0.0 if t_next is None else t_next  # the last step goes to the data end, t = 0
        x = x + (t_to - t) * v  # x_{t'} = x_t + (t' - t) v
        return StepOut(x if t_next is None else ctx.project(x, t_next), pred.x0)
