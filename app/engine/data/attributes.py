"""Per-image subgroup attributes (sex, age group, scanner maker, body part, modality, or a column of
the user's labels CSV / an NPZ ``attr_<name>`` array), for per-subgroup results in evaluation and
error analysis.

Privacy rule: only COARSE attributes are ever stored. From DICOM headers exactly these are read:
PatientSex (M / F / O), an age group in decades derived from PatientAge ("40-49"; "90+" for 90 and
over, as HIPAA's safe harbour asks), Manufacturer, BodyPartExamined and Modality. Never a name, an
id, a UID or a date. Attributes given by the user (CSV columns, NPZ arrays) are screened the same
way: a column whose name says it is an identifier or a date (name, id, mrn, accession, uid, date,
birth, ...), whose values look like dates, or whose values are nearly all distinct (an identifier
by another name) is dropped with a note in the ingest report, never stored.

Missing values are ``UNKNOWN`` ("unknown"). Ingest and ``load_image_set`` share this module so a
folder gets the same attributes in both.
"""

from __future__ import annotations

import csv
import re
import warnings
from pathlib import Path

import numpy as np

from app.engine.errors import UserError

UNKNOWN = "unknown"
#: DICOM keyword -> attribute name; nothing else is ever read from a header for attributes
DICOM_ATTRIBUTES = {
    "PatientSex": "sex",
    "PatientAge": "age_group",
    "Manufacturer": "manufacturer",
    "BodyPartExamined": "body_part",
    "Modality": "modality",
}
#: attributes with more distinct values than this are not subgroups (and may identify people)
MAX_VALUES = 64
MAX_VALUE_CHARS = 64
#: name tokens that mark identifiers or dates on their own
_IDENTIFYING_TOKENS = {
    "name", "names", "mrn", "accession", "uid", "uuid", "date", "dates", "birth", "birthdate", "dob", "time",
    "datetime", "timestamp", "address", "phone", "telephone", "email", "mail", "ssn", "zip", "postcode",
    "zipcode", "physician", "doctor", "referring", "operator", "initials",
}
#: "id" / "number" / "key" identify when they belong to a person or a record ("patient_id", "study_no"),
#: not when they name a coarse group ("site_id", "scanner_id")
_ID_TOKENS = {"id", "ids", "number", "no", "nr", "key", "code"}
_PERSON_TOKENS = {"patient", "subject", "person", "participant", "case", "study", "series", "exam", "image",
                  "instance", "record", "medical", "hospital", "visit", "encounter", "sop", "file"}
_DATE_VALUE = re.compile(r"^(\d{8}|\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{4})([ T].*)?$")


def attribute_name(raw: str) -> str:
    """A column / array name as an attribute name: lower case, [a-z0-9_], at most 32 characters."""
    s = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", str(raw).strip())  # camelCase -> camel_Case
    s = re.sub(r"[^a-z0-9]+", "_", s.lower()).strip("_")[:32]
    return s


def identifying_name(name: str) -> bool:
    """True when an attribute's name says it holds identifiers or dates (patient_id, StudyDate...)."""
    tokens = set(attribute_name(name).split("_"))
    if tokens & _IDENTIFYING_TOKENS or attribute_name(name) in ("id", "patient", "subject", "pid", "key"):
        return True
    return bool(tokens & _ID_TOKENS) and bool(tokens & _PERSON_TOKENS)


def clean_value(v) -> str:
    """One attribute value as short plain text; empty / missing -> UNKNOWN."""
    if v is None:
        return UNKNOWN
    if isinstance(v, bytes):
        v = v.decode("utf-8", "replace")
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not np.isfinite(v):
        return UNKNOWN
    s = " ".join(str(v).split())[:MAX_VALUE_CHARS]
    return s if s else UNKNOWN


def age_group(patient_age: str) -> str:
    """DICOM PatientAge ("045Y", "006M", "012W", "003D") -> a decade ("40-49"), "90+" or UNKNOWN."""
    m = re.fullmatch(r"\s*(\d{1,3}(?:\.\d*)?)\s*([YMWD]?)\s*", str(patient_age or "").upper())
    if not m:
        return UNKNOWN
    n, unit = float(m.group(1)), m.group(2) or "Y"
    years = {"Y": n, "M": n / 12, "W": n / 52.18, "D": n / 365.25}[unit]
    if years >= 90:
        return "90+"
    lo = int(years // 10) * 10
    return f"{lo}-{lo + 9}"


def dicom_attributes(path: str | Path) -> dict[str, str]:
    """The coarse attributes of one DICOM file, read from its header only (pixels are not read)."""
    import pydicom

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path, stop_before_pixels=True, force=True, specific_tags=list(DICOM_ATTRIBUTES))
    except Exception:  # the image reader reports unreadable files; attributes are then unknown
        return {a: UNKNOWN for a in DICOM_ATTRIBUTES.values()}
    out = {}
    for keyword, attr in DICOM_ATTRIBUTES.items():
        raw = str(ds.get(keyword, "") or "").strip()
        if attr == "sex":
            raw = raw.upper()[:1]
            out[attr] = raw if raw in ("M", "F", "O") else UNKNOWN
        elif attr == "age_group":
            out[attr] = age_group(raw)
        else:
            out[attr] = clean_value(raw.upper() if attr in ("modality", "body_part") else raw)
    return out


def read_csv_attributes(path: str | Path) -> dict[str, dict[str, str]]:
    """{file: {attribute: value}} from the columns of a labels CSV other than ``file`` and ``label``."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            fields = list(reader.fieldnames or [])
            extra = [c for c in fields if c and c.strip().lower() not in ("file", "label")]
            fcol = next((c for c in fields if c and c.strip().lower() == "file"), None)
            if fcol is None or not extra:
                return {}
            out: dict[str, dict[str, str]] = {}
            for row in reader:
                f = (row.get(fcol) or "").strip().replace("\\", "/")
                if f:
                    out[f] = {c.strip(): clean_value(row.get(c)) for c in extra}
            return out
    except (OSError, csv.Error, UnicodeDecodeError) as exc:
        raise UserError(f"labels CSV {path} is unreadable: {exc}") from None


def npz_attribute_arrays(path: str | Path) -> dict[tuple[str | None, str], np.ndarray]:
    """{(split or None, name): values} of an NPZ's ``attr_<name>`` / ``<split>_attr_<name>`` arrays."""
    out = {}
    try:
        with np.load(path, allow_pickle=False) as z:
            for k in z.files:
                m = re.fullmatch(r"(?:(train|val|test)_)?attr_(.+)", k)
                if m:
                    out[(m.group(1), m.group(2))] = np.asarray(z[k]).ravel()
    except Exception:  # the image reader reports an unreadable NPZ
        return {}
    return out


def screen(columns: dict[str, list[str]], n: int) -> tuple[dict[str, np.ndarray], list[dict]]:
    """Columns of per-image values -> the attributes that may be stored, and why others were not.

    Drops (with a reason): identifying names, date-like values, more than MAX_VALUES distinct
    values, or all-distinct values over 8+ images (an identifier by another name), and columns
    that hold only UNKNOWN."""
    kept: dict[str, np.ndarray] = {}
    dropped: list[dict] = []
    for raw, values in columns.items():
        name = attribute_name(raw)
        vals = np.array([clean_value(v) for v in values], dtype=object)
        if name in ("age", "patient_age", "age_years"):  # exact ages -> decades ("90+" for 90 and over)
            vals = np.array([age_group(v) if v != UNKNOWN else v for v in vals], dtype=object)
            name = "age_group"
        if len(vals) != n:
            dropped.append({"attribute": str(raw), "reason": f"{len(vals)} values for {n} images"})
            continue
        known = vals[vals != UNKNOWN]
        distinct = set(known.tolist())
        reason = None
        if not name:
            reason = "no usable name"
        elif identifying_name(raw):
            reason = "its name says it holds identifiers or dates; only coarse attributes are stored"
        elif any(_DATE_VALUE.match(v) for v in distinct):
            reason = "its values look like dates; only coarse attributes are stored"
        elif len(distinct) > MAX_VALUES:
            reason = f"{len(distinct)} distinct values (more than {MAX_VALUES}): not a subgroup, and may identify people"
        elif len(known) >= 8 and len(distinct) == len(known):
            reason = "every image has its own value: an identifier, not a subgroup"
        elif not distinct:
            reason = "no image has a value"
        if reason is None and name in kept:
            reason = f"a second attribute named {name!r}"
        if reason:
            if not (reason == "no image has a value" and raw in DICOM_ATTRIBUTES.values()):
                dropped.append({"attribute": str(raw), "reason": reason})  # a header without it: no note
            continue
        kept[name] = vals.astype(str)
    return kept, dropped


class AttributeReader:
    """Collects the attributes of each image as files are read (ingest, image folders).

    ``of_file(path, fmt)`` returns a function ``frame -> {attribute: value}``; ``labeler`` (a
    ``labels.Labeler``) gives the CSV whose extra columns become attributes."""

    def __init__(self, labeler=None):
        self.csv: dict[str, dict[str, str]] = {}
        self.root = None
        if labeler is not None and getattr(labeler, "mode", "") == "csv" and labeler.csv_path is not None:
            self.csv = read_csv_attributes(labeler.csv_path)
            self.root = Path(labeler.root)
        self.csv_columns = sorted({c for row in self.csv.values() for c in row})
        self.problems: list[dict] = []

    def _csv_row(self, path: Path) -> dict[str, str]:
        if not self.csv:
            return {}
        try:
            key = Path(path).resolve().relative_to(self.root.resolve()).as_posix()
        except ValueError:
            key = Path(path).name
        row = self.csv.get(key) or self.csv.get(Path(path).name) or {}
        return {c: row.get(c, UNKNOWN) for c in self.csv_columns}

    def of_file(self, path: str | Path, fmt: str, frames=()):
        """``frames``: all frames read from the file, to check NPZ arrays against (one value per
        image of their split); an array of another length is noted in ``problems`` and not used."""
        path = Path(path)
        base = dicom_attributes(path) if fmt == "dicom" else {}
        base.update(self._csv_row(path))
        arrays = npz_attribute_arrays(path) if fmt == "npz" else {}
        present = {getattr(fr, "split", None) for fr in frames}
        for (split, name), arr in list(arrays.items()):
            if split is not None and split not in present and frames:
                del arrays[(split, name)]  # a split that was not read (load_image_set(split=...))
                continue
            n = sum(1 for fr in frames if getattr(fr, "split", None) == split)
            if len(arr) != n:
                key = f"{split}_attr_{name}" if split else f"attr_{name}"
                detail = f"array {key!r} has {len(arr)} values for {n} images{f' of split {split}' if split else ''}"
                self.problems.append({"attribute": name, "reason": f"{path.name}: {detail}", "detail": detail})
                del arrays[(split, name)]

        def of_frame(fr) -> dict[str, str]:
            vals = dict(base)
            for (split, name), arr in arrays.items():
                if split == getattr(fr, "split", None):
                    vals[name] = clean_value(arr[fr.frame])
            return vals

        return of_frame


def columns_of(rows: list[dict[str, str]]) -> dict[str, list[str]]:
    """Per-image dicts -> per-attribute columns (an image without an attribute: UNKNOWN)."""
    names: list[str] = []
    for r in rows:
        for k in r:
            if k not in names:
                names.append(k)
    return {k: [r.get(k, UNKNOWN) for r in rows] for k in names}


def as_arrays(rows: list[dict[str, str]]) -> dict[str, np.ndarray]:
    """Per-image dicts -> {attribute: (N,) str array}, leaving out attributes no image has."""
    return {k: np.array(v, dtype=str) for k, v in columns_of(rows).items() if any(x != UNKNOWN for x in v)}


def value_counts(attributes: dict[str, np.ndarray]) -> dict[str, dict[str, int]]:
    """{attribute: {value: count}}, values sorted by count (then text), UNKNOWN last."""
    out = {}
    for name, vals in attributes.items():
        u, c = np.unique(np.asarray(vals).astype(str), return_counts=True)
        pairs = sorted(zip(u.tolist(), c.tolist()), key=lambda p: (p[0] == UNKNOWN, -p[1], p[0]))
        out[name] = {v: int(k) for v, k in pairs}
    return out
