"""A check of the installed PySide6 for the bool refcount leak of 6.12.0, and a stop-gap if it leaks.

PySide6 6.12.0 drops one reference to ``True`` / ``False`` each time a signal defined in Python is
emitted with a bool value (``Signal(bool)``, and ``Signal(object)`` carrying a bool). On Python 3.11
the bools are ordinary objects with a refcount of a few ten thousand, so a live pyqtgraph plot (two
such emits per ``setData``) brought the refcount to zero and the interpreter aborted with "Fatal
Python error: bool_dealloc: deallocating True or False" after a few thousand updates: in the view
tests and, at 4 redraws a second, within the hour in a training session. 6.11.3 does not leak.

pyproject.toml excludes 6.12; ``guard_bool_refcounts`` (called when the QApplication is created)
measures the leak of whatever PySide6 is installed and, if there is one, holds a large number of
extra references to True and False (a list of pointers, 8 bytes each) so that the leak cannot
reach zero in any realistic session, and says so in the log.
"""

from __future__ import annotations

import logging
import sys

log = logging.getLogger(__name__)

#: extra references held when the installed PySide6 leaks: 4 M each (64 MB in all) outlast about
#: 6 days of a plot redrawn 4 times a second
BALLAST_REFS = 4_000_000
_ballast: list[list[bool]] = []


def bool_signal_refcount_leak(n: int = 64) -> float:
    """References to True lost per emit of a Python ``Signal(bool)`` (0 for a sound PySide6)."""
    from PySide6.QtCore import QObject, Signal

    class _Probe(QObject):
        flag = Signal(bool)

    probe = _Probe()
    probe.flag.connect(_ignore)
    before = sys.getrefcount(True)
    for _ in range(n):
        probe.flag.emit(True)
    lost = before - sys.getrefcount(True)
    probe.flag.disconnect(_ignore)
    return max(0.0, lost / n)


def _ignore(_value) -> None:
    pass


def guard_bool_refcounts() -> float:
    """Measure the leak once; when there is one, hold the ballast and log a warning. Returns the leak."""
    leak = bool_signal_refcount_leak()
    if leak >= 0.5 and not _ballast:
        import PySide6

        _ballast.append([True] * BALLAST_REFS)
        _ballast.append([False] * BALLAST_REFS)
        log.warning("PySide6 %s loses a reference to True / False at each bool signal (%.1f per emit); "
                    "holding %d extra references so it cannot abort the app; install PySide6-Essentials < 6.12",
                    PySide6.__version__, leak, BALLAST_REFS)
    return leak
