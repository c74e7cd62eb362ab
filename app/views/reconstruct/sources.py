"""File and numpy work of the Reconstruction tabs, run on worker threads (``run_in_thread``), never on the GUI thread.

Reading a slice for the preview, drawing a mask, writing a dataset image as the NPZ a recon job reads (a complex
dataset's image with its phase), checking a CT input once before its jobs start, and writing an exported
comparison. numpy and the torch-free ``recon.mri`` modules (``io``, ``fft``, ``masks``) and ``recon.ct.job``'s
reader only.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from app.engine.errors import UserError
from app.engine.recon.mri.fft import ifft2c, rss
from app.engine.recon.mri.io import load_recon_input
from app.engine.recon.mri.masks import make_mask


def load_source(path: str, slice_index: int) -> dict:
    """Read one slice for the preview: k-space, reference, coil images, slice count."""
    inp = load_recon_input(path, slice_index)
    k = np.asarray(inp.kspace)
    coils = np.abs(ifft2c(k)) if k.ndim == 3 else None
    if inp.reference is not None:
        ref = np.abs(np.asarray(inp.reference)).astype(np.float32)
    else:
        ref = (rss(ifft2c(k)) if k.ndim == 3 else np.abs(ifft2c(k))).astype(np.float32)
    return {"kspace": k, "reference": ref, "coils": coils, "n_slices": inp.n_slices, "slice": inp.slice_index,
            "measured_mask": inp.measured_mask, "multicoil": inp.multicoil, "source": inp.source}


def preview_mask(kspace: np.ndarray, measured_mask, kind: str, acceleration: float, center_fraction: float,
                 seed: int) -> dict:
    """Mask, undersampled k-space (log magnitude, coil-combined) and the achieved acceleration."""
    shape = kspace.shape[-2:]
    if measured_mask is not None:
        mask = np.asarray(measured_mask, np.float32)
        achieved = float(mask.size / max(mask.sum(), 1.0))
    else:
        mask, achieved = make_mask(kind, shape, acceleration, center_fraction, seed)
    y = kspace * mask
    mag = np.sqrt((np.abs(y) ** 2).sum(0)) if y.ndim == 3 else np.abs(y)
    return {"mask": mask, "log_kspace": np.log1p(mag / max(float(mag.max()), 1e-12) * 1e4).astype(np.float32),
            "achieved": achieved, "measured": measured_mask is not None}


def dataset_image_to_npz(workspace, dataset: str, index: int, out_dir: Path) -> str:
    """Write image ``index`` of a workspace dataset (``name`` or ``name:split``) as the complex NPZ a recon job
    reads (k-space is simulated from it). A complex dataset (ingest --complex) keeps its real and imaginary
    parts, so the phase and a dark background stay as measured; a magnitude image gets zero phase, which the
    file name says."""
    from app.engine.data.cache import ImageDataset

    name, _, split = dataset.partition(":")
    if not workspace.has_dataset(name):
        raise UserError(f"no dataset named {name!r} in this workspace")
    ds = ImageDataset.from_workspace(workspace, name)
    rows = ds.indices(split or None)
    if not 0 <= index < len(rows):
        raise UserError(f"dataset {dataset} has {len(rows)} images; index {index} is out of range")
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{dataset.replace(':', '_')}_{index:05d}"
    if ds.is_complex:
        x = ds.images(indices=[int(rows[index])], stored=True)[0]  # (2, H, W) real, imaginary
        z = (x[0] + 1j * x[1]).astype(np.complex64)
        path = out_dir / f"{stem}_complex.npz"
    else:
        z = ((ds.images(indices=[int(rows[index])])[0, 0] + 1.0) / 2.0).astype(np.complex64)  # [-1, 1] -> [0, 1]
        path = out_dir / f"{stem}_zero_phase.npz"
    np.savez(path, images=z[None])
    return str(path)


def check_ct_input(path: str, slice_index: int) -> str:
    """Read the CT slice the ct-recon jobs will read (``recon.ct.job.load_ct_slice``: the file, its modality,
    the slice): one UserError for a bad input before one job per method is started. Returns a short
    description of the slice."""
    from app.engine.recon.ct.job import load_ct_slice

    img = load_ct_slice(path, slice_index)
    return f"{Path(path).name}: slice {slice_index}, {img.shape[0]}×{img.shape[1]}, {img.min():.0f} to {img.max():.0f} HU"


def write_comparison(out: Path, stem: str, picture, arrays: dict[str, np.ndarray], meta: dict) -> list[Path]:
    """``<stem>.png`` (the grid as drawn: a QImage, which may be saved off the GUI thread) and ``<stem>.npz``
    (every array shown, and the metrics as JSON)."""
    out.mkdir(parents=True, exist_ok=True)
    png = out / f"{stem}.png"
    if not picture.save(str(png)):
        raise OSError(f"could not write {png}")
    npz = out / f"{stem}.npz"
    np.savez_compressed(npz, **{k.replace(" ", "_"): v for k, v in arrays.items()},
                        metrics_json=np.array(json.dumps(meta, default=str)))
    return [png, npz]
