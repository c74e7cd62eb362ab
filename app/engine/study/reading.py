"""Readers and reading sessions: every answer one committed transaction, a reading resumes where it stopped."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import numpy as np

from app.engine.jobs import UserError
from app.engine.specs.options import StudyMode
from app.engine.store import Workspace, check_name
from app.engine.study.presentation import read_blinded, reader_order
from app.engine.study.records import TRUTHS, ensure_tables, get_study


def case_ids(ws: Workspace, study_id: str) -> list[str]:
    return [r["case_id"] for r in ws.query("SELECT case_id FROM study_cases WHERE study_id = ?", (study_id,))]


def add_reader(ws: Workspace, study: str, reader_id: str) -> list[str]:
    """Register a reader (idempotent) and return their presentation order."""
    check_name(reader_id, "reader id")
    ensure_tables(ws)
    st = get_study(ws, study)
    rows = ws.query("SELECT case_order FROM study_readers WHERE study_id = ? AND reader_id = ?", (st.id, reader_id))
    if rows:
        return json.loads(rows[0]["case_order"])
    order = reader_order(case_ids(ws, st.id), int(st.spec.get("seed", 0)), reader_id)
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
    n = len(case_ids(ws, st.id))
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
        row = check_answer(self.mode, answer, confidence, plausibility)
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


def check_answer(mode: StudyMode, answer, confidence, plausibility) -> dict:
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
