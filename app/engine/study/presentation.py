"""What a reader sees: one blinded presentation for every image (one resampler to one size, per-image
percentile normalisation, 8-bit quantisation), the blinded file, and each reader's seeded order."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from app.engine.jobs import UserError
from app.engine.study.records import PACKAGE_FORMAT


def blind_image(img: np.ndarray, size: int, low_percentile: float = 0.5, high_percentile: float = 99.5) -> np.ndarray:
    """The pixels a reader sees: uint8 (size, size), identical processing whatever the origin.

    Centre-pad to square with the low percentile value, resample with one resampler (bilinear,
    anti-aliased when shrinking) to ``size``, then map the image's own [low, high] percentiles to
    [0, 255] and quantise to 8 bit. The per-image normalisation removes any difference of
    intensity range, offset or bit depth between sources; the common quantisation removes
    differences in the number of grey levels.
    """
    from skimage.transform import resize

    a = np.asarray(img, dtype=np.float64)
    if a.ndim == 3 and a.shape[0] == 1:
        a = a[0]
    if a.ndim != 2:
        raise ValueError(f"blind_image expects a 2-D image, got shape {a.shape}")
    a = np.nan_to_num(a, nan=0.0, posinf=0.0, neginf=0.0)
    h, w = a.shape
    if h != w:
        n = max(h, w)
        fill = float(np.percentile(a, low_percentile))
        sq = np.full((n, n), fill)
        sq[(n - h) // 2 : (n - h) // 2 + h, (n - w) // 2 : (n - w) // 2 + w] = a
        a = sq
    if a.shape != (size, size):
        a = resize(a, (size, size), order=1, mode="edge", anti_aliasing=a.shape[0] > size, preserve_range=True)
    lo, hi = np.percentile(a, [low_percentile, high_percentile])
    if hi <= lo:  # a flat image: mid grey rather than a division by zero
        return np.full((size, size), 128, np.uint8)
    return np.clip(np.round((a - lo) / (hi - lo) * 255.0), 0, 255).astype(np.uint8)


def _stable_int(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little")


def reader_order(case_ids: list[str], study_seed: int, reader_id: str) -> list[str]:
    """A reader's presentation order: a permutation seeded from the study seed and the reader id."""
    rng = np.random.default_rng([int(study_seed) & 0xFFFFFFFF, _stable_int(reader_id)])
    ids = sorted(case_ids)  # start from an order that says nothing about the truth
    return [ids[i] for i in rng.permutation(len(ids))]


def write_blinded(path: Path, pixels: np.ndarray, case_ids: list[str], mode: str, size: int, extra: dict | None = None):
    import h5py

    with h5py.File(path, "w") as f:
        f.create_dataset("images", data=pixels, chunks=(1,) + pixels.shape[1:], compression="gzip")
        f.create_dataset("case_ids", data=np.array(case_ids, dtype=object), dtype=h5py.string_dtype("utf-8"))
        info = {"format": PACKAGE_FORMAT, "mode": mode, "size": int(size)}
        info.update(extra or {})
        f.attrs["study"] = json.dumps(info)


def read_blinded(path: Path) -> tuple[np.ndarray, list[str], dict]:
    """(pixels uint8 (N, K, S, S), case ids by slot, info) of a blinded file or a study package."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            return f["images"][:], list(f["case_ids"].asstr()[:]), json.loads(f.attrs["study"])
    except (OSError, KeyError) as exc:
        raise UserError(f"{path} is not a readable RadSynth study file: {exc}") from None
