"""The FastAPI application of ``radsynth serve``: info, datasets, uploads, jobs, event streams, artifacts.

Endpoints (all behind the bearer token, see app/server/auth.py):

    GET  /api/info                      version, torch, GPUs (name, free memory), queue state, limits
    GET  /api/datasets[?path=P][&offset=O&limit=L]
                                        registered datasets (a page, from the registry) and files under the
                                        data roots (at most LISTING_CAP entries: the walk stops there)
    POST /api/datasets/upload?name=N[&ingest=true&options={json}]
                                        body: a .zip / .tar(.gz) archive (raw bytes, not multipart)
    DELETE /api/datasets/{name}         a registered dataset (409 while a queued or running job names it)
    DELETE /api/uploads/{name}          an uploaded folder (409 while a queued or running job reads it)
    POST /api/jobs[?job_id=ID]          body: a spec (JSON) -> {"id": ...}; 422 names the bad field
    GET  /api/jobs                      every job the server knows (newest first)
    GET  /api/jobs/{id}                 one job's summary
    DELETE /api/jobs/{id}               a finished job and its folder (409 while it is queued or running)
    POST /api/jobs/{id}/cancel          cooperative cancel (a queued job ends at once)
    WS   /api/jobs/{id}/events?after=N  frames {"type":"events","events":[{"seq":n,"event":{...}}]},
                                        {"type":"state","state":...}, {"type":"end","state":...}
    GET  /api/jobs/{id}/artifacts       the job's Artifact events with sizes
    GET  /api/runs                      training runs of the server's workspace with their checkpoints
                                        (oldest first; checkpoint paths are server paths a spec may name)
    GET  /api/artifacts?path=P          download a job output or dataset cache (a folder: its listing); never
                                        the registry, uploads or studies (see DOWNLOAD_AREAS)
    GET  /api/reading/{study}/cases[?reader=R]
                                        a reader's cases in their order, with their own answers so far: case ids,
                                        mode, time limit; never the truth or the provenance
    GET  /api/reading/{study}/cases/{case_id}/image[?reader=R]
                                        the blinded uint8 pixels (K, S, S) of one case, as a .npy file
    POST /api/reading/{study}/answers[?reader=R]
                                        body {"case_id", "answer", "confidence", "plausibility", "comment",
                                        "seconds", "over_time"}: recorded as ReadingSession.record records it

A reader token (app/server/tokens.py) reaches only the three reading routes of its own study, as its own
reader (``reader`` is then implied; another one is refused); an admin token names the reader.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import shutil
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import FileResponse, JSONResponse
from pydantic import ValidationError

from app.engine import jobs as J
from app.server.auth import TokenGate, principal_of
from app.server.jobqueue import FINAL, JobQueue
from app.server.paths import DataRoots, PathRefused, SpecConfiner
from app.server.quota import WorkspaceQuota, folder_bytes
from app.server.tokens import TokenRegistry, store_path
from app.server.uploads import UnsafeArchive, UploadTooLarge, extract_archive, save_stream

UPLOAD_PATH = "/api/datasets/upload"
LISTING_CAP = 2000
#: registered datasets per page of GET /api/datasets (the most a client may ask for, and the default)
PAGE_MAX, PAGE_DEFAULT = 1000, 200
#: deepest JSON nesting a request may have (a spec is an object of scalars and lists: depth 3)
MAX_JSON_DEPTH = 32
#: the workspace folders whose files may be downloaded: job outputs, training runs, dataset caches.
#: Never the registry (radsynth.sqlite, which holds the patient-id salt and the studies' truth), the
#: uploads, the studies or anything at the workspace's top level.
DOWNLOAD_AREAS = ("jobs", "outputs", "runs", "datasets")


@dataclass
class ServerConfig:
    workspace: Path
    token: str
    data_roots: list[Path] = field(default_factory=list)
    max_concurrent: int = 1
    max_upload_bytes: int = 2 << 30
    max_body_bytes: int = 1 << 20
    max_extract_bytes: int | None = None  # default: 4x the upload limit
    max_upload_files: int = 20_000
    max_dataset_files: int = 500_000  # files one ingest may read (a large DICOM archive has ~100,000)
    max_workspace_bytes: int = 1 << 40  # 1 TiB: half of a 2 TB GPU box's disk
    token_file: Path | None = None


# ----------------------------------------------------------------------------------------------
# request body limits
# ----------------------------------------------------------------------------------------------


class _BodyTooLarge(Exception):
    pass


class BodyLimit:
    """ASGI middleware: refuse bodies over the limit by Content-Length, and count while reading."""

    def __init__(self, app, default_limit: int, limits: dict[str, int]):
        self.app, self.default_limit, self.limits = app, default_limit, limits

    @staticmethod
    async def _reply_413(send, limit: int) -> None:
        body = json.dumps({"detail": f"request body larger than the server's limit of {limit} bytes"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"connection", b"close"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.limits.get(scope["path"], self.default_limit)
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = limit + 1
                if declared > limit:
                    return await self._reply_413(send, limit)
        state = {"received": 0, "started": False}

        async def limited_receive():
            message = await receive()
            if message["type"] == "http.request":
                state["received"] += len(message.get("body", b""))
                if state["received"] > limit:
                    raise _BodyTooLarge()
            return message

        async def tracking_send(message):
            if message["type"] == "http.response.start":
                state["started"] = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyTooLarge:
            if not state["started"]:
                await self._reply_413(send, limit)


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------


def _error(status: int, message: str, loc: list | None = None) -> JSONResponse:
    detail = [{"loc": loc, "msg": message}] if loc is not None else message
    return JSONResponse({"detail": detail, "message": message}, status_code=status)


def json_depth(value) -> int:
    """How deeply lists and objects nest in a decoded JSON value (a scalar: 0), without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, (list, dict)):
            deepest = max(deepest, d)
            if d <= MAX_JSON_DEPTH:
                stack.extend((x, d + 1) for x in (v.values() if isinstance(v, dict) else v))
    return deepest


def parse_json(text: str | bytes | None, what: str = "the request body"):
    """Decoded JSON, or UserError with a plain reason (invalid, or nested deeper than MAX_JSON_DEPTH)."""
    try:
        value = json.loads(text or b"null")
    except RecursionError:
        raise J.UserError(f"{what} is nested too deeply (more than {MAX_JSON_DEPTH} levels of lists or objects)") from None
    except ValueError as exc:
        raise J.UserError(f"{what} is not valid JSON: {exc}") from None
    if json_depth(value) > MAX_JSON_DEPTH:
        raise J.UserError(f"{what} is nested too deeply (more than {MAX_JSON_DEPTH} levels of lists or objects)")
    return value


def check_resources(spec: J.Spec, gpus: int) -> JSONResponse | None:
    """A 422 naming ``num_gpus`` when a spec asks for more GPUs than the server has (one process on the CPU
    when it has none)."""
    asked = getattr(spec, "num_gpus", None)
    if asked is None or int(asked) <= max(1, gpus):
        return None
    have = f"{gpus} GPU{'s' if gpus != 1 else ''}" if gpus else "no GPU (one process on the CPU)"
    return _error(422, f"num_gpus: {asked} asked for, but this server has {have}", ["num_gpus"])


def too_many_files(spec, limit: int | None) -> JSONResponse | None:
    """422 when an ingest's source folder holds more than ``limit`` files; the walk stops at limit + 1."""
    if limit is None or getattr(spec, "kind", "") != "ingest" or not Path(spec.source).is_dir():
        return None
    n, stack = 0, [Path(spec.source)]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:
            continue
        for e in entries:
            if e.is_dir(follow_symlinks=False):
                stack.append(Path(e.path))
            elif e.is_file():
                n += 1
                if n > limit:
                    return _error(422, f"source: {spec.source} holds more than {limit} files, the most one dataset "
                                  "may have on this server (radsynth serve --max-dataset-files)", ["source"])
    return None


def validate_spec(data, confiner: SpecConfiner, gpus: int | None = None,
                  max_dataset_files: int | None = None) -> J.Spec | JSONResponse:
    """A spec from request JSON with every path confined, or a 422 response whose ``detail`` names the bad
    field(s): checked at submit, before anything runs. ``gpus``: the server's GPU count (None: not checked)."""
    if not isinstance(data, dict):
        return _error(422, "kind: a spec is a JSON object with a 'kind' field", ["kind"])
    kind = data.get("kind")
    if not isinstance(kind, str) or not kind:
        return _error(422, "kind: a spec needs a 'kind' field naming the job", ["kind"])
    try:
        cls = J.spec_class(kind)
    except J.UserError as exc:
        return _error(422, f"kind: {exc}", ["kind"])
    except ImportError as exc:
        return _error(422, f"kind: job kind {kind!r} is not available on this server ({exc})", ["kind"])
    try:
        confiner.check_raw(cls, data)
        spec = confiner.confine(cls.model_validate(data))
    except PathRefused as exc:
        return _error(422, str(exc), [getattr(exc, "field", "")])
    except ValidationError as exc:
        errors = [{"loc": [str(p) for p in e["loc"]], "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
        return JSONResponse({"detail": errors, "message": J.format_validation_error(exc)}, status_code=422)
    if gpus is not None:
        refused = check_resources(spec, gpus)
        if refused is not None:
            return refused
    refused = too_many_files(spec, max_dataset_files)
    return spec if refused is None else refused


def gpu_count() -> int:
    """CUDA GPUs this server can use (0 where torch has no CUDA)."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _listing(folder: Path, root: Path, recursive: bool, cap: int = LISTING_CAP) -> list[dict]:
    """Entries under ``folder`` in path order, at most ``cap``: the walk stops there (it never reads the
    whole tree first), so its cost is bounded by the cap, not by what the folder holds."""
    out: list[dict] = []
    stack = [folder]  # folders to list, the next one last
    while stack and len(out) < cap:
        current = stack.pop()
        try:
            children = sorted(current.iterdir())
        except OSError:
            continue
        subfolders = []
        for p in children:
            if len(out) >= cap:
                break
            if p.name.startswith("."):
                continue
            if p.is_symlink() and not p.resolve().is_relative_to(root):
                continue  # a link out of the root is not shown (and would be refused if named)
            try:
                st = p.stat()
            except OSError:
                continue
            is_dir = p.is_dir()
            out.append({"path": str(p.relative_to(folder)), "dir": is_dir, "bytes": None if is_dir else st.st_size})
            if recursive and is_dir and not p.is_symlink():
                subfolders.append(p)
        stack.extend(reversed(subfolders))
    return sorted(out, key=lambda e: Path(e["path"]).parts)


def _not_downloadable(p: Path, root: Path) -> str | None:
    """Why a resolved workspace path may not be downloaded (None: it may): only files inside DOWNLOAD_AREAS,
    never the registry or its journal files, never a hidden (staging, incoming) folder."""
    rel = p.relative_to(root).parts
    if any(part.startswith("radsynth.sqlite") for part in rel):
        return "the workspace registry is never served (it holds the patient-id salt and the studies' truth)"
    if not rel or rel[0] not in DOWNLOAD_AREAS or len(rel) < 2:
        return (f"only job outputs and dataset caches are served (files under {', '.join(a + '/' for a in DOWNLOAD_AREAS)}"
                " of the workspace)")
    if any(part.startswith(".") for part in rel):
        return "hidden folders (staging, incoming) are not served"
    return None


def _module_present(name: str) -> bool:
    """Whether a job kind's module exists here (without importing it: the engineers' modules are heavy)."""
    if name in sys.modules:
        return True
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a missing or broken parent package
        return False


# ----------------------------------------------------------------------------------------------
# reading a study over the network
# ----------------------------------------------------------------------------------------------

#: the fields of a posted answer (those of ReadingSession.record, plus the case id)
ANSWER_FIELDS = ("case_id", "answer", "confidence", "plausibility", "comment", "seconds", "over_time")
MAX_COMMENT = 10_000


class ReadingAccess:
    """The reading routes' work: one ReadingSession per (study, reader), kept while the blinded file is
    unchanged (at most SESSIONS of them), so answers are recorded exactly as the local reading view
    records them. The truth (``study_cases.truth``, ``origin``) is never read here."""

    SESSIONS = 8

    def __init__(self, workspace):
        import threading

        self.ws = workspace
        self._lock = threading.Lock()
        self._sessions: dict[tuple[str, str], tuple[int, object]] = {}

    def _scope(self, principal, study: str, reader: str | None):
        """(study record, reader id), or the refusal."""
        from app.engine.store import check_name
        from app.engine.study import ensure_tables, get_study

        admin = principal is None or principal.is_admin
        if not admin:
            if reader is not None and reader != principal.reader:
                return _error(403, f"reader: this token reads as reader {principal.reader!r}, not {reader!r}",
                              ["reader"])
            reader = principal.reader
        elif not reader:
            return _error(422, "reader: an admin token names the reader (?reader=READER)", ["reader"])
        try:
            check_name(reader, "reader id")
        except J.UserError as exc:
            return _error(422, str(exc), ["reader"])
        ensure_tables(self.ws)
        try:
            st = get_study(self.ws, study)
        except J.UserError as exc:  # a reader is not told which other studies exist
            return _error(404, str(exc) if admin else f"study {study!r} is not on this server", ["study"])
        if not admin and st.id != principal.study:
            return _error(403, f"study: this token reads study {principal.study_name!r} only", ["study"])
        return st, reader

    def _session(self, st, reader: str):
        from app.engine.study import ReadingSession

        try:
            stamp = st.blinded_path.stat().st_mtime_ns
        except OSError:
            stamp = -1
        key = (st.id, reader)
        cached = self._sessions.get(key)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        session = ReadingSession(self.ws, st.id, reader)
        self._sessions.pop(key, None)
        while len(self._sessions) >= self.SESSIONS:
            self._sessions.pop(next(iter(self._sessions)))
        self._sessions[key] = (stamp, session)
        return session

    def _open(self, principal, study: str, reader: str | None):
        scoped = self._scope(principal, study, reader)
        if isinstance(scoped, JSONResponse):
            return scoped
        st, reader = scoped
        try:
            return st, self._session(st, reader)
        except J.UserError as exc:
            return _error(409, f"study {st.name!r} cannot be read here: {exc}", ["study"])

    def cases(self, principal, study: str, reader: str | None):
        with self._lock:
            opened = self._open(principal, study, reader)
            if isinstance(opened, JSONResponse):
                return opened
            st, s = opened
            rows = self.ws.query(
                "SELECT case_id, answer, confidence, plausibility, comment, seconds, over_time FROM study_answers"
                " WHERE study_id = ? AND reader_id = ?", (st.id, s.reader_id))
        answers = {r["case_id"]: {k: r[k] for k in ANSWER_FIELDS[1:]} for r in rows}
        for a in answers.values():
            a["over_time"] = bool(a["over_time"])
        first = next((i for i, c in enumerate(s.order) if c not in answers), None)
        return {"study": st.name, "study_id": st.id, "mode": s.mode.value, "time_limit_s": s.time_limit_s,
                "reader": s.reader_id, "n_cases": len(s.order), "n_answered": sum(c in answers for c in s.order),
                "first_unanswered": first,
                "cases": [{"index": i, "case_id": c, "answer": answers.get(c)} for i, c in enumerate(s.order)]}

    def image(self, principal, study: str, case_id: str, reader: str | None):
        import io

        import numpy as np
        from fastapi.responses import Response

        with self._lock:
            opened = self._open(principal, study, reader)
            if isinstance(opened, JSONResponse):
                return opened
            _st, s = opened
            if case_id not in s.order:
                return _error(404, f"case_id: no case {case_id!r} in this reader's order", ["case_id"])
            pixels = np.ascontiguousarray(s.image(s.order.index(case_id)))
        buf = io.BytesIO()
        np.save(buf, pixels, allow_pickle=False)
        return Response(buf.getvalue(), media_type="application/x-npy",
                        headers={"X-RadSynth-Shape": ",".join(map(str, pixels.shape))})

    def answer(self, principal, study: str, reader: str | None, data):
        if not isinstance(data, dict):
            return _error(422, f"an answer is a JSON object with the fields {', '.join(ANSWER_FIELDS)}", [])
        unknown = sorted(set(data) - set(ANSWER_FIELDS))
        if unknown:
            return _error(422, f"{unknown[0]}: unknown field of an answer (fields: {', '.join(ANSWER_FIELDS)})",
                          [unknown[0]])
        case_id = data.get("case_id")
        if not isinstance(case_id, str) or not case_id:
            return _error(422, "case_id: an answer names its case (a case id from the cases listing)", ["case_id"])
        for name in ("confidence", "plausibility"):
            v = data.get(name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int)):
                return _error(422, f"{name}: expected a whole number 1-5, got {v!r}", [name])
        if data.get("answer") is not None and not isinstance(data["answer"], str):
            return _error(422, f"answer: expected text, got {data['answer']!r}", ["answer"])
        comment = data.get("comment")
        if comment is not None and (not isinstance(comment, str) or len(comment) > MAX_COMMENT):
            return _error(422, f"comment: expected text of at most {MAX_COMMENT} characters", ["comment"])
        seconds = data.get("seconds", 0.0)
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 <= seconds < 1e7:
            return _error(422, f"seconds: expected the viewing time in seconds (0 or more), got {seconds!r}",
                          ["seconds"])
        over_time = data.get("over_time", False)
        if not isinstance(over_time, bool):
            return _error(422, f"over_time: expected true or false, got {over_time!r}", ["over_time"])
        with self._lock:
            opened = self._open(principal, study, reader)
            if isinstance(opened, JSONResponse):
                return opened
            _st, s = opened
            if case_id not in s.order:
                return _error(404, f"case_id: no case {case_id!r} in this reader's order", ["case_id"])
            try:
                row = s.record(s.order.index(case_id), answer=data.get("answer"), confidence=data.get("confidence"),
                               plausibility=data.get("plausibility"), comment=comment, seconds=float(seconds),
                               over_time=over_time)
            except J.UserError as exc:
                name = str(exc).split(" ", 1)[0]
                return _error(422, str(exc), [name if name in ANSWER_FIELDS else "answer"])
            answered = s.n_answered
        row = {k: row.get(k) for k in ANSWER_FIELDS}
        row["over_time"] = bool(row["over_time"])
        return {**row, "reader": s.reader_id, "n_answered": answered, "n_cases": len(s.order)}


# ----------------------------------------------------------------------------------------------
# the application
# ----------------------------------------------------------------------------------------------


def create_app(config: ServerConfig) -> FastAPI:
    from app import __version__
    from app.engine.store import Workspace

    workspace = Workspace.open(config.workspace)
    upload_root = workspace.root / "uploads"
    (upload_root / ".incoming").mkdir(parents=True, exist_ok=True)
    roots = DataRoots(list(config.data_roots) + [upload_root], workspace.root)
    confiner = SpecConfiner(roots, workspace)
    jobs = JobQueue(workspace, config.max_concurrent)
    quota = WorkspaceQuota(workspace.root, config.max_workspace_bytes)
    max_extract = config.max_extract_bytes or 4 * config.max_upload_bytes
    token_file = config.token_file.resolve() if config.token_file else None
    registry = TokenRegistry(config.token, config.token_file)
    secret_files = {token_file, store_path(token_file)} if token_file else set()
    reading = ReadingAccess(workspace)

    resources = {"gpus": 0}

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        resources["gpus"] = await asyncio.to_thread(gpu_count)
        jobs.start(asyncio.get_running_loop())
        try:
            yield
        finally:
            await asyncio.to_thread(jobs.shutdown, 10.0)

    app = FastAPI(title="RadSynth Studio server", version=__version__, lifespan=lifespan,
                  docs_url=None, redoc_url=None, openapi_url=None)
    app.state.jobs = jobs
    app.state.roots = roots
    app.state.workspace = workspace

    async def read_json(request: Request):
        try:
            return parse_json(await request.body())
        except J.UserError as exc:
            return _error(400, str(exc))

    @app.get("/api/info")
    async def info():
        from app.engine.devices import compute_info

        compute = await asyncio.to_thread(compute_info)
        kinds = sorted(k for k, m in J.KIND_MODULES.items() if _module_present(m))
        return {"server": "radsynth", "version": __version__, "torch": compute.get("torch"),
                "compute": compute, "gpus": compute.get("gpus", []), "queue": jobs.queue_state(),
                "kinds": kinds, "data_roots": roots.describe(),
                "limits": {"upload_bytes": config.max_upload_bytes, "body_bytes": config.max_body_bytes,
                           "extract_bytes": max_extract, "upload_files": config.max_upload_files,
                           "workspace_bytes": config.max_workspace_bytes}}

    @app.get("/api/datasets")
    async def datasets(path: str | None = None, offset: int = 0, limit: int = PAGE_DEFAULT):
        if path:
            try:
                folder = roots.resolve(path, what="path")
            except PathRefused as exc:
                return _error(403, str(exc), ["path"])
            if not folder.is_dir():
                return _error(404, f"path {path!r} is not a folder under the data roots", ["path"])
            root = next(r for r in roots.roots if folder == r or folder.is_relative_to(r))
            return {"path": str(folder), "files": _listing(folder, root, recursive=False)}
        if offset < 0 or not 1 <= limit <= PAGE_MAX:
            return _error(422, f"offset must be 0 or more and limit between 1 and {PAGE_MAX}",
                          ["offset" if offset < 0 else "limit"])

        def page() -> tuple[list[dict], int]:  # from the registry: one indexed query, whatever the disk holds
            rows = workspace.query("SELECT name, n_images, height, width, classes, source FROM datasets "
                                   "ORDER BY created, name LIMIT ? OFFSET ?", (limit, offset))
            total = workspace.query("SELECT COUNT(*) AS n FROM datasets")[0]["n"]
            return [{"name": r["name"], "images": r["n_images"], "size": [r["height"], r["width"]],
                     "classes": json.loads(r["classes"]), "source": r["source"]} for r in rows], total

        registered, total = await asyncio.to_thread(page)
        files = {}
        for name, root in roots.by_name.items():
            files[name] = await asyncio.to_thread(_listing, root, root, True) if root.is_dir() else []
        return {"datasets": registered, "total": total, "offset": offset, "limit": limit,
                "roots": roots.describe(), "files": files, "files_cap": LISTING_CAP}

    @app.post(UPLOAD_PATH)
    async def upload(request: Request, name: str, ingest: bool = False, options: str | None = None):
        from app.engine.store import check_name

        try:
            check_name(name, "dataset name")
        except J.UserError as exc:
            return _error(422, str(exc), ["name"])
        dest = upload_root / name
        if dest.exists():
            return _error(409, f"an upload named {name!r} already exists on the server", ["name"])
        try:
            extra = parse_json(options, "options") if options else {}
        except J.UserError as exc:
            return _error(422, str(exc), ["options"])
        if not isinstance(extra, dict):
            return _error(422, "options: expected a JSON object of ingest fields", ["options"])
        left = await asyncio.to_thread(quota.left)
        if left <= 0:
            return _error(507, await asyncio.to_thread(quota.full_message))
        quota_name = (f"the {left} bytes that the workspace quota leaves ({config.max_workspace_bytes / 2**30:g} GiB, "
                      "--max-workspace-gb)")
        part = upload_root / ".incoming" / f"{uuid.uuid4().hex}.part"
        try:  # the archive itself is temporary (deleted below): only what it unpacks to counts against the quota
            size = await save_stream(request.stream(), part, min(config.max_upload_bytes, left),
                                     quota_name if left < config.max_upload_bytes else None)
            files = await asyncio.to_thread(
                extract_archive, part, dest, min(max_extract, left), max_files=config.max_upload_files,
                total_name=quota_name if left < max_extract else
                f"the server's limit of {max_extract} bytes extracted per upload (--max-extract-mb)")
            quota.add(sum(f.stat().st_size for f in files))
        except UploadTooLarge as exc:
            return _error(413, str(exc))
        except UnsafeArchive as exc:
            return _error(422, str(exc), ["archive"])
        finally:
            part.unlink(missing_ok=True)
        reply = {"name": name, "path": str(dest), "bytes": size, "files": len(files), "job_id": None}
        if ingest:
            spec = validate_spec({"kind": "ingest", "source": str(dest), "name": name, **extra}, confiner,
                                 resources["gpus"], config.max_dataset_files)
            if isinstance(spec, JSONResponse):
                return spec
            reply["job_id"] = jobs.submit(spec).id
        return reply

    @app.post("/api/jobs")
    async def submit(request: Request, job_id: str | None = None):
        data = await read_json(request)
        if isinstance(data, JSONResponse):
            return data
        spec = validate_spec(data, confiner, resources["gpus"], config.max_dataset_files)
        if isinstance(spec, JSONResponse):
            return spec
        if await asyncio.to_thread(quota.left) <= 0:
            return _error(507, await asyncio.to_thread(quota.full_message))
        if job_id is not None:
            from app.engine.store import check_name

            try:
                check_name(job_id, "job id")
            except J.UserError as exc:
                return _error(422, str(exc), ["job_id"])
        try:
            job = jobs.submit(spec, job_id or "")
        except KeyError:
            return _error(409, f"a job with id {job_id!r} already exists on the server", ["job_id"])
        return JSONResponse({"id": job.id, "state": job.state}, status_code=201)

    @app.get("/api/jobs")
    async def list_jobs():
        return {"jobs": [j.summary() for j in sorted(jobs.jobs.values(), key=lambda j: j.created, reverse=True)],
                "queue": jobs.queue_state()}

    def get_job(job_id: str):
        job = jobs.jobs.get(job_id)
        return job if job is not None else _error(404, f"no job {job_id!r} on this server")

    @app.get("/api/jobs/{job_id}")
    async def job_info(job_id: str):
        job = get_job(job_id)
        return job if isinstance(job, JSONResponse) else job.summary()

    def in_use(test) -> JSONResponse | None:
        """409 naming the first queued or running job whose spec ``test(value)`` matches a value of."""
        for job in jobs.jobs.values():
            if job.state in FINAL:
                continue
            values = []
            for v in job.spec.model_dump(mode="json").values():
                values += v if isinstance(v, list) else [v]
            if any(isinstance(v, str) and test(v) for v in values):
                return _error(409, f"job {job.id} ({job.kind}, {job.state}) uses it: cancel it or wait for its end")
        return None

    async def removed(folder: Path, delete) -> int:
        """Bytes of ``folder``, then ``delete()`` (off the event loop); the quota is given them back."""
        freed = await asyncio.to_thread(folder_bytes, folder)
        await asyncio.to_thread(delete)
        quota.add(-freed)
        return freed

    @app.delete("/api/jobs/{job_id}")
    async def delete_job(job_id: str):
        job = get_job(job_id)
        if isinstance(job, JSONResponse):
            return job
        if job.state not in FINAL:
            return _error(409, f"job {job_id} is {job.state}: cancel it first, then delete it")
        freed = await asyncio.to_thread(jobs.delete, job)
        quota.add(-freed)
        return {"id": job_id, "deleted": True, "bytes": freed}

    @app.delete("/api/datasets/{name}")
    async def delete_dataset(name: str):
        from app.engine.specs.paths import split_ref

        if not workspace.has_dataset(name):
            return _error(404, f"no dataset {name!r} in the server's workspace", ["name"])
        rec = workspace.dataset(name)
        busy = in_use(lambda v: split_ref(v)[0] == name or Path(v) == rec.path or Path(v).is_relative_to(rec.path))
        if busy is not None:
            return busy
        dependents = workspace.dataset_dependents(name)  # named in the answer: runs, synthetic sets, studies
        freed = await removed(rec.path, lambda: workspace.delete_dataset(name))
        return {"name": name, "deleted": True, "bytes": freed, "dependents": dependents}

    @app.delete("/api/runs/{run_id}")
    async def delete_run(run_id: str):
        try:
            rec = workspace.run(run_id)
        except J.UserError:
            return _error(404, f"no run {run_id!r} in the server's workspace", ["run_id"])
        busy = in_use(lambda v: v == run_id or (p := Path(v)) == rec.path or p.is_relative_to(rec.path))
        if busy is not None:
            return busy
        if rec.state == "running":
            return _error(409, f"run {run_id} is training: stop its job first, then delete it")
        freed = await removed(rec.path, lambda: workspace.delete_run(run_id))
        return {"id": run_id, "deleted": True, "bytes": freed}

    @app.delete("/api/uploads/{name}")
    async def delete_upload(name: str):
        from app.engine.store import check_name

        try:
            check_name(name, "upload name")
        except J.UserError as exc:
            return _error(422, str(exc), ["name"])
        folder = upload_root / name
        if not folder.is_dir() or folder.is_symlink():
            return _error(404, f"no upload {name!r} on the server", ["name"])
        busy = in_use(lambda v: (p := Path(v)).is_absolute() and (p == folder or p.is_relative_to(folder)))
        if busy is not None:
            return busy
        freed = await removed(folder, lambda: shutil.rmtree(folder))
        return {"name": name, "deleted": True, "bytes": freed}

    @app.post("/api/jobs/{job_id}/cancel")
    async def cancel(job_id: str):
        job = get_job(job_id)
        if isinstance(job, JSONResponse):
            return job
        jobs.cancel(job)
        return {"id": job.id, "state": job.state, "cancel_requested": True}

    @app.get("/api/jobs/{job_id}/artifacts")
    async def artifacts(job_id: str):
        job = get_job(job_id)
        if isinstance(job, JSONResponse):
            return job
        out = []
        for a in job.artifacts:
            p = Path(a["path"])
            out.append({**a, "exists": p.exists(), "dir": p.is_dir(), "bytes": p.stat().st_size if p.is_file() else None})
        return {"id": job.id, "artifacts": out}

    @app.get("/api/runs")
    async def runs():
        def collect() -> list[dict]:
            from app.engine.training.checkpoints import list_checkpoints

            out = []
            for r in workspace.runs():
                try:
                    cks = list_checkpoints(r.id, workspace)
                except Exception as exc:  # an unreadable run folder is listed with the reason, not a 500
                    cks, error = [], f"{type(exc).__name__}: {exc}"
                else:
                    error = None
                out.append({"id": r.id, "kind": r.kind, "dataset": r.dataset, "state": r.state,
                            "created": r.created, "path": str(r.path), "checkpoints": cks, "error": error})
            return out

        return {"runs": await asyncio.to_thread(collect)}

    @app.get("/api/artifacts")
    async def download(path: str):
        raw = Path(path)
        if ".." in raw.parts:
            return _error(403, f"path {path!r}: '..' is not allowed", ["path"])
        p = (raw if raw.is_absolute() else workspace.root / raw).resolve()
        if not p.is_relative_to(workspace.root) or p in secret_files:
            return _error(403, f"path {path!r} is outside the server's workspace", ["path"])
        refused = _not_downloadable(p, workspace.root)
        if refused:
            return _error(403, f"path {path!r}: {refused}", ["path"])
        if p.is_dir():
            return JSONResponse({"path": str(p), "files": _listing(p, workspace.root, recursive=True)},
                                headers={"X-RadSynth-Folder": "1"})
        if not p.is_file():
            return _error(404, f"no file {path!r} in the server's workspace", ["path"])
        return FileResponse(p, filename=p.name)

    # -- reading: a reader token's only routes ------------------------------------------------------

    @app.get("/api/reading/{study}/cases")
    async def reading_cases(request: Request, study: str, reader: str | None = None):
        return await asyncio.to_thread(reading.cases, principal_of(request.scope), study, reader)

    @app.get("/api/reading/{study}/cases/{case_id}/image")
    async def reading_image(request: Request, study: str, case_id: str, reader: str | None = None):
        return await asyncio.to_thread(reading.image, principal_of(request.scope), study, case_id, reader)

    @app.post("/api/reading/{study}/answers")
    async def reading_answer(request: Request, study: str, reader: str | None = None):
        data = await read_json(request)
        if isinstance(data, JSONResponse):
            return data
        return await asyncio.to_thread(reading.answer, principal_of(request.scope), study, reader, data)

    @app.websocket("/api/jobs/{job_id}/events")
    async def events(ws: WebSocket, job_id: str, after: int = 0):
        job = jobs.jobs.get(job_id)
        if job is None:
            resp = JSONResponse({"detail": f"no job {job_id!r} on this server"}, status_code=404)
            if "websocket.http.response" in ws.scope.get("extensions", {}):
                await ws.send_denial_response(resp)
            else:
                await ws.close(code=4404)
            return
        await ws.accept()
        cursor = max(0, int(after))

        async def follow():
            nonlocal cursor
            sent_state = None
            while True:
                if job.state != sent_state and job.state not in FINAL:
                    sent_state = job.state
                    await ws.send_text(json.dumps({"type": "state", "state": job.state}))
                lines = job.lines_after(cursor)
                if lines:
                    await ws.send_text('{"type":"events","events":[' + ",".join(lines) + "]}")
                    cursor += len(lines)
                    continue
                if job.state in FINAL and cursor >= job.last_seq:
                    await ws.send_text(json.dumps({"type": "end", "state": job.state, "last_seq": job.last_seq}))
                    await ws.close(code=1000)
                    return
                wake = asyncio.Event()
                job.waiters.add(wake)
                try:
                    if job.last_seq > cursor or job.state in FINAL or job.state != sent_state:
                        continue
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(wake.wait(), 15.0)
                finally:
                    job.waiters.discard(wake)

        async def watch_disconnect():
            with contextlib.suppress(WebSocketDisconnect):
                while True:
                    msg = await ws.receive()
                    if msg["type"] == "websocket.disconnect":
                        return

        tasks = [asyncio.create_task(follow()), asyncio.create_task(watch_disconnect())]
        try:
            done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for t in pending:
                t.cancel()
            for t in done:
                with contextlib.suppress(WebSocketDisconnect, RuntimeError, asyncio.CancelledError):
                    t.result()
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)  # a disconnect in the other task is no error

    # the gate goes last so that it is the outermost layer: authentication before anything else
    app.add_middleware(BodyLimit, default_limit=config.max_body_bytes, limits={UPLOAD_PATH: config.max_upload_bytes})
    app.add_middleware(TokenGate, registry=registry)
    return app


