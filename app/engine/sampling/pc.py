"""Predictor-corrector sampling (Song et al. 2021, Algorithms 2 and 3): reverse-diffusion predictor + Langevin corrector."""

from __future__ import annotations

import math
from typing import ClassVar

import torch

from app.engine.errors import UserError
from app.engine.sampling.base import Sampler, StepContext, StepOut, langevin_step


class PredictorCorrectorSampler(Sampler):
    """At each grid time: ``n_steps_each`` Langevin corrector steps with a target signal-to-noise
    ratio ``snr``, then one reverse-diffusion predictor step to the next time.

    Written for any Gaussian path through one transition of the forward chain x_t = a_r x_{t'} +
    s_r z (a_r = a / a', s_r^2 = s^2 - a_r^2 s'^2): VE (NCSN, Alg. 2, a_r = 1) and VP (DDPM,
    VP-SDE, Alg. 3, a_r = sqrt(1 - beta)). The last step returns the denoised mean (Tweedie).
    The corrector's step uses each image's own gradient and noise norms (Song et al.'s code
    averages them over the batch, which would make an image depend on its batch-mates).
    """

    name: ClassVar[str] = "pc"
    processes: ClassVar[tuple[str, ...]] = ("ncsn", "ddpm", "vpsde")
    stochastic: ClassVar[bool] = True
    options: ClassVar[tuple[str, ...]] = ("snr", "n_steps_each", "spacing")
    summary: ClassVar[str] = "predictor-corrector (Song et al. 2021, Alg. 2/3), reverse diffusion + Langevin"

    def __init__(self, steps: int = 500, snr: float = 0.16, n_steps_each: int = 1, spacing: str | None = None):
        super().__init__(steps, spacing)
        if not float(snr) > 0:
            raise UserError(f"PC sampler snr must be > 0, got {snr}")
        if int(n_steps_each) < 0:
            raise UserError(f"PC sampler n_steps_each (corrector steps) must be >= 0, got {n_steps_each}")
        self.snr = float(snr)
        self.n_steps_each = int(n_steps_each)

    def describe(self):
        return {**super().describe(), "snr": self.snr, "n_steps_each": self.n_steps_each}

    def network_evals(self, process) -> int:
        return self.steps * (1 + self.n_steps_each)

    def step(self, ctx: StepContext, x: torch.Tensor, t: float, t_next: float | None) -> StepOut:
        a, s = ctx.alpha_sigma(t)
        shape = tuple(x.shape[1:])
        if t_next is not None:
            a_next, s_next = ctx.alpha_sigma(t_next)
            a_r = a / a_next
            s_r2 = max(0.0, s * s - a_r * a_r * s_next * s_next)
        else:
            a_r, s_r2 = 1.0, 0.0
        # corrector: Langevin MCMC at t (Alg. 2 lines 7-10 / Alg. 3 lines 7-10)
        for _ in range(self.n_steps_each):
            pred = ctx.predict(x, t)
            grad = ctx.score(pred, x, t)
            z = ctx.randn(x)
            grad_norm = grad.flatten(1).norm(dim=1).clamp_min(1e-12)
            z_norm = z.flatten(1).norm(dim=1)
            # eps = 2 alpha_i (r ||z|| / ||g||)^2, alpha_i = 1 (VE) or a_r^2 = 1 - beta_i (VP)
            step = 2.0 * a_r * a_r * (self.snr * z_norm / grad_norm) ** 2
            step = step.reshape(-1, *([1] * len(shape)))
            x = ctx.project(langevin_step(x, grad, step, z), t)
        pred = ctx.predict(x, t)
        if t_next is None:
            return StepOut(pred.x0, pred.x0)  # denoise at the end: the posterior mean E[x0 | x_t] (Tweedie)
        # reverse-diffusion predictor (Song et al. 2021, eq. 46 / Alg. 2-3 line 4-5):
        # x' = x - f(x) + G^2 s(x) + G z with f(x) = (a_r - 1) x and G^2 = s_r^2
        score = ctx.score(pred, x, t)
        x = (2.0 - a_r) * x + s_r2 * score + math.sqrt(s_r2) * ctx.randn(x)
        return StepOut(ctx.project(x, t_next), pred.x0)
