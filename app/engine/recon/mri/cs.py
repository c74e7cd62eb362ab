"""Compressed-sensing reconstructions (the ``App`` layer): total variation (primal-dual) and L1-wavelet (FISTA).

Both solve ``min_x 1/2 ||A x - y||^2 + lam R(x)`` for any operator of ``recon.linop`` (single-coil masked FFT
or SENSE), wiring an algorithm of ``recon.alg`` with the proximal operators of ``recon.prox``, in torch so that
the same code runs on CPU and GPU. ``lam`` is relative to the scale of the data: measurements are divided by
the maximum magnitude of the zero-filled image before solving and the result is multiplied back, so ``lam``
means the same on any scanner scale. ``check()`` is called before every iteration (the stop point: it raises
to stop), ``callback(it, total, image)`` every ``callback_every`` iterations and at the end.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from app.engine.recon.alg import FISTA, PrimalDual, run
from app.engine.recon.linop import LinearOperator, _to_torch
from app.engine.recon.mri.operators import FiniteDifference
from app.engine.recon.prox import L1BallProjection, L2DataConj, WaveletSoftThreshold

Callback = Callable[[int, int, torch.Tensor], None]


def _scale_of(A: LinearOperator, y: torch.Tensor) -> float:
    s = float(A._adjoint(y).abs().max())
    return s if s > 0 else 1.0


def _reporter(callback: Callback | None, every: int, scale: float,
              back: Callable[[torch.Tensor], torch.Tensor] | None = None):
    if callback is None:
        return None

    def report(alg) -> None:
        if alg.iter % every == 0 or alg.done:
            callback(alg.iter, alg.max_iter, (alg.x if back is None else back(alg.x)) * scale)

    return report


def tv_recon(
    A: LinearOperator,
    y,
    lam: float = 0.01,
    iterations: int = 100,
    tv: str = "isotropic",
    callback: Callback | None = None,
    callback_every: int = 10,
    check: Callable[[], None] | None = None,
    sigma: float | None = None,
):
    """CS-TV by the primal-dual hybrid gradient method (Chambolle & Pock, JMIV 2011, Algorithm 1).

    min_x 1/2 ||A x - y||^2 + lam ||D x||_1 with K = [A; D]; ``tv`` is "isotropic" (pixelwise
    l2 norm of the gradient) or "anisotropic" (l1 of both components, as sigpy's
    TotalVariationRecon). Steps: tau = sigma = 0.99 / ||K||, or a given dual step ``sigma`` with
    tau = 0.99 / (sigma ||K||^2) (sigma = 1 is sigpy's rule, iterate for iterate). Returns the complex
    image with A's input shape (numpy in, numpy out).
    """
    if tv not in ("isotropic", "anisotropic"):
        raise ValueError(f"tv must be 'isotropic' or 'anisotropic', got {tv!r}")
    yt, was_np = _to_torch(y, A.device)
    scale = _scale_of(A, yt)
    yt = yt / scale
    D = FiniteDifference(A.ishape[-2:], A.device)
    L2 = A.norm_estimate() ** 2 + 8.0  # ||K||^2 <= ||A||^2 + ||D||^2
    tau = step = 0.99 / np.sqrt(L2)  # tau = sigma, tau * sigma * L^2 < 1 (CP 2011, Thm 1)
    if sigma is not None:
        if not sigma > 0:
            raise ValueError(f"sigma must be > 0, got {sigma}")
        step, tau = float(sigma), 0.99 / (float(sigma) * L2)
    x = A._adjoint(yt)
    back = None
    if hasattr(A, "uncentred"):  # the same problem in ifftshift-ed coordinates (periodic TV does not see a
        # cyclic shift), iterate for iterate: no shifts around the two FFTs of every iteration
        A, yt, x = A.uncentred(), torch.fft.ifftshift(yt, dim=(-2, -1)), torch.fft.ifftshift(x, dim=(-2, -1))

        def back(t):
            return torch.fft.fftshift(t, dim=(-2, -1))

    duals = [torch.zeros_like(yt), torch.zeros((2, *A.ishape), dtype=x.dtype, device=x.device)]
    alg = PrimalDual([A, D], [L2DataConj(yt), L1BallProjection(lam, isotropic=(tv == "isotropic"))], x, duals,
                     tau=tau, sigma=step, max_iter=iterations)
    out = run(alg, check, _reporter(callback, callback_every, scale, back))
    out = (out if back is None else back(out)) * scale
    return out.detach().cpu().numpy() if was_np else out


def wavelet_recon(
    A: LinearOperator,
    y,
    lam: float = 0.005,
    iterations: int = 100,
    wavelet: str = "db4",
    levels: int = 4,
    callback: Callback | None = None,
    callback_every: int = 10,
    check: Callable[[], None] | None = None,
):
    """CS with an L1 penalty on orthonormal wavelet coefficients, by FISTA (Beck & Teboulle, SIAM J.
    Imaging Sci. 2009, eq. 4.1-4.3). Wavelets from PyWavelets ("periodization" mode is orthonormal,
    so the prox is exact: W^H soft(W x)). The prox runs on the CPU (PyWavelets is numpy)."""
    yt, was_np = _to_torch(y, A.device)
    scale = _scale_of(A, yt)
    yt = yt / scale
    step = 1.0 / max(A.norm_estimate() ** 2, 1e-12)
    alg = FISTA(lambda z: A._adjoint(A._forward(z) - yt), WaveletSoftThreshold(lam, wavelet, levels), step,
                A._adjoint(yt), iterations)
    out = run(alg, check, _reporter(callback, callback_every, scale)) * scale
    return out.detach().cpu().numpy() if was_np else out
