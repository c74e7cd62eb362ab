"""JobManager: submits engine jobs to the current transport, queues heavy ones, keeps the history.

Every job the GUI starts goes through ``JobManager.submit(spec)``, which returns the job's
``JobHandle`` at once. Jobs whose spec class sets ``heavy = True`` (training, sampling,
score-based reconstruction) share the compute device: at most ``max_heavy`` of them run at a time
and the rest wait in a first-in-first-out queue; light jobs (ingest, EDA, export...) start at
once. The transport is a *runner* (``.transport`` name and ``.start(handle)``): the local QThread
runner by default, a remote server runner after ``set_runner``. ``adopt(handle)`` lists a job that
was not submitted here (a job still running on a remote server, reattached after the app was
reopened) like one that was: the Jobs dock shows it and its end is reported the same way.
``list_runs()`` gives the training runs with their checkpoints where the current runner runs jobs
(the local workspace, or the server), for the checkpoint pickers; it blocks, so call it through
``run_in_thread``.

``run_in_thread(fn, on_done, on_error)`` is the small helper views use for short file reads
(thumbnails, provenance, exporting) so the GUI thread never waits on I/O.
"""

from __future__ import annotations

import collections
import threading
import time
import traceback
from collections.abc import Callable

from PySide6.QtCore import QCoreApplication, QObject, Qt, QTimer, Signal, Slot

from app.engine import jobs as J
from app.workers.base import FINAL_STATES, JobHandle

#: the job kinds whose end adds or replaces workspace datasets (imports, the demo, generated sets)
DATASET_KINDS = frozenset({"ingest", "demo", "sample"})


class JobManager(QObject):
    """Queue and registry of the jobs of one workspace (see the module docstring)."""

    job_added = Signal(object)  # JobHandle, right after submit
    job_started = Signal(object)  # JobHandle, when handed to the runner
    job_finished = Signal(object)  # JobHandle, once it reached done / failed / cancelled
    job_failed = Signal(object)  # JobHandle, failed (the main window shows the error)
    runner_changed = Signal(str)  # the new transport name
    datasets_changed = Signal()  # a job that registers datasets (DATASET_KINDS) is done: lists of datasets re-read

    def __init__(self, workspace, runner=None, parent=None, max_heavy: int = 1):
        super().__init__(parent)
        self.workspace = workspace
        if runner is None:
            from app.workers.local import LocalRunner

            runner = LocalRunner(workspace)
        self._runner = runner
        self.max_heavy = max(1, int(max_heavy))
        self._handles: list[JobHandle] = []
        self._queue: collections.deque[JobHandle] = collections.deque()
        self._active_heavy: list[JobHandle] = []
        self._runners_of: dict[str, object] = {}  # job id -> runner that started it
        self._closed = False  # set by close(): no new jobs

    # -- transport -----------------------------------------------------------------------
    @property
    def runner(self):
        return self._runner

    @property
    def transport(self) -> str:
        return str(getattr(self._runner, "transport", "local"))

    def set_runner(self, runner) -> None:
        """Switch the transport for jobs submitted from now on (running jobs keep theirs)."""
        self._runner = runner
        self.runner_changed.emit(self.transport)

    def runner_of(self, handle_or_id):
        """The runner a job was started on (None for a job never handed to a runner)."""
        jid = getattr(handle_or_id, "job_id", handle_or_id)
        return self._runners_of.get(jid)

    def list_runs(self) -> list[dict]:
        """Training runs where jobs run now, oldest first: [{"id", "kind", "dataset", "state",
        "checkpoints": [{"name", "path", "epoch", "step", ...}]}]. Blocking (a remote runner asks the
        server): call off the GUI thread."""
        remote = getattr(self._runner, "list_runs", None)
        if remote is not None:
            return remote()
        from app.engine.training.checkpoints import list_checkpoints

        out = []
        for r in self.workspace.runs():
            try:
                cks = list_checkpoints(r.id, self.workspace)
            except Exception:
                cks = []
            out.append({"id": r.id, "kind": r.kind, "dataset": r.dataset, "state": r.state,
                        "created": r.created, "path": str(r.path), "checkpoints": cks})
        return out

    # -- submitting ----------------------------------------------------------------------
    def adopt(self, handle: JobHandle, runner=None) -> JobHandle:
        """List a handle that a runner already follows (e.g. from ``RemoteRunner.reattach``).

        It is shown and reported like a submitted job; a heavy one counts against ``max_heavy``
        while it runs, since it occupies the same compute as the jobs this manager would start.
        """
        if handle in self._handles:
            return handle
        if handle.parent() is None:
            handle.setParent(self)
        self._handles.append(handle)
        self._runners_of[handle.job_id] = runner if runner is not None else self._runner
        handle.finished.connect(lambda _ev, h=handle: self._on_finished(h))
        handle.heavy = bool(getattr(handle, "heavy", getattr(type(handle.spec), "heavy", False)))
        if handle.heavy and not handle.is_final:
            self._active_heavy.append(handle)
        self.job_added.emit(handle)
        if not handle.is_final:
            self.job_started.emit(handle)
        return handle

    def close(self) -> None:
        """No new jobs from now on (the window is closing): ``submit`` returns a handle that is
        already cancelled. A late callback (a background read finishing after the window's
        cancel-all) must not start a job that nobody waits for."""
        self._closed = True

    def submit(self, spec: J.Spec, job_id: str = "") -> JobHandle:
        """Queue or start a job; returns its handle immediately (state "queued" until it runs)."""
        if not isinstance(spec, J.Spec):
            raise TypeError(f"submit expects a Spec, got {type(spec).__name__}")
        handle = JobHandle(spec, job_id=job_id, transport=self.transport, parent=self)
        handle.heavy = bool(getattr(type(spec), "heavy", False))
        if self._closed:
            handle.post(J.Log("warning", f"{handle.kind} job not started: the window is closing"))
            handle.post(J.Cancelled())
            handle.flush()
            return handle
        self._handles.append(handle)
        handle.finished.connect(lambda _ev, h=handle: self._on_finished(h))
        self.job_added.emit(handle)
        if handle.heavy:
            self._queue.append(handle)
            self._pump()
        else:
            self._start(handle)
        return handle

    def _start(self, handle: JobHandle) -> None:
        runner = self._runner
        self._runners_of[handle.job_id] = runner
        if handle.heavy:
            self._active_heavy.append(handle)
        try:
            runner.start(handle)
        except Exception as exc:  # a transport that cannot start (server down...) fails the job
            handle.post(J.Log("error", traceback.format_exc()))
            handle.post(J.Failed(f"could not start the job on {self.transport}: {exc}"))
        self.job_started.emit(handle)

    def _pump(self) -> None:
        while self._queue and len(self._active_heavy) < self.max_heavy:
            handle = self._queue.popleft()
            if handle.is_final or handle.stop_requested():
                continue  # cancelled while it waited
            self._start(handle)

    def _on_finished(self, handle: JobHandle) -> None:
        if handle in self._active_heavy:
            self._active_heavy.remove(handle)
        try:
            self._queue.remove(handle)
        except ValueError:
            pass
        self.job_finished.emit(handle)
        if handle.state == "done" and handle.kind in DATASET_KINDS:
            self.datasets_changed.emit()
        if handle.state == "failed":
            self.job_failed.emit(handle)
        self._pump()

    # -- looking -------------------------------------------------------------------------
    def handles(self) -> list[JobHandle]:
        """Every job submitted in this session, oldest first."""
        return list(self._handles)

    def active(self) -> list[JobHandle]:
        """Jobs queued or running (not yet done / failed / cancelled)."""
        return [h for h in self._handles if h.state not in FINAL_STATES]

    def queued(self) -> list[JobHandle]:
        return [h for h in self._queue if not h.is_final]

    def history(self, limit: int = 200) -> list:
        """Job records of the workspace (earlier sessions included), newest first.

        Jobs that were still marked running by a process that is gone are reported failed
        ("interrupted") by ``Workspace.mark_interrupted_jobs``, which the main window calls
        once at start.
        """
        try:
            return self.workspace.jobs(limit)
        except Exception:
            return []

    # -- stopping ------------------------------------------------------------------------
    def cancel_all(self) -> int:
        """Ask every active job to stop; returns how many were asked."""
        n = 0
        for h in self.active():
            h.cancel()
            n += 1
        return n

    def wait_all(self, timeout_ms: int = 30000, handles: list[JobHandle] | None = None) -> bool:
        """Wait (keeping the event loop turning) until every job (or those of ``handles``) has
        ended; True if all did."""
        deadline = time.monotonic() + timeout_ms / 1000.0
        if handles is None:
            runners = {id(r): r for r in list(self._runners_of.values()) + [self._runner]}
        else:
            runners = {id(r): r for r in (self._runners_of.get(h.job_id) for h in handles) if r is not None}
        for r in runners.values():
            wait = getattr(r, "wait_all", None)
            if wait is not None:
                left = max(0, int((deadline - time.monotonic()) * 1000))
                wait(left)

        def pending():
            return [h for h in (self._handles if handles is None else handles) if h.state not in FINAL_STATES]

        app = QCoreApplication.instance()
        while pending() and time.monotonic() < deadline:
            for h in pending():
                h.flush()
            if app is not None:
                app.processEvents()
            time.sleep(0.01)
        for h in self._handles:
            h.flush()
        return not pending()


# ------------------------------------------------------------------------------------------------
# Short background calls for views
# ------------------------------------------------------------------------------------------------


class _CallBridge(QObject):
    done = Signal(object, object)  # callback, value

    @Slot(object, object)
    def deliver(self, callback, value) -> None:  # runs on the GUI thread (queued connection)
        callback(value)


_bridge: _CallBridge | None = None


def _get_bridge() -> _CallBridge:
    global _bridge
    if _bridge is None:
        _bridge = _CallBridge()
        app = QCoreApplication.instance()
        if app is not None:
            _bridge.moveToThread(app.thread())
        _bridge.done.connect(_bridge.deliver, Qt.QueuedConnection)
    return _bridge


_pending_calls: set[threading.Thread] = set()


def run_in_thread(fn: Callable[[], object], on_done: Callable[[object], None] | None = None,
                  on_error: Callable[[str, str], None] | None = None) -> threading.Thread:
    """Run ``fn()`` on a daemon thread; ``on_done(value)`` / ``on_error(message, traceback)``
    are then called on the GUI thread. For short reads and writes, not for jobs (those go
    through ``JobManager.submit`` so they are listed, recorded and cancellable)."""
    bridge = _get_bridge()
    from app.workers.gc_guard import collect_in_gui_thread

    collect_in_gui_thread()

    def target():
        try:
            value = fn()
        except Exception as exc:  # reported to the caller on the GUI thread
            if on_error is not None:
                msg = str(exc) if isinstance(exc, J.UserError) else f"{type(exc).__name__}: {exc}"
                tb = traceback.format_exc()
                bridge.done.emit(lambda _v: on_error(msg, tb), None)
        else:
            if on_done is not None:
                bridge.done.emit(on_done, value)
        finally:
            _pending_calls.discard(threading.current_thread())

    t = threading.Thread(target=target, daemon=True, name="radsynth-call")
    _pending_calls.add(t)
    t.start()
    return t


def wait_for_calls(timeout_s: float = 10.0) -> None:
    """Join the background calls still running (tests and shutdown)."""
    deadline = time.monotonic() + timeout_s
    for t in list(_pending_calls):
        t.join(max(0.0, deadline - time.monotonic()))


def call_later(ms: int, fn: Callable[[], None]) -> None:
    QTimer.singleShot(ms, fn)
