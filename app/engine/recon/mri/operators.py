"""MRI forward models as linear operators with exact adjoints (on ``recon.linop``, sigpy's ``Linop`` layer).

``A.forward(x)`` maps an image to measured k-space and ``A.adjoint(y)`` is its Hermitian adjoint,
so that ``<A x, y> == <x, A^H y>`` (complex inner product, tested for every operator). Operators
work on complex torch tensors (CPU or GPU) and also accept numpy arrays (returning numpy).
Conventions (shapes, FFT, coil axis) are those of ``app.engine.recon.mri.fft``.
"""

from __future__ import annotations

import numpy as np
import torch

from app.engine.recon.linop import LinearOperator, _back, _to_torch, inner  # noqa: F401 (the layer, re-exported)
from app.engine.recon.mri.fft import as_2d_mask, fft2c, ifft2c


class MaskedFFT(LinearOperator):
    """Single-coil Cartesian sampling: ``y = M * fft2c(x)`` with x (H, W) and y (H, W).

    Unsampled locations of y are zero; ``adjoint`` is ``ifft2c(M * y)``. With a 0/1 mask,
    ``||A|| = 1``.
    """

    def __init__(self, mask, device: str | torch.device = "cpu"):
        m = np.asarray(mask)
        shape = m.shape if m.ndim == 2 else None
        if shape is None:
            raise ValueError("MaskedFFT needs a (H, W) mask; expand 1D masks with fft.as_2d_mask")
        self.device = torch.device(device)
        self.mask = torch.as_tensor(as_2d_mask(m, shape), device=self.device)
        self.ishape = self.oshape = tuple(shape)

    def _forward(self, x):
        return self.mask * fft2c(x)

    def _adjoint(self, y):
        return ifft2c(self.mask * y)


class SenseOp(LinearOperator):
    """Multi-coil SENSE: ``y_c = M * fft2c(S_c x)`` with x (H, W), maps S (C, H, W), y (C, H, W).

    Pruessmann et al., MRM 1999, eq. 1 (Cartesian form); adjoint ``sum_c conj(S_c) ifft2c(M y_c)``.
    Maps may carry several sets (ESPIRiT's soft-SENSE, Uecker et al. MRM 2014 eq. 17): pass
    ``maps`` (K, C, H, W) and the image becomes (K, H, W).
    """

    def __init__(self, maps, mask, device: str | torch.device = "cpu"):
        self.device = torch.device(device)
        s, _ = _to_torch(maps, self.device)
        self.maps = s.to(torch.complex64)
        h, w = self.maps.shape[-2:]
        self.mask = torch.as_tensor(as_2d_mask(np.asarray(mask), (h, w)), device=self.device)
        if self.maps.ndim == 3:
            self.ishape = (h, w)
        elif self.maps.ndim == 4:
            self.ishape = (self.maps.shape[0], h, w)
        else:
            raise ValueError(f"sensitivity maps must be (C, H, W) or (K, C, H, W), got {tuple(self.maps.shape)}")
        self.oshape = tuple(self.maps.shape[-3:])

    def _forward(self, x):
        if self.maps.ndim == 3:
            coil = self.maps * x[None]
        else:
            coil = (self.maps * x[:, None]).sum(dim=0)
        return self.mask * fft2c(coil)

    def _adjoint(self, y):
        coil = ifft2c(self.mask * y)
        if self.maps.ndim == 3:
            return (self.maps.conj() * coil).sum(dim=0)
        return (self.maps.conj() * coil[None]).sum(dim=1)


def operator_for(kspace, mask, maps=None, device: str | torch.device = "cpu") -> LinearOperator:
    """The forward model of measured k-space: MaskedFFT for (H, W) data, SENSE for (C, H, W)."""
    k = np.asarray(kspace) if not isinstance(kspace, torch.Tensor) else kspace
    if k.ndim == 2:
        return MaskedFFT(np.asarray(mask), device)
    if maps is None:
        raise ValueError("multi-coil k-space needs sensitivity maps (see coils.espirit_maps)")
    return SenseOp(maps, np.asarray(mask), device)


class FiniteDifference(LinearOperator):
    """Periodic forward differences along the last two axes: x (H, W) -> (2, H, W).

    The discrete gradient of total variation (Rudin, Osher, Fatemi 1992); periodic boundaries make
    the adjoint exact (``-div``), as in sigpy's ``FiniteDifference``. ``||D||^2 <= 8``.
    """

    def __init__(self, shape: tuple[int, int], device: str | torch.device = "cpu"):
        self.device = torch.device(device)
        self.ishape = tuple(shape)
        self.oshape = (2, *shape)

    def _forward(self, x):
        return torch.stack([torch.roll(x, -1, dims=-2) - x, torch.roll(x, -1, dims=-1) - x])

    def _adjoint(self, q):
        return (torch.roll(q[0], 1, dims=-2) - q[0]) + (torch.roll(q[1], 1, dims=-1) - q[1])
