"""The workspace: one SQLite registry (datasets, runs, jobs, studies) with files beside it.

Layout of a workspace folder::

    radsynth.sqlite          the registry (WAL journal; every write is one transaction)
    datasets/<name>/         cache.h5 (see app/engine/data/cache.py) and ingest report
    runs/<run id>/           spec.json, checkpoints/, previews/ of a training run
    jobs/<job id>/           outputs of other jobs (samples, reconstructions, reports)
    studies/<study id>/      reader-study files

A dataset is registered only after its files are complete (``commit_dataset`` moves a finished
staging folder into place and inserts the row in one transaction), so an interrupted ingest
leaves no half-registered dataset. A crash mid-write leaves the last committed state: SQLite's
transactions give that for the registry.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import sqlite3
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from app.engine.errors import UserError
from app.engine.specs.paths import NAME_RE

ENV_VAR = "RADSYNTH_WORKSPACE"
DB_NAME = "radsynth.sqlite"
SCHEMA_VERSION = 2  # 2: jobs.pid and jobs.host

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS datasets (
    name     TEXT PRIMARY KEY,
    created  REAL NOT NULL,
    path     TEXT NOT NULL,          -- relative to the workspace root
    n_images INTEGER NOT NULL,
    height   INTEGER NOT NULL,
    width    INTEGER NOT NULL,
    classes  TEXT NOT NULL,          -- JSON list of class names ([] when unlabelled)
    source   TEXT NOT NULL,
    meta     TEXT NOT NULL           -- JSON: modality, normalisation, splits, skipped count...
);
CREATE TABLE IF NOT EXISTS runs (
    id       TEXT PRIMARY KEY,
    kind     TEXT NOT NULL,          -- the process: ncsn, ddpm, vpsde, flow ...
    dataset  TEXT,
    created  REAL NOT NULL,
    path     TEXT NOT NULL,
    state    TEXT NOT NULL,          -- running | stopped | done | failed
    spec     TEXT NOT NULL,
    meta     TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS jobs (
    id        TEXT PRIMARY KEY,
    kind      TEXT NOT NULL,
    spec      TEXT NOT NULL,
    state     TEXT NOT NULL,         -- running | done | failed | cancelled
    transport TEXT NOT NULL,
    created   REAL NOT NULL,
    finished  REAL,
    result    TEXT,
    message   TEXT,
    pid       INTEGER,               -- the process that runs the job, on
    host      TEXT                   -- this machine (see mark_interrupted_jobs)
);
CREATE TABLE IF NOT EXISTS studies (
    id       TEXT PRIMARY KEY,
    name     TEXT NOT NULL,
    created  REAL NOT NULL,
    path     TEXT NOT NULL,
    spec     TEXT NOT NULL,
    meta     TEXT NOT NULL
);
"""

_NAME_RE = NAME_RE  # the one rule for workspace names (app.engine.specs.paths)


def default_workspace_dir() -> Path:
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("RadSynth Studio", "RadSynth")) / "workspace"


def check_name(name: str, what: str = "name") -> str:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise UserError(
            f"{what} {name!r} is not valid: use 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


#: the dataset meta key that marks a set of generated images and holds its provenance (run, checkpoint
#: epoch, sampler, steps, guidance, seed, class per image)
GENERATED_META = "generated"


@dataclass
class DatasetRecord:
    name: str
    created: float
    path: Path  # absolute folder
    n_images: int
    height: int
    width: int
    classes: list[str]
    source: str
    meta: dict = field(default_factory=dict)

    @property
    def cache_path(self) -> Path:
        return self.path / "cache.h5"

    @property
    def synthetic(self) -> bool:
        """Images a model generated (a sample job registered them; ``meta["generated"]`` holds their
        provenance). Records written before the flag, and ingested or demo datasets, are not synthetic:
        the demo's ``meta["synthetic"]`` means simulated phantoms, which are the real side of its studies."""
        return bool(self.meta.get(GENERATED_META))


@dataclass
class RunRecord:
    id: str
    kind: str
    dataset: str | None
    created: float
    path: Path
    state: str
    spec: dict
    meta: dict


@dataclass
class JobRecord:
    id: str
    kind: str
    spec: dict
    state: str
    transport: str
    created: float
    finished: float | None
    result: dict | None
    message: str | None


def _strings(obj) -> list[str]:
    """Every string inside a JSON value (a spec's references, wherever its fields put them)."""
    if isinstance(obj, str):
        return [obj]
    if isinstance(obj, dict):
        return [s for v in obj.values() for s in _strings(v)]
    if isinstance(obj, list):
        return [s for v in obj for s in _strings(v)]
    return []


def _rename_checkpoint_classes(run_dir: Path, old: list[str], new: list[str]) -> None:
    """Give the checkpoints of a run the new class names where they recorded the old ones (their
    ``meta.json``; the weights and their hashes are untouched)."""
    for meta_file in sorted((run_dir / "checkpoints").glob("*/meta.json")):
        try:
            meta = json.loads(meta_file.read_text())
        except (OSError, ValueError):
            continue
        if meta.get("class_names") == list(old):
            meta["class_names"] = list(new)
            tmp = meta_file.with_suffix(".json.tmp")
            tmp.write_text(json.dumps(meta, indent=2))
            os.replace(tmp, meta_file)


def _pid_alive(pid: int) -> bool:
    if os.name == "nt":  # os.kill(pid, 0) would terminate the process there: never sweep on Windows
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists but belongs to someone else
        return True
    return True


def _job_process_runs(pid: int, created: float) -> bool:
    """Whether process ``pid``, which recorded a job at time ``created``, still runs. A process of that
    number started after the job was recorded is another one (the number was reused, e.g. after a reboot).
    psutil reads the start time portably (/proc on Linux, sysctl on macOS, the process API on Windows)."""
    import psutil

    try:
        proc = psutil.Process(int(pid))
        # start times have a resolution of a clock tick (10 ms on Linux): 1 s of slack
        return proc.create_time() <= created + 1.0 and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:  # runs, under another user
        return True


class Workspace:
    """A workspace folder and its SQLite registry. Safe to use from several threads."""

    def __init__(self, root: Path):
        self.root = Path(root).expanduser().resolve()
        self.db_path = self.root / DB_NAME

    # -- opening -----------------------------------------------------------------------
    @classmethod
    def open(cls, root: str | Path | None = None) -> Workspace:
        root = Path(root) if root is not None else default_workspace_dir()
        try:
            root.mkdir(parents=True, exist_ok=True)
            for sub in ("datasets", "runs", "jobs", "studies"):
                (root / sub).mkdir(exist_ok=True)
        except OSError as exc:
            raise UserError(f"cannot create the workspace folder {root}: {exc.strerror or exc}") from None
        ws = cls(root)
        try:
            con = ws.connect()
            try:  # executescript runs its own transaction; every statement is IF NOT EXISTS
                con.executescript(_SCHEMA)
                # a workspace of schema 1 has no jobs.pid / jobs.host: added empty (its running jobs, if any,
                # are then taken as interrupted, as schema 1 did)
                have = {r[1] for r in con.execute("PRAGMA table_info(jobs)")}
                for column, kind in (("pid", "INTEGER"), ("host", "TEXT")):
                    if column not in have:
                        try:
                            con.execute(f"ALTER TABLE jobs ADD COLUMN {column} {kind}")
                        except sqlite3.OperationalError as exc:  # another process added it just now
                            if "duplicate column" not in str(exc):
                                raise
                con.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('schema_version', ?)",
                            (str(SCHEMA_VERSION),))
            finally:
                con.close()
        except sqlite3.DatabaseError as exc:
            raise UserError(f"{ws.db_path} is not a usable RadSynth workspace database: {exc}") from None
        ws.sweep_stale_staging()
        return ws

    def connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.db_path, timeout=30, isolation_level=None, check_same_thread=False)
        con.row_factory = sqlite3.Row
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=NORMAL")
        con.execute("PRAGMA foreign_keys=ON")
        return con

    @contextlib.contextmanager
    def transaction(self):
        """``with ws.transaction() as con:`` — one IMMEDIATE transaction, committed on success."""
        con = self.connect()
        try:
            con.execute("BEGIN IMMEDIATE")
            try:
                yield con
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")
        finally:
            con.close()

    def query(self, sql: str, params: tuple = ()) -> list[sqlite3.Row]:
        con = self.connect()
        try:
            return con.execute(sql, params).fetchall()
        finally:
            con.close()

    # -- datasets ----------------------------------------------------------------------
    def staging_dir(self) -> Path:
        """A fresh folder to build a dataset in before ``commit_dataset`` registers it."""
        # the owner's pid is in the name, so that a later open can tell a dead ingest's leftovers
        # from a folder another live process (the GUI beside a CLI ingest) is still filling
        d = self.root / "datasets" / f".staging-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        d.mkdir(parents=True)
        return d

    def sweep_stale_staging(self) -> list[Path]:
        """Remove staging folders left by ingests whose process died (killed, power loss)."""
        removed = []
        for d in (self.root / "datasets").glob(".staging-*"):
            parts = d.name.split("-")
            pid = int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else None
            if pid == os.getpid() or (pid is not None and _pid_alive(pid)):
                continue
            shutil.rmtree(d, ignore_errors=True)
            removed.append(d)
        return removed

    def commit_dataset(
        self,
        staging: Path,
        name: str,
        *,
        n_images: int,
        height: int,
        width: int,
        classes: list[str],
        source: str,
        meta: dict,
        replace: bool = False,
    ) -> DatasetRecord:
        """Move a finished staging folder to datasets/<name> and register it atomically."""
        check_name(name, "dataset name")
        final = self.root / "datasets" / name
        if self.has_dataset(name) and not replace:
            raise UserError(f"a dataset named {name!r} already exists in {self.root}")
        backup = None
        if final.exists():
            backup = final.with_name(f".old-{name}-{uuid.uuid4().hex[:6]}")
            os.replace(final, backup)
        os.replace(staging, final)
        try:
            with self.transaction() as con:
                con.execute("DELETE FROM datasets WHERE name = ?", (name,))
                con.execute(
                    "INSERT INTO datasets(name, created, path, n_images, height, width, classes, source, meta)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        name,
                        time.time(),
                        str(final.relative_to(self.root)),
                        int(n_images),
                        int(height),
                        int(width),
                        json.dumps(list(classes)),
                        str(source),
                        json.dumps(meta),
                    ),
                )
        except BaseException:
            shutil.rmtree(final, ignore_errors=True)
            if backup is not None:
                os.replace(backup, final)
            raise
        if backup is not None:
            shutil.rmtree(backup, ignore_errors=True)
        return self.dataset(name)

    def discard_staging(self, staging: Path) -> None:
        shutil.rmtree(staging, ignore_errors=True)

    def has_dataset(self, name: str) -> bool:
        return bool(self.query("SELECT 1 FROM datasets WHERE name = ?", (name,)))

    def _dataset_from_row(self, r: sqlite3.Row) -> DatasetRecord:
        return DatasetRecord(
            name=r["name"],
            created=r["created"],
            path=self.root / r["path"],
            n_images=r["n_images"],
            height=r["height"],
            width=r["width"],
            classes=json.loads(r["classes"]),
            source=r["source"],
            meta=json.loads(r["meta"]),
        )

    def dataset(self, name: str) -> DatasetRecord:
        rows = self.query("SELECT * FROM datasets WHERE name = ?", (name,))
        if not rows:
            known = ", ".join(d.name for d in self.datasets()) or "none"
            raise UserError(f"no dataset named {name!r} in workspace {self.root} (datasets: {known})")
        return self._dataset_from_row(rows[0])

    def datasets(self, synthetic: bool | None = None) -> list[DatasetRecord]:
        """Every dataset, oldest first; ``synthetic`` True / False keeps only generated / other ones."""
        recs = [self._dataset_from_row(r) for r in self.query("SELECT * FROM datasets ORDER BY created")]
        return recs if synthetic is None else [d for d in recs if d.synthetic == synthetic]

    def attributes(self, name: str, split: str | None = None) -> dict:
        """Per-image subgroup attributes of a dataset (name -> (N,) str array; a split's images
        only when ``split`` is given); {} when it has none. Coarse values only, never identifiers."""
        from app.engine.data.cache import ImageDataset

        return ImageDataset.from_workspace(self, name).attributes(split)

    def delete_dataset(self, name: str) -> None:
        """Remove a dataset: its row and its folder. What depended on it (``dataset_dependents``) stays,
        and says so when used: a run keeps its checkpoints, a study its copied images."""
        rec = self.dataset(name)
        with self.transaction() as con:
            con.execute("DELETE FROM datasets WHERE name = ?", (name,))
        shutil.rmtree(rec.path, ignore_errors=True)

    def dataset_dependents(self, name: str) -> list[str]:
        """What in the workspace refers to dataset ``name``, one plain line each (runs trained on it, synthetic
        datasets generated by those runs, reader studies that took images from it), to be named before a
        delete or a rename."""
        self.dataset(name)  # UserError naming the datasets when there is none
        out: list[str] = []
        trained = [r for r in self.runs() if r.dataset == name]
        for r in trained:
            out.append(f"run {r.id} ({r.state}) was trained on it")
        ids = {r.id for r in trained}
        for d in self.datasets(synthetic=True):
            gen = d.meta.get(GENERATED_META) or {}
            if d.name != name and (gen.get("training_dataset") == name or gen.get("run") in ids):
                out.append(f"synthetic dataset {d.name} was generated by a model trained on it")
        for r in self.query("SELECT id, name, spec FROM studies ORDER BY created"):
            try:
                spec = json.loads(r["spec"])
            except ValueError:
                continue
            refs = [v for v in _strings(spec) if v == name or v.startswith(name + ":")]
            if refs:
                out.append(f"reader study {r['name']} ({r['id']}) took images from it")
        return out

    def rename_dataset(self, old: str, new: str) -> DatasetRecord:
        """Rename a dataset: its folder, its row, and the runs trained on it (their ``dataset`` and the
        ``dataset`` of their spec), in one transaction; refused while a run trains on it."""
        check_name(new, "new dataset name")
        rec = self.dataset(old)
        if new == old:
            return rec
        if self.has_dataset(new):
            raise UserError(f"a dataset named {new!r} already exists in {self.root}: choose another name")
        busy = [r.id for r in self.runs() if r.state == "running" and r.dataset == old]
        if busy:
            raise UserError(f"dataset {old!r} is being trained on by run {busy[0]}: stop it first, then rename it")
        final = self.root / "datasets" / new
        if final.exists():
            raise UserError(f"{final} already exists (not a registered dataset): move it away first")
        os.replace(rec.path, final)
        try:
            with self.transaction() as con:
                con.execute("UPDATE datasets SET name = ?, path = ? WHERE name = ?",
                            (new, str(final.relative_to(self.root)), old))
                for r in con.execute("SELECT id, spec, path FROM runs WHERE dataset = ?", (old,)).fetchall():
                    spec = json.loads(r["spec"])
                    if spec.get("dataset") == old:
                        spec["dataset"] = new
                    con.execute("UPDATE runs SET dataset = ?, spec = ? WHERE id = ?", (new, json.dumps(spec), r["id"]))
                    spec_file = self.root / r["path"] / "spec.json"
                    if spec_file.exists():
                        spec_file.write_text(json.dumps(spec, indent=2))
        except BaseException:
            os.replace(final, rec.path)
            raise
        return self.dataset(new)

    def set_class_names(self, name: str, names: list[str]) -> DatasetRecord:
        """Name a dataset's classes (in the order of their indices): the registry row, the cache's
        ``class_names``, the class counts of its meta, and the class names that the checkpoints of runs
        trained on it recorded (``checkpoints/*/meta.json``: what generation offers and writes into the
        provenance of its images). The labels themselves do not change; refused while a run trains on it."""
        rec = self.dataset(name)
        busy = [r.id for r in self.runs() if r.state == "running" and r.dataset == name]
        if busy:
            raise UserError(f"dataset {name!r} is being trained on by run {busy[0]}: stop it first, then name its classes")
        names = [str(n).strip() for n in names]
        if len(names) != len(rec.classes):
            have = ", ".join(f"{i}={c}" for i, c in enumerate(rec.classes)) or "none"
            raise UserError(f"dataset {name!r} has {len(rec.classes)} classes ({have}); give {len(rec.classes)} names, "
                            f"not {len(names)}")
        bad = [n for n in names if not n]
        if bad:
            raise UserError("a class name cannot be empty")
        if len(set(names)) != len(names):
            raise UserError(f"class names must differ from each other: {', '.join(names)}")
        from app.engine.data.cache import write_class_names

        write_class_names(rec.cache_path, names)
        meta = dict(rec.meta)
        counts = meta.get("class_counts")
        if isinstance(counts, dict) and list(counts) == list(rec.classes):
            meta["class_counts"] = {new: counts[old] for old, new in zip(rec.classes, names)}
        with self.transaction() as con:
            con.execute("UPDATE datasets SET classes = ?, meta = ? WHERE name = ?",
                        (json.dumps(names), json.dumps(meta), name))
        for run in self.runs():
            if run.dataset == name:
                _rename_checkpoint_classes(run.path, rec.classes, names)
        return self.dataset(name)

    # -- runs --------------------------------------------------------------------------
    def delete_run(self, run_id: str) -> None:
        """Remove a run: its row and its folder (checkpoints, curves). A run still training is refused."""
        rec = self.run(run_id)
        if rec.state == "running":
            raise UserError(f"run {run_id} is training (state 'running'): stop it first, then delete it")
        with self.transaction() as con:
            con.execute("DELETE FROM runs WHERE id = ?", (run_id,))
        shutil.rmtree(rec.path, ignore_errors=True)

    def create_run(self, kind: str, spec: dict, dataset: str | None = None, run_id: str | None = None) -> RunRecord:
        run_id = run_id or f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:4]}"
        check_name(run_id, "run id")
        path = self.root / "runs" / run_id
        path.mkdir(parents=True, exist_ok=False)
        (path / "spec.json").write_text(json.dumps(spec, indent=2))
        with self.transaction() as con:
            con.execute(
                "INSERT INTO runs(id, kind, dataset, created, path, state, spec, meta) VALUES (?,?,?,?,?,?,?,?)",
                (run_id, kind, dataset, time.time(), str(path.relative_to(self.root)), "running", json.dumps(spec), "{}"),
            )
        return self.run(run_id)

    def update_run(self, run_id: str, *, state: str | None = None, meta: dict | None = None) -> None:
        """Set the state and/or merge keys into the run's meta, in one transaction."""
        with self.transaction() as con:
            row = con.execute("SELECT meta FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                raise UserError(f"no run {run_id!r} in workspace {self.root}")
            merged = json.loads(row["meta"])
            if meta:
                merged.update(meta)
            if state is not None:
                con.execute("UPDATE runs SET state = ?, meta = ? WHERE id = ?", (state, json.dumps(merged), run_id))
            else:
                con.execute("UPDATE runs SET meta = ? WHERE id = ?", (json.dumps(merged), run_id))

    def _run_from_row(self, r: sqlite3.Row) -> RunRecord:
        return RunRecord(
            id=r["id"],
            kind=r["kind"],
            dataset=r["dataset"],
            created=r["created"],
            path=self.root / r["path"],
            state=r["state"],
            spec=json.loads(r["spec"]),
            meta=json.loads(r["meta"]),
        )

    def run(self, run_id: str) -> RunRecord:
        rows = self.query("SELECT * FROM runs WHERE id = ?", (run_id,))
        if not rows:
            known = ", ".join(r.id for r in self.runs()[-5:]) or "none"
            raise UserError(f"no run {run_id!r} in workspace {self.root} (latest runs: {known})")
        return self._run_from_row(rows[0])

    def runs(self) -> list[RunRecord]:
        return [self._run_from_row(r) for r in self.query("SELECT * FROM runs ORDER BY created")]

    # -- jobs --------------------------------------------------------------------------
    def record_job_start(self, job_id: str, kind: str, spec: dict, transport: str = "local") -> None:
        with self.transaction() as con:
            con.execute(
                "INSERT OR REPLACE INTO jobs(id, kind, spec, state, transport, created, pid, host)"
                " VALUES (?,?,?,?,?,?,?,?)",
                (job_id, kind, json.dumps(spec), "running", transport, time.time(), os.getpid(), socket.gethostname()),
            )

    def record_job_end(self, job_id: str, state: str, result: dict | None = None, message: str | None = None) -> None:
        with self.transaction() as con:
            con.execute(
                "UPDATE jobs SET state = ?, finished = ?, result = ?, message = ? WHERE id = ?",
                (state, time.time(), json.dumps(result) if result is not None else None, message, job_id),
            )

    def jobs(self, limit: int = 200) -> list[JobRecord]:
        rows = self.query("SELECT * FROM jobs ORDER BY created DESC LIMIT ?", (limit,))
        return [
            JobRecord(
                id=r["id"],
                kind=r["kind"],
                spec=json.loads(r["spec"]),
                state=r["state"],
                transport=r["transport"],
                created=r["created"],
                finished=r["finished"],
                result=json.loads(r["result"]) if r["result"] else None,
                message=r["message"],
            )
            for r in rows
        ]

    def mark_interrupted_jobs(self) -> int:
        """Jobs still 'running' whose process has stopped are marked failed (the app or the command line was
        closed or crashed while they ran); returns how many. A job whose process still runs is left alone:
        ``radsynth train`` in a terminal while the app opens the same workspace is not "interrupted". Nor is
        one recorded on another machine (a workspace on a shared drive), whose process cannot be seen from
        here. Rows from before schema 2 have no process and are taken as interrupted."""
        host = socket.gethostname()
        rows = self.query("SELECT id, created, pid, host FROM jobs WHERE state = 'running'")
        stopped = [r["id"] for r in rows
                   if r["pid"] is None or (r["host"] == host and not _job_process_runs(r["pid"], r["created"]))]
        if not stopped:
            return 0
        with self.transaction() as con:
            cur = con.execute(
                "UPDATE jobs SET state = 'failed', message = 'interrupted: the application stopped while it ran',"
                f" finished = ? WHERE state = 'running' AND id IN ({','.join('?' * len(stopped))})",
                (time.time(), *stopped),
            )
            return cur.rowcount
