"""Small image helpers shared by jobs: display scaling, grids and PNG writing."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def to_uint8(img: np.ndarray, lo: float | None = -1.0, hi: float | None = 1.0) -> np.ndarray:
    """Map [lo, hi] linearly to 0..255 (None: the image's own min / max), clipping outside."""
    img = np.asarray(img, dtype=np.float32)
    lo = float(np.nanmin(img)) if lo is None else lo
    hi = float(np.nanmax(img)) if hi is None else hi
    scale = 255.0 / (hi - lo) if hi > lo else 0.0
    return np.clip(np.round((img - lo) * scale), 0, 255).astype(np.uint8)


def make_grid(images: np.ndarray, ncol: int | None = None, pad: int = 2, pad_value: float | None = None) -> np.ndarray:
    """Tile (N, H, W) or (N, 1, H, W) images into one (rows*H, cols*W) float array."""
    images = np.asarray(images, dtype=np.float32)
    if images.ndim == 4:
        images = images[:, 0]
    if images.ndim != 3:
        raise ValueError(f"make_grid expects (N, H, W) or (N, 1, H, W), got shape {images.shape}")
    n, h, w = images.shape
    if n == 0:
        return np.zeros((h, w), np.float32)
    ncol = ncol or int(np.ceil(np.sqrt(n)))
    nrow = int(np.ceil(n / ncol))
    fill = float(images.min()) if pad_value is None else pad_value
    grid = np.full((nrow * (h + pad) - pad, ncol * (w + pad) - pad), fill, np.float32)
    for i in range(n):
        r, c = divmod(i, ncol)
        grid[r * (h + pad) : r * (h + pad) + h, c * (w + pad) : c * (w + pad) + w] = images[i]
    return grid


def save_png(path: str | Path, img: np.ndarray, lo: float | None = -1.0, hi: float | None = 1.0, bits: int = 8) -> Path:
    """Write a greyscale PNG (8 or 16 bit) of a float image mapped from [lo, hi]."""
    from PIL import Image as PILImage

    path = Path(path)
    img = np.asarray(img, dtype=np.float32)
    if img.ndim == 3 and img.shape[0] == 1:
        img = img[0]
    if bits == 8:
        PILImage.fromarray(to_uint8(img, lo, hi)).save(path)
    elif bits == 16:
        lo = float(img.min()) if lo is None else lo
        hi = float(img.max()) if hi is None else hi
        arr = np.clip(np.round((img - lo) / max(hi - lo, 1e-12) * 65535), 0, 65535).astype(np.uint16)
        PILImage.fromarray(arr).save(path)
    else:
        raise ValueError(f"bits must be 8 or 16, got {bits}")
    return path
