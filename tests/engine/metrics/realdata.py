"""Real image sets for the metrics tests (PneumoniaMNIST, SIAT magnitude) and planted near-copies."""

from __future__ import annotations

import numpy as np

from tests.conftest import shared_file


def pneumoniamnist():
    """(train, val, test) images (N, 1, 28, 28) in [-1, 1] and their labels."""
    d = np.load(shared_file("pneumoniamnist_balanced_28.npz"))
    out = []
    for split in ("train", "val", "test"):
        out.append((d[f"{split}_images"][:, None].astype(np.float32) / 127.5 - 1, d[f"{split}_labels"].ravel().astype(np.int64)))
    return out


def siat_magnitude(size: int = 128):
    """SIAT T2 magnitude slices at ``size`` (2x2 box average of 256), each scaled to its 99.5th
    percentile -> [-1, 1]; returns (images (150, 1, size, size), series (150,))."""
    d = np.load(shared_file("siat_brain_t2_complex_dev.npz"))
    m = np.abs(d["images"])
    f = 256 // size
    m = m.reshape(len(m), size, f, size, f).mean((2, 4))
    p = np.percentile(m.reshape(len(m), -1), 99.5, axis=1)[:, None, None]
    return (np.clip(m / p, 0, 1) * 2 - 1)[:, None].astype(np.float32), d["series"]


def near_copies(src: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    """Near-copies of (N, 1, H, W) images: exact, shift (1 px), noise (sigma 0.05 of the [-1, 1]
    range), rescale (intensity x0.8 + 0.1) or crop (1 px off two edges, resized back)."""
    from skimage.transform import resize

    if kind == "exact":
        return src.copy()
    if kind == "shift":
        return np.roll(src, 1, axis=-1)
    if kind == "noise":
        return np.clip(src + rng.normal(0, 0.05, src.shape), -1, 1).astype(np.float32)
    if kind == "rescale":
        return np.clip((src + 1) * 0.8 - 1 + 0.1, -1, 1).astype(np.float32)
    if kind == "crop":
        h, w = src.shape[-2:]
        return np.stack([resize(im[0, 1:, 1:], (h, w), order=1, anti_aliasing=False)[None] for im in src]).astype(np.float32)
    raise ValueError(kind)


COPY_KINDS = ("exact", "shift", "noise", "rescale", "crop")
