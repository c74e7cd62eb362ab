"""Continuous VP-SDE with a cosine schedule (Song et al. 2021; Nichol & Dhariwal 2021).

alpha(t)^2 + sigma(t)^2 = 1 with the cosine schedule written through its log-SNR,
lambda(t) = -2 log tan(a t + b), which is exactly alpha = cos(pi t / 2), sigma = sin(pi t / 2)
truncated to lambda in [logsnr_min, logsnr_max] so both ends stay finite (Kingma et al. 2021;
Hoogeboom et al. 2023, "simple diffusion", sec. 3.1). Training draws t uniformly on [0, 1].
Optionally adds an L1 loss on the 2-D Fourier transform of the predicted clean image.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch

from app.engine.diffusion.base import PredictionType, Process
from app.engine.errors import UserError


class VPSDE(Process):
    """Continuous variance-preserving process, cosine schedule; epsilon or v prediction."""

    name: ClassVar[str] = "vpsde"
    prediction_types = (PredictionType.EPSILON, PredictionType.V)

    def __init__(self, freq_loss_weight: float = 0.1, logsnr_min: float = -15.0, logsnr_max: float = 15.0,
                 prediction_type: str | None = None):
        super().__init__(prediction_type)
        if not logsnr_min < logsnr_max:
            raise UserError(f"VP-SDE needs logsnr_min < logsnr_max, got {logsnr_min} and {logsnr_max}")
        if freq_loss_weight < 0:
            raise UserError(f"freq_loss_weight must be >= 0, got {freq_loss_weight}")
        self.freq_loss_weight = float(freq_loss_weight)
        self.logsnr_min, self.logsnr_max = float(logsnr_min), float(logsnr_max)
        self._b = math.atan(math.exp(-0.5 * self.logsnr_max))
        self._a = math.atan(math.exp(-0.5 * self.logsnr_min)) - self._b
        self.t_min, self.t_max = 0.0, 1.0

    def log_snr(self, t: torch.Tensor) -> torch.Tensor:
        return -2.0 * torch.log(torch.tan(self._a * t.float() + self._b))

    def alpha_sigma(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lam = self.log_snr(t)
        return torch.sigmoid(lam).sqrt(), torch.sigmoid(-lam).sqrt()  # alpha^2 = sigmoid(lambda)

    def prior_std(self) -> float:
        return 1.0

    def extra_loss(self, out, xt, t, x0):
        """freq_loss_weight * alpha^2 * mean |FFT(x0_hat) - FFT(x0)| (orthonormal 2-D FFT).

        The alpha^2 = SNR / (1 + SNR) factor keeps the term bounded where x0_hat is undetermined
        (alpha -> 0 makes (x - sigma eps_hat) / alpha blow up) and lets it act where images form.
        """
        if self.freq_loss_weight == 0:
            return super().extra_loss(out, xt, t, x0)
        x0_hat = self.output_to_prediction(out, xt, t).x0
        diff = torch.fft.fft2(x0_hat - x0, norm="ortho").abs().flatten(1).mean(1)
        a, _ = self.alpha_sigma(t)
        return self.freq_loss_weight * a * a * diff

    def options(self) -> dict[str, Any]:
        return {"freq_loss_weight": self.freq_loss_weight, "logsnr_min": self.logsnr_min,
                "logsnr_max": self.logsnr_max, "prediction_type": self.prediction_type.value}
