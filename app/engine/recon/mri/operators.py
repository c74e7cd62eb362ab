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


def _shifted(t: torch.Tensor) -> torch.Tensor:
    return torch.fft.ifftshift(t, dim=(-2, -1))


class MaskedFFT(LinearOperator):
    """Single-coil Cartesian sampling: ``y = M * fft2c(x)`` with x (H, W) and y (H, W).

    Unsampled locations of y are zero; ``adjoint`` is ``ifft2c(M * y)``. With a 0/1 mask,
    ``||A|| = 1``. ``uncentred()`` is the same sampling on ifftshift-ed images and k-space.
    """

    centred = True

    def __init__(self, mask, device: str | torch.device = "cpu"):
        m = np.asarray(mask)
        shape = m.shape if m.ndim == 2 else None
        if shape is None:
            raise ValueError("MaskedFFT needs a (H, W) mask; expand 1D masks with fft.as_2d_mask")
        self.device = torch.device(device)
        self.mask = torch.as_tensor(as_2d_mask(m, shape), device=self.device)
        self.ishape = self.oshape = tuple(shape)

    def _forward(self, x):
        return self.mask * (fft2c(x) if self.centred else torch.fft.fft2(x, norm="ortho"))

    def _adjoint(self, y):
        return ifft2c(self.mask * y) if self.centred else torch.fft.ifft2(self.mask * y, norm="ortho")

    def norm_estimate(self, iterations: int = 20, seed: int = 0) -> float:
        """Exactly max |m|: the FFT is unitary (no power iteration needed)."""
        return float(self.mask.abs().max())

    def uncentred(self) -> MaskedFFT:
        """B with ``B(ifftshift(x)) == ifftshift(A x)`` (shifts over the last two axes): the plain FFT with the
        shifted mask, no shifts around it. A solver whose other terms commute with cyclic shifts (periodic
        finite differences) solves the same problem in those coordinates, at less cost per iteration."""
        op = MaskedFFT.__new__(MaskedFFT)
        op.device, op.ishape, op.oshape, op.centred = self.device, self.ishape, self.oshape, False
        op.mask = _shifted(self.mask).contiguous() if self.centred else self.mask
        return op


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

    centred = True

    def _forward(self, x):
        if self.maps.ndim == 3:
            coil = self.maps * x[None]
        else:
            coil = (self.maps * x[:, None]).sum(dim=0)
        return self.mask * (fft2c(coil) if self.centred else torch.fft.fft2(coil, norm="ortho"))

    def _adjoint(self, y):
        coil = ifft2c(self.mask * y) if self.centred else torch.fft.ifft2(self.mask * y, norm="ortho")
        if self.maps.ndim == 3:
            return (self.maps.conj() * coil).sum(dim=0)
        return (self.maps.conj() * coil[None]).sum(dim=1)

    def uncentred(self) -> SenseOp:
        """As ``MaskedFFT.uncentred``: maps and mask ifftshift-ed, the plain FFT."""
        op = SenseOp.__new__(SenseOp)
        op.device, op.ishape, op.oshape, op.centred = self.device, self.ishape, self.oshape, False
        op.maps = _shifted(self.maps).contiguous() if self.centred else self.maps
        op.mask = _shifted(self.mask).contiguous() if self.centred else self.mask
        return op


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

    # written with slices into preallocated outputs: torch.roll copies through a concatenation, and was a
    # quarter of an iteration of CS-TV; the numbers are those of roll(x, -1) - x and roll(q, 1) - q
    def _forward(self, x):
        out = x.new_empty((2, *x.shape))
        torch.sub(x[..., 1:, :], x[..., :-1, :], out=out[0, ..., :-1, :])
        torch.sub(x[..., :1, :], x[..., -1:, :], out=out[0, ..., -1:, :])
        torch.sub(x[..., 1:], x[..., :-1], out=out[1, ..., :-1])
        torch.sub(x[..., :1], x[..., -1:], out=out[1, ..., -1:])
        return out

    def _adjoint(self, q):
        rows, cols = q[0], q[1]
        out = rows.new_empty(rows.shape)
        torch.sub(rows[..., :-1, :], rows[..., 1:, :], out=out[..., 1:, :])
        torch.sub(rows[..., -1:, :], rows[..., :1, :], out=out[..., :1, :])
        part = cols.new_empty(cols.shape)
        torch.sub(cols[..., :-1], cols[..., 1:], out=part[..., 1:])
        torch.sub(cols[..., -1:], cols[..., :1], out=part[..., :1])
        return out.add_(part)
