"""The dataset cache: one chunked HDF5 file per dataset, the only thing training ever reads.

File ``cache.h5`` holds:

    images    float32 (N, 1, H, W), values in [-1, 1], chunked one image per chunk; complex MR
              datasets (attr complex = 1): (N, 2, H, W), real and imaginary part, magnitude <= 1
              (``preprocess.normalize_complex``)
    labels    int64 (N,), class index, -1 when unlabelled
    split     uint8 (N,), 0 = train, 1 = val, 2 = test
    group     str (N,), salted hash of PatientID (or series / file when there is none)
    source    str (N,), source file path as given at ingest
    frame     int32 (N,), frame / slice index within the source file (0 for 2-D files)
    modality  str (N,), "MR", "CT", "CR", "DX", "OT" ...
    value_range float32 (N, 2): the values of the source's units that -1 and +1 stand for (the image's linear
              normalisation, ``preprocess.value_range``); NaN when not known (generated, complex)
    unit      str (N,), "HU" for CT images read in Hounsfield units (DICOM CT after its modality LUT,
              NPZ volume_hu), "" otherwise: with value_range the Datasets panel shows HU
    generated str (N,), the JSON provenance of an image RadSynth generated and exported as synthetic,
              "" for a real image (an import of an exported set keeps its marking)
              (caches written before these three lack them: no units, no per-image provenance)
    attributes/<name>  str (N,), optional: coarse subgroup attributes (sex, age_group, manufacturer,
              body_part, modality, CSV / NPZ attributes), "unknown" where missing; never names, ids
              or dates (see ``attributes.py``). Caches written before attributes simply lack the group.
    attrs:    class_names (JSON list; ``class_names.json`` beside the file, written when the classes
              are named later, takes its place), normalize, size, created, format_version, source_root;
              complex (1) and complex_headroom for complex datasets

Writers go through ``CacheWriter`` and readers through ``ImageDataset`` so the format lives here
and nowhere else.
"""

from __future__ import annotations

import gc
import json
import shutil
import time
from pathlib import Path

import h5py
import numpy as np

from app.engine.errors import UserError, disk_full_text

FORMAT_VERSION = 1
SPLITS = {"train": 0, "val": 1, "test": 2}
_STR = h5py.string_dtype("utf-8")


class CacheWriter:
    """Append images one by one (or in batches) to a new cache file, then ``close``."""

    def __init__(self, path: Path, height: int, width: int, class_names: list[str], attrs: dict | None = None,
                 channels: int = 1):
        self.path = Path(path)
        self.h, self.w, self.c = int(height), int(width), int(channels)
        self.f = h5py.File(self.path, "w")
        self.n = 0
        f = self.f
        f.create_dataset(
            "images", shape=(0, self.c, self.h, self.w), maxshape=(None, self.c, self.h, self.w), dtype="float32",
            chunks=(1, self.c, self.h, self.w), compression="lzf",
        )
        f.create_dataset("labels", shape=(0,), maxshape=(None,), dtype="int64", chunks=(4096,))
        f.create_dataset("split", shape=(0,), maxshape=(None,), dtype="uint8", chunks=(4096,))
        f.create_dataset("frame", shape=(0,), maxshape=(None,), dtype="int32", chunks=(4096,))
        for name in ("group", "source", "modality", "unit", "generated"):
            f.create_dataset(name, shape=(0,), maxshape=(None,), dtype=_STR, chunks=(4096,))
        f.create_dataset("value_range", shape=(0, 2), maxshape=(None, 2), dtype="float32", chunks=(4096, 2))
        f.attrs["class_names"] = json.dumps(list(class_names))
        f.attrs["format_version"] = FORMAT_VERSION
        f.attrs["created"] = time.time()
        for k, v in (attrs or {}).items():
            f.attrs[k] = v if isinstance(v, (int, float, str)) else json.dumps(v)

    def append(self, images: np.ndarray, labels, groups, sources, frames, modalities, value_ranges=None,
               units="", generated="") -> None:
        """``value_ranges`` (k, 2) or None (not known), ``units`` and ``generated`` (JSON or "") one per
        image or one for all: see the module docstring."""
        images = np.asarray(images, dtype=np.float32)
        if images.ndim == 2:
            images = images[None, None]
        elif images.ndim == 3:
            images = images[:, None]
        k = images.shape[0]
        if images.shape[1:] != (self.c, self.h, self.w):
            raise ValueError(f"image batch of shape {images.shape} does not match cache size {(self.h, self.w)}")
        if not np.isfinite(images).all():
            raise ValueError("images contain NaN or infinite values")
        if images.min() < -1.0001 or images.max() > 1.0001:
            raise ValueError("cache images must be normalised to [-1, 1]")
        self._check_free_space(images.nbytes)

        def as_list(v):
            return list(v) if isinstance(v, (list, tuple, np.ndarray)) else [v] * k

        f = self.f
        for name in ("images", "labels", "split", "frame", "group", "source", "modality", "value_range", "unit",
                     "generated"):
            f[name].resize((self.n + k,) + f[name].shape[1:])
        f["images"][self.n : self.n + k] = np.clip(images, -1, 1)
        f["labels"][self.n : self.n + k] = np.asarray(as_list(labels), dtype=np.int64)
        f["split"][self.n : self.n + k] = 0
        f["frame"][self.n : self.n + k] = np.asarray(as_list(frames), dtype=np.int32)
        f["group"][self.n : self.n + k] = [str(x) for x in as_list(groups)]
        f["source"][self.n : self.n + k] = [str(x) for x in as_list(sources)]
        f["modality"][self.n : self.n + k] = [str(x) for x in as_list(modalities)]
        vr = np.full((k, 2), np.nan, np.float32) if value_ranges is None else np.asarray(value_ranges, np.float32)
        f["value_range"][self.n : self.n + k] = vr.reshape(k, 2)
        f["unit"][self.n : self.n + k] = [str(x) for x in as_list(units)]
        f["generated"][self.n : self.n + k] = [str(x) for x in as_list(generated)]
        self.n += k

    def set_splits(self, split: np.ndarray) -> None:
        split = np.asarray(split, dtype=np.uint8)
        if split.shape != (self.n,):
            raise ValueError(f"split has shape {split.shape}, expected ({self.n},)")
        self.f["split"][:] = split

    def set_labels(self, labels: np.ndarray, class_names: list[str] | None = None) -> None:
        self.f["labels"][:] = np.asarray(labels, dtype=np.int64)
        if class_names is not None:
            self.f.attrs["class_names"] = json.dumps(list(class_names))

    #: kept free beyond the images themselves (HDF5 metadata, chunk index, the SQLite journal)
    RESERVE_BYTES = 4 << 20

    def _check_free_space(self, nbytes: int) -> None:
        """Refuse a write the disk cannot hold, before HDF5 meets ENOSPC: a failed HDF5 write leaves
        the library's state for that file broken in this process (later HDF5 calls were seen to
        crash), so running out of space must be caught here, not by HDF5."""
        free = shutil.disk_usage(self.path.parent).free
        need = int(nbytes * 1.1) + self.RESERVE_BYTES
        if free < need:
            raise UserError(disk_full_text(
                f" while writing {self.path} ({free / 2**20:.1f} MiB free, about {need / 2**20:.1f} MiB "
                "needed for the next images)"))

    def set_attributes(self, attributes: dict[str, np.ndarray | list[str]]) -> None:
        """Store per-image subgroup attributes (name -> N strings). Only coarse attributes that
        ``attributes.screen`` let through belong here: never names, ids or dates."""
        if "attributes" in self.f:
            del self.f["attributes"]
        g = self.f.create_group("attributes")
        for name, values in attributes.items():
            values = [str(v) for v in values]
            if len(values) != self.n:
                raise ValueError(f"attribute {name!r} has {len(values)} values for {self.n} images")
            g.create_dataset(name, data=np.array(values, dtype=object), dtype=_STR)

    def close(self) -> None:
        if self.f:
            self.f.flush()
            self.f.close()
            self.f = None

    def abort(self) -> None:
        """Let go of the file after a failure (a full disk makes its flush fail): the handle must
        not outlive the job, or the space of the deleted staging file is never given back."""
        f, self.f = self.f, None
        if f is None:
            return
        try:
            f.close()
        except Exception:
            pass
        del f
        # h5py closes the file's last id when its objects are collected. Under the app, automatic
        # collection is off and runs only in the GUI thread (workers/gc_guard.py): a collection here, in a
        # job thread, could destroy Qt wrappers from the wrong thread and deadlock, so the GUI's collector
        # (every 0.1 s) does it; a process without that guard collects now.
        if gc.isenabled():
            gc.collect()


#: beside cache.h5: class names given after ingest (``write_class_names``); they win over the attr
CLASS_NAMES_FILE = "class_names.json"


def write_class_names(path: Path, names: list[str]) -> None:
    """Name the classes of an existing cache (the labels keep their indices). Written beside the cache,
    not into it: a reader (a training, the statistics) may hold the HDF5 file open, and HDF5 refuses
    to open a file for writing that this process has open for reading."""
    side = Path(path).parent / CLASS_NAMES_FILE
    tmp = side.with_suffix(".json.tmp")
    try:
        tmp.write_text(json.dumps(list(names)))
        tmp.replace(side)
    except OSError as exc:
        raise UserError(f"class names of {path.parent.name} cannot be written to {side}: {exc.strerror or exc}") from None


class ImageDataset:
    """Read access to a dataset cache. Arrays come back as numpy; slicing reads only what it needs."""

    def __init__(self, path: Path, name: str = ""):
        self.path = Path(path)
        self.name = name or self.path.parent.name
        if not self.path.exists():
            raise UserError(f"dataset cache {self.path} is missing")
        try:
            with h5py.File(self.path, "r") as f:
                self.n = int(f["images"].shape[0])
                self.shape = tuple(int(s) for s in f["images"].shape[1:])  # as stored: (C, H, W)
                self.class_names: list[str] = json.loads(f.attrs.get("class_names", "[]"))
                self.attrs = {k: (v.item() if hasattr(v, "item") else v) for k, v in f.attrs.items()}
                self._labels = f["labels"][:]
                self._split = f["split"][:]
        except (OSError, KeyError) as exc:
            raise UserError(f"dataset cache {self.path} is unreadable: {exc}") from None
        side = self.path.parent / CLASS_NAMES_FILE
        if side.exists():  # named after ingest (Workspace.set_class_names)
            try:
                named = json.loads(side.read_text())
            except (OSError, ValueError) as exc:
                raise UserError(f"class names {side} are unreadable: {exc}") from None
            if isinstance(named, list) and len(named) == len(self.class_names):
                self.class_names = [str(n) for n in named]

    @classmethod
    def from_workspace(cls, workspace, name: str) -> ImageDataset:
        rec = workspace.dataset(name)
        return cls(rec.cache_path, name)

    def __len__(self) -> int:
        return self.n

    @property
    def height(self) -> int:
        return self.shape[1]

    @property
    def width(self) -> int:
        return self.shape[2]

    @property
    def channels(self) -> int:
        return self.shape[0]

    @property
    def is_complex(self) -> bool:
        """Complex MR images stored as (real, imaginary): priors for reconstruction."""
        return bool(self.attrs.get("complex", 0))

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def indices(self, split: str | None = None) -> np.ndarray:
        """Image indices of a split ("train", "val", "test") or of all images (None / "all")."""
        if split in (None, "all"):
            return np.arange(self.n)
        if split not in SPLITS:
            raise UserError(f"split {split!r} is not one of all, {', '.join(SPLITS)}")
        return np.flatnonzero(self._split == SPLITS[split])

    def labels(self, split: str | None = None) -> np.ndarray:
        return self._labels[self.indices(split)]

    def split_array(self) -> np.ndarray:
        return self._split.copy()

    def images(self, split: str | None = None, indices=None, stored: bool = False) -> np.ndarray:
        """float32 (k, 1, H, W) in [-1, 1]. A complex dataset gives its magnitudes for display and
        image statistics (``preprocess.magnitude_display``), or with ``stored`` its (k, 2, H, W)
        real and imaginary parts (what a reconstruction prior trains on)."""
        idx = self.indices(split) if indices is None else np.asarray(indices)
        with h5py.File(self.path, "r") as f:
            if len(idx) == 0:
                out = np.zeros((0,) + self.shape, np.float32)
            else:
                order = np.argsort(idx)
                data = f["images"][np.sort(idx)]  # h5py needs increasing indices
                out = np.empty_like(data)
                out[order] = data
        if self.is_complex and not stored:
            from app.engine.data.preprocess import COMPLEX_HEADROOM, magnitude_display

            return magnitude_display(out, float(self.attrs.get("complex_headroom", COMPLEX_HEADROOM)))
        return out

    def units(self, indices) -> tuple[np.ndarray, list[str]]:
        """(value ranges (k, 2), units) of images ``indices``: NaN / "" where not known (see the module
        docstring); stored values v stand for lo + (v + 1) / 2 * (hi - lo) of the unit."""
        idx = np.asarray(indices, dtype=np.int64)
        with h5py.File(self.path, "r") as f:
            if "value_range" not in f or "unit" not in f:
                return np.full((len(idx), 2), np.nan, np.float32), [""] * len(idx)
            vr, unit = f["value_range"][:], f["unit"].asstr()[:]
        return vr[idx].astype(np.float32), [str(unit[i]) for i in idx]

    def count_of(self, name: str) -> dict[str, int]:
        """How many images carry each value of a per-image string column ("modality", "unit"), most first."""
        with h5py.File(self.path, "r") as f:
            if name not in f:
                return {}
            values, counts = np.unique(f[name].asstr()[:], return_counts=True)
        order = np.argsort(-counts, kind="stable")
        return {str(values[i]): int(counts[i]) for i in order}

    def split_counts(self) -> dict[str, int]:
        return {s: int((self._split == v).sum()) for s, v in SPLITS.items()}

    def provenance(self, i: int) -> dict:
        with h5py.File(self.path, "r") as f:
            extra = {}
            if "unit" in f and f["unit"].asstr()[i]:
                lo, hi = (float(v) for v in f["value_range"][i])
                extra["stored range"] = f"-1..1 = {lo:.6g}..{hi:.6g} {f['unit'].asstr()[i]}"
            if "generated" in f and f["generated"].asstr()[i]:
                extra["synthetic"] = "yes: generated by a model (RadSynth), provenance below"
                gen = json.loads(f["generated"].asstr()[i])
                for k in ("model", "run", "checkpoint", "epoch", "sampler", "steps", "seed", "guidance", "created"):
                    if gen.get(k) is not None:
                        extra[f"generated {k}"] = gen[k]
                image = gen.get("image") or {}
                if image.get("class_name"):
                    extra["generated class"] = image["class_name"]
            return {
                "index": int(i),
                "source": f["source"].asstr()[i],
                "frame": int(f["frame"][i]),
                "modality": f["modality"].asstr()[i],
                "group": f["group"].asstr()[i],
                "label": int(self._labels[i]),
                "class": self.class_names[self._labels[i]] if 0 <= self._labels[i] < len(self.class_names) else "",
                "split": {v: k for k, v in SPLITS.items()}[int(self._split[i])],
                **extra,
            }

    def attributes(self, split: str | None = None, indices=None) -> dict[str, np.ndarray]:
        """Subgroup attributes (name -> str array) of a split, of ``indices`` or of all images;
        {} for a dataset ingested without any (or before attributes were kept)."""
        idx = self.indices(split) if indices is None else np.asarray(indices, dtype=np.int64)
        with h5py.File(self.path, "r") as f:
            if "attributes" not in f:
                return {}
            return {name: np.asarray(f["attributes"][name].asstr()[:], dtype=str)[idx] for name in f["attributes"]}

    def groups(self) -> np.ndarray:
        with h5py.File(self.path, "r") as f:
            return f["group"].asstr()[:]
