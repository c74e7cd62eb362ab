"""The main window: panels by objectName, Jobs dock, status bar, settings, errors, closing."""

from __future__ import annotations

import pytest

from app.engine.selftest import SelfTestSpec
from app.views.main_window import PANELS, MainWindow, PlaceholderPanel


def test_the_main_window_has_the_six_panels_with_their_stable_object_names(main_window):
    assert [k for k, _, _ in PANELS] == ["datasets", "train", "generate", "reconstruct", "audit", "study"]
    for key in ("datasets", "train", "generate", "reconstruct", "audit", "study"):
        panel = main_window.show_panel(key)
        assert panel.objectName() == key
        assert main_window.stack.currentWidget().panel is panel  # each panel in its scroll area


def test_a_panel_module_that_fails_to_import_shows_its_error_instead_of_being_hidden(main_window, monkeypatch):
    import sys
    import types

    broken = types.ModuleType("app.views.audit_panel")

    def boom(ctx):
        raise RuntimeError("audit panel exploded on purpose")

    broken.AuditPanel = boom
    monkeypatch.setitem(sys.modules, "app.views.audit_panel", broken)
    panel = main_window._make_panel("audit", "Evaluation & Audit", "…")
    assert isinstance(panel, PlaceholderPanel) and panel.objectName() == "audit"
    assert "audit panel exploded on purpose" in panel.error


def test_a_job_appears_in_the_jobs_dock_and_its_row_follows_it_to_done(main_window, qtbot):
    h = main_window.jobs.submit(SelfTestSpec(steps=5, size=8))
    qtbot.waitUntil(lambda: h.state == "done", timeout=10000)
    qtbot.waitUntil(lambda: main_window.jobs_dock.jobs.rows[h.job_id].text(3) == "done", timeout=2000)
    bar = main_window.jobs_dock.jobs.bars[h.job_id]
    assert bar.value() == bar.maximum() == 5
    assert not main_window.jobs_dock.jobs.cancel_buttons[h.job_id].isEnabled()
    text = main_window.jobs_dock.jobs.details_text(h.job_id)
    assert '"kind": "selftest"' in text and '"gflops"' in text


def test_cancel_from_the_jobs_dock_ends_the_job_cancelled_while_the_ui_keeps_turning(main_window, qtbot):
    from PySide6.QtCore import QTimer

    ticks = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(1))
    timer.start(10)
    h = main_window.jobs.submit(SelfTestSpec(steps=100_000, size=32, delay=0.002))
    qtbot.waitUntil(lambda: h.state == "running", timeout=10000)
    start = len(ticks)
    qtbot.waitUntil(lambda: len(ticks) - start >= 30, timeout=20000)  # 30 GUI ticks while it ran
    assert h.state == "running" and h.step > 0
    with qtbot.waitSignal(h.finished, timeout=10000):
        main_window.jobs_dock.jobs.cancel_buttons[h.job_id].click()
    timer.stop()
    assert h.state == "cancelled"
    qtbot.waitUntil(lambda: main_window.jobs_dock.jobs.rows[h.job_id].text(3) == "cancelled", timeout=2000)
    assert main_window.workspace.jobs(5)[0].state == "cancelled"


def test_a_failing_job_records_the_error_with_its_traceback_and_the_app_keeps_working(main_window, qtbot):
    h = main_window.jobs.submit(SelfTestSpec(steps=10, size=8, fail_at=3))
    qtbot.waitUntil(lambda: main_window.last_error is not None, timeout=10000)
    err = main_window.last_error
    assert err["title"] == "The selftest job failed"
    assert err["message"] == "self-test asked to fail at step 3"
    assert "Traceback" in err["details"]
    assert main_window.jobs_dock.jobs.rows[h.job_id].text(3) == "failed"
    assert {r.id: r.state for r in main_window.workspace.jobs()}[h.job_id] == "failed"
    ok = main_window.jobs.submit(SelfTestSpec(steps=3, size=8))  # the app keeps working
    qtbot.waitUntil(lambda: ok.state == "done", timeout=10000)


def test_in_dialog_mode_a_failed_job_opens_a_non_modal_error_dialog(workspace, qtbot, themed):
    win = MainWindow(workspace=workspace.root, error_mode="dialog", demo_at_first_start=False)
    qtbot.addWidget(win)
    win.jobs.submit(SelfTestSpec(steps=10, size=8, fail_at=2))
    qtbot.waitUntil(lambda: bool(win.error_dialogs), timeout=10000)
    dlg = win.error_dialogs[-1]
    assert dlg.isVisible() and not dlg.isModal()
    assert "fail at step 2" in dlg.message.text() and "Traceback" in dlg.details.toPlainText()
    dlg.close()
    win.close()


def test_closing_with_a_running_job_cancels_it_and_waits_for_it(workspace, qtbot, themed):
    win = MainWindow(workspace=workspace.root, error_mode="record", demo_at_first_start=False)
    qtbot.addWidget(win)
    h = win.jobs.submit(SelfTestSpec(steps=100_000, size=16, delay=0.002))
    qtbot.waitUntil(lambda: h.state == "running", timeout=10000)
    assert win.close()
    assert h.state == "cancelled"
    assert any("Cancel them before quitting" in e["message"] for e in win.errors)
    assert workspace.jobs(1)[0].state == "cancelled"


def test_closing_while_only_statistics_run_cancels_them_without_a_question(workspace, qtbot, themed):
    from app.engine.data.demo import ensure_demo
    from app.engine.data.eda import EdaSpec

    ensure_demo(workspace)
    win = MainWindow(workspace=workspace.root, error_mode="record", demo_at_first_start=False)
    qtbot.addWidget(win)
    h = win.jobs.submit(EdaSpec(dataset="demo-phantoms"))
    assert not h.is_final
    assert win.close()
    assert h.is_final and not [e for e in win.errors if e["title"] == "question"]


def test_window_layout_panel_and_last_workspace_persist_in_qsettings(workspace, qtbot, themed, isolated_qsettings):
    from PySide6.QtCore import QSettings

    win = MainWindow(workspace=workspace.root, error_mode="record", demo_at_first_start=False)
    qtbot.addWidget(win)
    win.show()
    win.jobs_dock.hide()
    win.show_panel("generate")
    win.close()
    s = QSettings()
    assert s.value("workspace/last") == str(workspace.root)
    assert int(s.value("window/panel")) == 2
    assert list(isolated_qsettings.rglob("*.ini")), "settings must go to the isolated test path"
    again = MainWindow(workspace=workspace.root, error_mode="record", demo_at_first_start=False)
    qtbot.addWidget(again)
    again.show()
    assert not again.jobs_dock.isVisible() and again.nav.currentRow() == 2
    again.close()


def test_history_of_an_earlier_session_shows_in_the_jobs_dock(workspace, qtbot, themed):
    from app.engine import jobs as J

    J.run_collect(SelfTestSpec(steps=2, size=8), workspace=workspace)
    win = MainWindow(workspace=workspace.root, error_mode="record", demo_at_first_start=False)
    qtbot.addWidget(win)
    rec = workspace.jobs(1)[0]
    assert win.jobs_dock.jobs.rows[rec.id].text(3) == "done"
    win.close()


def test_the_status_bar_shows_the_compute_in_use_and_the_workspace(main_window, qtbot):
    qtbot.waitUntil(lambda: main_window.compute_text != "Compute: …", timeout=20000)
    assert main_window.compute_text.startswith("Compute: CPU") or "GPU" in main_window.compute_text
    assert str(main_window.workspace.root) in main_window.workspace_label.text()
    gpu = MainWindow.describe_compute({"device": "cuda", "name": "NVIDIA H100", "memory_gb": 79.1, "gpus": [{}]})
    assert gpu == "Compute: GPU NVIDIA H100 · 79.1 GB"


def test_the_status_bar_names_a_remote_server_once_with_its_gpu():
    info = {"device": "cuda", "name": "NVIDIA H200", "memory_gb": 139.8, "gpus": [{}, {}]}
    text = MainWindow.describe_compute(info, "remote: gpu-box:8765")
    assert text == "Compute: remote gpu-box:8765 · GPU NVIDIA H200 · 139.8 GB (+1 more)"
    cpu = MainWindow.describe_compute({"device": "cpu", "cores": 16, "torch": "2.13.0"}, "remote: 10.0.0.5:9000")
    assert cpu == "Compute: remote 10.0.0.5:9000 · CPU · 16 cores · torch 2.13.0"


def test_a_saved_connection_with_a_bad_url_falls_back_to_local_with_a_message(workspace, qtbot, themed):
    from PySide6.QtCore import QSettings

    s = QSettings()
    s.setValue("connection/mode", "remote")
    s.setValue("connection/url", "ftp://gpu-box")
    win = MainWindow(workspace=workspace.root, error_mode="record", demo_at_first_start=False)
    qtbot.addWidget(win)
    assert win.connection_state == "unreachable" and win.jobs.transport == "local"
    assert "ftp://gpu-box" in win.statusBar().currentMessage()
    assert "Jobs run on this computer" in win.statusBar().currentMessage()
    win.close()


def test_switching_workspace_rebuilds_the_panels_on_the_new_one(main_window, tmp_path):
    other = tmp_path / "other-ws"
    assert main_window.switch_workspace(other)
    assert main_window.workspace.root == other.resolve()
    assert main_window.panels["datasets"].objectName() == "datasets"
    assert str(other.resolve()) in main_window.workspace_label.text()


def test_first_start_on_an_empty_workspace_creates_the_demo_dataset_through_a_job(workspace, qtbot, themed):
    win = MainWindow(workspace=workspace.root, error_mode="record")
    qtbot.addWidget(win)
    qtbot.waitUntil(lambda: win.demo_handle is not None, timeout=5000)
    h = win.demo_handle
    assert h.kind == "demo" and h in win.jobs.handles()  # a listed job, not work on the GUI thread
    qtbot.waitUntil(lambda: h.is_final, timeout=60000)
    assert h.state == "done", h.message
    panel = win.panels["datasets"]
    qtbot.waitUntil(lambda: panel.dataset_names() == ["demo-phantoms"], timeout=5000)
    qtbot.waitUntil(lambda: panel.thumbs.count() > 0, timeout=10000)
    win.close()
    again = MainWindow(workspace=workspace.root, error_mode="record")  # not a first start any more
    qtbot.addWidget(again)
    qtbot.wait(50)
    assert again.demo_handle is None
    again.close()


def test_a_first_start_closed_before_the_demo_was_made_makes_it_at_the_next_start(workspace, qtbot, themed):
    win = MainWindow(workspace=workspace.root, error_mode="record")
    qtbot.addWidget(win)
    qtbot.waitUntil(lambda: win.demo_handle is not None, timeout=5000)
    win.close()  # statistics / demo jobs are cancelled without a question
    qtbot.waitUntil(lambda: win.demo_handle.is_final, timeout=30000)
    if win.demo_handle.state == "done":  # the machine was faster than the close: nothing to show
        pytest.skip("the demo job finished before the window closed")
    assert not workspace.datasets() and workspace.jobs(5)[0].state in ("cancelled", "failed")
    again = MainWindow(workspace=workspace.root, error_mode="record")
    qtbot.addWidget(again)
    qtbot.waitUntil(lambda: again.demo_handle is not None, timeout=5000)
    qtbot.waitUntil(lambda: again.demo_handle.is_final, timeout=60000)
    assert again.demo_handle.state == "done" and [d.name for d in workspace.datasets()] == ["demo-phantoms"]
    again.close()
    # once made, never a second demo
    from app.views.main_window import _demo_still_due

    assert not _demo_still_due(workspace)


def test_a_new_window_fits_the_work_area_of_its_screen_but_not_below_its_minimum(main_window):
    avail = main_window.screen().availableGeometry().size()  # the offscreen screen: 800x800
    size, least = main_window.size(), main_window.minimumSize()
    assert size.height() <= max(avail.height(), least.height()) and size.width() <= max(avail.width(), least.width())
    assert size.width() >= least.width() and size.height() >= least.height()
