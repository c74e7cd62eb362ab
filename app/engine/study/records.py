"""Study records: the study tables of the workspace registry and the StudyRecord of each study."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from app.engine.jobs import UserError
from app.engine.store import Workspace

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


def study_from_row(ws: Workspace, r) -> StudyRecord:
    return StudyRecord(
        id=r["id"], name=r["name"], created=r["created"], path=ws.root / r["path"],
        spec=json.loads(r["spec"]), meta=json.loads(r["meta"]),
    )


def list_studies(ws: Workspace) -> list[StudyRecord]:
    return [study_from_row(ws, r) for r in ws.query("SELECT * FROM studies ORDER BY created")]


def get_study(ws: Workspace, ref: str) -> StudyRecord:
    """A study by id or by name."""
    rows = ws.query("SELECT * FROM studies WHERE id = ? OR name = ? ORDER BY created DESC", (ref, ref))
    if not rows:
        known = ", ".join(s.name for s in list_studies(ws)) or "none"
        raise UserError(f"no study named {ref!r} in workspace {ws.root} (studies: {known})")
    return study_from_row(ws, rows[0])


def delete_study(ws: Workspace, ref: str) -> None:
    st = get_study(ws, ref)
    ensure_tables(ws)
    with ws.transaction() as con:
        for table in ("study_answers", "study_readers", "study_cases"):
            con.execute(f"DELETE FROM {table} WHERE study_id = ?", (st.id,))
        con.execute("DELETE FROM studies WHERE id = ?", (st.id,))
    shutil.rmtree(st.path, ignore_errors=True)
