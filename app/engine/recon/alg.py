"""Iterative algorithms as objects stepped one iteration at a time (sigpy's ``Alg`` layer).

Each algorithm holds its state; ``step()`` runs one iteration, ``done`` says when it has run its
iterations (or met its stopping rule), ``x`` is the current estimate. ``run(alg, check, callback)`` drives
any of them: ``check()`` before every iteration is the stop point (it raises ``JobCancelled`` when the job
was asked to stop), so every algorithm stops within one iteration of a request.

- ``PrimalDual``: Chambolle & Pock (JMIV 2011, Algorithm 1, theta = 1) for min_x sum_k f_k(K_k x) with the
  proxes of the conjugates f_k*;
- ``FISTA``: Beck & Teboulle (SIAM J. Imaging Sci. 2009, eq. 4.1-4.3) for min_x g(x) + h(x) with the gradient
  of the smooth g and the prox of h;
- ``ConjugateGradient``: Hestenes & Stiefel for normal(x) = rhs (Hermitian positive semi-definite), with an
  optional early stop when a misfit falls to a level (the discrepancy principle). Written here rather than
  taken from scipy: complex torch tensors on any device, stepped one iteration at a time, with that stop.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from app.engine.recon.linop import LinearOperator
from app.engine.recon.prox import Prox


class Alg:
    max_iter: int = 0
    iter: int = 0
    x: torch.Tensor

    @property
    def done(self) -> bool:
        return self.iter >= self.max_iter

    def step(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


class PrimalDual(Alg):
    """min_x sum_k f_k(K_k x): dual ascent on every p_k with prox_{sigma f_k*}, a primal descent step of tau,
    then the extrapolation x_bar = 2 x_new - x. Needs tau sigma ||K||^2 < 1 (CP 2011, Thm 1)."""

    def __init__(self, ops: Sequence[LinearOperator], dual_proxes: Sequence[Prox], x0: torch.Tensor,
                 duals: Sequence[torch.Tensor], tau: float, sigma: float, max_iter: int):
        self.ops, self.proxes = list(ops), list(dual_proxes)
        self.x, self.x_bar = x0, x0.clone()
        self.p = list(duals)
        self.tau, self.sigma, self.max_iter = float(tau), float(sigma), int(max_iter)
        self.iter = 0

    def step(self) -> None:
        sigma = self.sigma
        self.p = [prox(sigma, torch.add(p, K._forward(self.x_bar), alpha=sigma))
                  for K, prox, p in zip(self.ops, self.proxes, self.p)]
        grad = None
        for K, p in zip(self.ops, self.p):
            g = K._adjoint(p)
            grad = g if grad is None else grad.add_(g)
        x_new = torch.add(self.x, grad, alpha=-self.tau)
        self.x_bar = x_new.mul(2).sub_(self.x)  # theta = 1 extrapolation
        self.x = x_new
        self.iter += 1


class FISTA(Alg):
    """x_{k+1} = prox_{step h}(z_k - step grad g(z_k)); t_{k+1} = (1 + sqrt(1 + 4 t_k^2)) / 2;
    z_{k+1} = x_{k+1} + ((t_k - 1) / t_{k+1}) (x_{k+1} - x_k)."""

    def __init__(self, gradf: Callable[[torch.Tensor], torch.Tensor], prox: Prox, step: float, x0: torch.Tensor,
                 max_iter: int):
        self.gradf, self.prox, self.alpha = gradf, prox, float(step)
        self.x, self.z, self.t = x0, x0.clone(), 1.0
        self.max_iter, self.iter = int(max_iter), 0

    def step(self) -> None:
        x_new = self.prox(self.alpha, self.z - self.alpha * self.gradf(self.z))
        t_new = (1 + np.sqrt(1 + 4 * self.t * self.t)) / 2
        self.z = x_new + ((self.t - 1) / t_new) * (x_new - self.x)
        self.x, self.t = x_new, t_new
        self.iter += 1


class ConjugateGradient(Alg):
    """Conjugate gradient on normal(x) = rhs started at x0; ``misfit = (f, level)`` stops as soon as
    f(x) <= level."""

    def __init__(self, normal: Callable[[torch.Tensor], torch.Tensor], rhs: torch.Tensor, x0: torch.Tensor,
                 max_iter: int, misfit: tuple[Callable[[torch.Tensor], float], float] | None = None):
        self.normal, self.misfit = normal, misfit
        self.x, self.max_iter, self.iter = x0, int(max_iter), 0
        self.met = misfit is not None and misfit[0](x0) <= misfit[1]
        if not self.met:
            self.r = rhs - normal(x0)
            self.p = self.r.clone()
            self.rs = (self.r.conj() * self.r).real.sum()

    @property
    def done(self) -> bool:
        return self.met or self.iter >= self.max_iter

    def step(self) -> None:
        ap = self.normal(self.p)
        denom = (self.p.conj() * ap).real.sum()
        alpha = self.rs / denom.clamp_min(1e-30)
        self.x = self.x + alpha * self.p
        self.r = self.r - alpha * ap
        rs_new = (self.r.conj() * self.r).real.sum()
        self.p = self.r + (rs_new / self.rs.clamp_min(1e-30)) * self.p
        self.rs = rs_new
        self.iter += 1
        if self.misfit is not None and self.misfit[0](self.x) <= self.misfit[1]:
            self.met = True


def run(alg: Alg, check: Callable[[], None] | None = None,
        callback: Callable[[Alg], None] | None = None) -> torch.Tensor:
    """Step ``alg`` until it is done; ``check()`` before every iteration (the stop point), ``callback(alg)``
    after it. Returns the final estimate."""
    while not alg.done:
        if check is not None:
            check()
        alg.step()
        if callback is not None:
            callback(alg)
    return alg.x
