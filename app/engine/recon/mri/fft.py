"""MRI conventions, written once: the centred orthonormal 2D FFT, array shapes and the coil axis.

Conventions used by every module of ``app.engine.recon``:

- **Image**: complex array ``(..., H, W)``; H is the read-out (frequency-encode) axis, W the
  phase-encode axis. Single-coil images are ``(H, W)``; coil images are ``(C, H, W)``.
- **k-space**: complex ``(H, W)`` for single-coil, ``(C, H, W)`` for multi-coil (coil axis
  first), with k = 0 at index ``(H // 2, W // 2)`` (centred).
- **FFT**: ``fft2c(x) = fftshift(fft2(ifftshift(x), norm="ortho"))`` over the last two axes, so
  the transform is unitary: ``||fft2c(x)|| == ||x||`` and ``ifft2c`` is its exact adjoint and
  inverse. This is the fastMRI convention (``fastmri.fft2c``) and what the SIAT data were stored for.
- **Mask**: real/bool ``(H, W)``, or ``(W,)`` for a 1D Cartesian mask along the phase-encode
  (last) axis, broadcast over H (and over coils).

Each function accepts a numpy array or a torch tensor and returns the same kind.
"""

from __future__ import annotations

import numpy as np

AXES = (-2, -1)


def _is_torch(x) -> bool:
    return type(x).__module__.startswith("torch")


def fft2c(x):
    """Centred orthonormal 2D FFT over the last two axes (image -> k-space)."""
    if _is_torch(x):
        import torch

        return torch.fft.fftshift(torch.fft.fft2(torch.fft.ifftshift(x, dim=AXES), norm="ortho"), dim=AXES)
    return np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(x, axes=AXES), norm="ortho"), axes=AXES)


def ifft2c(k):
    """Centred orthonormal inverse 2D FFT over the last two axes (k-space -> image)."""
    if _is_torch(k):
        import torch

        return torch.fft.fftshift(torch.fft.ifft2(torch.fft.ifftshift(k, dim=AXES), norm="ortho"), dim=AXES)
    return np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(k, axes=AXES), norm="ortho"), axes=AXES)


def rss(coil_images, axis: int = 0):
    """Root-sum-of-squares coil combination along ``axis`` (the coil axis, first by convention)."""
    if _is_torch(coil_images):
        return (coil_images.abs() ** 2).sum(dim=axis).sqrt()
    return np.sqrt((np.abs(coil_images) ** 2).sum(axis=axis))


def as_2d_mask(mask, shape: tuple[int, int]) -> np.ndarray:
    """A (H, W) float32 mask from a (H, W) mask or a 1D (W,) phase-encode mask."""
    mask = np.asarray(mask)
    h, w = shape
    if mask.ndim == 1:
        if mask.shape[0] != w:
            raise ValueError(f"a 1D mask needs {w} phase-encode lines, got {mask.shape[0]}")
        mask = np.broadcast_to(mask[None, :], (h, w))
    if mask.shape != (h, w):
        raise ValueError(f"mask shape {mask.shape} does not match k-space {(h, w)}")
    return np.ascontiguousarray(mask, dtype=np.float32)


def kspace_radius(shape: tuple[int, int]) -> np.ndarray:
    """Normalised distance of each k-space sample from the centre: 0 at DC, 1 at the edge mid-points."""
    h, w = shape
    ky = (np.arange(h) - h // 2) / (h / 2)
    kx = (np.arange(w) - w // 2) / (w / 2)
    return np.sqrt(ky[:, None] ** 2 + kx[None, :] ** 2).astype(np.float32)
