"""Proximal operators of reconstruction (sigpy's ``Prox`` layer): ``prox(alpha, v) = argmin_x alpha f(x) +
1/2 ||x - v||^2`` for the penalties and data terms the reconstructions use.

- ``L2DataConj(y)``: prox of the convex conjugate of 1/2 ||. - y||^2 (the data term of primal-dual CS);
- ``L1BallProjection(lam, isotropic)``: prox of the conjugate of lam ||.||_1, the projection onto the
  lam-ball (Chambolle & Pock 2011, eq. 4.23), pixelwise over the gradient's components when isotropic (TV);
- ``WaveletSoftThreshold(lam, wavelet, levels)``: prox of lam ||W x||_1 for an orthonormal wavelet W
  (PyWavelets, "periodization"), exactly W^H soft(W v);
- ``HardDataConsistency(A, y)``: the projection onto {x : M F x = y} of single-coil Cartesian sampling
  (replace the sampled k-space by the measurements).
"""

from __future__ import annotations

import numpy as np
import torch

from app.engine.recon.mri.fft import fft2c, ifft2c


class Prox:
    def __call__(self, alpha: float, v: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


class L2DataConj(Prox):
    """f*(p) for f = 1/2 ||. - y||^2: prox_{alpha f*}(v) = (v - alpha y) / (1 + alpha)."""

    def __init__(self, y: torch.Tensor):
        self.y = y

    def __call__(self, alpha, v):
        return torch.sub(v, self.y, alpha=alpha).div_(1.0 + alpha)


class L1BallProjection(Prox):
    """The prox of the conjugate of lam ||.||_1 (any alpha): projection onto {|q| <= lam}; ``isotropic``
    takes |q| over the first axis (the components of a gradient), else per entry."""

    def __init__(self, lam: float, isotropic: bool = True):
        self.lam, self.isotropic = float(lam), bool(isotropic)

    def __call__(self, alpha, q):
        # q * lam / max(|q|, lam) from |q|^2 = re^2 + im^2 and one rsqrt: complex abs (hypot) and dividing a
        # complex tensor were 3 / 4 of an iteration of CS-TV on the CPU
        if not q.is_complex():
            mag2 = q.square()
        else:
            mag2 = q.real.square().add_(q.imag.square())
        if self.isotropic:
            mag2 = mag2.sum(dim=0, keepdim=True)
        lam = self.lam
        if lam <= 0:  # the ball is {0}
            return torch.zeros_like(q)
        return q * mag2.clamp_(min=lam * lam).rsqrt_().mul_(lam)


class WaveletSoftThreshold(Prox):
    """prox of lam ||W x||_1, W an orthonormal 2D wavelet transform of the last two axes (complex soft
    threshold of the coefficients). PyWavelets is numpy: the prox runs on the CPU."""

    def __init__(self, lam: float, wavelet: str = "db4", levels: int = 4):
        self.lam, self.wavelet, self.levels = float(lam), wavelet, int(levels)

    def __call__(self, alpha, v):
        import pywt

        arr = v.detach().cpu().numpy()
        batch = arr.reshape(-1, *arr.shape[-2:])
        out = np.empty_like(batch)
        for i, im in enumerate(batch):
            coeffs = pywt.wavedec2(im, self.wavelet, mode="periodization", level=self.levels)
            c, slices = pywt.coeffs_to_array(coeffs)
            mag = np.abs(c)
            c = c * np.maximum(0.0, 1.0 - alpha * self.lam / np.maximum(mag, 1e-12))
            out[i] = pywt.waverec2(pywt.array_to_coeffs(c, slices, output_format="wavedec2"), self.wavelet,
                                   mode="periodization")
        return torch.as_tensor(out.reshape(arr.shape), device=v.device)


class HardDataConsistency(Prox):
    """Projection onto the images whose sampled k-space equals y (single-coil Cartesian, 0/1 mask)."""

    def __init__(self, mask: torch.Tensor, y: torch.Tensor):
        self.mask, self.y = mask, y

    def __call__(self, alpha, x):
        return ifft2c((1 - self.mask) * fft2c(x) + self.mask * self.y)
