"""Coil sensitivity maps from the fully sampled k-space centre: ESPIRiT (Uecker et al., MRM 2014).

A compact re-implementation of the ESPIRiT calibration, following the paper and the structure of
sigpy's ``EspiritCalib`` (hand-written so it runs without numba / cupy and on (C, H, W) numpy
arrays of this project's conventions):

1. the calibration matrix of all ``kernel_width`` x ``kernel_width`` patches of the centre (eq. 9);
2. its right singular vectors above ``threshold`` x the largest singular value span the
   signal subspace (eq. 10-11);
3. each subspace kernel, zero-padded and taken to image space, gives per pixel a C x C matrix
   G(x) = sum_j w_j(x) w_j(x)^H (eq. 14-16); the sensitivities are the eigenvector with eigenvalue
   ~1 (eq. 17), set to zero where the largest eigenvalue is below ``crop`` (outside the object).
"""

from __future__ import annotations

import numpy as np

from app.engine.recon.mri.fft import ifft2c


def calibration_width(mask: np.ndarray, max_width: int = 24) -> int:
    """Side of the largest centred square that is fully sampled in ``mask`` (H, W), up to max_width."""
    m = np.asarray(mask).astype(bool)
    h, w = m.shape[-2:]
    best = 0
    for s in range(2, min(h, w, max_width) + 1):
        y0, x0 = h // 2 - s // 2, w // 2 - s // 2
        if m[y0 : y0 + s, x0 : x0 + s].all():
            best = s
        else:
            break
    return best


def espirit_maps(
    kspace: np.ndarray,
    calib_width: int = 24,
    kernel_width: int = 6,
    threshold: float = 0.02,
    crop: float = 0.95,
) -> np.ndarray:
    """ESPIRiT sensitivity maps (C, H, W) complex64 from (C, H, W) k-space (undersampled is fine).

    ``calib_width`` is capped to the fully sampled centre that the data actually have. Maps are
    normalised so that sum_c |S_c|^2 = 1 inside the object and their phase is relative to coil 0.
    """
    ks = np.asarray(kspace, dtype=np.complex64)
    if ks.ndim != 3:
        raise ValueError(f"ESPIRiT needs multi-coil k-space (C, H, W), got shape {ks.shape}")
    c, h, w = ks.shape
    mask = (np.abs(ks) > 0).any(axis=0)
    cw = min(calib_width, calibration_width(mask, calib_width))
    if cw < kernel_width + 2:
        raise ValueError(f"the fully sampled centre is {cw} wide; ESPIRiT needs at least {kernel_width + 2}")
    y0, x0 = h // 2 - cw // 2, w // 2 - cw // 2
    calib = ks[:, y0 : y0 + cw, x0 : x0 + cw]
    # calibration (block-Hankel) matrix: one row per patch position, C * k * k columns (eq. 9)
    k = kernel_width
    patches = np.lib.stride_tricks.sliding_window_view(calib, (k, k), axis=(1, 2))  # (C, P, P, k, k)
    rows = patches.transpose(1, 2, 0, 3, 4).reshape(-1, c * k * k)
    _, s, vh = np.linalg.svd(rows, full_matrices=False)
    n_kernels = int((s >= threshold * s[0]).sum())
    kernels = vh[:n_kernels].reshape(n_kernels, c, k, k)
    # image-space view of each kernel (eq. 14): zero-pad to the k-space size, centred inverse FFT
    gram = np.zeros((h, w, c, c), np.complex128)
    ky0, kx0 = h // 2 - k // 2, w // 2 - k // 2
    for ker in kernels:
        padded = np.zeros((c, h, w), np.complex64)
        padded[:, ky0 : ky0 + k, kx0 : kx0 + k] = ker
        img = ifft2c(padded).transpose(1, 2, 0)  # (H, W, C)
        gram += img[..., :, None].conj() * img[..., None, :]  # w^* w^T (eigenvalues are real)
    gram *= h * w / (k * k)
    evals, evecs = np.linalg.eigh(gram)  # ascending eigenvalues per pixel (eq. 17)
    top_val = evals[..., -1]
    maps = evecs[..., :, -1].conj()  # (H, W, C)
    ref = maps[..., :1]
    maps = maps * np.conj(ref / np.maximum(np.abs(ref), 1e-12))  # phase relative to coil 0
    maps = maps * (top_val > crop)[..., None]
    return np.ascontiguousarray(maps.transpose(2, 0, 1)).astype(np.complex64)
