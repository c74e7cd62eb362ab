"""The server's job queue: jobs run through engine.run on worker threads, events kept per job.

Every event a job emits gets a sequence number (1, 2, ...) and is kept twice: appended as one JSON
line ``{"seq": n, "event": {...}}`` to ``<workspace>/jobs/<id>/events.jsonl``, and in memory for live
followers. The line is written to the file (an unbuffered ``os.write``: it is in the operating system's
page cache, so a kill -9 of the server cannot lose it) *before* it is put where a follower can read it,
so a client never receives an event that is not on disk. ``fsync`` is batched: a job's file is synced
at its artifacts and terminal event and otherwise at most ``FSYNC_S`` seconds after a write (by the
emitting thread, or by the queue's sync thread when the job goes quiet), so a power cut loses at most
the last ``FSYNC_S`` seconds of events. The job's spec and state live beside it in ``server-job.json``.
Jobs outlive client connections: nothing here depends on a client being connected.

A restarted server (after a crash, a kill -9 or a stop) reads every job folder back: finished jobs are
listed and replayed, queued ones are queued again in their order and run, and jobs that were running
end "interrupted" (a terminal ``Failed`` event in their stream, state "interrupted" in ``server-job.json``
and in the workspace's SQLite job table, which ``radsynth jobs`` lists). A torn last line (a write cut by
the crash) is dropped, so line *n* of the file is always event *n* and ``?after=N`` resumes exactly.

Followers (the WebSocket handler) run on the server's asyncio loop; the worker threads wake them
with ``loop.call_soon_threadsafe``. A train spec asking for more than one GPU (``num_gpus > 1``)
runs under torchrun in a subprocess (see app/server/distributed.py) and its events are relayed into
the same sequence.
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import shutil
import threading
import time
from pathlib import Path

from app.engine import jobs as J
from app.server.quota import folder_bytes

FINAL = ("done", "failed", "cancelled", "interrupted")
EVENTS_FILE = "events.jsonl"
#: the longest an event stays written but not fsynced (the bound of what a power cut can lose)
FSYNC_S = 0.5
INTERRUPTED = "interrupted: the server stopped while this job ran"
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
        self._fd: int | None = None  # the events file, opened for appending on the first event
        self._synced_at = 0.0  # monotonic time of the last fsync
        self._dirty = False  # written since the last fsync

    # -- summary -----------------------------------------------------------------------
    def summary(self) -> dict:
        return {
            "id": self.id, "kind": self.kind, "state": self.state, "created": self.created,
            "started": self.started, "finished": self.finished, "events": self.last_seq,
            "progress": list(self.progress), "result": self.result, "message": self.message,
            "cancel_requested": self.stop.is_set(), "spec": self.spec.model_dump(mode="json"),
        }

    def write_meta(self) -> None:
        tmp = self.folder / (META_FILE + ".tmp")
        tmp.write_text(json.dumps(self.summary(), indent=1))
        tmp.replace(self.folder / META_FILE)

    # -- events ------------------------------------------------------------------------
    def append(self, event: J.Event) -> str:
        """Number an event, write it to the events file, then keep it for followers; returns its JSON line."""
        d = J.event_to_dict(event)
        terminal = isinstance(event, J.TERMINAL)
        with self.lock:
            self.last_seq += 1
            line = json.dumps({"seq": self.last_seq, "event": d}, separators=(",", ":"))
            if self._fd is None:
                self._fd = os.open(self.folder / EVENTS_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            data = (line + "\n").encode("utf-8")
            while data:  # os.write may write less than asked (a signal, a full pipe); a file takes it all
                data = data[os.write(self._fd, data):]
            self._dirty = True
            if self.lines is not None:  # only now can a follower read it: it is on disk first
                self.lines.append(line)
            if isinstance(event, J.Progress):
                self.progress = (event.step, event.total)
            elif isinstance(event, J.Artifact):
                self.artifacts.append({"kind": event.kind, "path": event.path})
            due = terminal or isinstance(event, J.Artifact) or time.monotonic() - self._synced_at >= FSYNC_S
        if due:
            self.sync(close=terminal)
        return line

    def sync(self, close: bool = False) -> None:
        """fsync the events file if written since the last sync (outside the lock: followers never wait on it)."""
        with self.lock:
            fd, dirty = self._fd, self._dirty
            self._dirty = False
            self._synced_at = time.monotonic()
            if close:
                self._fd = None
        if fd is None:
            return
        try:
            if dirty:
                os.fsync(fd)
        except OSError:  # closed by the terminal event meanwhile: that close synced it
            pass
        if close:
            os.close(fd)

    def sync_if_due(self) -> None:
        if self._dirty and time.monotonic() - self._synced_at >= FSYNC_S:
            self.sync()

    def read_back(self) -> dict | None:
        """Count the events of the file (a job of an earlier server), drop a torn last line; the last
        event as a dict (None when there is none)."""
        path = self.folder / EVENTS_FILE
        if not path.exists():
            return None
        raw = path.read_bytes()
        if raw and not raw.endswith(b"\n"):  # the crash cut the last write: that event was never followed
            raw = raw[:raw.rfind(b"\n") + 1]
            with open(path, "r+b") as f:
                f.truncate(len(raw))
        last = None
        for line in raw.decode("utf-8", "replace").split("\n")[:-1]:
            self.last_seq += 1
            try:
                ev = json.loads(line)["event"]
            except (ValueError, KeyError, TypeError):
                continue
            last = ev
            if ev.get("type") == "Artifact":
                self.artifacts.append({"kind": ev["kind"], "path": ev["path"]})
            elif ev.get("type") == "Progress":
                self.progress = (ev["step"], ev["total"])
        return last

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
        for job in self._load_previous():
            self._queue.put(job)
        threading.Thread(target=self._sync_loop, name="radsynth-events-sync", daemon=True).start()
        for i in range(self.max_concurrent):
            t = threading.Thread(target=self._worker, name=f"radsynth-job-worker-{i}", daemon=True)
            t.start()
            self._threads.append(t)

    def shutdown(self, wait_s: float = 10.0) -> None:
        """Ask running jobs to stop and wait a little for them to record their end; queued jobs stay queued
        (the next start runs them)."""
        self._closing = True
        for job in list(self.jobs.values()):
            if job.state == "running":
                job.stop.set()
        for _ in self._threads:
            self._queue.put(None)
        deadline = time.monotonic() + wait_s
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        for job in list(self.jobs.values()):
            job.sync()

    def _sync_loop(self) -> None:
        """fsync the events of jobs that went quiet, so that no written event stays unsynced past FSYNC_S."""
        while not self._closing:
            time.sleep(FSYNC_S / 2)
            for job in list(self.jobs.values()):
                job.sync_if_due()

    def _load_previous(self) -> list[ServerJob]:
        """Jobs of an earlier server process: listed and replayable. Returns the ones to queue again (in
        their order); those that were running end interrupted, here and in the workspace's job table."""
        root = self.workspace.root / "jobs"
        requeue = []
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
            last = job.read_back()
            self.jobs[job.id] = job
            if job.state in FINAL:
                continue
            ended = last if last is not None and last.get("type") in ("Done", "Failed", "Cancelled") else None
            if ended is not None:  # it ended, but the server stopped before recording its state
                job.state = {"Done": "done", "Failed": "failed", "Cancelled": "cancelled"}[ended["type"]]
                job.result, job.message = ended.get("result"), ended.get("message")
                job.finished = job.finished or time.time()
                self._save_state(job)
            elif job.state == "queued":
                job.lines = self._read_lines(job)
                if meta.get("cancel_requested"):
                    job.stop.set()
                requeue.append(job)
            else:  # it was running when the server stopped
                job.append(J.Failed(f"{INTERRUPTED}; submit it again (a training run can be resumed from its "
                                    "last checkpoint with resume=<run id>)"))
                job.state, job.finished, job.message = "interrupted", time.time(), INTERRUPTED
                self._save_state(job)
                try:
                    self.workspace.record_job_end(job.id, "interrupted", message=INTERRUPTED)
                    self._stop_run_of(job)
                except Exception:  # a registry that cannot be written: the job's own files still say it
                    pass
        return sorted(requeue, key=lambda j: j.created)

    def _stop_run_of(self, job: ServerJob) -> None:
        """A training job that was running: its run is "stopped" (resumable from its last checkpoint with
        ``{"kind": "train", "resume": RUN}``), not left "running". The run is the one the job resumed, or the one
        its checkpoint artifacts were written into (``runs/<id>/checkpoints/...``)."""
        if getattr(job.spec, "kind", "") != "train":
            return
        run_id = getattr(job.spec, "resume", None)
        for art in job.artifacts:
            parts = Path(art.get("path", "")).parts
            if "runs" in parts and parts.index("runs") + 1 < len(parts):
                run_id = parts[parts.index("runs") + 1]
        if not run_id:
            return
        if self.workspace.run(run_id).state == "running":
            self.workspace.update_run(run_id, state="stopped", meta={"error": INTERRUPTED})

    @staticmethod
    def _read_lines(job: ServerJob) -> list[str]:
        path = job.folder / EVENTS_FILE
        return path.read_text(encoding="utf-8").split("\n")[:-1] if path.exists() else []

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

    def delete(self, job: ServerJob) -> int:
        """Forget a finished job and remove its folder (its outputs with it); the bytes freed."""
        if job.state not in FINAL:
            raise ValueError(f"job {job.id} is {job.state}")
        with self._lock:
            self.jobs.pop(job.id, None)
        freed = folder_bytes(job.folder)
        shutil.rmtree(job.folder, ignore_errors=True)
        return freed

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
            if self._closing:  # the server is stopping: the job stays queued for the next start
                continue
            if job.stop.is_set():  # cancelled while it waited: never started
                self._emit(job, J.Cancelled())
                continue
            job.state, job.started = "running", time.time()
            self._save_state(job)
            self._wake(job)
            try:
                from app.server.distributed import run_under_torchrun, wants_torchrun

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
