"""Studies for reading elsewhere: the package export / import (no truth) and the answers file that comes back."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from app.engine.jobs import UserError
from app.engine.specs.options import StudyMode
from app.engine.store import Workspace, check_name
from app.engine.study.presentation import read_blinded, write_blinded
from app.engine.study.reading import add_reader, case_ids, check_answer
from app.engine.study.records import (
    ANSWERS_FORMAT,
    BLINDED_FILE,
    PACKAGE_FORMAT,
    StudyRecord,
    ensure_tables,
    get_study,
    study_from_row,
)


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
    write_blinded(tmp, pixels, ids, st.mode, int(st.spec["size"]), extra=info)
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
    st = study_from_row(ws, rows[0])
    mode = StudyMode(st.mode)
    known = set(case_ids(ws, st.id))
    added = replaced = kept = 0
    with ws.transaction() as con:
        for rid, order in doc.get("readers", {}).items():
            check_name(rid, "reader id")
            con.execute("INSERT OR IGNORE INTO study_readers(study_id, reader_id, created, case_order) VALUES (?,?,?,?)",
                        (st.id, rid, time.time(), json.dumps(order)))
        for a in doc.get("answers", []):
            if a["case_id"] not in known:
                raise UserError(f"answers file {path}: case {a['case_id']} is not a case of study {st.name}")
            check_answer(mode, a.get("answer"), a.get("confidence"), a.get("plausibility"))
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
