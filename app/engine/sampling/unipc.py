"""UniPC (Zhao et al. 2023): a multistep predictor (UniP) and a corrector (UniC) that reuses the next step's
network evaluation, so the corrector costs no extra evaluation; for 5-20 steps."""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
import torch

from app.engine.errors import UserError
from app.engine.sampling.base import (
    LAMBDA_MIN_DETERMINISTIC,
    Sampler,
    StepContext,
    StepOut,
    clip_prediction,
    log_snr_half,
)

UNIPC_VARIANTS = ("bh1", "bh2")


def unipc_coefficients(rks: list[float], h: float, order: int, variant: str = "bh2",
                       corrector: bool = False) -> tuple[float, np.ndarray]:
    """(B(h), rhos) of one UniP (``corrector=False``) or UniC step of ``order`` in data prediction.

    Zhao et al. 2023, Alg. 2 (UniP-p) and Alg. 1 / eq. 8 (UniC-p), written for x0 prediction
    (their appendix C; diffusers' ``multistep_uni_p_bh_update`` / ``multistep_uni_c_bh_update``):
    with hh = -h, the vector b_k = h phi_k(hh) k! / B(h), where h phi_1 = e^{hh} - 1 and
    h phi_{k+1} = h phi_k / hh - 1 / (k+1)!, and R_k = r^(k-1) over the ratios r_m =
    (lambda_{i-m} - lambda_i) / h of the earlier steps (1 appended). UniP-p solves the first p-1
    rows (p = 2: rho = 1/2); UniC-p all p rows (p = 1: rho = 1/2). B(h) is hh ("bh1") or e^{hh} - 1
    ("bh2"). Float64 numbers; ``rks`` are the p - 1 ratios of the earlier steps, newest first.
    """
    hh = -h
    h_phi_1 = math.expm1(hh)
    h_phi_k = h_phi_1 / hh - 1.0
    b_h = hh if variant == "bh1" else math.expm1(hh)
    r = np.array(list(rks) + [1.0], dtype=np.float64)
    rows, b = [], []
    factorial = 1.0
    for k in range(1, order + 1):
        rows.append(r ** (k - 1))
        b.append(h_phi_k * factorial / b_h)
        factorial *= k + 1
        h_phi_k = h_phi_k / hh - 1.0 / factorial
    R, bv = np.stack(rows), np.array(b)
    if corrector:
        rhos = np.array([0.5]) if order == 1 else np.linalg.solve(R, bv)
    elif order == 1:
        rhos = np.zeros(0)
    elif order == 2:
        rhos = np.array([0.5])
    else:
        rhos = np.linalg.solve(R[:-1, :-1], bv[:-1])
    return b_h, rhos


class UniPCSampler(Sampler):
    """UniPC-p multistep in data (x0) prediction (Zhao et al. 2023; diffusers' ``UniPCMultistepScheduler``).

    Step i evaluates the network once at x_i, giving x0_hat_i. The corrector UniC first refines x_i from
    the previous step's start x_{i-1} with that new estimate (the estimate itself is kept: it was taken
    at the uncorrected x_i, which is what lets UniC cost nothing); the predictor UniP-p then steps from the
    corrected x_i to x_{i+1} with x0_hat_i and the p - 1 before it. The order warms up from 1, is at most
    ``steps - i`` at step i (the reference code's ``lower_order_final``) and the last step, to sigma = 0,
    lands on x0_hat (first order: the corrector there would not change the result and is skipped).
    Network evaluations: ``steps``. ``order`` 1..3, default 2 (diffusers' default; Zhao et al. recommend 3
    for unconditional sampling, but on the class-conditional PneumoniaMNIST model of
    ``benchmarks/bench_sampler_nfe.py`` order 3 was worse at 5-10 evaluations: domain-FID 23.2 / 6.4 / 10.6
    at 5 / 8 / 10 against 2.8 / 2.5 / 4.5 for order 2, whose extrapolation over the few long steps is
    milder); ``variant`` B(h) = h ("bh1") or e^h - 1 ("bh2", the reference default);
    ``corrector=False`` gives UniP alone. ``clip_x0`` as for DPM-Solver++(2M).
    """

    name: ClassVar[str] = "unipc"
    processes: ClassVar[tuple[str, ...]] = ("ddpm", "vpsde", "ncsn", "flow")
    options: ClassVar[tuple[str, ...]] = ("order", "variant", "corrector", "clip_x0", "spacing")
    summary: ClassVar[str] = "UniPC predictor-corrector (Zhao et al. 2023); 5-20 steps, 1 eval per step"
    default_spacing: ClassVar[str] = "logsnr"
    lambda_min: ClassVar[float | None] = LAMBDA_MIN_DETERMINISTIC

    def __init__(self, steps: int = 10, order: int = 2, variant: str = "bh2", corrector: bool = True,
                 clip_x0: bool = True, spacing: str | None = None):
        super().__init__(steps, spacing)
        if int(order) not in (1, 2, 3):
            raise UserError(f"UniPC order must be 1, 2 or 3, got {order}")
        if variant not in UNIPC_VARIANTS:
            raise UserError(f"UniPC variant {variant!r} is not one of {', '.join(UNIPC_VARIANTS)}")
        self.order = int(order)
        self.variant = variant
        self.corrector = bool(corrector)
        self.clip_x0 = bool(clip_x0)

    def describe(self):
        return {**super().describe(), "order": self.order, "variant": self.variant, "corrector": self.corrector,
                "clip_x0": self.clip_x0}

    def start(self, ctx: StepContext, times: list[float]) -> None:
        self._hist: list[tuple[float, torch.Tensor]] = []  # (lambda, x0_hat) of the earlier steps, newest last
        self._last: tuple[torch.Tensor, float, float, float, int] | None = None  # x_{i-1}, alpha, sigma, lambda, order
        self._n = len(times)
        self._i = 0

    def _residual(self, rhos: np.ndarray, hist: list[tuple[float, torch.Tensor]], lam0: float, m0: torch.Tensor,
                  h: float) -> torch.Tensor | float:
        """sum_m rho_m D1_m with D1_m = (x0_hat_{-m} - m0) / r_m over ``hist`` (newest first)."""
        out: torch.Tensor | float = 0.0
        for rho, (lm, mm) in zip(rhos, hist, strict=False):
            rk = (lm - lam0) / h
            out = out + (float(rho) / rk) * (mm - m0)
        return out

    def _correct(self, ctx: StepContext, t: float, a: float, s: float, lam: float, m_t: torch.Tensor) -> torch.Tensor:
        """UniC: x_i from x_{i-1} with the estimates up to x0_hat_{i-1} and the new one at the uncorrected x_i."""
        x_prev, _, s_prev, lam_prev, order = self._last
        h = lam - lam_prev
        m0 = self._hist[-1][1]
        earlier = [e for e in reversed(self._hist[:-1]) if math.isfinite(e[0])][: order - 1]
        order = 1 + len(earlier)
        b_h, rhos = unipc_coefficients([(lm - lam_prev) / h for lm, _ in earlier], h, order, self.variant,
                                       corrector=True)
        res = self._residual(rhos[:-1], earlier, lam_prev, m0, h) + float(rhos[-1]) * (m_t - m0)
        x = (s / s_prev) * x_prev - (a * math.expm1(-h)) * m0 - (a * b_h) * res
        return ctx.project(x, t)

    def step(self, ctx: StepContext, x: torch.Tensor, t: float, t_next: float | None) -> StepOut:
        a, s = ctx.alpha_sigma(t)
        pred = ctx.predict(x, t)
        if self.clip_x0:
            pred = clip_prediction(pred, x, a, s)
        m_t = pred.x0
        i, self._i = self._i, self._i + 1
        if t_next is None:
            return StepOut(m_t, m_t)  # to sigma = 0, first order: x = x0_hat (UniC before it would not change it)
        lam = log_snr_half(a, s)
        if self.corrector and self._last is not None and math.isfinite(lam) and math.isfinite(self._last[3]):
            x = self._correct(ctx, t, a, s, lam, m_t)
        a_next, s_next = ctx.alpha_sigma(t_next)
        h = log_snr_half(a_next, s_next) - lam
        earlier = [e for e in reversed(self._hist) if math.isfinite(e[0])] if math.isfinite(lam) else []
        order = min(self.order, 1 + len(earlier), self._n - i)
        earlier = earlier[: order - 1]
        x_new = (s_next / s) * x - (a_next * math.expm1(-h)) * m_t  # first order: DDIM in x0 prediction
        if order >= 2:
            b_h, rhos = unipc_coefficients([(lm - lam) / h for lm, _ in earlier], h, order, self.variant)
            x_new = x_new - (a_next * b_h) * self._residual(rhos, earlier, lam, m_t, h)
        self._last = (x, a, s, lam, order)
        self._hist = (self._hist + [(lam, m_t)])[-self.order:]  # UniC of the next step needs `order` of them
        return StepOut(ctx.project(x_new, t_next), m_t)
