"""Loading image sets for evaluation and audit jobs (a thin boundary over data.imagesets)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from app.engine.metrics.nn import check_images


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
