"""Loading image sets for evaluation and audit jobs (a thin boundary over data.imagesets)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from app.engine.audit.nn import check_images
from app.engine.data.preprocess import fit_size
from app.engine.errors import UserError


@dataclass
class Images:
    """What the metrics need from a set: images (N, 1, H, W) in [-1, 1], labels or None, a name."""

    images: np.ndarray
    labels: np.ndarray | None = None
    class_names: list[str] = field(default_factory=list)
    source: str = ""
    #: subgroup attributes (name -> (N,) values, e.g. sex, site, scanner) for per-subgroup results
    attributes: dict[str, np.ndarray] = field(default_factory=dict)


SPLITS = ("train", "val", "test")


def _file_split(ref: str) -> tuple[str, str | None]:
    """"file.npz:test" -> ("file.npz", "test") when file.npz exists (MedMNIST-layout NPZ splits)."""
    if ":" in ref and not Path(ref).exists():
        head, tail = ref.rsplit(":", 1)
        if tail in SPLITS and Path(head).is_file():
            return head, tail
    return ref, None


def load_set(ref: str, workspace=None, size: int | None = None, limit: int | None = None, what: str = "images") -> Images:
    """Load "name", "name:split", a folder of PNG/DICOM, an NPZ or "file.npz:split" (MedMNIST
    layout) via ``data.imagesets.load_image_set``, with the set's subgroup attributes (a workspace
    dataset's stored ones, DICOM header / labels-CSV attributes of a folder, NPZ ``attr_<name>``).
    """
    from app.engine.data.imagesets import load_image_set

    path, split = _file_split(str(ref))
    s = load_image_set(path, workspace=workspace, size=size, limit=limit, split=split)
    labels = None if s.labels is None else np.asarray(s.labels)
    if labels is not None and (labels < 0).all():
        labels = None
    source = str(s.source or ref) + (f":{split}" if split else "")
    attributes = {k: np.asarray(v).astype(str) for k, v in s.attributes.items()}
    return Images(check_images(s.images, f"{what} {ref}"), labels, list(s.class_names or []), source, attributes)


def align_labels(ref: Images, other: Images) -> Images:
    """``other`` with its labels re-indexed to ``ref``'s class names (each set numbers its own
    classes when loaded); labels of classes that ``ref`` lacks become -1."""
    if other.labels is None or not ref.class_names or not other.class_names:
        return other
    lookup = np.array([ref.class_names.index(c) if c in ref.class_names else -1 for c in other.class_names] + [-1])
    lab = np.asarray(other.labels, np.int64)
    lab = np.where((lab >= 0) & (lab < len(other.class_names)), lab, len(other.class_names))
    return Images(other.images, lookup[lab], list(ref.class_names), other.source, other.attributes)


def subset(s: Images, idx, source: str) -> Images:
    """The images ``idx`` of a set, with their labels and attributes."""
    idx = np.asarray(idx)
    return Images(s.images[idx], None if s.labels is None else np.asarray(s.labels)[idx], s.class_names, source,
                  {k: np.asarray(v)[idx] for k, v in s.attributes.items()})


def resample(s: Images, size: int) -> Images:
    """``s`` at size x size (``preprocess.fit_size``: padded to a square first, then anti-aliased linear
    interpolation), labels and attributes unchanged; the set itself when it already has that size."""
    if s.images.shape[2:] == (size, size):
        return s
    images = np.stack([fit_size(im[0], int(size))[None] for im in s.images]).astype(np.float32)
    return Images(images, s.labels, s.class_names, s.source, s.attributes)


def load_at_one_size(refs: dict[str, tuple[str | None, str]], workspace=None, size: int | None = None,
                     reference: str = "", limit: int | None = None) -> tuple[dict[str, Images | None], dict]:
    """Load every set of ``refs`` (key -> (ref or None, what)) and resample them to one size: ``size``
    when given, else the ``reference`` set's (its longer side). Returns the sets (None for a None ref)
    and a record for results and reports::

        {"size": 64, "chosen": "training images" | "stated", "stored": {key: [h, w] | "mixed"},
         "resampled": [keys whose images were resized], "names": {key: what}}

    A folder of mixed sizes loads only with a stated ``size`` (it is then resampled while loading)."""
    sets: dict[str, Images | None] = {}
    stored: dict[str, list[int] | str] = {}
    for key, (ref, what) in refs.items():
        if ref is None:
            sets[key] = None
            continue
        try:
            sets[key] = load_set(ref, workspace, limit=limit, what=what)
            stored[key] = [int(v) for v in sets[key].images.shape[2:]]
        except UserError as exc:
            if size is None or "differ in size" not in str(exc):
                raise
            sets[key] = load_set(ref, workspace, size=size, limit=limit, what=what)
            stored[key] = "mixed"
    if size is None:
        ref_shape = stored[reference]
        size = max(ref_shape)
        chosen = refs[reference][1]
    else:
        chosen = "stated"
    resampled = [k for k, v in stored.items() if v == "mixed" or v != [size, size]]
    sets = {k: None if s is None else resample(s, int(size)) for k, s in sets.items()}
    names = {k: what for k, (ref, what) in refs.items() if ref is not None}
    return sets, {"size": int(size), "chosen": chosen, "stored": stored, "resampled": resampled, "names": names}


def size_sentence(record: dict) -> str:
    """One line for a report: "Compared at 64x64 (the size of the training images); resampled:
    generated images (stored 32x32)." (``record`` from ``load_at_one_size``)."""
    whats = record.get("names", {})
    s = record["size"]
    why = "as stated" if record["chosen"] == "stated" else f"the size of the {record['chosen']}"
    parts = []
    for k in record["resampled"]:
        st = record["stored"].get(k)
        parts.append(f"{whats.get(k, k)} (stored {'in mixed sizes' if st == 'mixed' else f'{st[0]}x{st[1]}'})")
    return f"Compared at {s}x{s} ({why}); resampled: {', '.join(parts) if parts else 'none'}."
