"""Rectified flow / flow matching: the straight path x_t = (1 - t) x0 + t z, velocity prediction.

The network regresses the constant velocity dx/dt = z - x0 (Liu et al. 2023, eq. 1; Lipman et
al. 2023, eq. 23 with sigma_min = 0); sampling integrates dx/dt = v from t = 1 to 0. Training t is
uniform or logit-normal (Esser et al. 2024, sec. 3.1), which puts more weight on mid-path times.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, ClassVar

import torch

from app.engine.diffusion.base import PredictionType, Process
from app.engine.errors import UserError


class TimeSampling(StrEnum):
    UNIFORM = "uniform"
    LOGIT_NORMAL = "logit_normal"


class RectifiedFlow(Process):
    """alpha = 1 - t, sigma = t on [0, 1]; the net predicts the velocity z - x0."""

    name: ClassVar[str] = "flow"
    prediction_types = (PredictionType.VELOCITY,)

    def __init__(self, t_sampling: str = "uniform", prediction_type: str | None = None):
        super().__init__(prediction_type)
        if t_sampling not in TimeSampling.__members__.values():
            raise UserError(f"t_sampling {t_sampling!r} is not one of {', '.join(s.value for s in TimeSampling)}")
        self.t_sampling = TimeSampling(t_sampling)
        self.t_min, self.t_max = 0.0, 1.0

    def alpha_sigma(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        t = t.float()
        return 1.0 - t, t

    def sample_train_t(self, n, generator=None, device="cpu"):
        gen_device = generator.device if generator is not None else torch.device("cpu")
        if self.t_sampling == TimeSampling.LOGIT_NORMAL:  # Esser et al. 2024, eq. 19 (m = 0, s = 1)
            t = torch.sigmoid(torch.randn(n, generator=generator, device=gen_device))
        else:
            t = torch.rand(n, generator=generator, device=gen_device)
        return t.to(device)

    def prior_std(self) -> float:
        return 1.0

    def options(self) -> dict[str, Any]:
        return {"t_sampling": self.t_sampling.value, "prediction_type": self.prediction_type.value}
