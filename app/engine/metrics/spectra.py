"""Radially averaged power spectrum (frequency content) and intensity histogram distances."""

from __future__ import annotations

import numpy as np


def radial_power_spectrum(images: np.ndarray, n_bins: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Mean radially averaged power spectrum of (N, 1, H, W) images: (frequencies in cycles/pixel
    0..0.5, log10 power per bin). Each image's mean is removed before the FFT."""
    x = np.asarray(images, np.float64)[:, 0]
    h, w = x.shape[-2:]
    p = np.abs(np.fft.fftshift(np.fft.fft2(x - x.mean(axis=(1, 2), keepdims=True)), axes=(-2, -1))) ** 2
    fy = np.fft.fftshift(np.fft.fftfreq(h))[:, None]
    fx = np.fft.fftshift(np.fft.fftfreq(w))[None, :]
    r = np.hypot(fy, fx)
    n_bins = n_bins or min(h, w) // 2
    edges = np.linspace(0, 0.5, n_bins + 1)
    which = np.clip(np.digitize(r.ravel(), edges) - 1, 0, n_bins - 1)
    mean_p = p.mean(0).ravel()
    valid = r.ravel() <= 0.5
    power = np.bincount(which[valid], mean_p[valid], n_bins) / np.maximum(np.bincount(which[valid], minlength=n_bins), 1)
    return (edges[:-1] + edges[1:]) / 2, np.log10(power + 1e-12)


def spectrum_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference of log10 radial power spectra (0 = same frequency content)."""
    _, pa = radial_power_spectrum(a)
    _, pb = radial_power_spectrum(b)
    return float(np.mean(np.abs(pa - pb)))


def histogram_distances(a: np.ndarray, b: np.ndarray, bins: int = 64) -> dict:
    """Wasserstein-1 distance of pixel intensities (scipy) and Jensen-Shannon distance of their
    64-bin histograms over [-1, 1]."""
    from scipy.spatial.distance import jensenshannon
    from scipy.stats import wasserstein_distance

    rng = np.random.default_rng(0)
    fa, fb = np.asarray(a, np.float32).ravel(), np.asarray(b, np.float32).ravel()
    fa = fa if len(fa) <= 2_000_000 else rng.choice(fa, 2_000_000, replace=False)
    fb = fb if len(fb) <= 2_000_000 else rng.choice(fb, 2_000_000, replace=False)
    ha, _ = np.histogram(fa, bins, (-1, 1))
    hb, _ = np.histogram(fb, bins, (-1, 1))
    return {"wasserstein": float(wasserstein_distance(fa, fb)), "js": float(jensenshannon(ha, hb, base=2))}
