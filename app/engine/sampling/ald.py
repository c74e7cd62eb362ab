"""Annealed Langevin dynamics in the variance-exploding parametrisation, for any process (the MRI
reconstruction sampler "score-ald"; with no hooks it samples the prior).

The state is x_ve = x_t / alpha_t = x0 + (sigma_t / alpha_t) z; a VP / DDPM network evaluated at alpha_t x_ve
gives the score of x_ve as -eps / (sigma_t / alpha_t). The levels are geometric in sigma / alpha (uniform in
log-SNR, ``ald_levels``) and each level runs ``langevin_steps`` Langevin steps of size delta sigma_i^2 with
delta from the level ratio (``langevin_step_fraction``; Song & Ermon, "Improved techniques for training
score-based generative models", NeurIPS 2020, technique 4), then one evaluation for the level's clean
estimate. ``ctx.project`` (data consistency) is applied at the start of each level and after every step, with
``scale = alpha_t`` (the state is x_t / alpha_t). The first sample is N(0, sigma_max^2): ``prior_scale``.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch

from app.engine.diffusion.base import time_at_log_snr
from app.engine.errors import UserError
from app.engine.sampling.base import Sampler, StepContext, StepOut, langevin_step

#: the range of annealed Langevin's noise levels sigma / alpha in network units (images of
#: 99th-percentile magnitude 1). Processes whose path reaches sigma / alpha = 0 or infinity (rectified
#: flow at t = 0 and 1) or far beyond it (the VP-SDE's 1808 at t_max, where alpha_t x is all noise)
#: are cut to it: every level above 1e3 is pure noise, every level below 1e-3 changes no pixel.
ALD_SIGMA_RANGE = (1e-3, 1e3)


def ald_levels(process, steps: int, sigma_range: tuple[float, float] = ALD_SIGMA_RANGE) -> torch.Tensor:
    """``steps`` decreasing times whose sigma / alpha are geometric (uniform log-SNR) over the process's
    range cut to ``sigma_range``: the noise levels of annealed Langevin (Song & Ermon 2019, sec. 4.2;
    ``ALD_SIGMA_RANGE``) and of the "dds" sampler (``DDS_SIGMA_RANGE``).

    For NCSN these are its own geometric levels (sampling_times); for VP paths a uniform grid in t
    has level ratios of 14..60 near t_max and 2 near t = 0, which a few Langevin steps per level can
    not anneal (the excess noise grows from level to level), so the times come from bisection on
    ``log_snr``, which is monotone in t for every process.
    """
    if steps < 1:
        raise UserError(f"the number of noise levels must be at least 1, got {steps}")
    ends = torch.tensor([process.t_max, process.t_min], dtype=torch.float32)
    a, s = process.alpha_sigma(ends)
    with np.errstate(divide="ignore"):
        ratio = (s.double() / a.double()).numpy()
    hi = float(min(ratio[0], sigma_range[1]))
    lo = float(max(ratio[1], sigma_range[0]))
    if steps == 1 or hi <= lo:
        sig = torch.full((steps,), hi, dtype=torch.float64)
    else:
        sig = torch.exp(torch.linspace(np.log(hi), np.log(lo), steps, dtype=torch.float64))
    return time_at_log_snr(process, -2.0 * torch.log(sig)).float()  # the times of each level's log-SNR


def langevin_step_fraction(gamma: float, n_steps: int) -> float:
    """delta of the annealed Langevin step ``delta * sigma_i^2`` for level ratio gamma = sigma_{i-1} /
    sigma_i and ``n_steps`` Langevin steps per level.

    Song & Ermon 2020 ("Improved techniques", technique 4) pick the step so that n_steps Langevin steps
    at level i carry a sample with noise std gamma sigma_i (one from level i-1) to sigma_i: in the
    noise-dominated directions the score is -x / sigma_i^2, each step multiplies the excess variance by
    k = (1 - delta)^2 and the chain's own variance tends to c sigma_i^2, c = 1 / (1 - delta / 2) (the
    discretisation bias). Here the excess carried over from earlier levels is included: the variance
    ratio settles where v = k^T (gamma^2 v - c) + c, i.e. v* = c (1 - k^T) / (1 - k^T gamma^2) (finite
    only while k^T gamma^2 < 1 — the old fixed step 2 (0.16 sigma_i)^2 broke that for VP grids and the
    noise grew geometrically); delta minimises |v* - 1|.
    """
    d = np.linspace(1e-3, 0.999, 999)
    kt = (1.0 - d) ** (2 * int(n_steps))
    c = 1.0 / (1.0 - d / 2.0)
    ok = kt * gamma**2 < 1.0
    v = np.where(ok, c * (1.0 - kt) / np.where(ok, 1.0 - kt * gamma**2, 1.0), np.inf)
    return float(d[int(np.argmin(np.abs(v - 1.0)))])


class AnnealedLangevinVE(Sampler):
    """See the module docstring. ``steps`` levels, ``langevin_steps`` Langevin steps per level."""

    name: ClassVar[str] = "ald"
    processes: ClassVar[tuple[str, ...]] = ("ncsn", "ddpm", "vpsde", "flow")
    stochastic: ClassVar[bool] = True
    options: ClassVar[tuple[str, ...]] = ("langevin_steps",)
    summary: ClassVar[str] = "annealed Langevin (Song & Ermon 2019, 2020) on x_t / alpha_t, any process"

    def __init__(self, steps: int = 100, langevin_steps: int = 2,
                 sigma_range: tuple[float, float] = ALD_SIGMA_RANGE):
        super().__init__(steps)
        if int(langevin_steps) < 1:
            raise UserError(f"annealed Langevin needs at least 1 Langevin step per level, got {langevin_steps}")
        self.langevin_steps = int(langevin_steps)
        self.sigma_range = sigma_range

    def progress_steps(self, process) -> int:
        return self.steps

    def network_evals(self, process) -> int:
        return self.steps * (self.langevin_steps + 1)

    def grid(self, process) -> list[float]:
        return [float(t) for t in ald_levels(process, self.steps, self.sigma_range)]

    def levels(self, process, times: list[float]) -> tuple[list[float], list[float]]:
        """(alpha_t, sigma_t / alpha_t) of each level."""
        a_all, s_all = process.alpha_sigma(torch.tensor(times, dtype=torch.float32))
        return [float(a) for a in a_all], (s_all.double() / a_all.double()).tolist()

    def prior_scale(self, process) -> float:
        """The std of the first sample x_ve: sigma / alpha of the top level."""
        return self.levels(process, self.grid(process)[:1])[1][0]

    def start(self, ctx: StepContext, times: list[float]) -> None:
        self._alpha, self._sig = self.levels(ctx.process, times)
        sig = self._sig
        gamma = (sig[0] / sig[-1]) ** (1.0 / (len(sig) - 1)) if len(sig) > 1 else 1.0
        self._delta = langevin_step_fraction(gamma, self.langevin_steps)
        self._i = 0
        self._x0 = None

    def step(self, ctx: StepContext, x: torch.Tensor, t: float, t_next: float | None) -> StepOut:
        a_t, sv, delta = self._alpha[self._i], self._sig[self._i], self._delta

        def ve_prediction(xv):
            # the network at x_t = alpha x_ve; x0 is the same in both parametrisations and the score of x_ve
            # is alpha times the score of x_t: -eps / (sigma / alpha)
            pred = ctx.predict(a_t * xv, t)
            return pred.x0, -pred.eps / sv

        x = ctx.project(x, t, scale=a_t)
        for _ in range(self.langevin_steps):
            _, score = ve_prediction(x)
            # Langevin step (Song & Ermon 2019, Alg. 1) with step delta sigma_i^2: in the noise-dominated
            # directions x <- (1 - delta) x + delta x0_hat + sqrt(2 delta) sigma_i z
            x = langevin_step(x, score, delta * sv**2, ctx.randn(x))
            x = ctx.project(x, t, scale=a_t)
        self._x0, _ = ve_prediction(x)
        self._i += 1
        return StepOut(x, self._x0)

    def finish(self, ctx: StepContext, x: torch.Tensor, times: list[float]) -> torch.Tensor:
        return self._x0  # the last level's clean estimate
