"""Annealed Langevin dynamics (Song & Ermon 2019, Algorithm 1) for the NCSN process."""

from __future__ import annotations

from typing import ClassVar

import torch

from app.engine.errors import UserError
from app.engine.sampling.base import Sampler, StepContext, StepOut, langevin_step


class LangevinSampler(Sampler):
    """``steps`` noise levels (geometric, sigma_max .. sigma_min), ``n_steps_each`` Langevin steps each.

    The step size at level i is alpha_i = eps * sigma_i^2 / sigma_L^2 (Song & Ermon 2019, Alg. 1,
    line 3) with ``step_lr`` = eps. With ``steps`` equal to the process's ``num_levels`` the
    levels are exactly the training levels. ``final_denoise`` adds one Tweedie step x + sigma_L^2
    s(x, sigma_L) at the end (Song & Ermon 2020, sec. 4.2; Jolicoeur-Martineau et al. 2021).
    """

    name: ClassVar[str] = "langevin"
    processes: ClassVar[tuple[str, ...]] = ("ncsn",)
    stochastic: ClassVar[bool] = True
    options: ClassVar[tuple[str, ...]] = ("n_steps_each", "step_lr", "final_denoise")
    summary: ClassVar[str] = "annealed Langevin dynamics (Song & Ermon 2019, Alg. 1); NCSN only"

    def __init__(self, steps: int = 100, n_steps_each: int = 5, step_lr: float = 2e-5, final_denoise: bool = True):
        super().__init__(steps)
        if int(n_steps_each) < 1:
            raise UserError(f"Langevin needs n_steps_each >= 1, got {n_steps_each}")
        if not float(step_lr) > 0:
            raise UserError(f"Langevin step_lr must be > 0, got {step_lr}")
        self.n_steps_each = int(n_steps_each)
        self.step_lr = float(step_lr)
        self.final_denoise = bool(final_denoise)

    def describe(self):
        return {**super().describe(), "n_steps_each": self.n_steps_each, "step_lr": self.step_lr,
                "final_denoise": self.final_denoise}

    def progress_steps(self, process) -> int:
        return self.steps * self.n_steps_each

    def network_evals(self, process) -> int:
        return self.steps * self.n_steps_each + int(self.final_denoise)

    def _level_times(self, process) -> list[float]:
        if self.steps == getattr(process, "num_levels", -1):
            return [float(t) for t in process.level_times()]
        return [float(t) for t in process.sampling_times(self.steps)]

    def grid(self, process) -> list[float]:
        """Each level repeated ``n_steps_each`` times: one driver step per Langevin step."""
        return [t for t in self._level_times(process) for _ in range(self.n_steps_each)]

    def start(self, ctx: StepContext, times: list[float]) -> None:
        self._sigma_last = ctx.alpha_sigma(times[-1])[1]

    def step(self, ctx: StepContext, x: torch.Tensor, t: float, t_next: float | None) -> StepOut:
        _, sigma = ctx.alpha_sigma(t)
        step = self.step_lr * (sigma / self._sigma_last) ** 2  # Alg. 1, line 3: alpha_i = eps sigma_i^2 / sigma_L^2
        pred = ctx.predict(x, t)
        score = ctx.score(pred, x, t)
        # Alg. 1, line 6: x <- x + alpha_i / 2 * s(x, sigma_i) + sqrt(alpha_i) z
        x = langevin_step(x, score, 0.5 * step, ctx.randn(x))
        return StepOut(ctx.project(x, t), pred.x0)

    def finish(self, ctx: StepContext, x: torch.Tensor, times: list[float]) -> torch.Tensor:
        if not self.final_denoise:
            return x
        pred = ctx.predict(x, times[-1])
        # Tweedie's formula at sigma_L: E[x0 | x] = x + sigma_L^2 * s(x, sigma_L) (= x0_hat for alpha = 1)
        return x + self._sigma_last**2 * ctx.score(pred, x, times[-1])
