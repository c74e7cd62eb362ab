"""DDIM (Song, Meng & Ermon 2021): the deterministic (eta = 0) or partly stochastic sampler for any Gaussian path."""

from __future__ import annotations

from typing import ClassVar

import torch

from app.engine.errors import UserError
from app.engine.sampling.base import LAMBDA_MIN_DETERMINISTIC, Sampler, StepContext, StepOut, clip_prediction


def ddim_coefficients(alpha, sigma, alpha_next, sigma_next, eta: float = 0.0):
    """(c, d) of one DDIM step x' = alpha' x0_hat + d eps_hat + c z for any Gaussian path x = alpha x0 + sigma z.

    Song et al. 2021, eq. 16, written for a general path: the std of the posterior q(x_s | x_t, x0) is
    s' sqrt(1 - (a s' / (a' s))^2), times ``eta`` (0 deterministic, 1 ancestral); eq. 12: d = sqrt(s'^2 - c^2).
    Numbers give numbers (float64); tensors (one value per image, broadcastable) give tensors. The one DDIM
    update of the engine: generation (``DDIMSampler``) and the posterior samplers that run it, and the predictor of ``pc_ddim``."""
    scalar = not torch.is_tensor(alpha)
    a, s, a2, s2 = (torch.as_tensor(v, dtype=torch.float64) if scalar else v
                    for v in (alpha, sigma, alpha_next, sigma_next))
    ratio = (a * s2) / (a2 * s).clamp_min(1e-12)
    c = eta * s2 * torch.sqrt((1 - ratio**2).clamp_min(0.0))
    d = torch.sqrt((s2**2 - c**2).clamp_min(0.0))
    return (float(c), float(d)) if scalar else (c, d)


class DDIMSampler(Sampler):
    """DDIM on the process's time grid; eta = 0 is the probability-flow ODE's Euler step, eta = 1 ancestral.

    Written with alpha / sigma of any Gaussian path x_t = alpha x0 + sigma z, so it serves DDPM,
    VP-SDE, NCSN (VE: alpha = 1) and flow matching (where eta = 0 is exactly the Euler step in t).
    """

    name: ClassVar[str] = "ddim"
    processes: ClassVar[tuple[str, ...]] = ("ddpm", "vpsde", "ncsn", "flow")
    stochastic: ClassVar[bool] = False  # True only with eta > 0
    options: ClassVar[tuple[str, ...]] = ("eta", "clip_x0", "spacing")
    summary: ClassVar[str] = "DDIM (Song et al. 2021), eta 0 = deterministic; 20-100 steps"
    lambda_min: ClassVar[float | None] = LAMBDA_MIN_DETERMINISTIC

    def __init__(self, steps: int = 50, eta: float = 0.0, clip_x0: bool = True, spacing: str | None = None):
        super().__init__(steps, spacing)
        if not 0.0 <= float(eta) <= 1.0:
            raise UserError(f"DDIM eta must be in [0, 1], got {eta}")
        self.eta = float(eta)
        self.clip_x0 = bool(clip_x0)

    def describe(self):
        return {**super().describe(), "eta": self.eta, "clip_x0": self.clip_x0}

    def step(self, ctx: StepContext, x: torch.Tensor, t: float, t_next: float | None) -> StepOut:
        a, s = ctx.alpha_sigma(t)
        pred = ctx.predict(x, t)
        if self.clip_x0:
            pred = clip_prediction(pred, x, a, s, rederive_eps=False)
        if t_next is None:
            return StepOut(pred.x0, pred.x0)  # last step: to the clean image (alpha = 1, sigma = 0)
        a_next, s_next = ctx.alpha_sigma(t_next)
        c, d = ddim_coefficients(a, s, a_next, s_next, self.eta if s > 0.0 else 0.0)
        x_new = a_next * pred.x0 + d * pred.eps
        if c > 0.0:
            x_new = x_new + c * ctx.randn(x)
        return StepOut(ctx.project(x_new, t_next), pred.x0)
