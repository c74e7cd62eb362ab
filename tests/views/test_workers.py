"""The local transport on a real Qt event loop: signals, thinning, cancellation, failure."""

from __future__ import annotations

import time

import pytest

from app.engine import jobs as J
from app.engine.selftest import SelfTestSpec
from app.workers.base import JobHandle
from app.workers.local import LocalRunner


@pytest.fixture
def runner(workspace, qtbot):
    r = LocalRunner(workspace)
    yield r
    r.wait_all(10000)


def test_a_local_job_delivers_progress_scalars_and_done_on_the_gui_thread(runner, qtbot):
    h = JobHandle(SelfTestSpec(steps=30, size=16))
    got = {"scalars": [], "progress": []}
    h.scalars.connect(lambda b: got["scalars"].extend(b))
    h.progress.connect(lambda s, t, l: got["progress"].append((s, t)))
    with qtbot.waitSignal(h.finished, timeout=20000) as blocker:
        runner.start(h)
    assert isinstance(blocker.args[0], J.Done)
    assert h.state == "done" and h.result["device"] == "cpu"
    assert [s for _, s, _ in got["scalars"]] == list(range(1, 31))  # batched, none lost, in order
    assert got["progress"][-1] == (30, 30)
    assert len(got["progress"]) <= 30


def test_image_events_are_thinned_to_a_few_per_second_and_the_latest_wins(qtbot):
    import numpy as np

    h = JobHandle(SelfTestSpec(), max_image_hz=4.0)
    shown = []
    h.image.connect(lambda name, arr, kind: shown.append(float(arr[0, 0])))
    t0 = time.monotonic()
    for i in range(200):  # a job spamming 200 previews over ~1 s
        h.post(J.Image("preview", np.full((4, 4), i, np.float32), "grid"))
        qtbot.wait(5)
    h.post(J.Done({}))
    qtbot.waitUntil(lambda: h.is_final, timeout=5000)
    elapsed = time.monotonic() - t0
    assert len(shown) <= 4 * elapsed + 2
    assert shown[-1] == 199.0  # the last preview is always delivered


def test_cancel_ends_a_running_job_cancelled_while_the_event_loop_keeps_turning(runner, qtbot):
    h = JobHandle(SelfTestSpec(steps=10_000, size=16, delay=0.01))
    ticks = []
    from PySide6.QtCore import QTimer

    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(time.monotonic()))
    timer.start(10)
    t0 = time.monotonic()
    runner.start(h)
    qtbot.waitUntil(lambda: h.step >= 30, timeout=10000)
    with qtbot.waitSignal(h.finished, timeout=10000) as blocker:
        h.cancel()
    timer.stop()
    assert isinstance(blocker.args[0], J.Cancelled)
    assert h.state == "cancelled"
    expected = (time.monotonic() - t0) / 0.010
    assert len(ticks) > 0.3 * expected  # the GUI thread kept running its 10 ms timer


def test_a_failing_job_ends_failed_with_its_message(runner, qtbot):
    h = JobHandle(SelfTestSpec(steps=10, fail_at=4))
    with qtbot.waitSignal(h.finished, timeout=10000):
        runner.start(h)
    assert h.state == "failed" and h.message == "self-test asked to fail at step 4"
    assert any("Traceback" in text for _, text in h.logs)


def test_cancelling_a_queued_job_ends_it_without_running(qtbot):
    h = JobHandle(SelfTestSpec())
    with qtbot.waitSignal(h.finished, timeout=5000):
        h.cancel()
    assert h.state == "cancelled" and h.started_at is None
