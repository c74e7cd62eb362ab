"""Local transport: runs an engine job on a QThread and feeds its events into a JobHandle."""

from __future__ import annotations

from PySide6.QtCore import QThread

from app.engine import jobs as J
from app.workers.base import JobHandle


class _JobThread(QThread):
    def __init__(self, handle: JobHandle, workspace):
        super().__init__()
        self.handle = handle
        self.workspace = workspace
        self.setObjectName(f"job-{handle.job_id}")

    def run(self) -> None:  # runs on the worker thread
        J.cpu_threads_from_env()
        self.handle.mark_running()
        # engine.run never raises; it always posts exactly one terminal event
        J.run(self.handle.spec, self.handle.post, self.handle.stop_requested,
              workspace=self.workspace, job_id=self.handle.job_id, transport="local")


class LocalRunner:
    """Starts jobs on worker threads. Keep a reference to the runner while jobs run."""

    transport = "local"

    def __init__(self, workspace):
        self.workspace = workspace
        self._threads: dict[str, _JobThread] = {}

    def start(self, handle: JobHandle) -> None:
        thread = _JobThread(handle, self.workspace)
        self._threads[handle.job_id] = thread
        thread.finished.connect(lambda jid=handle.job_id: self._threads.pop(jid, None))
        thread.start()

    def running(self) -> list[str]:
        return [jid for jid, t in self._threads.items() if t.isRunning()]

    def wait_all(self, timeout_ms: int = 30000) -> bool:
        """Block until every worker thread has ended (used at shutdown after cancelling)."""
        ok = True
        for t in list(self._threads.values()):
            ok = t.wait(timeout_ms) and ok
        return ok
