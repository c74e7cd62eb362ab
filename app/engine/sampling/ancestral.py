"""Ancestral sampling (Ho et al. 2020, Algorithm 2): draw x_{t'} from the Gaussian posterior q(x_{t'} | x_t, x0_hat)."""

from __future__ import annotations

import math
from typing import ClassVar

import torch

from app.engine.errors import UserError
from app.engine.sampling.base import Sampler, StepContext, StepOut, clip_prediction


class AncestralSampler(Sampler):
    """DDPM ancestral sampling on the process's time grid.

    With DDPM and steps == T this is exactly Ho et al. 2020, Algorithm 2 with the posterior
    variance sigma_t^2 = beta~_t (their sec. 3.2); with fewer steps it skips along the grid using
    the posterior between grid points (as "respacing" does, Nichol & Dhariwal 2021, sec. 4). For the
    VP-SDE it is the ancestral discretisation of the reverse SDE, and for NCSN the ancestral
    sampler of SMLD (Song et al. 2021, appendix F, eq. 47).
    """

    name: ClassVar[str] = "ancestral"
    processes: ClassVar[tuple[str, ...]] = ("ddpm", "vpsde", "ncsn")
    stochastic: ClassVar[bool] = True
    options: ClassVar[tuple[str, ...]] = ("clip_x0", "variance", "spacing")
    summary: ClassVar[str] = "DDPM ancestral (Ho et al. 2020, Alg. 2); 1000 steps for DDPM's full chain"

    def __init__(self, steps: int = 1000, clip_x0: bool = True, variance: str = "posterior", spacing: str | None = None):
        super().__init__(steps, spacing)
        if variance not in ("posterior", "beta"):
            raise UserError(f"ancestral variance {variance!r} is not one of posterior, beta")
        self.clip_x0 = bool(clip_x0)
        self.variance = variance

    def describe(self):
        return {**super().describe(), "clip_x0": self.clip_x0, "variance": self.variance}

    def step(self, ctx: StepContext, x: torch.Tensor, t: float, t_next: float | None) -> StepOut:
        a, s = ctx.alpha_sigma(t)
        pred = ctx.predict(x, t)
        if self.clip_x0:
            pred = clip_prediction(pred, x, a, s)
        if t_next is None:
            return StepOut(pred.x0, pred.x0)  # Alg. 2 returns the mean at t = 1 (no noise): the clean estimate
        a_prev, s_prev = ctx.alpha_sigma(t_next)
        # one transition x_t = a_r x_{t'} + s_r z of the forward chain (Kingma et al. 2021,
        # VDM, eq. 3-4): a_r = a / a', s_r^2 = s^2 - a_r^2 s'^2 (= beta_t for DDPM's single step)
        a_r = a / a_prev
        s_r2 = max(0.0, s * s - a_r * a_r * s_prev * s_prev)
        # posterior mean (Ho et al. 2020, eq. 7; VDM eq. 32): a' s_r^2 / s^2 x0 + a_r s'^2 / s^2 x_t
        mean = (a_prev * s_r2 / (s * s)) * pred.x0 + (a_r * s_prev * s_prev / (s * s)) * x
        if self.variance == "posterior":
            var = s_r2 * s_prev * s_prev / (s * s)  # beta~_t (Ho et al. 2020, eq. 7)
        else:
            var = s_r2  # sigma_t^2 = beta_t (Ho et al. 2020, sec. 3.2)
        return StepOut(ctx.project(mean + math.sqrt(var) * ctx.randn(x), t_next), pred.x0)
