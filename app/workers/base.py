"""JobHandle: the one Qt face of a job, whichever transport (local thread, remote server) runs it.

A transport calls ``handle.post(event)`` from any thread with the engine's events. The handle
queues them and a timer on the GUI thread drains the queue a few times a second: progress is
coalesced to the latest value, scalars are delivered in batches, image events are thinned to at
most ``max_image_hz`` per image name (the latest wins), logs and artifacts all pass. Views connect
to the signals below and never learn which transport ran the job.
"""

from __future__ import annotations

import collections
import threading
import time

from PySide6.QtCore import QObject, QTimer, Signal

from app.engine import jobs as J

STATES = ("queued", "running", "reconnecting", "done", "failed", "cancelled")
FINAL_STATES = ("done", "failed", "cancelled")


class JobHandle(QObject):
    progress = Signal(int, int, str)  # step, total, label
    log = Signal(str, str)  # level, text
    scalars = Signal(list)  # [(name, step, value), ...] in arrival order
    image = Signal(str, object, str)  # name, numpy array, kind
    artifact = Signal(str, str)  # kind, path
    state_changed = Signal(str)  # one of STATES
    finished = Signal(object)  # the terminal event: Done / Failed / Cancelled

    def __init__(self, spec: J.Spec, job_id: str = "", transport: str = "local", parent=None,
                 drain_ms: int = 50, max_image_hz: float = 4.0):
        super().__init__(parent)
        self.spec = spec
        self.kind = getattr(spec, "kind", "?")
        self.job_id = job_id or J.new_job_id()
        self.transport = transport
        self.state = "queued"
        self.step = 0
        self.total = 0
        self.label = ""
        self.result: dict | None = None
        self.message: str | None = None
        self.created_at = time.time()
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self.artifacts: list[tuple[str, str]] = []
        self.logs: list[tuple[str, str]] = []
        self.events_received = 0
        self._queue: collections.deque = collections.deque()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._cancel_hook = None  # transport-specific extra action on cancel (e.g. an HTTP call)
        #: set by transports whose artifact paths are not on this computer: path -> local copy
        self.fetch_artifact = None
        from app.workers.gc_guard import collect_in_gui_thread

        collect_in_gui_thread()  # before any job thread allocates: see gc_guard
        self._min_image_gap = 1.0 / max_image_hz if max_image_hz > 0 else 0.0
        self._last_image_at: dict[str, float] = {}
        self._pending_images: dict[str, J.Image] = {}
        self._timer = QTimer(self)
        self._timer.setInterval(drain_ms)
        self._timer.timeout.connect(self._drain)
        self._timer.start()

    # -- called by transports (any thread) -------------------------------------------------
    def post(self, event: J.Event) -> None:
        with self._lock:
            self._queue.append(event)

    def stop_requested(self) -> bool:
        """The should_stop callable handed to engine.run."""
        return self._stop.is_set()

    def set_cancel_hook(self, fn) -> None:
        self._cancel_hook = fn

    def mark_running(self) -> None:
        self.post(_StateEvent("running"))

    def mark_reconnecting(self) -> None:
        self.post(_StateEvent("reconnecting"))

    # -- called by views (GUI thread) -------------------------------------------------------
    def cancel(self) -> None:
        if self.state in FINAL_STATES:
            return
        self._stop.set()
        if self._cancel_hook is not None:
            self._cancel_hook()
        if self.state == "queued":  # never started: end it here
            self.post(J.Cancelled())

    @property
    def is_final(self) -> bool:
        return self.state in FINAL_STATES

    def eta_seconds(self) -> float | None:
        if self.state != "running" or not self.started_at or self.step <= 0 or self.total <= 0:
            return None
        elapsed = time.time() - self.started_at
        return elapsed * (self.total - self.step) / self.step

    def flush(self) -> None:
        """Deliver everything queued now (tests and shutdown use it)."""
        self._drain(force=True)

    # -- the drain ------------------------------------------------------------------------
    def _set_state(self, state: str) -> None:
        if state != self.state:
            self.state = state
            if state == "running" and self.started_at is None:
                self.started_at = time.time()
            self.state_changed.emit(state)

    def _drain(self, force: bool = False) -> None:
        with self._lock:
            events = list(self._queue)
            self._queue.clear()
        now = time.monotonic()
        batch: list[tuple[str, int, float]] = []
        last_progress = None
        terminal = None
        for ev in events:
            self.events_received += 1
            if isinstance(ev, _StateEvent):
                if self.state not in FINAL_STATES:
                    self._set_state(ev.state)
            elif isinstance(ev, J.Progress):
                if self.state in ("queued", "reconnecting"):
                    self._set_state("running")
                last_progress = ev
            elif isinstance(ev, J.Scalar):
                batch.append((ev.name, ev.step, ev.value))
            elif isinstance(ev, J.Image):
                self._pending_images[ev.name] = ev
            elif isinstance(ev, J.Log):
                self.logs.append((ev.level, ev.text))
                self.log.emit(ev.level, ev.text)
            elif isinstance(ev, J.Artifact):
                self.artifacts.append((ev.kind, ev.path))
                self.artifact.emit(ev.kind, ev.path)
            elif isinstance(ev, J.TERMINAL):
                terminal = ev
        if last_progress is not None:
            self.step, self.total, self.label = last_progress.step, last_progress.total, last_progress.label
            self.progress.emit(self.step, self.total, self.label)
        if batch:
            self.scalars.emit(batch)
        for name, ev in list(self._pending_images.items()):
            if terminal is not None or force or now - self._last_image_at.get(name, -1e9) >= self._min_image_gap:
                self._last_image_at[name] = now
                del self._pending_images[name]
                self.image.emit(ev.name, ev.array, ev.kind)
        if terminal is not None and self.state not in FINAL_STATES:
            self.finished_at = time.time()
            if isinstance(terminal, J.Done):
                self.result = terminal.result
                self._set_state("done")
            elif isinstance(terminal, J.Failed):
                self.message = terminal.message
                self._set_state("failed")
            else:
                self._set_state("cancelled")
            self.finished.emit(terminal)
            self._timer.stop()


class _StateEvent:
    """Internal: a transport's state change (running, reconnecting) queued in event order."""

    __slots__ = ("state",)

    def __init__(self, state: str):
        self.state = state
