"""Intensity normalisation to [-1, 1] and fitting images to a square size, shared by ingest and
``load_image_set`` so that a dataset and an image folder are prepared the same way.

Normalisation names (checked by ``parse_normalize``):

- ``minmax``: the image's own min..max -> -1..1;
- ``percentile``: the image's 0.5th..99.5th percentiles -> -1..1, clipped (robust to hot pixels);
- ``ct-window:NAME`` or ``ct-window:C,W``: a fixed Hounsfield window (centre C, width W) -> -1..1,
  clipped; NAME is one of ``CT_WINDOWS``;
- ``dicom-window``: the window the DICOM file recommends (WindowCenter / WindowWidth), falling back
  to ``percentile`` for files without one;
- ``bit-depth``: integer images by their bit depth (8 bit 0..255, 16 bit 0..65535) -> -1..1, which
  inverts exactly what an 8/16-bit PNG exporter wrote; float images use ``auto``'s float rule;
- ``auto``: ``bit-depth`` for 8/16-bit image files and NPZ arrays, ``dicom-window`` for DICOM,
  floats already in [-1, 1] or [0, 1] kept / mapped, anything else ``minmax``.
"""

from __future__ import annotations

import numpy as np

from app.engine.data.readers import Frame
from app.engine.specs.options import CT_WINDOWS, NORMALIZE_MODES, PERCENTILES, parse_normalize  # noqa: F401


def _span(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    if hi <= lo:  # a constant image: mid-grey rather than a division by zero
        return np.zeros_like(x, dtype=np.float32)
    return np.clip((x - lo) / (hi - lo) * 2.0 - 1.0, -1.0, 1.0).astype(np.float32)


def value_range(frame: Frame, mode: str, window: tuple[float, float] | None = None) -> tuple[float, float]:
    """(lo, hi): the values of the frame's own units (HU for CT) that ``mode`` maps to -1 and +1.

    Every mode is this linear map followed by a clip, so a stored value v stands for
    lo + (v + 1) / 2 * (hi - lo) inside the range: what the Datasets panel shows as HU. Resizing by
    linear interpolation keeps the map."""
    x = frame.pixels
    if mode == "minmax":
        return float(x.min()), float(x.max())
    if mode == "percentile":
        lo, hi = np.percentile(x, PERCENTILES)
        if hi <= lo:
            lo, hi = float(x.min()), float(x.max())
        return float(lo), float(hi)
    if mode == "ct-window":
        assert window is not None
        return _window_range(*window)
    if mode == "dicom-window":
        if frame.window is not None:
            return _window_range(*frame.window)
        return value_range(frame, "percentile")
    if mode == "bit-depth":
        if frame.kind == "int" and frame.bits in (8, 16):
            return 0.0, 255.0 if frame.bits == 8 else 65535.0
        return _float_range(x) if frame.kind == "float" else (float(x.min()), float(x.max()))
    if mode == "auto":
        if frame.kind == "int" and frame.bits in (8, 16):
            return value_range(frame, "bit-depth")
        if frame.window is not None:
            return _window_range(*frame.window)
        if frame.kind == "float":
            return _float_range(x)
        return float(x.min()), float(x.max())
    raise ValueError(f"unknown normalisation mode {mode!r}")


def _window_range(centre: float, width: float) -> tuple[float, float]:
    # linear window [C - W/2, C + W/2] (PS3.3 C.11.2.1.2 up to its half-unit offsets)
    return centre - width / 2.0, centre + width / 2.0


def _float_range(x: np.ndarray) -> tuple[float, float]:
    lo, hi = float(x.min()), float(x.max())
    if lo >= -1.0 and hi <= 1.0 and lo < 0:
        return -1.0, 1.0
    if lo >= 0.0 and hi <= 1.0:
        return 0.0, 1.0
    return lo, hi


def normalize_frame(frame: Frame, mode: str, window: tuple[float, float] | None = None) -> np.ndarray:
    """The frame's pixels mapped to float32 in [-1, 1] by ``mode`` (see the module docstring)."""
    return _span(frame.pixels.astype(np.float32, copy=False), *value_range(frame, mode, window))


def stored_to_units(images: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Stored values in [-1, 1] -> the source's units (HU for CT) by the image's ``value_range``."""
    return (lo + (np.asarray(images, np.float32) + 1.0) * 0.5 * (hi - lo)).astype(np.float32)


def fit_size(img: np.ndarray, size: int, keep_aspect: bool = True, pad_value: float = -1.0) -> np.ndarray:
    """Resize a [-1, 1] image to (size, size): pad to a square first when ``keep_aspect`` (no
    anatomical distortion), else stretch. Anti-aliased linear interpolation (skimage)."""
    from skimage.transform import resize

    img = np.asarray(img, dtype=np.float32)
    h, w = img.shape
    if keep_aspect and h != w:
        m = max(h, w)
        out = np.full((m, m), pad_value, np.float32)
        top, left = (m - h) // 2, (m - w) // 2
        out[top : top + h, left : left + w] = img
        img = out
    if img.shape != (size, size):
        img = resize(img, (size, size), order=1, anti_aliasing=img.shape[0] > size, preserve_range=True)
    return np.clip(img, -1.0, 1.0).astype(np.float32)


#: complex images are stored as (real, imaginary) / (COMPLEX_HEADROOM x the 99th percentile of the
#: magnitude): the reconstruction's intensity unit (``recon.mri.score.image_scale``) times a headroom
#: that keeps the brightest pixels inside [-1, 1] (on the SIAT brain series 1 % of pixels exceed the
#: 99th percentile, 0.01 % exceed 1.5x it and 2e-7 exceed 2x it). Checkpoints record it, so a prior's
#: network unit is known at reconstruction time.
COMPLEX_HEADROOM = 2.0
COMPLEX_PERCENTILE = 99.0


def normalize_complex(pixels: np.ndarray) -> np.ndarray:
    """A complex (H, W) image -> float32 (2, H, W) (real, imaginary) / (headroom x p99 of |x|), the
    magnitude clipped to 1 with the phase kept."""
    z = np.asarray(pixels, np.complex64)
    mag = np.abs(z)
    s = float(np.percentile(mag, COMPLEX_PERCENTILE)) * COMPLEX_HEADROOM
    if s <= 0:
        s = float(mag.max()) or 1.0
    z = z / s
    mag = mag / s
    over = mag > 1
    z[over] /= mag[over]
    return np.stack([z.real, z.imag]).astype(np.float32)


def fit_complex(x: np.ndarray, size: int) -> np.ndarray:
    """(2, H, W) -> (2, size, size) by a centred crop or zero padding in the image domain.

    Not resampled: a reconstruction prior is applied at the pixel size of the scanner's images, and
    resampling a complex image would also change its k-space extent and noise."""
    _, h, w = x.shape
    out = np.zeros((2, size, size), np.float32)
    ch, cw = min(h, size), min(w, size)
    sy, sx = (h - ch) // 2, (w - cw) // 2
    dy, dx = (size - ch) // 2, (size - cw) // 2
    out[:, dy : dy + ch, dx : dx + cw] = x[:, sy : sy + ch, sx : sx + cw]
    return out


def magnitude_display(x: np.ndarray, headroom: float = COMPLEX_HEADROOM) -> np.ndarray:
    """Stored complex images (k, 2, H, W) -> magnitudes (k, 1, H, W) in [-1, 1] for display and image
    statistics: the 99th percentile (1 / headroom in stored units) maps to white; headroom 1 is a
    plain clip of |z| to [0, 1]."""
    x = np.asarray(x, np.float32)
    mag = np.sqrt(x[:, 0] ** 2 + x[:, 1] ** 2) * headroom
    return (np.clip(mag, 0, 1) * 2 - 1)[:, None].astype(np.float32)
