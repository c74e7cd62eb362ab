"""The installed PySide6 keeps its references to True / False (6.12.0 did not: the view tests and a
long live plot aborted with "bool_dealloc: deallocating True or False")."""

from __future__ import annotations

import gc
import logging
import sys

from app.workers import qt_checks


def test_a_bool_signal_loses_no_reference_to_true(qapp):
    # 6.12.0: 1.0 per emit; other threads may move the count by a few meanwhile
    assert qt_checks.bool_signal_refcount_leak(n=200) < 0.25


def test_pyqtgraph_updates_lose_no_reference_to_true(qapp):
    import pyqtgraph as pg

    pw = pg.PlotWidget()
    item = pw.plot([1, 2, 3], [1, 2, 3])
    gc.collect()
    before = sys.getrefcount(True)
    for k in range(500):  # 6.12.0 lost 2 per setData: 1000 here
        item.setData([1, 2, 3], [3, 2, k])
    gc.collect()
    assert before - sys.getrefcount(True) < 200  # 6.12.0: 1000
    pw.close()


def test_a_leaking_pyside_gets_the_ballast_and_a_warning(qapp, monkeypatch, caplog):
    monkeypatch.setattr(qt_checks, "bool_signal_refcount_leak", lambda n=64: 1.0)
    monkeypatch.setattr(qt_checks, "BALLAST_REFS", 1000)
    monkeypatch.setattr(qt_checks, "_ballast", [])
    with caplog.at_level(logging.WARNING, logger="app.workers.qt_checks"):
        assert qt_checks.guard_bool_refcounts() == 1.0
    # the held references (not a refcount difference: other threads change it meanwhile)
    held_true, held_false = qt_checks._ballast
    assert len(held_true) == len(held_false) == 1000
    assert all(v is True for v in held_true) and all(v is False for v in held_false)
    assert "install PySide6-Essentials < 6.12" in caplog.text
    qt_checks.guard_bool_refcounts()  # once is enough: no second ballast
    assert len(qt_checks._ballast) == 2
