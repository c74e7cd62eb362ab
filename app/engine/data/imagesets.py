"""``load_image_set``: one call that turns a dataset name, an image folder, an NPZ or a cache file
into images in [-1, 1] with labels, for evaluation, audits and reader studies.

    load_image_set("demo-phantoms:test")              a workspace dataset, optionally one split
    load_image_set("exports/run-12/", size=64)         PNG / TIFF / DICOM files (labels from a
                                                       labels.csv sidecar or class subfolders)
    load_image_set("pneumoniamnist.npz", split="test") NPZ: images [+labels] or MedMNIST layout
    load_image_set("datasets/x/cache.h5")              a dataset cache file

Image files are normalised with the ``auto`` rule of ``preprocess`` (8/16-bit files by their bit
depth, which inverts what the app's PNG exporter wrote; DICOM by its own window), so real and
generated images exported the same way compare fairly.

Every set also carries its per-image subgroup attributes where it has any (``ImageSet.attributes``):
a dataset's stored ones, a folder's DICOM header attributes and labels-CSV columns, an NPZ's
``attr_<name>`` / ``<split>_attr_<name>`` arrays (see ``attributes.py``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from app.engine.data.attributes import AttributeReader, as_arrays
from app.engine.data.cache import SPLITS, ImageDataset
from app.engine.data.labels import Labeler, class_order
from app.engine.data.preprocess import fit_size, normalize_frame
from app.engine.data.readers import IMAGE_EXTENSIONS, Frame, SkipFile, detect_format, list_files, read_file
from app.engine.errors import UserError

SPLIT_NAMES = ("train", "val", "test", "all")
#: files in an image folder that are not images and are left alone (manifests, notes)
SIDECAR_EXTENSIONS = {".json", ".csv", ".tsv", ".txt", ".md", ".yaml", ".yml", ".log", ".html", ".xml"}
_DICOM_EXTENSIONS = {".dcm", ".dicom", ".ima"}


@dataclasses.dataclass
class ImageSet:
    """Images ready for metrics: float32 (N, 1, H, W) in [-1, 1], labels int64 (N,) or None."""

    images: np.ndarray
    labels: np.ndarray | None
    class_names: list[str]
    names: list[str]  # file names (relative to the folder, "#k" for frame k) or "dataset:index"
    source: str
    #: subgroup attributes, name -> (N,) str values ("unknown" where missing); {} when none
    attributes: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def size(self) -> tuple[int, int]:
        return int(self.images.shape[2]), int(self.images.shape[3])


def _check_split(split: str | None) -> str | None:
    if split is not None and split not in SPLIT_NAMES:
        raise UserError(f"split {split!r} is not one of {', '.join(SPLIT_NAMES)}")
    return None if split == "all" else split


def _split_ref(ref: str) -> tuple[str, str | None]:
    """"name:train" -> ("name", "train"); a name without a split suffix -> (name, None)."""
    if ":" in ref:
        name, suffix = ref.rsplit(":", 1)
        if suffix in SPLIT_NAMES:
            return name, suffix
    return ref, None


def _open_workspace(workspace):
    from app.engine.store import Workspace

    if workspace is None or isinstance(workspace, (str, Path)):
        return Workspace.open(workspace)
    return workspace


def _has_dataset(workspace, name: str) -> bool:
    try:
        return bool(name) and _open_workspace(workspace).has_dataset(name)
    except Exception:  # a name the registry refuses (no valid dataset name) is no dataset
        return False


def load_image_set(
    ref: str | Path,
    workspace=None,
    split: str | None = None,
    size: int | None = None,
    limit: int | None = None,
) -> ImageSet:
    """Images of a dataset name ("name" or "name:split"), a folder, an NPZ or a cache .h5.

    ``split`` selects train / val / test (datasets, caches and MedMNIST NPZ); ``size`` resizes to
    size x size (padding to a square first); ``limit`` keeps the first N images. Raises UserError
    naming the file for empty sets, unreadable files, NaNs, or mixed sizes without ``size``.
    """
    split = _check_split(split)
    if size is not None and (int(size) < 4 or int(size) > 4096):
        raise UserError(f"size {size} is out of range (4..4096)")
    if limit is not None and int(limit) < 1:
        raise UserError(f"limit {limit} must be at least 1")
    path = Path(ref).expanduser()
    # A plain name that a dataset of the given workspace has is that dataset, whatever files the working
    # folder holds: the server confines such names to the workspace and must not see a file instead.
    plain = isinstance(ref, str) and "/" not in ref and "\\" not in ref
    registered = plain and workspace is not None and _has_dataset(workspace, _split_ref(ref)[0])
    if registered or not path.exists():
        if isinstance(ref, Path) or "/" in str(ref) or "\\" in str(ref):
            raise UserError(f"{ref} does not exist")
        name, ref_split = _split_ref(str(ref))
        if split is not None and ref_split not in (None, "all") and ref_split != split:
            raise UserError(f"{ref!r} names split {ref_split!r} but split={split!r} was asked for")
        ws = _open_workspace(workspace)
        if not ws.has_dataset(name):
            known = ", ".join(d.name for d in ws.datasets()) or "none"
            raise UserError(
                f"{ref!r} is neither a file or folder nor a dataset in workspace {ws.root} (datasets: {known})"
            )
        rec = ws.dataset(name)
        split = split or _check_split(ref_split)
        return _from_cache(rec.cache_path, split, size, limit, f"dataset:{name}" + (f":{split}" if split else ""), name)
    if path.is_dir():
        return _from_folder(path, split, size, limit)
    fmt = detect_format(path)
    if fmt == "hdf5" and _is_cache(path):
        return _from_cache(path, split, size, limit, str(path), path.parent.name)
    if fmt == "unknown":
        raise UserError(f"{path} is not a recognised image file (not DICOM, PNG, JPEG, TIFF, NIfTI, HDF5 or NPZ)")
    if split is not None and fmt != "npz":
        raise UserError(f"{path} is a {fmt} file without splits; split={split!r} applies to datasets and NPZ files")
    try:
        frames = read_file(path, split=split)
    except SkipFile as exc:
        raise UserError(f"{path}: {exc}") from None
    labels = [f.label for f in frames]
    has_labels = any(lab is not None for lab in labels)
    classes = class_order(labels) if has_labels else None  # from the whole file, before ``limit``
    reader = AttributeReader()
    attrs_of = reader.of_file(path, fmt, frames)
    if reader.problems:
        raise UserError(f"{path}: attribute " + "; ".join(p["detail"] for p in reader.problems))
    if limit is not None:
        frames, labels = frames[: int(limit)], labels[: int(limit)]
    stem = path.name
    names = [f"{stem}:{f.split + ':' if f.split else ''}{f.frame}" for f in frames]
    return _assemble(frames, names, labels if has_labels else None, size, str(path), classes,
                     as_arrays([attrs_of(fr) for fr in frames]))


def _is_cache(path: Path) -> bool:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            return "images" in f and f["images"].ndim == 4 and "split" in f and "class_names" in f.attrs
    except OSError:
        return False


def _from_cache(path: Path, split: str | None, size: int | None, limit: int | None, source: str, name: str) -> ImageSet:
    ds = ImageDataset(path, name)
    idx = ds.indices(split)
    if limit is not None:
        idx = idx[: int(limit)]
    if len(idx) == 0:
        where = f" in split {split!r}" if split else ""
        raise UserError(f"dataset {name!r} has no images{where}")
    images = ds.images(indices=idx)
    labels = ds._labels[idx].astype(np.int64)
    if size is not None and images.shape[2:] != (size, size):
        images = np.stack([fit_size(im[0], int(size))[None] for im in images])
    has_labels = bool(ds.class_names) and bool((labels >= 0).any())
    return ImageSet(
        images=np.ascontiguousarray(images, dtype=np.float32),
        labels=labels if has_labels else None,
        class_names=list(ds.class_names) if has_labels else [],
        names=[f"{name}:{int(i)}" for i in idx],
        source=source,
        attributes=ds.attributes(indices=idx),
    )


def _from_folder(root: Path, split: str | None, size: int | None, limit: int | None) -> ImageSet:
    if split is not None:
        raise UserError(f"{root} is a folder of images without splits; split={split!r} applies to datasets and NPZ files")
    files = list_files(root)
    labeler = Labeler.from_option("auto", root, [f for f in files if f.suffix.lower() not in SIDECAR_EXTENSIONS])
    frames: list[Frame] = []
    names: list[str] = []
    labels: list[str | None] = []
    attrs: list[dict[str, str]] = []
    reader = AttributeReader(labeler)
    for f in files:
        if labeler.is_sidecar(f):
            continue
        fmt = detect_format(f)
        if fmt == "unknown":
            ext = f.suffix.lower()
            if ext in IMAGE_EXTENSIONS or ext in _DICOM_EXTENSIONS:
                raise UserError(f"{f}: unreadable image file (its content is not a valid {ext[1:].upper()} image)")
            if ext in SIDECAR_EXTENSIONS or f.stat().st_size == 0:
                continue  # manifests and notes beside the images
            raise UserError(f"{f} is not an image file (not DICOM, PNG, JPEG or TIFF); move it out of {root}")
        if fmt not in ("dicom", "png", "jpeg", "tiff"):
            raise UserError(f"{f} is a {fmt} file inside an image folder; load it on its own")
        try:
            got = read_file(f, fmt=fmt)
        except SkipFile as exc:
            raise UserError(f"{f}: {exc}") from None
        rel = f.relative_to(root).as_posix()
        lab = labeler.label(f)
        attrs_of = reader.of_file(f, fmt, got)
        for fr in got:
            frames.append(fr)
            names.append(rel if len(got) == 1 else f"{rel}#{fr.frame}")
            labels.append(lab)
            attrs.append(attrs_of(fr))
        if limit is not None and len(frames) >= int(limit):
            frames, names, labels = frames[: int(limit)], names[: int(limit)], labels[: int(limit)]
            attrs = attrs[: int(limit)]
            break
    if not frames:
        raise UserError(f"{root} holds no images (looked for DICOM, PNG, JPEG and TIFF files)")
    return _assemble(frames, names, labels if labeler.mode != "none" else None, size, str(root),
                     attributes=as_arrays(attrs))


def _assemble(
    frames: list[Frame],
    names: list[str],
    labels: list[str | None] | None,
    size: int | None,
    source: str,
    classes: list[str] | None = None,
    attributes: dict[str, np.ndarray] | None = None,
) -> ImageSet:
    if not frames:
        raise UserError(f"{source} holds no images")
    if size is None:
        shape0 = frames[0].pixels.shape
        for fr, nm in zip(frames, names):
            if fr.pixels.shape != shape0:
                raise UserError(
                    f"images differ in size: {names[0]} is {shape0[0]}x{shape0[1]} but {nm} is "
                    f"{fr.pixels.shape[0]}x{fr.pixels.shape[1]} (in {source}); pass size=N to resize them"
                )
    out = []
    for fr, nm in zip(frames, names):
        img = normalize_frame(fr, "auto")
        if size is not None:
            img = fit_size(img, int(size))
        if not np.isfinite(img).all():
            raise UserError(f"{nm} (in {source}) contains NaN or infinite values")
        out.append(img)
    images = np.stack(out)[:, None].astype(np.float32)
    class_names: list[str] = []
    lab_arr = None
    if labels is not None:
        class_names = classes if classes is not None else class_order(labels)
        index = {c: i for i, c in enumerate(class_names)}
        lab_arr = np.array([index[lab] if lab is not None else -1 for lab in labels], dtype=np.int64)
    return ImageSet(images=images, labels=lab_arr, class_names=class_names, names=names, source=source,
                    attributes=dict(attributes or {}))


__all__ = ["ImageSet", "load_image_set", "SPLITS"]
