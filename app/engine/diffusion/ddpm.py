"""DDPM: the discrete variance-preserving process (Ho et al. 2020) with linear or cosine betas.

T discrete steps; index i = 0..T-1 (diffusers' "timestep") has alpha_bar_i = prod_{j<=i} (1 - beta_j).
On the common continuous axis, index i sits at t = (i + 1) / T and t = 0 is the clean image
(alpha_bar = 1), so alpha(t) = sqrt(alpha_bar) and sigma(t) = sqrt(1 - alpha_bar) are defined on
[0, 1]; between grid points log(alpha_bar) is interpolated linearly so that ODE samplers may use any
t. The network receives the index (t * T - 1) as its noise level.
"""

from __future__ import annotations

import math
from enum import StrEnum
from typing import Any, ClassVar

import torch

from app.engine.diffusion.base import PredictionType, Process
from app.engine.errors import UserError


class BetaSchedule(StrEnum):
    LINEAR = "linear"
    COSINE = "cosine"


def linear_betas(T: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """Linear betas 1e-4 -> 0.02 (Ho et al. 2020, sec. 4), scaled for T != 1000 as in Nichol & Dhariwal."""
    scale = 1000.0 / T
    return torch.linspace(scale * beta_start, scale * beta_end, T, dtype=torch.float64)


def cosine_betas(T: int, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """Cosine schedule: alpha_bar(t) = f(t) / f(0), f(t) = cos^2(((t/T + s) / (1 + s)) * pi / 2)
    (Nichol & Dhariwal 2021, eq. 17), betas = 1 - alpha_bar_t / alpha_bar_{t-1} clipped at 0.999."""
    steps = torch.arange(T + 1, dtype=torch.float64) / T
    f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
    abar = f / f[0]
    return (1 - abar[1:] / abar[:-1]).clamp(max=max_beta)


class DDPM(Process):
    """Discrete VP process with T steps; epsilon or v prediction."""

    name: ClassVar[str] = "ddpm"
    prediction_types = (PredictionType.EPSILON, PredictionType.V)
    discrete: ClassVar[bool] = True

    def __init__(self, T: int = 1000, schedule: str = "linear", prediction_type: str | None = None):
        super().__init__(prediction_type)
        if not 2 <= int(T) <= 100_000:
            raise UserError(f"DDPM needs 2 <= T <= 100000 steps, got {T}")
        if schedule not in BetaSchedule.__members__.values():
            raise UserError(f"DDPM schedule {schedule!r} is not one of {', '.join(s.value for s in BetaSchedule)}")
        self.T = int(T)
        self.schedule = BetaSchedule(schedule)
        betas = linear_betas(self.T) if self.schedule == BetaSchedule.LINEAR else cosine_betas(self.T)
        abar = torch.cumprod(1.0 - betas, 0)  # Ho et al. 2020, eq. 4
        self.betas = betas.float()
        self.alphas = (1.0 - betas).float()
        self.alphas_cumprod = abar.float()
        # log alpha_bar on the grid t = k / T, k = 0..T (k = 0: clean), for interpolation
        self._log_abar = torch.cat([torch.zeros(1, dtype=torch.float64), torch.log(abar)]).float()
        self.t_min = 1.0 / self.T
        self.t_max = 1.0

    @property
    def num_timesteps(self) -> int:
        return self.T

    def index_of_t(self, t: torch.Tensor) -> torch.Tensor:
        """The nearest discrete index i (0..T-1) of time t = (i + 1) / T."""
        return (torch.round(t * self.T) - 1).clamp(0, self.T - 1).long()

    def t_of_index(self, i: torch.Tensor | int) -> torch.Tensor:
        return (torch.as_tensor(i, dtype=torch.float32) + 1.0) / self.T

    def _log_alpha_bar(self, t: torch.Tensor) -> torch.Tensor:
        k = (t.float() * self.T).clamp(0, self.T)
        lo = k.floor().clamp(max=self.T - 1)
        frac = k - lo
        table = self._log_abar.to(t.device)
        lo_i = lo.long()
        return table[lo_i] * (1 - frac) + table[lo_i + 1] * frac

    def alpha_sigma(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        abar = torch.exp(self._log_alpha_bar(t))
        return abar.sqrt(), (1.0 - abar).clamp_min(0).sqrt()

    def net_level(self, t: torch.Tensor) -> torch.Tensor:
        return t.float() * self.T - 1.0  # the discrete index 0..T-1 on the grid

    def sample_train_t(self, n, generator=None, device="cpu"):
        """Uniform over the T indices (Ho et al. 2020, Algorithm 1)."""
        gen_device = generator.device if generator is not None else torch.device("cpu")
        i = torch.randint(0, self.T, (n,), generator=generator, device=gen_device)
        return ((i.float() + 1.0) / self.T).to(device)

    def sampling_times(self, n_steps: int) -> torch.Tensor:
        """n_steps grid times, "trailing" spacing (Lin et al. 2024, table 2): always starts at t = 1."""
        if not 1 <= n_steps <= self.T:
            raise UserError(f"DDPM with T={self.T} can sample with 1..{self.T} steps, not {n_steps}")
        k = torch.round(torch.arange(self.T, 0, -self.T / n_steps, dtype=torch.float64))[:n_steps]
        return (k / self.T).float()

    def prior_std(self) -> float:
        return 1.0

    def options(self) -> dict[str, Any]:
        return {"T": self.T, "schedule": self.schedule.value, "prediction_type": self.prediction_type.value}
