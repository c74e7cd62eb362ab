"""Predictor-corrector with a DDIM (eta = 1) predictor and a bounded Langevin corrector, for any process in its
own parametrisation (the MRI reconstruction sampler "score-pc"; with no hooks it samples the prior).

At each grid time t: one Langevin corrector step with the step size of a target signal-to-noise ratio (Song et
al. 2021, Algorithm 5: eps = 2 (r ||z|| / ||s||)^2, alpha_i ~ 1), never larger than 2 (r sigma_t)^2, the step
the exact score of pure noise at this level gives (no unbounded step on a collapsed score); then the clean
estimate and eps at the new sample, from which the predictor, an ancestral step (DDIM with eta = 1, Song, Meng &
Ermon 2021, eq. 12 / 16), goes to the next time. ``ctx.project`` (data consistency) is applied to the first
sample and after every update. The last step returns the clean estimate.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from app.engine.errors import UserError
from app.engine.sampling.base import Sampler, StepContext, StepOut, langevin_step
from app.engine.sampling.ddim import ddim_coefficients


class PredictorCorrectorDDIM(Sampler):
    """See the module docstring. The grid is the process's own ``sampling_times``."""

    name: ClassVar[str] = "pc-ddim"
    processes: ClassVar[tuple[str, ...]] = ("ncsn", "ddpm", "vpsde", "flow")
    stochastic: ClassVar[bool] = True
    options: ClassVar[tuple[str, ...]] = ("snr",)
    summary: ClassVar[str] = "predictor-corrector: DDIM (eta 1) predictor, bounded Langevin corrector"

    def __init__(self, steps: int = 200, snr: float = 0.16):
        super().__init__(steps)
        if not float(snr) > 0:
            raise UserError(f"the corrector's snr must be > 0, got {snr}")
        self.snr = float(snr)

    def network_evals(self, process) -> int:
        return 2 * self.steps

    def grid(self, process) -> list[float]:
        return [float(t) for t in process.sampling_times(self.steps).to(torch.float32)]

    def start(self, ctx: StepContext, times: list[float]) -> None:
        self._first = True

    def step(self, ctx: StepContext, x: torch.Tensor, t: float, t_next: float | None) -> StepOut:
        a_t, s_t = ctx.alpha_sigma(t)
        if self._first:
            x = ctx.project(x, t)
            self._first = False
        score = ctx.score(ctx.predict(x, t), x, t)
        z = ctx.randn(x)
        gn = score.flatten(1).norm(dim=1).clamp_min(1e-12)
        zn = z.flatten(1).norm(dim=1)
        eps = torch.minimum(2 * (self.snr * zn / gn) ** 2, torch.full_like(gn, 2 * (self.snr * s_t) ** 2))
        eps = eps.reshape(-1, *([1] * (x.dim() - 1)))
        x = ctx.project(langevin_step(x, score, eps, z), t)
        pred = ctx.predict(x, t)
        if t_next is None:
            return StepOut(pred.x0, pred.x0)
        a_next, s_next = ctx.alpha_sigma(t_next)
        c, d = ddim_coefficients(a_t, s_t, a_next, s_next, 1.0)
        x = a_next * pred.x0 + d * pred.eps + c * ctx.randn(x)
        return StepOut(ctx.project(x, t_next), pred.x0)
