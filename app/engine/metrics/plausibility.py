"""Simple anatomical plausibility heuristics that rank generated images for a person to look at."""

from __future__ import annotations

import numpy as np


def plausibility_features(images: np.ndarray) -> np.ndarray:
    """(N, 5): left-right symmetry (correlation of the image with its mirror), foreground area
    (fraction of pixels above the Otsu threshold), mean, std and 99th percentile of intensity."""
    from skimage.filters import threshold_otsu

    x = np.asarray(images, np.float64)[:, 0]
    out = np.empty((len(x), 5))
    for i, im in enumerate(x):
        m = im[:, ::-1]
        a, b = im - im.mean(), m - m.mean()
        out[i, 0] = (a * b).sum() / max(np.sqrt((a * a).sum() * (b * b).sum()), 1e-12)
        t = threshold_otsu(im) if im.max() > im.min() else im.max()
        out[i, 1] = (im > t).mean()
        out[i, 2:] = im.mean(), im.std(), np.percentile(im, 99)
    return out


PLAUSIBILITY_NAMES = ("symmetry", "foreground_area", "mean", "std", "p99")


def rank_implausible(real: np.ndarray, generated: np.ndarray, top: int = 16) -> dict:
    """Robust z-scores of each generated image's heuristics against the real distribution
    (median / MAD); an image's score is its largest |z|. Returns the ``top`` least plausible."""
    fr, fg = plausibility_features(real), plausibility_features(generated)
    med = np.median(fr, 0)
    mad = 1.4826 * np.median(np.abs(fr - med), 0) + 1e-6
    z = (fg - med) / mad
    score = np.abs(z).max(1)
    order = np.argsort(-score)[:top]
    return {"scores": score, "least_plausible": [
        {"index": int(i), "score": float(score[i]), "worst": PLAUSIBILITY_NAMES[int(np.abs(z[i]).argmax())],
         **{n: float(fg[i, k]) for k, n in enumerate(PLAUSIBILITY_NAMES)}} for i in order]}
