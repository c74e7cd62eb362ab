"""Local transport: runs an engine job on a QThread and feeds its events into a JobHandle.

CPU share (benchmarks/bench_gui_responsiveness.py): the job shares the machine with the GUI
thread. Unless ``RADSYNTH_THREADS`` says otherwise, torch's intra-op pool gets all cores but one
(``gui_job_threads``), so the GUI thread always has a core to draw on and torch's worker threads
do not spin-wait against a descheduled team member; on a loaded 2-core machine one thread trained
the benchmark's model 10x faster than two (1.34 vs 0.135 steps/s, headless, same job).
"""

from __future__ import annotations

import os

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
        lower_thread_priority()
        if os.environ.get("RADSYNTH_THREADS"):
            J.cpu_threads_from_env()
        else:
            import torch

            torch.set_num_threads(gui_job_threads())
        self.handle.mark_running()
        # engine.run never raises; it always posts exactly one terminal event
        J.run(self.handle.spec, self.handle.post, self.handle.stop_requested,
              workspace=self.workspace, job_id=self.handle.job_id, transport="local")


JOB_NICE = int(os.environ.get("RADSYNTH_JOB_NICE", "5"))


def lower_thread_priority(nice: int = JOB_NICE) -> bool:
    """Raise the calling thread's nice value (Linux: nice is per thread; torch's pool threads that
    this thread starts inherit it), so the GUI thread wins the CPU whenever it has something to
    draw; with the machine otherwise idle the job still gets every free cycle. False where the OS
    has no per-thread nice."""
    import threading

    if nice <= 0 or not hasattr(os, "setpriority") or not hasattr(threading, "get_native_id"):
        return False
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + nice))
        return True
    except OSError:
        return False


def gui_job_threads(cores: int | None = None) -> int:
    """Intra-op threads for a job run next to the GUI: every core but one, at least one."""
    cores = cores if cores is not None else (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                                             else os.cpu_count() or 1)
    return max(1, cores - 1)


#: every job thread that has started and not yet finished, whoever else still holds it. A QThread
#: object destroyed while its thread runs makes Qt abort the process ("QThread: Destroyed while
#: thread is still running"). While ``run`` executes its frame holds the object, but once ``run``
#: returns the thread is still finishing: if the runner that started it is gone by then (a closed
#: window's manager collected with a job still running), the last reference dies in the worker
#: thread itself. Held here until ``finished`` reaches the GUI thread, the object outlives its thread.
_LIVE_THREADS: set[_JobThread] = set()


def live_job_threads() -> list[_JobThread]:
    """Job threads still running in this process (any window, any runner)."""
    return [t for t in list(_LIVE_THREADS) if t.isRunning()]


class LocalRunner:
    """Starts jobs on worker threads."""

    transport = "local"

    def __init__(self, workspace):
        self.workspace = workspace
        self._threads: dict[str, _JobThread] = {}

    def start(self, handle: JobHandle) -> None:
        thread = _JobThread(handle, self.workspace)
        self._threads[handle.job_id] = thread
        _LIVE_THREADS.add(thread)
        thread.finished.connect(lambda jid=handle.job_id: self._threads.pop(jid, None))
        thread.finished.connect(lambda t=thread: _LIVE_THREADS.discard(t))
        thread.start()

    def running(self) -> list[str]:
        return [jid for jid, t in self._threads.items() if t.isRunning()]

    def wait_all(self, timeout_ms: int = 30000) -> bool:
        """Block until every worker thread has ended (used at shutdown after cancelling)."""
        ok = True
        for t in list(self._threads.values()):
            ok = t.wait(timeout_ms) and ok
        return ok
