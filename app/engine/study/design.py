"""Designing a study: the blinded presentation of every image, the seeded draw of cases, the reader orders."""

from __future__ import annotations

import json
import shutil
import time
import uuid
from dataclasses import dataclass

import numpy as np

from app.engine.jobs import JobContext, UserError
from app.engine.specs.options import StudyMode
from app.engine.specs.study import StudyCreateSpec
from app.engine.store import Workspace, check_name
from app.engine.study.presentation import blind_image, write_blinded
from app.engine.study.reading import add_reader
from app.engine.study.records import BLINDED_FILE, StudyRecord, ensure_tables, get_study


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


def real_set_refs(ws: Workspace, refs: list[str], split: str) -> tuple[list[str], list[str]]:
    """(the real sets as drawn, those among them that hold training images). A workspace dataset named
    without a split gives its ``split`` ("all": every image); a generated (synthetic) dataset is refused.
    Files and folders are taken as they are (the workspace cannot tell what trained on them)."""
    out, training = [], []
    for ref in refs:
        name, sep, own = ref.partition(":")
        if not ws.has_dataset(name):
            out.append(ref)
            continue
        if ws.dataset(name).synthetic:
            raise UserError(f"real set {ref!r}: dataset {name} holds generated (synthetic) images, not real ones")
        chosen = own if sep else split
        resolved = name if chosen in ("", "all") else f"{name}:{chosen}"
        out.append(resolved)
        if chosen in ("", "all", "train"):
            training.append(resolved)
    return out, training


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

    real_refs, real_training = real_set_refs(ws, list(spec.real), str(spec.real_split))
    real_sets = [_open_set(ws, r) for r in real_refs]
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
    if real_training:
        warnings.append(f"the real cases include training images ({', '.join(real_training)}): a model may have "
                        "memorised them, so readers compare its output with what it learnt from")
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
        write_blinded(folder / BLINDED_FILE, pixels, ids_by_slot, mode.value, spec.size)
        if ctx:
            preview = pixels[:16, 0].astype(np.float32) / 127.5 - 1
            from app.engine.imaging import make_grid

            ctx.image("blinded cases", make_grid(preview, pad_value=-1), "grid")
        meta = {"n_cases": n, "n_real": n_real if mode != StudyMode.afc2 else n, "n_synthetic": n_syn,
                "images_per_case": k_img, "warnings": warnings, "role": "owner",
                "real_sets": real_refs, "real_training": real_training}
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


