"""The ``ingest`` job: a file or folder of DICOM / PNG / JPEG / TIFF / NIfTI / fastMRI HDF5 / NPZ
images -> a dataset in the workspace (HDF5 cache in [-1, 1], labels, patient-grouped splits,
per-image provenance with a salted hash of the patient id, never the id itself).

Ingest never stops at the first bad file: every file that cannot be used is listed with its
reason. Files are read one by one (progress and cancellation per file); the cache is built in a
staging folder and registered only when complete, so a cancelled or failed ingest leaves no
dataset behind. An ``ingest_report.json`` beside the cache records what was kept and skipped.

Per image, coarse subgroup attributes are kept for per-subgroup results (``attributes.py``): from
DICOM headers only sex, an age group in decades, manufacturer, body part and modality; the extra
columns of a labels CSV; an NPZ's ``attr_<name>`` arrays. Identifying values (names, ids, UIDs,
dates) are never stored: columns that look like them are dropped and listed in the report.

One bad image inside a file (NaN in 2 of an NPZ's 20 images) is left out with its reason, not the
whole file. Per image the cache keeps the linear map of its normalisation (``value_range``) and, for
CT read in Hounsfield units, the unit "HU", so the Datasets panel can show HU and window presets.
Images that RadSynth exported as synthetic (PNG / DICOM / NPZ with its provenance) keep their
provenance per image, and the dataset is registered as synthetic (``meta["generated"]``), so an
exported set that comes back is never taken for real images. The ``provenance.json`` an export
writes beside its files is read as a sidecar, not listed as a skipped file.

``--complex`` keeps complex MR images (complex NPZ / NPY, fully sampled k-space in NPZ or fastMRI
HDF5) as two channels, real and imaginary, for the priors of score-based MRI reconstruction
(``preprocess.normalize_complex``). Multi-coil k-space and coil images are combined with ESPIRiT
maps, as multi-coil reconstruction does (``readers.complex_from_kspace``). Sources that hold
magnitudes only, and undersampled k-space, are skipped with the reason.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import time
import traceback
from collections import Counter
from pathlib import Path

import numpy as np

from app.engine.data.attributes import AttributeReader, columns_of, screen, value_counts
from app.engine.data.cache import SPLITS, CacheWriter
from app.engine.data.labels import Labeler, class_order
from app.engine.data.preprocess import (
    COMPLEX_HEADROOM,
    fit_complex,
    fit_size,
    magnitude_display,
    normalize_complex,
    normalize_frame,
    parse_normalize,
    value_range,
)
from app.engine.data.readers import SkipFile, detect_format, list_files, read_file
from app.engine.data.splits import grouped_split, split_counts
from app.engine.jobs import JobCancelled, JobContext, UserError, register
from app.engine.specs.data import IngestSpec
from app.engine.specs.options import MODALITIES  # noqa: F401

SALT_KEY = "patient_id_salt"
REPORT_NAME = "ingest_report.json"




# ------------------------------------------------------------------------------------------------
# identifiers
# ------------------------------------------------------------------------------------------------


def workspace_salt(workspace) -> str:
    """The workspace's secret salt for hashing patient ids (created once, kept in its meta table)."""
    with workspace.transaction() as con:
        row = con.execute("SELECT value FROM meta WHERE key = ?", (SALT_KEY,)).fetchone()
        if row is not None:
            return row["value"]
        salt = secrets.token_hex(16)
        con.execute("INSERT INTO meta(key, value) VALUES (?, ?)", (SALT_KEY, salt))
        return salt


def hash_identifier(salt: str, kind: str, value: str) -> str:
    """A salted SHA-256 of an identifier: stable within a workspace, not reversible without the salt."""
    digest = hashlib.sha256(f"{salt}\x00{kind}\x00{value}".encode()).hexdigest()[:16]
    return f"{kind[0]}-{digest}"


def default_name(source: Path) -> str:
    stem = source.name
    for ext in (".nii.gz", ".npz", ".h5", ".hdf5", ".nii", ".dcm"):
        if stem.lower().endswith(ext):
            stem = stem[: -len(ext)]
    name = re.sub(r"[^A-Za-z0-9_.\-]+", "-", stem).strip("-._")[:64]
    return name or "dataset"


# ------------------------------------------------------------------------------------------------
# the job
# ------------------------------------------------------------------------------------------------


def _rel(path: Path, root: Path) -> str:
    try:
        rel = path.relative_to(root)
        return rel.as_posix() if str(rel) != "." else path.name
    except ValueError:
        return str(path)


@register(IngestSpec)
def run_ingest(spec: IngestSpec, ctx: JobContext) -> dict:
    from app.engine.store import GENERATED_META, check_name

    t0 = time.perf_counter()
    src = Path(spec.source).expanduser()
    if not src.exists():
        raise UserError(f"source {spec.source} does not exist")
    root = src if src.is_dir() else src.parent
    name = spec.name or default_name(src)
    check_name(name, "dataset name")
    ws = ctx.workspace
    if ws.has_dataset(name) and not spec.replace:
        raise UserError(f"a dataset named {name!r} already exists in the workspace; choose another --name or pass --replace")
    mode, window = parse_normalize(spec.normalize)
    files = list_files(src)
    if not files:
        raise UserError(f"{src} holds no files")
    labeler = Labeler.from_option(spec.labels, src, files)
    attr_reader = AttributeReader(labeler)
    salt = workspace_salt(ws)
    size = spec.size
    how = (f"complex (real, imaginary) / ({COMPLEX_HEADROOM:g} x p99 of the magnitude)" if spec.complex
           else f"normalize {spec.normalize}")
    ctx.log(f"ingesting {len(files)} file(s) from {src} as {name!r} ({size}x{size}, {how}, "
            f"labels {labeler.mode if labeler.mode != 'none' or spec.labels == 'none' else 'from the files, where they carry them'})")

    staging = ws.staging_dir()
    writer: CacheWriter | None = None
    skipped: list[dict] = []
    frames_skipped: list[dict] = []
    kept_files: list[dict] = []
    labels: list[str | None] = []
    groups: list[str] = []
    given_splits: list[str | None] = []
    image_attrs: list[dict[str, str]] = []  # coarse subgroup attributes only (see attributes.py)
    modalities: Counter = Counter()
    series: set[str] = set()
    preview: list[np.ndarray] = []
    cropped: Counter = Counter()  # complex images larger than size (centre-cropped, not resampled)
    generated: list[dict] = []  # provenance of the images RadSynth exported as synthetic
    try:
        cache_attrs = {"normalize": "complex" if spec.complex else spec.normalize, "size": size,
                       "source_root": str(src.resolve()), "spec": spec.model_dump(mode="json")}
        if spec.complex:
            cache_attrs.update(complex=1, complex_headroom=COMPLEX_HEADROOM)
        writer = CacheWriter(staging / "cache.h5", size, size, [], attrs=cache_attrs, channels=2 if spec.complex else 1)
        for k, f in enumerate(files):
            ctx.check()
            ctx.progress(k, len(files), f.name)
            if labeler.is_sidecar(f) or is_export_sidecar(f):
                continue
            rel = _rel(f, root)
            bad_images: list[str] = []
            try:
                frames = read_file(f, axis=spec.axis, keep_complex=spec.complex, bad_images=bad_images,
                                   on_slice=lambda i, n, k=k, f=f: _slice_progress(ctx, k, len(files), f, i, n))
            except JobCancelled:
                raise
            except SkipFile as exc:
                skipped.append({"file": rel, "reason": str(exc)})
                continue
            except Exception as exc:  # a reader bug or an exotic file must not end the ingest
                ctx.log(traceback.format_exc(), "debug")
                skipped.append({"file": rel, "reason": f"could not be read ({type(exc).__name__}: {exc})"})
                continue
            file_label = labeler.label(f)
            fmt = detect_format(f)
            attrs_of = attr_reader.of_file(f, fmt, frames)
            batch, reasons = [], Counter(bad_images)
            for fr in frames:
                ctx.check()
                label = None if labeler.mode == "none" and spec.labels == "none" else (fr.label or file_label)
                if labeler.mode != "none" and label is None:
                    reasons[
                        f"no label: not listed in {labeler.csv_path.name}" if labeler.mode == "csv"
                        else "no label: not inside a class subfolder"
                    ] += 1
                    continue
                modality = ((spec.modality.upper() if spec.modality != "auto" else fr.modality.upper())
                            or ("MR" if spec.complex else "OT"))  # complex images come from MR
                if mode == "ct-window" and not spec.complex and modality not in ("CT", "OT"):
                    reasons[f"{modality} image: a CT window needs CT in Hounsfield units (use --normalize percentile)"] += 1
                    continue
                h, w = fr.pixels.shape
                if min(h, w) < spec.min_size:
                    reasons[f"image is {h}x{w}, smaller than min_size {spec.min_size}"] += 1
                    continue
                if spec.skip_blank and (not np.abs(fr.pixels).any() if spec.complex
                                        else float(fr.pixels.max()) == float(fr.pixels.min())):
                    reasons["blank (constant) image"] += 1
                    continue
                if spec.complex:
                    img = fit_complex(normalize_complex(fr.pixels), size)
                    if max(h, w) > size:
                        cropped[f"{h}x{w}"] += 1
                else:
                    img = fit_size(normalize_frame(fr, mode, window), size, spec.keep_aspect)
                group = _group_of(spec.group_by, fr, f, root, salt, per_image=fmt == "npz")
                if fr.series:
                    series.add(fr.series)
                span = (np.nan, np.nan) if spec.complex else value_range(fr, mode, window)
                unit = "HU" if ((modality == "CT" or mode == "ct-window") and not spec.complex
                                and fmt not in ("png", "jpeg", "tiff")) else ""
                batch.append((img, fr, label, group, modality, attrs_of(fr), span, unit))
            if not batch:
                reason = "; ".join(reasons) if reasons else "no images in the file"
                skipped.append({"file": rel, "reason": reason})
                continue
            if reasons:
                frames_skipped.append({"file": rel, "frames": sum(reasons.values()), "reason": "; ".join(reasons)})
            writer.append(
                np.stack([b[0] for b in batch]), -1, [b[3] for b in batch], rel,
                [b[1].frame for b in batch], [b[4] for b in batch], value_ranges=[b[6] for b in batch],
                units=[b[7] for b in batch],
                generated=[json.dumps(b[1].provenance) if b[1].provenance else "" for b in batch],
            )
            for img, fr, label, group, modality, attrs, _span, _unit in batch:
                if fr.provenance:
                    generated.append(fr.provenance)
                image_attrs.append(attrs)
                labels.append(label)
                groups.append(group)
                given_splits.append(fr.split)
                modalities[modality] += 1
                if len(preview) < 16:
                    preview.append(magnitude_display(img[None])[0, 0] if spec.complex else img)
            kept_files.append({"file": rel, "format": fmt, "images": len(batch)})
        if cropped:
            ctx.log(f"complex images centre-cropped to {size}x{size} (not resampled): "
                    + ", ".join(f"{k} images of {hw}" for hw, k in cropped.items())
                    + "; import with a larger size to keep whole slices", "warning")
        n = writer.n
        if n == 0:  # before the bar reaches the end: a failed import does not look finished
            first = "; ".join(f"{s['file']}: {s['reason']}" for s in skipped[:3])
            raise UserError(f"no usable images in {src}: {len(skipped)} file(s) skipped ({first}). "
                            "Choose a file or folder of DICOM, PNG / JPEG / TIFF, NIfTI, fastMRI HDF5 or NPZ images")
        ctx.progress(len(files), len(files), "splitting")
        class_names = class_order(labels) if any(lab is not None for lab in labels) else []
        index = {c: i for i, c in enumerate(class_names)}
        label_arr = np.array([index[lab] if lab is not None else -1 for lab in labels], np.int64)
        writer.set_labels(label_arr, class_names)
        if all(s is not None for s in given_splits):  # MedMNIST-style files carry their own split
            split = np.array([SPLITS[s] for s in given_splits], np.uint8)
            split_source = "given by the source file"
        else:
            split = grouped_split(groups, label_arr, spec.val_fraction, spec.test_fraction, spec.seed)
            split_source = f"grouped by {spec.group_by}, stratified by class, seed {spec.seed}"
        writer.set_splits(split)
        attributes, attrs_dropped = screen(columns_of(image_attrs), n)
        attrs_dropped = [{"attribute": d["attribute"], "reason": d["reason"]} for d in attr_reader.problems] + attrs_dropped
        for d in attrs_dropped:
            ctx.log(f"attribute {d['attribute']!r} not kept: {d['reason']}", "warning")
        writer.set_attributes(attributes)
        writer.close()
        counts = split_counts(split)
        class_counts = {c: int((label_arr == i).sum()) for i, c in enumerate(class_names)}
        result = {
            "dataset": name,
            "kept": int(n),
            "skipped": skipped,
            "classes": class_names,
            "splits": counts,
            "groups": len(set(groups)),
            "files_kept": len(kept_files),
            "frames_skipped": frames_skipped,
            "class_counts": class_counts,
            "series": len(series),
            "modalities": dict(modalities),
            "size": [size, size],
            "normalize": "complex" if spec.complex else spec.normalize,
            "complex": spec.complex,
            "labels": "given by the source file" if labeler.mode == "none" and class_names else labeler.mode,
            "split_source": split_source,
            "attributes": value_counts(attributes),
            "attributes_dropped": attrs_dropped,
        }
        report = {
            **result,
            "source": str(src.resolve()),
            "spec": spec.model_dump(mode="json"),
            "files": kept_files,
            "group_hash": "sha256(workspace salt, kind, identifier), first 16 hex digits; raw ids are not stored",
            "created": time.time(),
        }
        (staging / REPORT_NAME).write_text(json.dumps(report, indent=2))
        meta = {k: result[k] for k in ("splits", "groups", "class_counts", "modalities", "normalize", "labels",
                                       "split_source", "files_kept", "series", "attributes", "complex")}
        meta["skipped"] = len(skipped)
        meta["modality"] = modalities.most_common(1)[0][0]  # the commonest; "modalities" has them all
        if generated:  # an exported synthetic set came back: it stays marked synthetic, with its provenance
            first = {k: v for k, v in generated[0].items() if k != "image"}
            meta[GENERATED_META] = {**first, "imported_from": str(src.name), "synthetic_images": len(generated),
                                    "images": int(n)}
            result["synthetic_images"] = len(generated)
            ctx.log(f"{len(generated)} of {n} image(s) were generated by RadSynth (their files say so): "
                    "the dataset is registered as synthetic", "warning")
        meta["spec"] = spec.model_dump(mode="json")
        rec = ws.commit_dataset(
            staging, name, n_images=n, height=size, width=size, classes=class_names,
            source=str(src.resolve()), meta=meta, replace=spec.replace,
        )
    except BaseException:
        if writer is not None:
            writer.abort()
        ws.discard_staging(staging)
        raise
    result["report"] = str(rec.path / REPORT_NAME)
    result["seconds"] = round(time.perf_counter() - t0, 3)
    if preview:
        from app.engine.imaging import make_grid

        ctx.image("samples", make_grid(np.stack(preview), ncol=4), "grid")
    ctx.artifact("dataset", rec.cache_path)
    ctx.artifact("report", rec.path / REPORT_NAME)
    ctx.log(f"{name}: kept {n} image(s) from {len(kept_files)} file(s), skipped {len(skipped)} file(s); "
            f"splits {counts}" + (f"; subgroup attributes: {', '.join(attributes)}" if attributes else ""))
    return result


def is_export_sidecar(path: Path) -> bool:
    """The ``provenance.json`` that an export writes beside its images (read with them, not an image)."""
    if path.name != "provenance.json":
        return False
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("synthetic") is True
    except (OSError, ValueError, AttributeError):
        return False


def _slice_progress(ctx: JobContext, k: int, n_files: int, f: Path, i: int, n: int) -> None:
    """Within one file of slow slices (coil combination: seconds each): stop when asked, and say which slice."""
    ctx.check()
    ctx.progress(k, n_files, f"{f.name}: slice {i + 1} of {n}")


def _group_of(group_by: str, fr, path: Path, root: Path, salt: str, per_image: bool = False) -> str:
    """The split group of a frame, hashed with the workspace salt (no raw identifier is stored).

    ``per_image``: the file is a collection of independent images (an NPZ without group ids), so
    with nothing better each image is its own group."""
    if group_by in ("auto", "patient") and fr.patient:
        return hash_identifier(salt, "patient", fr.patient)
    if group_by in ("auto", "patient", "series") and fr.series:
        return hash_identifier(salt, "series", fr.series)
    if group_by == "folder":
        return hash_identifier(salt, "folder", _rel(path.parent, root))
    if per_image and group_by in ("auto", "file"):
        return hash_identifier(salt, "image", f"{_rel(path, root)}#{fr.frame}:{fr.split}")
    return hash_identifier(salt, "file", _rel(path, root))
