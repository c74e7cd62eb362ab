"""Diversity within a set: mean MS-SSIM over random pairs (per class); below 0.5 reads as diverse."""

from __future__ import annotations

import numpy as np

from app.engine.errors import UserError

#: Wang, Simoncelli & Bovik 2003 (Asilomar), the five scale weights of MS-SSIM
MS_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def ms_ssim_scales(h: int, w: int, win: int = 11) -> int:
    """How many of the 5 scales fit: each scale halves the image and must stay >= the window."""
    n = 0
    while n < 5 and min(h, w) // (2**n) >= win:
        n += 1
    return max(n, 1)


def ms_ssim_pairs(a, b, data_range: float = 2.0, win: int = 11, sigma: float = 1.5):
    """MS-SSIM of image pairs (B, 1, H, W) torch tensors -> (B,) (Wang et al. 2003, eq. 7), Gaussian
    11x11 window (sigma 1.5). Images too small for 5 scales use fewer (weights renormalised);
    ``ms_ssim_scales`` says how many. Negative contrast-structure terms are clamped to 0."""
    import torch
    import torch.nn.functional as F

    a, b = a.double(), b.double()
    n_scales = ms_ssim_scales(a.shape[-2], a.shape[-1], win)
    win = min(win, a.shape[-2], a.shape[-1])
    x = torch.arange(win, dtype=torch.float64) - (win - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = (g / g.sum()).to(a.device)
    w = torch.tensor(MS_WEIGHTS[:n_scales], dtype=torch.float64, device=a.device)
    w = w / w.sum()
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2

    def filt(z):
        z = F.conv2d(z, g.view(1, 1, 1, -1))
        return F.conv2d(z, g.view(1, 1, -1, 1))

    vals = []
    for s in range(n_scales):
        mx, my = filt(a), filt(b)
        vx, vy, vxy = filt(a * a) - mx**2, filt(b * b) - my**2, filt(a * b) - mx * my
        cs = ((2 * vxy + c2) / (vx + vy + c2)).mean(dim=(1, 2, 3))
        if s == n_scales - 1:
            lum = ((2 * mx * my + c1) / (mx**2 + my**2 + c1)).mean(dim=(1, 2, 3))
            vals.append((cs * lum).clamp_min(0))
        else:
            vals.append(cs.clamp_min(0))
            a, b = F.avg_pool2d(a, 2), F.avg_pool2d(b, 2)
    v = torch.stack(vals, 1)
    return torch.prod(v ** w[None], dim=1).float()


def ms_ssim_diversity(images: np.ndarray, n_pairs: int = 200, seed: int = 0) -> dict:
    """Mean and std of MS-SSIM over random distinct pairs of a set, with the number of scales used."""
    import torch

    images = np.asarray(images, np.float32)
    if len(images) < 2:
        raise UserError("MS-SSIM diversity needs at least 2 images")
    rng = np.random.default_rng(seed)
    i = rng.integers(0, len(images), n_pairs)
    j = (i + rng.integers(1, len(images), n_pairs)) % len(images)
    v = ms_ssim_pairs(torch.from_numpy(images[i]), torch.from_numpy(images[j])).numpy()
    return {"ms_ssim_mean": float(v.mean()), "ms_ssim_std": float(v.std()), "pairs": int(n_pairs),
            "scales": ms_ssim_scales(*images.shape[-2:]), "diverse": bool(v.mean() < 0.5)}
