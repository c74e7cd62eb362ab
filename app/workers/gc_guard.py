"""Python's cyclic garbage collector only in the GUI thread.

The collector runs in whichever thread happens to allocate when a generation fills up. When that is
a job thread (a training loop allocating tensors) and the garbage holds Qt wrappers (a closed
widget, a finished panel), their QObjects are destroyed from the wrong thread: Qt then deadlocks
(the job thread holds a Qt mutex in ~QObject and waits for the GIL, the GUI thread holds the GIL
and waits for that mutex; seen in this test suite) or crashes. pyqtgraph ships the standard remedy,
used here instead of a copy: automatic collection off, and a timer in the GUI thread collecting
each generation when its threshold is passed.
"""

from __future__ import annotations

import threading

_collector = None


def collect_in_gui_thread(interval_s: float = 0.1) -> bool:
    """Install the GUI-thread collector once per process; call it from the GUI thread after the
    QApplication exists. True when it is (now) installed.

    Every 0.1 s (pyqtgraph's default is 1 s): with 1 s between checks, a generation-1 collection
    during training took 0.33-0.46 s on the GUI thread (a frozen window; 4 runs of
    benchmarks/bench_gui_responsiveness.py --diagnose, 45 s each); checked every 0.1 s the longest
    collection was 0.9 ms and the longest stall 35 ms (3 runs)."""
    global _collector
    if _collector is not None:
        return True
    from PySide6.QtCore import QCoreApplication

    if QCoreApplication.instance() is None or threading.current_thread() is not threading.main_thread():
        return False
    from pyqtgraph.util.garbage_collector import GarbageCollector

    _collector = GarbageCollector(interval=interval_s, debug=False)
    return True
