"""Coil sensitivity maps from the fully sampled k-space centre: ESPIRiT (Uecker et al., MRM 2014).

A compact re-implementation of the ESPIRiT calibration, following the paper and the structure of
sigpy's ``EspiritCalib`` (hand-written so it runs without numba / cupy and on (C, H, W) numpy
arrays of this project's conventions):

1. the calibration matrix of all ``kernel_width`` x ``kernel_width`` patches of the centre (eq. 9);
2. its right singular vectors above ``threshold`` x the largest singular value span the
   signal subspace (eq. 10-11);
3. each subspace kernel, zero-padded and taken to image space, gives per pixel a C x C matrix
   G(x) = sum_j w_j(x) w_j(x)^H (eq. 14-16; built from the kernels' cross-correlations, see
   ``gram_factors``); the sensitivities are the eigenvector with eigenvalue ~1 (eq. 17), set to
   zero where the largest eigenvalue is below ``crop`` (outside the object).
"""

from __future__ import annotations

import numpy as np
import torch

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


def gram_factors(kernels: np.ndarray, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """The ESPIRiT matrices G(x) of (n, C, k, k) kernels on an (h, w) grid, in factored form.

    Each kernel, zero-padded to the k-space size and taken to image space by the centred inverse FFT,
    gives w_j(x) in C^C, and G(x) = (hw / k^2) sum_j w_j(x)^* w_j(x)^T (eq. 14-16). Its entries are
    trigonometric polynomials of degree < k per axis, so they follow from the kernels'
    cross-correlations (a (2k-1)^2 grid per coil pair) by a separable DFT onto the pixel grid: the
    same G as the kernel-by-kernel sum, without an FFT and an outer product per kernel at full size
    (several times faster, and a fraction of the memory). ``gram_rows(ey[rows], half)`` gives G for a
    block of rows.
    """
    k = kernels.shape[-1]
    m = 2 * k - 1
    kf = np.fft.fft2(kernels.astype(np.complex128), s=(m, m))
    corr = np.fft.ifft2(np.einsum("jcuv,jduv->cduv", kf.conj(), kf))  # sum_j sum_a K_jc[a]^* K_jd[a + D]
    corr = np.fft.fftshift(corr, axes=(-2, -1)) / (k * k)  # lag D = -(k-1)..k-1 at index D + k - 1
    lags = np.arange(m) - (k - 1)
    ey = np.exp(2j * np.pi * np.outer(np.arange(h) - h // 2, lags) / h)  # (h, m)
    ex = np.exp(2j * np.pi * np.outer(np.arange(w) - w // 2, lags) / w)  # (w, m)
    return ey, corr @ ex.T  # (h, m) and (C, C, m, w)


def gram_rows(ey_rows: np.ndarray, half: np.ndarray) -> np.ndarray:
    """G(x) (rows, w, C, C) for the rows whose DFT factors ``ey_rows`` are given (see gram_factors)."""
    return np.matmul(ey_rows, half).transpose(2, 3, 0, 1)  # (C, C, rows, w) -> (rows, w, C, C)


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
    ey, half = gram_factors(kernels, h, w)
    maps = np.empty((h, w, c), np.complex64)
    top_val = np.empty((h, w), np.float32)
    block = max(1, (1 << 22) // (w * c * c))  # rows per block: ~4 M matrix entries at a time
    for r0 in range(0, h, block):
        gram = gram_rows(ey[r0 : r0 + block], half).astype(np.complex64)
        # batched eigen-decomposition, ascending eigenvalues per pixel (eq. 17); torch's is ~2x numpy's
        evals, evecs = torch.linalg.eigh(torch.from_numpy(np.ascontiguousarray(gram)))
        top_val[r0 : r0 + block] = evals[..., -1].numpy()
        maps[r0 : r0 + block] = evecs[..., :, -1].conj().resolve_conj().numpy()
    ref = maps[..., :1]
    maps = maps * np.conj(ref / np.maximum(np.abs(ref), 1e-12))  # phase relative to coil 0
    maps = maps * (top_val > crop)[..., None]
    return np.ascontiguousarray(maps.transpose(2, 0, 1)).astype(np.complex64)


def simulated_coil_maps(h: int, w: int, coils: int = 8) -> np.ndarray:
    """Smooth receive-coil sensitivities (C, H, W) for simulating multi-coil data from one complex image.

    ``coils`` coils on a ring around the field of view: Gaussian magnitude profiles and slowly varying
    phases, normalised so that sum_c |S_c|^2 = 1 (the root-sum-of-squares image is then the object's
    magnitude). Benchmarks and tests use them as known ground truth for ESPIRiT and SENSE."""
    yy, xx = np.mgrid[:h, :w] / np.array([h, w], dtype=np.float64)[:, None, None] - 0.5
    angles = np.linspace(0, 2 * np.pi, coils, endpoint=False)
    # broad profiles (as a head coil's): with ESPIRiT's 6x6 kernels from a 24x24 centre, narrower
    # Gaussians (variance 0.08 instead of 0.25) are recovered with ~20 % error on a 256x256 brain slice
    maps = np.stack([np.exp(-((yy - 0.35 * np.cos(a)) ** 2 + (xx - 0.35 * np.sin(a)) ** 2) / 0.25)
                     * np.exp(1j * (yy * np.cos(a) + xx * np.sin(a) + 0.3 * a)) for a in angles])
    return (maps / np.sqrt((np.abs(maps) ** 2).sum(0))).astype(np.complex64)


def sense_combine(kspace: np.ndarray, maps: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Coil-combined complex image (H, W) of fully sampled multi-coil k-space (C, H, W), and the maps.

    The least-squares (SENSE-1) combination x = sum_c conj(S_c) x_c / sum_c |S_c|^2 with the ESPIRiT
    maps that reconstruction estimates (``operators.SenseOp``): for fully sampled data it is exactly
    the solution of A x = y, so a prior trained on such images lives in the image convention of
    the multi-coil reconstruction (object phase relative to coil 0, zero outside the maps).
    """
    ks = np.asarray(kspace, dtype=np.complex64)
    if ks.ndim != 3:
        raise ValueError(f"coil combination needs multi-coil k-space (C, H, W), got shape {ks.shape}")
    if maps is None:
        maps = espirit_maps(ks)
    coil_images = ifft2c(ks)
    power = (np.abs(maps) ** 2).sum(axis=0)
    num = (np.conj(maps) * coil_images).sum(axis=0)
    image = np.where(power > 1e-6, num / np.maximum(power, 1e-6), 0)
    return image.astype(np.complex64), maps
