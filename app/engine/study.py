"""Blinded real-vs-synthetic reader studies: design, blinded presentation, answers and statistics.

A study draws N cases from real and synthetic image sets with a seed, makes every image look the
same whatever its origin (one resampler to one size, per-image percentile normalisation, 8-bit
quantisation), stores the pixels the readers see under opaque random case ids in
``studies/<id>/blinded.h5`` (which holds no provenance at all), and keeps the truth only in the
owner's SQLite registry (table ``study_cases``). Each reader gets a random order seeded from the
study seed and the reader id; every answer is one committed transaction (``study_answers``), so a
reading survives a killed application and resumes at the first unanswered case.

Modes (``StudyMode``):

- ``single``: one image; the reader says real or synthetic with a confidence 1-5;
- ``2afc``: a real and a synthetic image side by side (random side); which one is real? + 1-5;
- ``plausibility``: one image; anatomical plausibility 1-5 and an optional comment.

A study can be exported as one HDF5 file (blinded pixels, case ids, reader orders; no truth) for
reading on another machine (``import_study_package`` makes a *reader copy* there), and the
answers come back as one JSON file (``export_answers`` / ``import_answers``).

Statistics (``compute_stats``): per reader and pooled accuracy with the Wilson score interval
(Wilson 1927, JASA 22:209, eq. for the score interval; computed by scipy), two-sided exact
binomial test against 50 %, sensitivity / specificity for detecting synthetic images, ROC AUC
from the confidence ratings (scikit-learn), mean plausibility by true class, per-case fooling
rate, Fleiss' kappa between readers, and the verdict against the goal set when the study was made.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from app.engine.jobs import JobContext, UserError, register
from app.engine.specs.options import GoalRule, StudyMode
from app.engine.specs.study import StudyCreateSpec, StudyExportSpec, StudyImportSpec, StudyStatsSpec
from app.engine.store import Workspace, check_name

BLINDED_FILE = "blinded.h5"
PACKAGE_FORMAT = "radsynth-study-package/1"
ANSWERS_FORMAT = "radsynth-study-answers/1"
TRUTHS = ("real", "synthetic")






_SCHEMA = """
CREATE TABLE IF NOT EXISTS study_cases (
    study_id TEXT NOT NULL,
    case_id  TEXT NOT NULL,          -- opaque random id, the only name a reader ever sees
    slot     INTEGER NOT NULL,       -- row in blinded.h5 (a random permutation, not by source)
    truth    TEXT,                   -- single/plausibility: real | synthetic; 2afc: side of the real image
                                     -- NULL in a reader copy (a study imported for reading)
    origin   TEXT,                   -- JSON provenance of the image(s); NULL in a reader copy
    PRIMARY KEY (study_id, case_id)
);
CREATE TABLE IF NOT EXISTS study_readers (
    study_id   TEXT NOT NULL,
    reader_id  TEXT NOT NULL,
    created    REAL NOT NULL,
    case_order TEXT NOT NULL,        -- JSON list of case ids: this reader's presentation order
    PRIMARY KEY (study_id, reader_id)
);
CREATE TABLE IF NOT EXISTS study_answers (
    study_id     TEXT NOT NULL,
    reader_id    TEXT NOT NULL,
    case_id      TEXT NOT NULL,
    answer       TEXT,               -- single: real | synthetic; 2afc: left | right (the one called real)
    confidence   INTEGER,            -- 1..5 (single, 2afc)
    plausibility INTEGER,            -- 1..5 (plausibility)
    comment      TEXT,
    seconds      REAL NOT NULL,      -- viewing time spent on the case (all visits, pauses excluded)
    over_time    INTEGER NOT NULL,   -- 1 when answered after the per-case time limit ran out
    answered     REAL NOT NULL,      -- wall-clock time of the (last) answer
    PRIMARY KEY (study_id, reader_id, case_id)
);
"""


def ensure_tables(ws: Workspace) -> None:
    """Create the study tables in the workspace registry if they are not there yet."""
    con = ws.connect()
    try:  # executescript runs its own transaction; every statement is IF NOT EXISTS
        con.executescript(_SCHEMA)
    finally:
        con.close()


# --------------------------------------------------------------------------------------------
# Specs
# --------------------------------------------------------------------------------------------










# --------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------


@dataclass
class StudyRecord:
    id: str
    name: str
    created: float
    path: Path
    spec: dict
    meta: dict = field(default_factory=dict)

    @property
    def mode(self) -> str:
        return self.spec["mode"]

    @property
    def n_cases(self) -> int:
        return int(self.meta.get("n_cases", self.spec.get("n_cases", 0)))

    @property
    def is_reader_copy(self) -> bool:
        """A study imported for reading: it has the blinded pixels but not the truth."""
        return self.meta.get("role") == "reader-copy"

    @property
    def blinded_path(self) -> Path:
        return self.path / BLINDED_FILE


def _study_from_row(ws: Workspace, r) -> StudyRecord:
    return StudyRecord(
        id=r["id"], name=r["name"], created=r["created"], path=ws.root / r["path"],
        spec=json.loads(r["spec"]), meta=json.loads(r["meta"]),
    )


def list_studies(ws: Workspace) -> list[StudyRecord]:
    return [_study_from_row(ws, r) for r in ws.query("SELECT * FROM studies ORDER BY created")]


def get_study(ws: Workspace, ref: str) -> StudyRecord:
    """A study by id or by name."""
    rows = ws.query("SELECT * FROM studies WHERE id = ? OR name = ? ORDER BY created DESC", (ref, ref))
    if not rows:
        known = ", ".join(s.name for s in list_studies(ws)) or "none"
        raise UserError(f"no study named {ref!r} in workspace {ws.root} (studies: {known})")
    return _study_from_row(ws, rows[0])


def delete_study(ws: Workspace, ref: str) -> None:
    st = get_study(ws, ref)
    ensure_tables(ws)
    with ws.transaction() as con:
        for table in ("study_answers", "study_readers", "study_cases"):
            con.execute(f"DELETE FROM {table} WHERE study_id = ?", (st.id,))
        con.execute("DELETE FROM studies WHERE id = ?", (st.id,))
    shutil.rmtree(st.path, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# Blinded presentation
# --------------------------------------------------------------------------------------------


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


@dataclass
class _SetInfo:
    ref: str
    count: int
    height: int
    width: int
    read: object  # callable(indices) -> float array (k, H, W)
    index_map: np.ndarray | None = None  # position in the set -> index in its source (a split's rows)


def _open_set(ws: Workspace, ref: str) -> _SetInfo:
    """An image set by reference: a workspace dataset (name or name:split), else load_image_set."""
    name, _, split = ref.partition(":")
    if ws.has_dataset(name):
        from app.engine.data.cache import ImageDataset

        ds = ImageDataset.from_workspace(ws, name)
        idx = ds.indices(split or None)

        def read(sel, ds=ds, idx=idx):
            return ds.images(indices=idx[np.asarray(sel)])[:, 0]

        return _SetInfo(ref, len(idx), ds.height, ds.width, read, idx)
    from app.engine.data.imagesets import load_image_set

    images = np.asarray(load_image_set(ref, workspace=ws).images, dtype=np.float32)
    if images.ndim == 4:
        images = images[:, 0]
    if images.ndim != 3 or len(images) == 0:
        raise UserError(f"image set {ref!r} holds no 2-D images (array shape {images.shape})")
    return _SetInfo(ref, len(images), images.shape[1], images.shape[2], lambda sel, im=images: im[np.asarray(sel)])


def _draw(sets: list[_SetInfo], n: int, rng: np.random.Generator, what: str) -> list[tuple[int, int]]:
    """n (set index, image index) pairs drawn without replacement from the pooled sets."""
    total = sum(s.count for s in sets)
    if n > total:
        refs = ", ".join(f"{s.ref} ({s.count})" for s in sets)
        raise UserError(f"the study needs {n} {what} images but the {what} sets hold only {total}: {refs}")
    pooled = rng.choice(total, size=n, replace=False)
    bounds = np.cumsum([0] + [s.count for s in sets])
    out = []
    for p in pooled:
        k = int(np.searchsorted(bounds, p, side="right") - 1)
        out.append((k, int(p - bounds[k])))
    return out


def create_study(ws: Workspace, spec: StudyCreateSpec, ctx: JobContext | None = None) -> StudyRecord:
    """Draw the cases, write the blinded pixels and register the study (truth only in SQLite)."""
    check_name(spec.name, "study name")
    ensure_tables(ws)
    if ws.query("SELECT 1 FROM studies WHERE name = ?", (spec.name,)):
        raise UserError(f"a study named {spec.name!r} already exists in {ws.root}")
    for r in spec.readers:
        check_name(r, "reader id")
    log = ctx.log if ctx else (lambda *a, **k: None)
    check = ctx.check if ctx else (lambda: None)

    real_sets = [_open_set(ws, r) for r in spec.real]
    syn_sets = [_open_set(ws, r) for r in spec.synthetic]
    rng = np.random.default_rng(spec.seed)
    mode = StudyMode(spec.mode)
    if mode == StudyMode.afc2:
        n_real = n_syn = spec.n_cases
    else:
        n_syn = int(round(spec.n_cases * spec.synthetic_fraction))
        n_real = spec.n_cases - n_syn
        if n_syn == 0 or n_real == 0:
            raise UserError(f"a synthetic fraction of {spec.synthetic_fraction:g} of {spec.n_cases} cases leaves no "
                            f"{'synthetic' if n_syn == 0 else 'real'} case: change n_cases or synthetic_fraction")
    real_draw = _draw(real_sets, n_real, rng, "real")
    syn_draw = _draw(syn_sets, n_syn, rng, "synthetic")

    warnings = []
    shapes = {(s.height, s.width) for s in real_sets + syn_sets}
    if len(shapes) > 1:
        warnings.append(
            "the sets have different native sizes "
            + ", ".join(f"{s.ref}: {s.height}x{s.width}" for s in real_sets + syn_sets)
            + f"; all are resampled to {spec.size}x{spec.size}, but different resampling factors can leave"
            " differences of sharpness that readers may notice"
        )
    for w in warnings:
        log(w, "warning")

    def load(sets, draw):
        by_set: dict[int, list[int]] = {}
        for k, i in draw:
            by_set.setdefault(k, []).append(i)
        pixels = {}
        for k, idx in by_set.items():
            arr = sets[k].read(sorted(idx))
            for i, img in zip(sorted(idx), arr):
                pixels[(k, i)] = img
        return [pixels[d] for d in draw]

    real_imgs, syn_imgs = load(real_sets, real_draw), load(syn_sets, syn_draw)
    # each case: (truth, list of (origin, raw image)) in a side-by-side order for 2afc
    cases: list[tuple[str, list[tuple[dict, np.ndarray]]]] = []

    def origin(sets, d, truth):
        m = sets[d[0]].index_map
        return {"truth": truth, "set": sets[d[0]].ref, "index": int(m[d[1]]) if m is not None else d[1]}

    if mode == StudyMode.afc2:
        sides = np.array(["left"] * (spec.n_cases // 2) + ["right"] * (spec.n_cases - spec.n_cases // 2))
        sides = sides[rng.permutation(spec.n_cases)]
        for i in range(spec.n_cases):
            r = (origin(real_sets, real_draw[i], "real"), real_imgs[i])
            s = (origin(syn_sets, syn_draw[i], "synthetic"), syn_imgs[i])
            cases.append((str(sides[i]), [r, s] if sides[i] == "left" else [s, r]))
    else:
        for d, img in zip(real_draw, real_imgs):
            cases.append(("real", [(origin(real_sets, d, "real"), img)]))
        for d, img in zip(syn_draw, syn_imgs):
            cases.append(("synthetic", [(origin(syn_sets, d, "synthetic"), img)]))

    n = len(cases)
    # opaque ids: random 10-hex strings, assigned in a random order, stored in a random slot order
    case_ids: list[str] = []
    seen = set()
    while len(case_ids) < n:
        cid = "c" + format(int(rng.integers(0, 2**40)), "010x")
        if cid not in seen:
            seen.add(cid)
            case_ids.append(cid)
    id_of_case = rng.permutation(n)
    slot_of_case = rng.permutation(n)
    k_img = 2 if mode == StudyMode.afc2 else 1

    study_id = "st-" + uuid.uuid4().hex[:10]
    folder = ws.root / "studies" / study_id
    folder.mkdir(parents=True, exist_ok=False)
    try:
        pixels = np.zeros((n, k_img, spec.size, spec.size), np.uint8)
        for c, (_truth, imgs) in enumerate(cases):
            check()
            for j, (_o, raw) in enumerate(imgs):
                pixels[slot_of_case[c], j] = blind_image(raw, spec.size, spec.low_percentile, spec.high_percentile)
            if ctx:
                ctx.progress(c + 1, n, "blinding")
        ids_by_slot = [""] * n
        for c in range(n):
            ids_by_slot[slot_of_case[c]] = case_ids[id_of_case[c]]
        _write_blinded(folder / BLINDED_FILE, pixels, ids_by_slot, mode.value, spec.size)
        if ctx:
            preview = pixels[:16, 0].astype(np.float32) / 127.5 - 1
            from app.engine.imaging import make_grid

            ctx.image("blinded cases", make_grid(preview, pad_value=-1), "grid")
        meta = {"n_cases": n, "n_real": n_real if mode != StudyMode.afc2 else n, "n_synthetic": n_syn,
                "images_per_case": k_img, "warnings": warnings, "role": "owner"}
        with ws.transaction() as con:
            con.execute(
                "INSERT INTO studies(id, name, created, path, spec, meta) VALUES (?,?,?,?,?,?)",
                (study_id, spec.name, time.time(), str(folder.relative_to(ws.root)),
                 spec.model_dump_json(), json.dumps(meta)),
            )
            for c, (truth, imgs) in enumerate(cases):
                con.execute(
                    "INSERT INTO study_cases(study_id, case_id, slot, truth, origin) VALUES (?,?,?,?,?)",
                    (study_id, case_ids[id_of_case[c]], int(slot_of_case[c]), truth, json.dumps([o for o, _ in imgs])),
                )
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    for r in spec.readers:
        add_reader(ws, study_id, r)
    return get_study(ws, study_id)


def _write_blinded(path: Path, pixels: np.ndarray, case_ids: list[str], mode: str, size: int, extra: dict | None = None):
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


# --------------------------------------------------------------------------------------------
# Readers and reading
# --------------------------------------------------------------------------------------------


def _case_ids(ws: Workspace, study_id: str) -> list[str]:
    return [r["case_id"] for r in ws.query("SELECT case_id FROM study_cases WHERE study_id = ?", (study_id,))]


def add_reader(ws: Workspace, study: str, reader_id: str) -> list[str]:
    """Register a reader (idempotent) and return their presentation order."""
    check_name(reader_id, "reader id")
    ensure_tables(ws)
    st = get_study(ws, study)
    rows = ws.query("SELECT case_order FROM study_readers WHERE study_id = ? AND reader_id = ?", (st.id, reader_id))
    if rows:
        return json.loads(rows[0]["case_order"])
    order = reader_order(_case_ids(ws, st.id), int(st.spec.get("seed", 0)), reader_id)
    with ws.transaction() as con:
        con.execute(
            "INSERT OR IGNORE INTO study_readers(study_id, reader_id, created, case_order) VALUES (?,?,?,?)",
            (st.id, reader_id, time.time(), json.dumps(order)),
        )
    return order


@dataclass
class ReaderProgress:
    reader_id: str
    answered: int
    n_cases: int

    @property
    def complete(self) -> bool:
        return self.answered >= self.n_cases


def list_readers(ws: Workspace, study: str) -> list[ReaderProgress]:
    ensure_tables(ws)
    st = get_study(ws, study)
    n = len(_case_ids(ws, st.id))
    rows = ws.query(
        "SELECT r.reader_id, (SELECT COUNT(*) FROM study_answers a WHERE a.study_id = r.study_id"
        " AND a.reader_id = r.reader_id) AS n FROM study_readers r WHERE r.study_id = ? ORDER BY r.created",
        (st.id,),
    )
    return [ReaderProgress(r["reader_id"], int(r["n"]), n) for r in rows]


class ReadingSession:
    """One reader's reading of one study: blinded pixels, their order, their answers.

    It never reads the truth: what it can give a reading view is exactly what the reader may see.
    Every ``record`` is one committed transaction.
    """

    def __init__(self, ws: Workspace, study: str, reader_id: str):
        self.ws = ws
        st = get_study(ws, study)
        self.study_id = st.id
        self.study_name = st.name
        self.reader_id = reader_id
        self.mode = StudyMode(st.spec["mode"])
        self.time_limit_s = float(st.spec.get("time_limit_s", 0.0) or 0.0)
        self.order = add_reader(ws, st.id, reader_id)
        pixels, ids, _info = read_blinded(st.blinded_path)
        self._slot = {cid: i for i, cid in enumerate(ids)}
        self._pixels = pixels
        missing = [c for c in self.order if c not in self._slot]
        if missing:
            raise UserError(f"{st.blinded_path} lacks {len(missing)} case(s) of reader {reader_id}'s order")
        self.answers: dict[str, dict] = {}
        for r in ws.query(
            "SELECT case_id, answer, confidence, plausibility, comment, seconds, over_time FROM study_answers"
            " WHERE study_id = ? AND reader_id = ?", (self.study_id, reader_id),
        ):
            self.answers[r["case_id"]] = dict(r)

    def __len__(self) -> int:
        return len(self.order)

    @property
    def n_answered(self) -> int:
        return len(self.answers)

    def image(self, index: int) -> np.ndarray:
        """uint8 (K, S, S) pixels of the case at ``index`` in this reader's order (K = 2 in 2afc)."""
        return self._pixels[self._slot[self.order[index]]]

    def answer(self, index: int) -> dict | None:
        return self.answers.get(self.order[index])

    def first_unanswered(self, start: int = 0) -> int | None:
        """Index of the first unanswered case at or after ``start`` (wrapping); None when all are."""
        n = len(self.order)
        for k in range(n):
            i = (start + k) % n
            if self.order[i] not in self.answers:
                return i
        return None

    def record(self, index: int, *, answer: str | None = None, confidence: int | None = None,
               plausibility: int | None = None, comment: str | None = None, seconds: float = 0.0,
               over_time: bool = False) -> dict:
        """Write (or overwrite) the answer to the case at ``index`` in one committed transaction."""
        row = _check_answer(self.mode, answer, confidence, plausibility)
        row.update(comment=(comment or None), seconds=float(seconds), over_time=int(bool(over_time)))
        case_id = self.order[index]
        with self.ws.transaction() as con:
            con.execute(
                "INSERT OR REPLACE INTO study_answers(study_id, reader_id, case_id, answer, confidence, plausibility,"
                " comment, seconds, over_time, answered) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (self.study_id, self.reader_id, case_id, row["answer"], row["confidence"], row["plausibility"],
                 row["comment"], row["seconds"], row["over_time"], time.time()),
            )
        self.answers[case_id] = dict(case_id=case_id, **row)
        return self.answers[case_id]


def _check_answer(mode: StudyMode, answer, confidence, plausibility) -> dict:
    def rating(v, what):
        if v is None or not (1 <= int(v) <= 5):
            raise UserError(f"{what} must be 1-5 in a {mode.value} study, got {v!r}")
        return int(v)

    if mode == StudyMode.single:
        if answer not in TRUTHS:
            raise UserError(f"answer must be one of {TRUTHS} in a single-image study, got {answer!r}")
        return {"answer": answer, "confidence": rating(confidence, "confidence"), "plausibility": None}
    if mode == StudyMode.afc2:
        if answer not in ("left", "right"):
            raise UserError(f"answer must be 'left' or 'right' (the image called real) in a 2afc study, got {answer!r}")
        return {"answer": answer, "confidence": rating(confidence, "confidence"), "plausibility": None}
    return {"answer": None, "confidence": None, "plausibility": rating(plausibility, "plausibility")}


# --------------------------------------------------------------------------------------------
# Statistics
# --------------------------------------------------------------------------------------------


def wilson_interval(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion k / n (Wilson 1927), as scipy computes it."""
    from scipy.stats import binomtest

    if n == 0:
        return (float("nan"), float("nan"))
    ci = binomtest(int(k), int(n), 0.5).proportion_ci(confidence_level=confidence, method="wilson")
    return float(ci.low), float(ci.high)


def auc_interval(auc: float, n_pos: int, n_neg: int, z: float = 1.959964) -> tuple[float, float]:
    """95 % interval of an ROC AUC from the Hanley & McNeil (1982) standard error.

    Radiology 143:29-36, eq. 2 with Q1 = A / (2 - A), Q2 = 2 A^2 / (1 + A) (eqs. 3-4). Hand-written:
    scikit-learn gives the AUC but no interval.
    """
    a = float(auc)
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    var = (a * (1 - a) + (n_pos - 1) * (q1 - a * a) + (n_neg - 1) * (q2 - a * a)) / (n_pos * n_neg)
    se = math.sqrt(max(var, 0.0))
    return max(0.0, a - z * se), min(1.0, a + z * se)


def fleiss_kappa(counts: np.ndarray) -> float:
    """Fleiss' kappa for a (subjects, categories) table of rating counts, equal raters per subject.

    Fleiss (1971), Psychol. Bull. 76(5):378, eqs. 2-3 (P_i), 5 (P-bar), 6-7 (p_j, P-bar_e), 8
    (kappa). Hand-written because statsmodels (which has it) is not a dependency of the project; it
    is a dozen lines and tested against Fleiss' worked example.
    """
    x = np.asarray(counts, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"fleiss_kappa expects a non-empty (subjects, categories) table, got shape {x.shape}")
    n_raters = x.sum(axis=1)
    if not np.all(n_raters == n_raters[0]) or n_raters[0] < 2:
        raise ValueError("fleiss_kappa needs the same number (>= 2) of ratings for every subject")
    m = n_raters[0]
    n_subjects = x.shape[0]
    p_j = x.sum(axis=0) / (n_subjects * m)  # share of all ratings in category j
    p_i = (np.sum(x * x, axis=1) - m) / (m * (m - 1))  # agreement on subject i
    p_bar, p_e = p_i.mean(), np.sum(p_j * p_j)
    if p_e >= 1.0:  # every rating in one category: agreement is perfect but kappa is undefined
        return float("nan")
    return float((p_bar - p_e) / (1.0 - p_e))


def answer_table(ws: Workspace, study: str) -> list[dict]:
    """Every answer joined with its truth (owner studies only): one dict per (reader, case)."""
    ensure_tables(ws)
    st = get_study(ws, study)
    if st.is_reader_copy:
        raise UserError(f"study {st.name!r} is a reader copy (imported for reading): it has no truth to score against")
    rows = ws.query(
        "SELECT a.reader_id, a.case_id, c.truth, a.answer, a.confidence, a.plausibility, a.comment, a.seconds,"
        " a.over_time, a.answered FROM study_answers a JOIN study_cases c"
        " ON a.study_id = c.study_id AND a.case_id = c.case_id WHERE a.study_id = ? ORDER BY a.reader_id, a.answered",
        (st.id,),
    )
    return [dict(r) for r in rows]


def _group_stats(rows: list[dict], mode: StudyMode) -> dict:
    from scipy.stats import binomtest, mannwhitneyu
    from sklearn.metrics import roc_auc_score, roc_curve

    out: dict = {"n": len(rows), "median_seconds": float(np.median([r["seconds"] for r in rows])) if rows else None,
                 "n_over_time": int(sum(int(r["over_time"] or 0) for r in rows))}
    if not rows:
        return out
    if mode == StudyMode.plausibility:
        truth = np.array([r["truth"] for r in rows])
        score = np.array([r["plausibility"] for r in rows], dtype=float)
        out["mean_plausibility"] = {t: (float(score[truth == t].mean()) if np.any(truth == t) else None) for t in TRUTHS}
        y = (truth == "real").astype(int)
        if 0 < y.sum() < len(y):
            # AUC of telling real from synthetic by plausibility: 0.5 when the ratings do not differ
            out["auc"] = float(roc_auc_score(y, score))
            out["auc_ci"] = list(auc_interval(out["auc"], int(y.sum()), int(len(y) - y.sum())))
            fpr, tpr, _ = roc_curve(y, score)
            out["roc"] = {"fpr": fpr.tolist(), "tpr": tpr.tolist(), "positive": "real"}
            out["mannwhitney_p"] = float(mannwhitneyu(score[y == 1], score[y == 0], alternative="two-sided").pvalue)
        return out
    correct = np.array([r["answer"] == r["truth"] for r in rows])
    k, n = int(correct.sum()), len(rows)
    out["correct"] = k
    out["accuracy"] = k / n
    out["accuracy_ci"] = list(wilson_interval(k, n))
    out["p_value"] = float(binomtest(k, n, 0.5, alternative="two-sided").pvalue)
    conf = np.array([r["confidence"] or 1 for r in rows], dtype=float)
    if mode == StudyMode.single:
        truth = np.array([r["truth"] for r in rows])
        said = np.array([r["answer"] for r in rows])
        syn, real = truth == "synthetic", truth == "real"
        tp, tn = int(np.sum(syn & (said == "synthetic"))), int(np.sum(real & (said == "real")))
        out["sensitivity"] = tp / int(syn.sum()) if syn.any() else None  # synthetic images called synthetic
        out["sensitivity_ci"] = list(wilson_interval(tp, int(syn.sum()))) if syn.any() else None
        out["specificity"] = tn / int(real.sum()) if real.any() else None  # real images called real
        out["specificity_ci"] = list(wilson_interval(tn, int(real.sum()))) if real.any() else None
        y = syn.astype(int)
        # a 10-level rating of "synthetic-ness": +confidence when called synthetic, -confidence when real
        score = np.where(said == "synthetic", conf, -conf)
        positive = "synthetic"
    else:
        truth = np.array([r["truth"] for r in rows])
        said = np.array([r["answer"] for r in rows])
        y = (truth == "left").astype(int)
        score = np.where(said == "left", conf, -conf)
        positive = "left image real"
    if 0 < y.sum() < len(y):
        out["auc"] = float(roc_auc_score(y, score))
        out["auc_ci"] = list(auc_interval(out["auc"], int(y.sum()), int(len(y) - y.sum())))
        fpr, tpr, _ = roc_curve(y, score)
        out["roc"] = {"fpr": fpr.tolist(), "tpr": tpr.tolist(), "positive": positive}
    return out


def compute_stats(rows: list[dict], mode: str, goal_accuracy: float = 0.6, goal_rule: str = "point") -> dict:
    """All the statistics of a study from its answer table (see ``answer_table``).

    Each row needs reader_id, case_id, truth, answer, confidence, plausibility, seconds, over_time.
    """
    mode = StudyMode(mode)
    rule = GoalRule(goal_rule)
    readers = sorted({r["reader_id"] for r in rows})
    per_reader = {rid: _group_stats([r for r in rows if r["reader_id"] == rid], mode) for rid in readers}
    pooled = _group_stats(rows, mode)

    cases: dict[str, dict] = {}
    for r in rows:
        c = cases.setdefault(r["case_id"], {"case_id": r["case_id"], "truth": r["truth"], "n": 0, "n_wrong": 0,
                                            "plausibility": []})
        c["n"] += 1
        if mode == StudyMode.plausibility:
            c["plausibility"].append(r["plausibility"])
        elif r["answer"] != r["truth"]:
            c["n_wrong"] += 1
    per_case = []
    for c in sorted(cases.values(), key=lambda c: c["case_id"]):
        item = {"case_id": c["case_id"], "truth": c["truth"], "n_readers": c["n"]}
        if mode == StudyMode.plausibility:
            item["mean_plausibility"] = float(np.mean(c["plausibility"]))
        else:
            item["n_wrong"] = c["n_wrong"]
            item["fooling_rate"] = c["n_wrong"] / c["n"]  # share of readers who got this case wrong
        per_case.append(item)

    # Fleiss' kappa over the cases every reader answered
    kappa = None
    n_kappa_cases = 0
    if len(readers) >= 2:
        cats = ["real", "synthetic"] if mode == StudyMode.single else (
            ["left", "right"] if mode == StudyMode.afc2 else [1, 2, 3, 4, 5])
        key = "plausibility" if mode == StudyMode.plausibility else "answer"
        by_case: dict[str, list] = {}
        for r in rows:
            by_case.setdefault(r["case_id"], []).append(r[key])
        full = [v for v in by_case.values() if len(v) == len(readers)]
        n_kappa_cases = len(full)
        if full:
            table = np.array([[v.count(c) for c in cats] for v in full])
            kappa = fleiss_kappa(table)
            kappa = None if math.isnan(kappa) else kappa

    metric = "auc" if mode == StudyMode.plausibility else "accuracy"
    value = pooled.get(metric)
    if value is None:
        verdict = {"metric": metric, "threshold": goal_accuracy, "rule": rule.value, "value": None, "passed": None,
                   "text": "no answers yet" if not rows else f"{metric} is undefined (one class only)"}
    else:
        ci = pooled.get("accuracy_ci" if metric == "accuracy" else "auc_ci")
        tested = ci[1] if rule == GoalRule.upper_ci else value
        passed = bool(tested < goal_accuracy)
        what = "upper 95 % bound of " if rule == GoalRule.upper_ci else ""
        verdict = {
            "metric": metric, "threshold": goal_accuracy, "rule": rule.value, "value": value, "tested": tested,
            "passed": passed,
            "text": (f"goal met: {what}pooled {metric} {tested:.3f} < {goal_accuracy:.2f}" if passed else
                     f"goal not met: {what}pooled {metric} {tested:.3f} >= {goal_accuracy:.2f}"),
        }
    return {
        "mode": mode.value,
        "n_answers": len(rows),
        "readers": readers,
        "per_reader": per_reader,
        "pooled": pooled,
        "per_case": per_case,
        "fleiss_kappa": kappa,
        "fleiss_kappa_cases": n_kappa_cases,
        "verdict": verdict,
        "notes": "pooled tests treat all readings as independent; per-reader tests are exact binomial tests",
    }


def study_stats(ws: Workspace, study: str) -> dict:
    st = get_study(ws, study)
    stats = compute_stats(answer_table(ws, st.id), st.mode, float(st.spec.get("goal_accuracy", 0.6)),
                          st.spec.get("goal_rule", "point"))
    readers = list_readers(ws, st.id)
    stats.update(study_id=st.id, study=st.name, n_cases=len(_case_ids(ws, st.id)),
                 progress={r.reader_id: r.answered for r in readers})
    return stats


def write_results(ws: Workspace, study: str, folder: str | Path, stats: dict | None = None) -> list[Path]:
    """Write stats.json, readers.csv, cases.csv and answers.csv of a study into ``folder``."""
    folder = Path(folder).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    stats = stats if stats is not None else study_stats(ws, study)
    from app.engine.jobs import to_jsonable

    paths = [folder / "stats.json", folder / "readers.csv", folder / "cases.csv", folder / "answers.csv"]
    paths[0].write_text(json.dumps(to_jsonable(stats), indent=2))
    cols = ["n", "correct", "accuracy", "accuracy_ci_low", "accuracy_ci_high", "p_value", "sensitivity",
            "specificity", "auc", "mean_plausibility_real", "mean_plausibility_synthetic", "median_seconds"]
    with paths[1].open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["reader"] + cols)
        for rid, g in list(stats["per_reader"].items()) + [("pooled", stats["pooled"])]:
            ci = g.get("accuracy_ci") or [None, None]
            mp = g.get("mean_plausibility") or {}
            vals = {**g, "accuracy_ci_low": ci[0], "accuracy_ci_high": ci[1],
                    "mean_plausibility_real": mp.get("real"), "mean_plausibility_synthetic": mp.get("synthetic")}
            w.writerow([rid] + ["" if vals.get(c) is None else vals.get(c) for c in cols])
    with paths[2].open("w", newline="") as f:
        keys = list(stats["per_case"][0].keys()) if stats["per_case"] else ["case_id", "truth"]
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(stats["per_case"])
    rows = answer_table(ws, study)
    with paths[3].open("w", newline="") as f:
        keys = ["reader_id", "case_id", "truth", "answer", "confidence", "plausibility", "comment", "seconds",
                "over_time", "answered"]
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    return paths


# --------------------------------------------------------------------------------------------
# Export / import
# --------------------------------------------------------------------------------------------


def export_study(ws: Workspace, study: str, path: str | Path, readers: list[str] | None = None) -> Path:
    """One HDF5 file for reading elsewhere: blinded pixels, case ids, reader orders; no truth."""
    ensure_tables(ws)
    st = get_study(ws, study)
    path = Path(path).expanduser()
    pixels, ids, _ = read_blinded(st.blinded_path)
    rows = ws.query("SELECT reader_id, case_order FROM study_readers WHERE study_id = ?", (st.id,))
    orders = {r["reader_id"]: json.loads(r["case_order"]) for r in rows if not readers or r["reader_id"] in readers}
    for r in readers or []:
        if r not in orders:
            orders[r] = add_reader(ws, st.id, r)
    # what a reader may know about the study: never the sets, their sizes, or the mix
    public = {k: st.spec[k] for k in ("mode", "size", "time_limit_s", "n_cases") if k in st.spec}
    info = {"study_id": st.id, "name": st.name, "spec": public, "readers": orders, "exported": time.time()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    _write_blinded(tmp, pixels, ids, st.mode, int(st.spec["size"]), extra=info)
    tmp.replace(path)
    return path


def import_study_package(ws: Workspace, path: str | Path) -> StudyRecord:
    """Register a study package as a reader copy here (pixels and orders; no truth)."""
    path = Path(path).expanduser()
    if not path.exists():
        raise UserError(f"study package {path} does not exist")
    pixels, ids, info = read_blinded(path)
    if info.get("format") != PACKAGE_FORMAT or "study_id" not in info:
        raise UserError(f"{path} is not a RadSynth study package (format {info.get('format')!r})")
    ensure_tables(ws)
    if ws.query("SELECT 1 FROM studies WHERE id = ?", (info["study_id"],)):
        raise UserError(f"study {info['study_id']} ({info.get('name')}) is already in workspace {ws.root}")
    name = info.get("name", info["study_id"])
    if ws.query("SELECT 1 FROM studies WHERE name = ?", (name,)):
        name = f"{name}-reading"[:64]
    folder = ws.root / "studies" / info["study_id"]
    folder.mkdir(parents=True, exist_ok=False)
    shutil.copyfile(path, folder / BLINDED_FILE)
    spec = dict(info.get("spec", {}))
    spec.setdefault("mode", info["mode"])
    meta = {"role": "reader-copy", "n_cases": len(ids), "package": path.name}
    with ws.transaction() as con:
        con.execute("INSERT INTO studies(id, name, created, path, spec, meta) VALUES (?,?,?,?,?,?)",
                    (info["study_id"], name, time.time(), str(folder.relative_to(ws.root)), json.dumps(spec),
                     json.dumps(meta)))
        for slot, cid in enumerate(ids):
            con.execute("INSERT INTO study_cases(study_id, case_id, slot, truth, origin) VALUES (?,?,?,NULL,NULL)",
                        (info["study_id"], cid, slot))
        for rid, order in info.get("readers", {}).items():
            con.execute("INSERT INTO study_readers(study_id, reader_id, created, case_order) VALUES (?,?,?,?)",
                        (info["study_id"], rid, time.time(), json.dumps(order)))
    return get_study(ws, info["study_id"])


def export_answers(ws: Workspace, study: str, path: str | Path, readers: list[str] | None = None) -> Path:
    """The readers' answers as one JSON file (to bring back to the study's owner)."""
    ensure_tables(ws)
    st = get_study(ws, study)
    rows = ws.query(
        "SELECT reader_id, case_id, answer, confidence, plausibility, comment, seconds, over_time, answered"
        " FROM study_answers WHERE study_id = ? ORDER BY reader_id, answered", (st.id,))
    answers = [dict(r) for r in rows if not readers or r["reader_id"] in readers]
    orders = {r["reader_id"]: json.loads(r["case_order"]) for r in
              ws.query("SELECT reader_id, case_order FROM study_readers WHERE study_id = ?", (st.id,))
              if not readers or r["reader_id"] in readers}
    doc = {"format": ANSWERS_FORMAT, "study_id": st.id, "name": st.name, "mode": st.mode, "readers": orders,
           "answers": answers, "exported": time.time()}
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1))
    return path


def import_answers(ws: Workspace, path: str | Path) -> dict:
    """Merge an answers file into its study; a newer answer to the same case replaces an older one."""
    path = Path(path).expanduser()
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"answers file {path} does not exist") from None
    except json.JSONDecodeError as exc:
        raise UserError(f"answers file {path} is not valid JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != ANSWERS_FORMAT:
        raise UserError(f"{path} is not a RadSynth answers file")
    ensure_tables(ws)
    rows = ws.query("SELECT * FROM studies WHERE id = ?", (doc.get("study_id"),))
    if not rows:
        raise UserError(f"answers file {path} belongs to study {doc.get('study_id')} ({doc.get('name')}),"
                        f" which is not in workspace {ws.root}")
    st = _study_from_row(ws, rows[0])
    mode = StudyMode(st.mode)
    known = set(_case_ids(ws, st.id))
    added = replaced = kept = 0
    with ws.transaction() as con:
        for rid, order in doc.get("readers", {}).items():
            check_name(rid, "reader id")
            con.execute("INSERT OR IGNORE INTO study_readers(study_id, reader_id, created, case_order) VALUES (?,?,?,?)",
                        (st.id, rid, time.time(), json.dumps(order)))
        for a in doc.get("answers", []):
            if a["case_id"] not in known:
                raise UserError(f"answers file {path}: case {a['case_id']} is not a case of study {st.name}")
            _check_answer(mode, a.get("answer"), a.get("confidence"), a.get("plausibility"))
            old = con.execute("SELECT answered FROM study_answers WHERE study_id = ? AND reader_id = ? AND case_id = ?",
                              (st.id, a["reader_id"], a["case_id"])).fetchone()
            if old is not None and old["answered"] >= a["answered"]:
                kept += 1
                continue
            con.execute(
                "INSERT OR REPLACE INTO study_answers(study_id, reader_id, case_id, answer, confidence, plausibility,"
                " comment, seconds, over_time, answered) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (st.id, a["reader_id"], a["case_id"], a.get("answer"), a.get("confidence"), a.get("plausibility"),
                 a.get("comment"), float(a.get("seconds", 0.0)), int(a.get("over_time", 0)), float(a["answered"])),
            )
            if old is None:
                added += 1
            else:
                replaced += 1
    return {"study_id": st.id, "study": st.name, "added": added, "replaced": replaced, "kept": kept}


# --------------------------------------------------------------------------------------------
# Job runners
# --------------------------------------------------------------------------------------------


@register(StudyCreateSpec)
def run_study_create(spec: StudyCreateSpec, ctx: JobContext) -> dict:
    st = create_study(ctx.workspace, spec, ctx)
    ctx.artifact("study", st.path)
    ctx.log(f"study {st.name} ({st.id}): {st.n_cases} {st.mode} cases")
    return {"study_id": st.id, "name": st.name, "path": str(st.path), "mode": st.mode, "n_cases": st.n_cases,
            "readers": list(spec.readers), "warnings": st.meta.get("warnings", [])}


@register(StudyStatsSpec)
def run_study_stats(spec: StudyStatsSpec, ctx: JobContext) -> dict:
    ctx.check()
    stats = study_stats(ctx.workspace, spec.study)
    if spec.out:
        for p in write_results(ctx.workspace, spec.study, spec.out, stats):
            ctx.artifact("report", p)
    ctx.log(stats["verdict"]["text"])
    return stats


@register(StudyExportSpec)
def run_study_export(spec: StudyExportSpec, ctx: JobContext) -> dict:
    ctx.check()
    if spec.what == "package":
        p = export_study(ctx.workspace, spec.study, spec.out, spec.readers or None)
    else:
        p = export_answers(ctx.workspace, spec.study, spec.out, spec.readers or None)
    ctx.artifact("study-" + spec.what, p)
    return {"path": str(p), "what": spec.what}


@register(StudyImportSpec)
def run_study_import(spec: StudyImportSpec, ctx: JobContext) -> dict:
    ctx.check()
    p = Path(spec.file).expanduser()
    if p.suffix.lower() == ".json":
        return {"what": "answers", **import_answers(ctx.workspace, p)}
    st = import_study_package(ctx.workspace, p)
    return {"what": "package", "study_id": st.id, "study": st.name, "n_cases": st.n_cases}
