"""Reading MRI reconstruction inputs: complex images, k-space NPZ / NPY, fastMRI HDF5; validated.

``load_recon_input(path, slice_index)`` returns a ``ReconInput`` for one slice:

- a fully sampled **complex image** (NPZ key ``images``/``image``, or a complex ``.npy``): k-space
  is simulated with ``fft2c`` of the complex image (never of its magnitude) and the image is the
  reference;
- **k-space** (NPZ key ``kspace``: (H, W) single-coil, (C, H, W) multi-coil, (S, C, H, W) a stack
  of multi-coil slices; fastMRI HDF5 ``kspace``: (S, H, W) single-coil or (S, C, H, W)
  multi-coil, with ``reconstruction_rss`` / ``reconstruction_esc`` as reference and the file's
  attributes kept). Fully sampled k-space is undersampled retrospectively by the job; k-space that
  is already undersampled (zeros off the sampling pattern) is reconstructed as measured, and its
  own sampling pattern is the mask. Zero-padded edges (fastMRI knee files leave the phase-encode
  lines outside the acquired matrix empty) do not make k-space undersampled: it counts as fully
  sampled when every sample inside the block of sampled rows and columns is present.

Bad files get a ``UserError`` naming the file and the reason: unknown layout, wrong shape, real
instead of complex data, NaN / inf values, or undersampled k-space without a sampled centre.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from app.engine.data.files import open_npz
from app.engine.errors import UserError
from app.engine.recon.mri.fft import fft2c, ifft2c, rss
from app.engine.recon.mri.masks import center_is_sampled

MIN_SIZE = 8
#: the centred block (fraction of each axis) that undersampled k-space must have fully sampled
CALIBRATION_FRACTION = 0.02


@dataclasses.dataclass
class ReconInput:
    """One slice to reconstruct. ``kspace`` is (H, W) or (C, H, W) complex64 (coil axis first)."""

    kspace: np.ndarray
    reference: np.ndarray | None  # magnitude (or complex for single-coil image input), (H', W') or None
    measured_mask: np.ndarray | None  # (H, W) sampling pattern when the data are already undersampled
    source: str
    slice_index: int
    n_slices: int
    attrs: dict = dataclasses.field(default_factory=dict)
    from_image: bool = False  # k-space simulated from a complex image

    @property
    def multicoil(self) -> bool:
        return self.kspace.ndim == 3

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.kspace.shape[-2:])

    @property
    def fully_sampled(self) -> bool:
        return self.measured_mask is None


def _bad(path, reason: str) -> UserError:
    return UserError(f"{path}: {reason}")


def _check_finite(path, arr: np.ndarray, what: str) -> None:
    if not np.all(np.isfinite(arr)):
        n = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise _bad(path, f"{what} contains {n} NaN or infinite values")


def _check_complex(path, arr: np.ndarray, what: str) -> None:
    if not np.iscomplexobj(arr):
        raise _bad(path, f"{what} is {arr.dtype}, not complex: k-space and MRI images with phase are complex-valued")


def _pick(path, n: int, slice_index: int | None) -> int:
    k = 0 if slice_index is None else int(slice_index)
    if not (0 <= k < n):
        raise _bad(path, f"slice {slice_index} is out of range: the file holds {n} slice(s) (0..{n - 1})")
    return k


def sampling_pattern(kspace: np.ndarray) -> np.ndarray:
    """(H, W) float32: 1 where any coil has a non-zero sample."""
    k = np.asarray(kspace)
    nz = np.abs(k) > 0
    return (nz.reshape(-1, *k.shape[-2:]).any(axis=0)).astype(np.float32)


def is_fully_sampled(mask: np.ndarray, tolerance: float = 0.999) -> bool:
    """True when ``mask`` (H, W) samples everything inside the block spanned by its sampled rows
    and columns: fully sampled k-space, possibly zero-padded at the edges."""
    m = np.asarray(mask).astype(bool)
    rows, cols = np.flatnonzero(m.any(axis=1)), np.flatnonzero(m.any(axis=0))
    if rows.size == 0:
        return False
    block = m[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    return bool(block.mean() > tolerance)


def validate_kspace(path, kspace: np.ndarray) -> np.ndarray | None:
    """Check one slice of k-space (H, W) or (C, H, W); return its mask when undersampled, else None."""
    if kspace.ndim not in (2, 3):
        raise _bad(path, f"k-space slice must be (H, W) or (C, H, W), got shape {kspace.shape}")
    if min(kspace.shape[-2:]) < MIN_SIZE or (kspace.ndim == 3 and kspace.shape[0] > 128):
        raise _bad(path, f"k-space shape {kspace.shape} is not (C <= 128, H >= {MIN_SIZE}, W >= {MIN_SIZE})")
    _check_complex(path, kspace, "k-space")
    _check_finite(path, kspace, "k-space")
    mask = sampling_pattern(kspace)
    if mask.sum() == 0:
        raise _bad(path, "k-space is all zeros")
    if is_fully_sampled(mask):
        return None
    if not center_is_sampled(mask, CALIBRATION_FRACTION):
        raise _bad(
            path,
            "undersampled k-space has no fully sampled centre (calibration region); "
            "check the k-space is centred (k = 0 at index H//2, W//2) and includes low frequencies",
        )
    return mask


def _from_image_stack(path, images: np.ndarray, slice_index) -> ReconInput:
    if images.ndim == 2:
        images = images[None]
    if images.ndim != 3 or min(images.shape[-2:]) < MIN_SIZE:
        raise _bad(path, f"complex images must be (H, W) or (S, H, W), got shape {images.shape}")
    _check_complex(path, images, "images")
    k = _pick(path, images.shape[0], slice_index)
    img = np.asarray(images[k], dtype=np.complex64)
    _check_finite(path, img, f"image {k}")
    return ReconInput(
        kspace=fft2c(img).astype(np.complex64),  # simulated from the complex image, phase included
        reference=img,
        measured_mask=None,
        source=str(path),
        slice_index=k,
        n_slices=images.shape[0],
        from_image=True,
    )


def _from_kspace(path, ks: np.ndarray, slice_index, reference=None, attrs=None, stacked_single=False) -> ReconInput:
    if ks.ndim == 4 or (ks.ndim == 3 and stacked_single):
        k = _pick(path, ks.shape[0], slice_index)
        n = ks.shape[0]
        one = np.asarray(ks[k])
        ref = None if reference is None else np.asarray(reference[k])
    elif ks.ndim in (2, 3):
        if slice_index not in (None, 0):
            raise _bad(path, f"slice {slice_index} asked for, but the file holds one slice of k-space {ks.shape}")
        k, n, one, ref = 0, 1, np.asarray(ks), reference
    else:
        raise _bad(path, f"k-space must be (H, W), (C, H, W) or (S, C, H, W), got shape {ks.shape}")
    _check_complex(path, one, "k-space")
    one = one.astype(np.complex64)
    mask = validate_kspace(path, one)
    if ref is None and mask is None:  # fully sampled: the reference is the (coil-combined) image
        im = ifft2c(one)
        ref = rss(im) if one.ndim == 3 else im
    if ref is not None:
        ref = np.asarray(ref)
        _check_finite(path, ref, "reference image")
    return ReconInput(one, ref, mask, str(path), k, n, dict(attrs or {}))


def load_recon_input(path: str | Path, slice_index: int | None = None) -> ReconInput:
    """Read one slice of a reconstruction input (see the module docstring for the layouts)."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: file does not exist")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npz":
            with open_npz(path) as z:
                keys = set(z.files)
                if "kspace" in keys:
                    ref = z["reference"] if "reference" in keys else None
                    return _from_kspace(path, z["kspace"], slice_index, ref)
                for key in ("images", "image"):
                    if key in keys:
                        return _from_image_stack(path, z[key], slice_index)
                raise _bad(path, f"NPZ has no 'kspace' or 'images' array (found: {', '.join(sorted(keys)) or 'none'})")
        if suffix == ".npy":
            return _from_image_stack(path, open_npz(path), slice_index)
        if suffix in (".h5", ".hdf5"):
            return _from_fastmri(path, slice_index)
    except UserError:
        raise
    except (OSError, ValueError, KeyError) as exc:
        raise _bad(path, f"cannot be read as {suffix[1:].upper()}: {exc}") from None
    raise _bad(path, f"unsupported file type {suffix!r} (use .npz, .npy or fastMRI .h5)")


def _from_fastmri(path: Path, slice_index) -> ReconInput:
    import h5py

    with h5py.File(path, "r") as f:
        if "kspace" not in f:
            raise _bad(path, f"HDF5 has no 'kspace' dataset (found: {', '.join(f.keys())})")
        ds = f["kspace"]
        if ds.ndim not in (3, 4):
            raise _bad(path, f"fastMRI kspace must be (S, H, W) or (S, C, H, W), got shape {ds.shape}")
        k = _pick(path, ds.shape[0], slice_index)
        one = np.asarray(ds[k])
        ref = None
        for key in ("reconstruction_rss", "reconstruction_esc"):
            if key in f:
                ref = np.asarray(f[key][k])
                break
        attrs = {a: (v.item() if hasattr(v, "item") else str(v)) for a, v in f.attrs.items()}
        n = ds.shape[0]
    out = _from_kspace(path, one, None, ref, attrs)
    out.slice_index, out.n_slices = k, n
    return out
