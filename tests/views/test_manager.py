"""JobManager: heavy jobs queue one at a time, light ones start at once, history after a restart."""

from __future__ import annotations

from typing import ClassVar

from app.engine.selftest import SelfTestSpec
from app.workers.manager import JobManager, run_in_thread


class HeavySelfTest(SelfTestSpec):
    """The self-test marked heavy (a training-like job) to exercise the queue."""

    heavy: ClassVar[bool] = True


def test_heavy_jobs_run_one_at_a_time_and_light_jobs_start_at_once(workspace, qtbot):
    m = JobManager(workspace)
    a = m.submit(HeavySelfTest(steps=10_000, size=8, delay=0.005))
    b = m.submit(HeavySelfTest(steps=3, size=8))
    light = m.submit(SelfTestSpec(steps=3, size=8))
    assert [h.job_id for h in m.queued()] == [b.job_id]
    qtbot.waitUntil(lambda: light.state == "done", timeout=10000)
    assert b.state == "queued" and a.state == "running"  # the light job did not wait for a
    with qtbot.waitSignal(b.finished, timeout=10000):
        a.cancel()
    assert a.state == "cancelled" and b.state == "done"
    assert m.wait_all(5000)
    assert [h.job_id for h in m.handles()] == [a.job_id, b.job_id, light.job_id]


def test_a_queued_job_cancelled_before_it_starts_never_runs(workspace, qtbot):
    m = JobManager(workspace)
    a = m.submit(HeavySelfTest(steps=10_000, size=8, delay=0.005))
    b = m.submit(HeavySelfTest(steps=3, size=8))
    with qtbot.waitSignal(b.finished, timeout=5000):
        b.cancel()
    a.cancel()
    assert m.wait_all(10000)
    assert b.state == "cancelled" and b.started_at is None
    assert b.job_id not in [r.id for r in m.history()]  # it never reached the engine


def test_history_lists_jobs_of_an_earlier_session_from_the_workspace(workspace, qtbot):
    m = JobManager(workspace)
    h = m.submit(SelfTestSpec(steps=2, size=8))
    failing = m.submit(SelfTestSpec(steps=5, size=8, fail_at=2))
    assert m.wait_all(10000)
    later = JobManager(workspace)  # a new session on the same workspace
    states = {r.id: r.state for r in later.history()}
    assert states[h.job_id] == "done" and states[failing.job_id] == "failed"
    assert later.handles() == []


def test_job_failed_is_emitted_with_the_handle_of_a_failing_job(workspace, qtbot):
    m = JobManager(workspace)
    with qtbot.waitSignal(m.job_failed, timeout=10000) as blocker:
        m.submit(SelfTestSpec(steps=5, size=8, fail_at=3))
    assert blocker.args[0].message == "self-test asked to fail at step 3"


class _BrokenRunner:
    transport = "remote-test"

    def start(self, handle):
        raise ConnectionError("server unreachable")


def test_set_runner_switches_the_transport_and_a_runner_that_cannot_start_fails_the_job(workspace, qtbot):
    m = JobManager(workspace)
    with qtbot.waitSignal(m.runner_changed, timeout=1000):
        m.set_runner(_BrokenRunner())
    h = m.submit(SelfTestSpec(steps=2))
    qtbot.waitUntil(lambda: h.is_final, timeout=5000)
    assert h.transport == "remote-test" and h.state == "failed"
    assert "server unreachable" in h.message


def test_run_in_thread_delivers_the_value_or_the_error_on_the_gui_thread(qtbot):
    from PySide6.QtCore import QThread

    got = {}
    gui = QThread.currentThread()
    run_in_thread(lambda: 41 + 1, lambda v: got.update(value=v, on_gui=QThread.currentThread() is gui))
    run_in_thread(lambda: 1 / 0, None, lambda msg, tb: got.update(error=msg))
    qtbot.waitUntil(lambda: "value" in got and "error" in got, timeout=5000)
    assert got["value"] == 42 and got["on_gui"]
    assert got["error"].startswith("ZeroDivisionError")


def test_adopt_lists_a_handle_started_elsewhere_and_reports_its_end(workspace, qtbot):
    from app.workers.base import JobHandle
    from app.workers.local import LocalRunner

    m = JobManager(workspace)
    added, finished = [], []
    m.job_added.connect(added.append)
    m.job_finished.connect(finished.append)
    other = LocalRunner(workspace)  # stands for the runner that reattached a job
    h = JobHandle(HeavySelfTest(steps=10_000, size=8, delay=0.005))
    other.start(h)
    assert m.adopt(h, other) is h and m.adopt(h, other) is h  # adopting twice lists it once
    assert added == [h] and m.handles() == [h] and m.runner_of(h) is other and h.parent() is m
    queued = m.submit(HeavySelfTest(steps=2, size=8))
    assert queued.state == "queued"  # the adopted heavy job occupies the compute
    qtbot.waitUntil(lambda: h.state == "running", timeout=10000)
    h.cancel()
    assert m.wait_all(20000, handles=[h])
    assert h.state == "cancelled" and finished[0] is h
    qtbot.waitUntil(lambda: queued.state == "done", timeout=20000)  # started once the adopted one ended
    assert m.wait_all(10000)


def test_wait_all_on_some_handles_does_not_wait_for_the_others(workspace, qtbot):
    m = JobManager(workspace)
    slow = m.submit(SelfTestSpec(steps=100_000, size=8, delay=0.005))
    quick = m.submit(SelfTestSpec(steps=2, size=8))
    assert m.wait_all(20000, handles=[quick]) and quick.state == "done"
    assert not slow.is_final
    slow.cancel()
    assert m.wait_all(20000)


def test_list_runs_on_a_local_runner_lists_the_workspace_runs_with_their_checkpoints(workspace):
    import json

    rec = workspace.create_run("ddpm", {"kind": "train"}, dataset="phantoms")
    for step in (4, 2):  # listed by step, whatever the order they were written in
        d = rec.path / "checkpoints" / f"epoch-{step}"
        d.mkdir(parents=True)
        (d / "meta.json").write_text(json.dumps({"epoch": step, "step": step}))
    (rec.path / "checkpoints" / ".tmp-unfinished").mkdir()
    runs = JobManager(workspace).list_runs()
    assert [r["id"] for r in runs] == [rec.id] and runs[0]["dataset"] == "phantoms"
    assert [(c["name"], c["step"]) for c in runs[0]["checkpoints"]] == [("epoch-2", 2), ("epoch-4", 4)]


def test_a_closed_manager_starts_nothing_and_a_job_outlives_its_dropped_manager(qtbot, workspace):
    """After close() (the window's closeEvent) a submitted job ends Cancelled without running. A job
    whose manager and runner are garbage-collected while it runs is listed among the live job
    threads (the module keeps its QThread object), ends on its own and is then released."""
    import gc

    from app.engine.selftest import SelfTestSpec
    from app.workers.local import live_job_threads
    from app.workers.manager import JobManager

    m = JobManager(workspace)
    m.close()
    h = m.submit(SelfTestSpec(steps=5, size=8))
    assert h.state == "cancelled" and h.started_at is None
    assert any("window is closing" in text for _level, text in h.logs)

    m2 = JobManager(workspace)
    running = m2.submit(SelfTestSpec(steps=40, size=8, delay=0.02))
    qtbot.waitUntil(lambda: running.state == "running", timeout=10000)
    threads = live_job_threads()
    assert threads
    del m2, running
    gc.collect()
    gc.collect()
    for t in threads:  # still alive (held by the module), and it ends on its own
        assert t.wait(30000)
    qtbot.waitUntil(lambda: not live_job_threads(), timeout=10000)
