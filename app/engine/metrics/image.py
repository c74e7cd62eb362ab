"""Image-quality metrics of a reconstruction against a reference, fastMRI-compatible and stated once.

Definitions (fastMRI, Zbontar et al. 2018, ``fastmri/evaluate.py``), on magnitude images:

- ``nmse(gt, pred) = ||gt - pred||^2 / ||gt||^2`` over the whole volume;
- ``psnr(gt, pred) = 10 log10(data_range^2 / MSE)`` with ``data_range = gt.max()``;
- ``ssim(gt, pred)``: scikit-image's ``structural_similarity`` (7x7 uniform window, K1 0.01,
  K2 0.03) with ``data_range = gt.max()`` of the *reference volume*, averaged over slices.

A "volume" is an array (S, H, W) of S slices or a single (H, W) slice. ``center_crop`` crops the
last two axes before any metric (fastMRI crops to 320x320). ``slice_metrics`` gives per-slice values
(each slice still uses the volume's data range), ``aggregate`` their mean and std. Pure functions of
numpy arrays; no torch, no I/O.
"""

from __future__ import annotations

import numpy as np
from skimage.metrics import structural_similarity

METRICS = ("nmse", "psnr", "ssim")


def center_crop(x: np.ndarray, shape: tuple[int, int] | None) -> np.ndarray:
    """Crop the last two axes to ``shape`` around the centre (None: unchanged)."""
    if shape is None:
        return x
    h, w = x.shape[-2:]
    ch, cw = min(shape[0], h), min(shape[1], w)
    y0, x0 = (h - ch) // 2, (w - cw) // 2
    return x[..., y0 : y0 + ch, x0 : x0 + cw]


def _prep(gt, pred, crop):
    gt = np.asarray(gt)
    pred = np.asarray(pred)
    if np.iscomplexobj(gt):
        gt = np.abs(gt)
    if np.iscomplexobj(pred):
        pred = np.abs(pred)
    if gt.shape != pred.shape:
        raise ValueError(f"reference shape {gt.shape} and reconstruction shape {pred.shape} differ")
    return center_crop(gt.astype(np.float64), crop), center_crop(pred.astype(np.float64), crop)


def nmse(gt, pred, crop: tuple[int, int] | None = None) -> float:
    """Normalised MSE ||gt - pred||^2 / ||gt||^2 (magnitudes of complex inputs)."""
    gt, pred = _prep(gt, pred, crop)
    return float(np.linalg.norm(gt - pred) ** 2 / np.linalg.norm(gt) ** 2)


def psnr(gt, pred, crop: tuple[int, int] | None = None, data_range: float | None = None) -> float:
    """PSNR in dB with data range = max of the reference volume (fastMRI), unless given."""
    gt, pred = _prep(gt, pred, crop)
    dr = float(gt.max()) if data_range is None else float(data_range)
    mse = float(np.mean((gt - pred) ** 2))
    return float("inf") if mse == 0 else float(10 * np.log10(dr**2 / mse))


def ssim(gt, pred, crop: tuple[int, int] | None = None, data_range: float | None = None) -> float:
    """Mean SSIM over slices, scikit-image's ``structural_similarity`` with data range = max of the
    reference volume (fastMRI). A (H, W) input is one slice."""
    gt, pred = _prep(gt, pred, crop)
    dr = float(gt.max()) if data_range is None else float(data_range)
    if gt.ndim == 2:
        return float(structural_similarity(gt, pred, data_range=dr))
    return float(np.mean([structural_similarity(g, p, data_range=dr) for g, p in zip(gt, pred)]))


def slice_metrics(gt, pred, crop: tuple[int, int] | None = None,
                  data_range: float | None = None) -> list[dict[str, float]]:
    """Per-slice {nmse, psnr, ssim} of (S, H, W) volumes, each using the volume's data range
    (``data_range``: that of a volume of which ``gt`` holds only some slices)."""
    g, p = _prep(gt, pred, crop)
    if g.ndim == 2:
        g, p = g[None], p[None]
    dr = float(g.max()) if data_range is None else float(data_range)
    return [
        {"nmse": nmse(gs, ps), "psnr": psnr(gs, ps, data_range=dr), "ssim": ssim(gs, ps, data_range=dr)}
        for gs, ps in zip(g, p)
    ]


def aggregate(rows: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """{metric: {"mean", "std", "n"}} over per-slice rows (population std, like fastMRI)."""
    out: dict[str, dict[str, float]] = {}
    for key in METRICS:
        vals = np.array([r[key] for r in rows if key in r], dtype=np.float64)
        vals = vals[np.isfinite(vals)]
        out[key] = {
            "mean": float(vals.mean()) if vals.size else float("nan"),
            "std": float(vals.std()) if vals.size else float("nan"),
            "n": int(vals.size),
        }
    return out


def image_metrics(gt, pred, crop: tuple[int, int] | None = None) -> dict[str, float]:
    """{nmse, psnr, ssim} of a volume or slice (the headline numbers of a reconstruction)."""
    return {"nmse": nmse(gt, pred, crop), "psnr": psnr(gt, pred, crop), "ssim": ssim(gt, pred, crop)}
