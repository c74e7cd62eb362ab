"""The server's job queue: jobs run through engine.run on worker threads, events kept per job.

Every event a job emits gets a sequence number (1, 2, ...) and is kept twice: in memory for live
followers, and appended as one JSON line ``{"seq": n, "event": {...}}`` to
``<workspace>/jobs/<id>/events.jsonl`` so that a restarted server still replays finished jobs.
The job's spec and state live beside it in ``server-job.json``. Jobs outlive client connections:
nothing here depends on a client being connected.

Followers (the WebSocket handler) run on the server's asyncio loop; the worker threads wake them
with ``loop.call_soon_threadsafe``. A train spec asking for more than one GPU (``num_gpus > 1``)
runs under torchrun in a subprocess (see app/server/distributed.py) and its events are relayed into
the same sequence.
"""

from __future__ import annotations

import asyncio
import json
import queue
import threading
import time
from pathlib import Path

from app.engine import jobs as J

FINAL = ("done", "failed", "cancelled")
EVENTS_FILE = "events.jsonl"
META_FILE = "server-job.json"
#: finished jobs whose events stay in memory; older ones are replayed from their JSONL file
KEEP_FINISHED_IN_MEMORY = 16


class ServerJob:
    def __init__(self, job_id: str, spec: J.Spec, folder: Path, *, state: str = "queued", created: float | None = None):
        self.id = job_id
        self.spec = spec
        self.kind = spec.kind
        self.folder = folder
        self.state = state
        self.created = created or time.time()
        self.started: float | None = None
        self.finished: float | None = None
        self.result: dict | None = None
        self.message: str | None = None
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.lines: list[str] | None = []  # JSON lines in seq order; None once dropped from memory
        self.last_seq = 0
        self.progress: tuple[int, int] = (0, 0)
        self.artifacts: list[dict] = []
        self.waiters: set[asyncio.Event] = set()  # touched on the event loop thread only
        self._file = None

    # -- summary -----------------------------------------------------------------------
    def summary(self) -> dict:
        return {
            "id": self.id, "kind": self.kind, "state": self.state, "created": self.created,
            "started": self.started, "finished": self.finished, "events": self.last_seq,
            "progress": list(self.progress), "result": self.result, "message": self.message,
            "spec": self.spec.model_dump(mode="json"),
        }

    def write_meta(self) -> None:
        tmp = self.folder / (META_FILE + ".tmp")
        tmp.write_text(json.dumps(self.summary(), indent=1))
        tmp.replace(self.folder / META_FILE)

    # -- events ------------------------------------------------------------------------
    def append(self, event: J.Event) -> str:
        """Number an event, keep it in memory and on disk; returns its JSON line."""
        d = J.event_to_dict(event)
        with self.lock:
            self.last_seq += 1
            line = json.dumps({"seq": self.last_seq, "event": d}, separators=(",", ":"))
            if self.lines is not None:
                self.lines.append(line)
            if self._file is None:
                self._file = open(self.folder / EVENTS_FILE, "a", encoding="utf-8")
            self._file.write(line + "\n")  # buffered; flushed at artifacts and at the end
            if isinstance(event, J.Progress):
                self.progress = (event.step, event.total)
            elif isinstance(event, J.Artifact):
                self.artifacts.append({"kind": event.kind, "path": event.path})
                self._file.flush()
            if isinstance(event, J.TERMINAL):
                self._file.close()
                self._file = None
        return line

    def lines_after(self, after: int, limit: int = 256) -> list[str]:
        with self.lock:
            if self.lines is not None:
                return self.lines[after:after + limit]
        # dropped from memory: read the file (finished jobs only)
        out = []
        path = self.folder / EVENTS_FILE
        if path.exists():
            with open(path, encoding="utf-8") as f:
                for i, line in enumerate(f):
                    if i < after:
                        continue
                    if len(out) >= limit:
                        break
                    out.append(line.rstrip("\n"))
        return out


class JobQueue:
    """A FIFO of jobs and ``max_concurrent`` worker threads running them through engine.run."""

    def __init__(self, workspace, max_concurrent: int = 1, transport: str = "remote"):
        self.workspace = workspace
        self.max_concurrent = max(1, int(max_concurrent))
        self.transport = transport
        self.jobs: dict[str, ServerJob] = {}
        self._queue: queue.Queue = queue.Queue()
        self._threads: list[threading.Thread] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing = False
        self._lock = threading.Lock()

    # -- lifecycle -----------------------------------------------------------------------
    def start(self, loop: asyncio.AbstractEventLoop | None) -> None:
        self._loop = loop
        self._load_previous()
        for i in range(self.max_concurrent):
            t = threading.Thread(target=self._worker, name=f"radsynth-job-worker-{i}", daemon=True)
            t.start()
            self._threads.append(t)

    def shutdown(self, wait_s: float = 10.0) -> None:
        """Ask running jobs to stop and wait a little for them to record their end."""
        self._closing = True
        for job in list(self.jobs.values()):
            if job.state not in FINAL:
                job.stop.set()
        for _ in self._threads:
            self._queue.put(None)
        deadline = time.monotonic() + wait_s
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))

    def _load_previous(self) -> None:
        """Jobs of an earlier server process: listed and replayable; unfinished ones end failed."""
        root = self.workspace.root / "jobs"
        for meta_path in sorted(root.glob(f"*/{META_FILE}")):
            try:
                meta = json.loads(meta_path.read_text())
                spec = J.parse_spec(meta["spec"])
            except Exception:
                continue  # a job of a kind this server no longer knows: skip it
            job = ServerJob(meta["id"], spec, meta_path.parent, state=meta["state"], created=meta.get("created"))
            job.started, job.finished = meta.get("started"), meta.get("finished")
            job.result, job.message = meta.get("result"), meta.get("message")
            job.lines = None
            events_path = meta_path.parent / EVENTS_FILE
            if events_path.exists():
                with open(events_path, encoding="utf-8") as f:
                    for line in f:
                        job.last_seq += 1
                        try:
                            ev = json.loads(line)["event"]
                        except (ValueError, KeyError):
                            continue
                        if ev.get("type") == "Artifact":
                            job.artifacts.append({"kind": ev["kind"], "path": ev["path"]})
                        elif ev.get("type") == "Progress":
                            job.progress = (ev["step"], ev["total"])
            if job.state not in FINAL:  # the previous server stopped while it ran or waited
                job.append(J.Failed("interrupted: the server stopped while this job was queued or running"))
                job.state, job.finished = "failed", time.time()
                job.message = "interrupted: the server stopped"
                job.write_meta()
            self.jobs[job.id] = job

    # -- submitting ----------------------------------------------------------------------
    def submit(self, spec: J.Spec, job_id: str = "") -> ServerJob:
        job_id = job_id or J.new_job_id()
        with self._lock:
            if job_id in self.jobs:
                raise KeyError(job_id)
            folder = self.workspace.root / "jobs" / job_id
            folder.mkdir(parents=True, exist_ok=True)
            job = ServerJob(job_id, spec, folder)
            self.jobs[job_id] = job
        job.write_meta()
        self._queue.put(job)
        return job

    def cancel(self, job: ServerJob) -> None:
        if job.state in FINAL:
            return
        job.stop.set()  # running: the job stops at its next check; queued: the worker ends it unstarted
        self._save_state(job)

    def queue_state(self) -> dict:
        states = [j.state for j in self.jobs.values()]
        return {"queued": states.count("queued"), "running": states.count("running"),
                "max_concurrent": self.max_concurrent, "jobs": len(states)}

    # -- workers -------------------------------------------------------------------------
    def _wake(self, job: ServerJob) -> None:
        def wake():
            for w in list(job.waiters):
                w.set()

        if self._loop is not None and not self._loop.is_closed():
            try:
                self._loop.call_soon_threadsafe(wake)
            except RuntimeError:  # loop closed during shutdown
                pass

    def _emit(self, job: ServerJob, event: J.Event) -> None:
        job.append(event)
        if isinstance(event, J.TERMINAL):
            job.finished = time.time()
            if isinstance(event, J.Done):
                job.state, job.result = "done", event.result
            elif isinstance(event, J.Failed):
                job.state, job.message = "failed", event.message
            else:
                job.state = "cancelled"
            self._save_state(job)
            self._forget_old()
        self._wake(job)

    def _save_state(self, job: ServerJob) -> None:
        try:
            job.write_meta()
        except OSError:
            pass

    def _forget_old(self) -> None:
        """Keep memory bounded: events of old finished jobs are replayed from disk instead."""
        with self._lock:
            finished = [j.id for j in self.jobs.values() if j.state in FINAL and j.lines is not None]
            for jid in finished[:-KEEP_FINISHED_IN_MEMORY] if len(finished) > KEEP_FINISHED_IN_MEMORY else []:
                job = self.jobs[jid]
                with job.lock:
                    job.lines = None

    def _worker(self) -> None:
        J.cpu_threads_from_env()
        while True:
            job = self._queue.get()
            if job is None:
                return
            if job.stop.is_set() or self._closing:  # cancelled while it waited: never started
                self._emit(job, J.Cancelled())
                continue
            job.state, job.started = "running", time.time()
            self._save_state(job)
            self._wake(job)
            try:
                from app.server.distributed import wants_torchrun, run_under_torchrun

                if wants_torchrun(job.spec):
                    run_under_torchrun(job.spec, lambda ev, j=job: self._emit(j, ev), job.stop.is_set,
                                       workspace=self.workspace, job_id=job.id, folder=job.folder)
                else:
                    J.run(job.spec, lambda ev, j=job: self._emit(j, ev), job.stop.is_set,
                          workspace=self.workspace, job_id=job.id, transport=self.transport)
            except BaseException as exc:  # engine.run never raises; this guards the relay itself
                if job.state not in FINAL:
                    self._emit(job, J.Failed(f"server error while running the job: {type(exc).__name__}: {exc}"))
            if job.state not in FINAL:  # a runner that ended without a terminal event
                self._emit(job, J.Failed("the job ended without reporting an outcome"))
