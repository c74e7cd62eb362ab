"""NCSN: the variance-exploding process with geometric noise levels (Song & Ermon 2019, 2020).

x = x0 + sigma * z with L levels sigma_1 > ... > sigma_L geometric between sigma_max and sigma_min.
On the common time axis sigma(t) = sigma_min * (sigma_max / sigma_min)^t, t in [0, 1], so level i
(0-based, largest first) sits at t = 1 - i / (L - 1). Training draws a level uniformly and uses
denoising score matching with lambda(sigma) = sigma^2 weighting (Song & Ermon 2019, eq. 5-6).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch

from app.engine.diffusion.base import PredictionType, Process
from app.engine.errors import UserError


class NCSN(Process):
    """VE process over L geometric levels; the net outputs sigma * score (NCSNv2) or epsilon."""

    name: ClassVar[str] = "ncsn"
    prediction_types = (PredictionType.SCORE, PredictionType.EPSILON)
    discrete: ClassVar[bool] = True

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 50.0, num_levels: int = 100,
                 prediction_type: str | None = None):
        super().__init__(prediction_type)
        if not 0 < sigma_min < sigma_max:
            raise UserError(f"NCSN needs 0 < sigma_min < sigma_max, got sigma_min={sigma_min}, sigma_max={sigma_max}")
        if not 2 <= int(num_levels) <= 10_000:
            raise UserError(f"NCSN needs 2 <= num_levels <= 10000, got {num_levels}")
        self.sigma_min = float(sigma_min)
        self.sigma_max = float(sigma_max)
        self.num_levels = int(num_levels)
        self._log_ratio = math.log(self.sigma_max / self.sigma_min)
        self.t_min, self.t_max = 0.0, 1.0

    @property
    def sigmas(self) -> torch.Tensor:
        """(L,) noise levels, decreasing: sigma_max ... sigma_min (for annealed Langevin)."""
        return self.alpha_sigma(self.level_times())[1]

    def level_times(self) -> torch.Tensor:
        """(L,) times of the levels, decreasing 1 .. 0."""
        return torch.linspace(1.0, 0.0, self.num_levels, dtype=torch.float32)

    def alpha_sigma(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        sigma = self.sigma_min * torch.exp(t.float() * self._log_ratio)  # geometric sequence
        return torch.ones_like(sigma), sigma

    def sample_train_t(self, n, generator=None, device="cpu"):
        """A level drawn uniformly for each image: the average over levels of Song & Ermon 2019, eq. 6."""
        gen_device = generator.device if generator is not None else torch.device("cpu")
        i = torch.randint(0, self.num_levels, (n,), generator=generator, device=gen_device)
        return (1.0 - i.float() / (self.num_levels - 1)).to(device)

    # lambda(sigma) = sigma^2 in score space (Song & Ermon 2019, eq. 5-6):
    #   sigma^2 * || s(x, sigma) + z / sigma ||^2 = || sigma s(x, sigma) + z ||^2,
    # i.e. unit weight on the network output sigma * s (target -z), the base class's default.

    def sampling_times(self, n_steps: int) -> torch.Tensor:
        """n_steps times geometric in sigma; with n_steps == num_levels exactly the training levels."""
        return super().sampling_times(n_steps)

    def prior_std(self) -> float:
        return self.sigma_max  # x_T ~ N(0, sigma_max^2 I) (Song et al. 2021, sec. 3.4)

    def options(self) -> dict[str, Any]:
        return {"sigma_min": self.sigma_min, "sigma_max": self.sigma_max, "num_levels": self.num_levels,
                "prediction_type": self.prediction_type.value}
