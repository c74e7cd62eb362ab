"""Compressed-sensing reconstructions: total variation (primal-dual) and L1-wavelet (FISTA).

Both solve ``min_x 1/2 ||A x - y||^2 + lam R(x)`` for any operator of ``operators`` (single-coil
masked FFT or SENSE), in torch so that the same code runs on CPU and GPU. ``lam`` is relative to
the scale of the data: measurements are divided by the maximum magnitude of the zero-filled image
before solving and the result is multiplied back, so ``lam`` means the same on any scanner scale.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from app.engine.recon.mri.operators import FiniteDifference, LinearOperator, _to_torch

Callback = Callable[[int, int, torch.Tensor], None]


def _scale_of(A: LinearOperator, y: torch.Tensor) -> float:
    s = float(A._adjoint(y).abs().max())
    return s if s > 0 else 1.0


def tv_recon(
    A: LinearOperator,
    y,
    lam: float = 0.01,
    iterations: int = 100,
    tv: str = "isotropic",
    callback: Callback | None = None,
    callback_every: int = 10,
):
    """CS-TV by the primal-dual hybrid gradient method (Chambolle & Pock, JMIV 2011, Algorithm 1).

    min_x 1/2 ||A x - y||^2 + lam ||D x||_1 with K = [A; D]; ``tv`` is "isotropic" (pixelwise
    l2 norm of the gradient) or "anisotropic" (l1 of both components, as sigpy's
    TotalVariationRecon). Returns the complex image with A's input shape (numpy in, numpy out).
    """
    if tv not in ("isotropic", "anisotropic"):
        raise ValueError(f"tv must be 'isotropic' or 'anisotropic', got {tv!r}")
    yt, was_np = _to_torch(y, A.device)
    scale = _scale_of(A, yt)
    yt = yt / scale
    D = FiniteDifference(A.ishape[-2:], A.device)
    L2 = A.norm_estimate() ** 2 + 8.0  # ||K||^2 <= ||A||^2 + ||D||^2
    tau = sigma = 0.99 / np.sqrt(L2)  # tau * sigma * L^2 < 1 (CP 2011, Thm 1)
    x = A._adjoint(yt)
    x_bar = x.clone()
    p = torch.zeros_like(yt)
    q = torch.zeros((2, *A.ishape), dtype=x.dtype, device=x.device)
    for it in range(1, iterations + 1):
        # dual ascent; prox of the conjugate of 1/2||. - y||^2 is (p - sigma y) / (1 + sigma)
        p = (p + sigma * A._forward(x_bar) - sigma * yt) / (1.0 + sigma)
        q = q + sigma * D._forward(x_bar)
        # prox of the conjugate of lam ||.||_1: projection onto the lam-ball (CP 2011, eq. 4.23)
        if tv == "isotropic":
            mag = torch.sqrt((q.abs() ** 2).sum(dim=0, keepdim=True))
            q = q / torch.clamp(mag / lam, min=1.0)
        else:
            q = q / torch.clamp(q.abs() / lam, min=1.0)
        x_new = x - tau * (A._adjoint(p) + D._adjoint(q))
        x_bar = 2 * x_new - x  # theta = 1 extrapolation
        x = x_new
        if callback is not None and (it % callback_every == 0 or it == iterations):
            callback(it, iterations, x * scale)
    out = x * scale
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
):
    """CS with an L1 penalty on orthonormal wavelet coefficients, by FISTA (Beck & Teboulle, SIAM J.
    Imaging Sci. 2009, eq. 4.1-4.3). Wavelets from PyWavelets ("periodization" mode is orthonormal,
    so the prox is exact: W^H soft(W x)). Runs on the CPU (PyWavelets is numpy)."""
    import pywt

    yt, was_np = _to_torch(y, A.device)
    scale = _scale_of(A, yt)
    yt = yt / scale
    step = 1.0 / max(A.norm_estimate() ** 2, 1e-12)
    x = A._adjoint(yt)
    z = x.clone()
    t = 1.0

    def prox(v: torch.Tensor) -> torch.Tensor:
        arr = v.detach().cpu().numpy()
        batch = arr.reshape(-1, *arr.shape[-2:])
        out = np.empty_like(batch)
        for i, im in enumerate(batch):
            coeffs = pywt.wavedec2(im, wavelet, mode="periodization", level=levels)
            c, slices = pywt.coeffs_to_array(coeffs)
            mag = np.abs(c)
            c = c * np.maximum(0.0, 1.0 - step * lam / np.maximum(mag, 1e-12))  # complex soft threshold
            out[i] = pywt.waverec2(pywt.array_to_coeffs(c, slices, output_format="wavedec2"), wavelet, mode="periodization")
        return torch.as_tensor(out.reshape(arr.shape), device=v.device)

    for it in range(1, iterations + 1):
        x_new = prox(z - step * A._adjoint(A._forward(z) - yt))
        t_new = (1 + np.sqrt(1 + 4 * t * t)) / 2
        z = x_new + ((t - 1) / t_new) * (x_new - x)
        x, t = x_new, t_new
        if callback is not None and (it % callback_every == 0 or it == iterations):
            callback(it, iterations, x * scale)
    out = x * scale
    return out.detach().cpu().numpy() if was_np else out
