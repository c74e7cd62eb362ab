"""The FastAPI application of ``radsynth serve``: info, datasets, uploads, jobs, event streams, artifacts.

Endpoints (all behind the bearer token, see app/server/auth.py):

    GET  /api/info                      version, torch, GPUs (name, free memory), queue state, limits
    GET  /api/datasets[?path=P]         workspace datasets and files under the data roots
    POST /api/datasets/upload?name=N[&ingest=true&options={json}]
                                        body: a .zip / .tar(.gz) archive (raw bytes, not multipart)
    POST /api/jobs[?job_id=ID]          body: a spec (JSON) -> {"id": ...}; 422 names the bad field
    GET  /api/jobs                      every job the server knows (newest first)
    GET  /api/jobs/{id}                 one job's summary
    POST /api/jobs/{id}/cancel          cooperative cancel (a queued job ends at once)
    WS   /api/jobs/{id}/events?after=N  frames {"type":"events","events":[{"seq":n,"event":{...}}]},
                                        {"type":"state","state":...}, {"type":"end","state":...}
    GET  /api/jobs/{id}/artifacts       the job's Artifact events with sizes
    GET  /api/runs                      training runs of the server's workspace with their checkpoints
                                        (oldest first; checkpoint paths are server paths a spec may name)
    GET  /api/artifacts?path=P          download a file inside the workspace (a folder: its listing)
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import FileResponse, JSONResponse
from pydantic import ValidationError

from app.engine import jobs as J
from app.server.auth import TokenGate
from app.server.jobqueue import FINAL, JobQueue
from app.server.paths import DataRoots, PathRefused, SpecConfiner
from app.server.uploads import UnsafeArchive, UploadTooLarge, extract_archive, save_stream

UPLOAD_PATH = "/api/datasets/upload"
LISTING_CAP = 2000


@dataclass
class ServerConfig:
    workspace: Path
    token: str
    data_roots: list[Path] = field(default_factory=list)
    max_concurrent: int = 1
    max_upload_bytes: int = 2 << 30
    max_body_bytes: int = 1 << 20
    max_extract_bytes: int | None = None  # default: 4x the upload limit
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


def validate_spec(data, confiner: SpecConfiner) -> J.Spec | JSONResponse:
    """A spec from request JSON with every path confined, or a 422 response whose ``detail`` names the bad
    field(s): checked at submit, before anything runs."""
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
    return spec


def _listing(folder: Path, root: Path, recursive: bool) -> list[dict]:
    out = []
    walker = folder.rglob("*") if recursive else folder.iterdir()
    for p in sorted(walker):
        if len(out) >= LISTING_CAP:
            break
        if p.name.startswith("."):
            continue
        if p.is_symlink() and not p.resolve().is_relative_to(root):
            continue  # a link out of the root is not shown (and would be refused if named)
        try:
            st = p.stat()
        except OSError:
            continue
        out.append({"path": str(p.relative_to(folder)), "dir": p.is_dir(), "bytes": None if p.is_dir() else st.st_size})
    return out


def _module_present(name: str) -> bool:
    """Whether a job kind's module exists here (without importing it: the engineers' modules are heavy)."""
    if name in sys.modules:
        return True
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a missing or broken parent package
        return False


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
    max_extract = config.max_extract_bytes or 4 * config.max_upload_bytes
    token_file = config.token_file.resolve() if config.token_file else None

    @contextlib.asynccontextmanager
    async def lifespan(_app):
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
        body = await request.body()
        try:
            return json.loads(body or b"null")
        except ValueError as exc:
            return _error(400, f"the request body is not valid JSON: {exc}")

    @app.get("/api/info")
    async def info():
        from app.engine.devices import compute_info

        compute = await asyncio.to_thread(compute_info)
        kinds = sorted(k for k, m in J.KIND_MODULES.items() if _module_present(m))
        return {"server": "radsynth", "version": __version__, "torch": compute.get("torch"),
                "compute": compute, "gpus": compute.get("gpus", []), "queue": jobs.queue_state(),
                "kinds": kinds, "data_roots": roots.describe(),
                "limits": {"upload_bytes": config.max_upload_bytes, "body_bytes": config.max_body_bytes}}

    @app.get("/api/datasets")
    async def datasets(path: str | None = None):
        if path:
            try:
                folder = roots.resolve(path, what="path")
            except PathRefused as exc:
                return _error(403, str(exc), ["path"])
            if not folder.is_dir():
                return _error(404, f"path {path!r} is not a folder under the data roots", ["path"])
            root = next(r for r in roots.roots if folder == r or folder.is_relative_to(r))
            return {"path": str(folder), "files": _listing(folder, root, recursive=False)}
        registered = [{"name": d.name, "images": d.n_images, "size": [d.height, d.width], "classes": d.classes,
                       "source": d.source} for d in workspace.datasets()]
        files = {}
        for name, root in roots.by_name.items():
            files[name] = await asyncio.to_thread(_listing, root, root, True) if root.is_dir() else []
        return {"datasets": registered, "roots": roots.describe(), "files": files}

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
            extra = json.loads(options) if options else {}
            if not isinstance(extra, dict):
                raise ValueError("not an object")
        except ValueError as exc:
            return _error(422, f"options: expected a JSON object of ingest fields ({exc})", ["options"])
        part = upload_root / ".incoming" / f"{uuid.uuid4().hex}.part"
        try:
            size = await save_stream(request.stream(), part, config.max_upload_bytes)
            files = await asyncio.to_thread(extract_archive, part, dest, max_extract)
        except UploadTooLarge as exc:
            return _error(413, str(exc))
        except UnsafeArchive as exc:
            return _error(422, str(exc), ["archive"])
        finally:
            part.unlink(missing_ok=True)
        reply = {"name": name, "path": str(dest), "bytes": size, "files": len(files), "job_id": None}
        if ingest:
            spec = validate_spec({"kind": "ingest", "source": str(dest), "name": name, **extra}, confiner)
            if isinstance(spec, JSONResponse):
                return spec
            reply["job_id"] = jobs.submit(spec).id
        return reply

    @app.post("/api/jobs")
    async def submit(request: Request, job_id: str | None = None):
        data = await read_json(request)
        if isinstance(data, JSONResponse):
            return data
        spec = validate_spec(data, confiner)
        if isinstance(spec, JSONResponse):
            return spec
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
            from app.engine.checkpoints import list_checkpoints

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
        if not p.is_relative_to(workspace.root) or (token_file is not None and p == token_file):
            return _error(403, f"path {path!r} is outside the server's workspace", ["path"])
        if p.is_dir():
            return JSONResponse({"path": str(p), "files": _listing(p, workspace.root, recursive=True)},
                                headers={"X-RadSynth-Folder": "1"})
        if not p.is_file():
            return _error(404, f"no file {path!r} in the server's workspace", ["path"])
        return FileResponse(p, filename=p.name)

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

    # the gate goes last so that it is the outermost layer: authentication before anything else
    app.add_middleware(BodyLimit, default_limit=config.max_body_bytes, limits={UPLOAD_PATH: config.max_upload_bytes})
    app.add_middleware(TokenGate, token=config.token)
    return app


