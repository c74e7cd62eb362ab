"""RemoteRunner + JobHandle on a real Qt event loop against the live server: the same signals as a
local job, cancel, a cut network (reconnecting, then resumed without loss or duplicates),
reattaching after the app was reopened, and the connection dialog."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from app.engine import jobs as J
from app.engine.selftest import SelfTestSpec
from app.workers.base import JobHandle
from app.workers.remote import RemoteClient, RemoteRunner

WAIT_MS = 60000


@pytest.fixture
def runner(server, qtbot):
    r = RemoteRunner(server.url, server.token, backoff_s=(0.05, 0.5))
    yield r
    r.close()


def collect(handle):
    got = {"scalars": [], "states": []}
    handle.scalars.connect(lambda batch: got["scalars"].extend(batch))
    handle.state_changed.connect(got["states"].append)
    return got


def test_a_remote_job_reaches_done_with_the_same_signals_as_a_local_one(runner, server, qtbot):
    h = JobHandle(SelfTestSpec(steps=30, size=16))
    got = collect(h)
    with qtbot.waitSignal(h.finished, timeout=WAIT_MS) as blocker:
        runner.start(h)
    assert isinstance(blocker.args[0], J.Done) and h.result["device"] == "cpu"
    assert h.transport == f"remote: 127.0.0.1:{server.port}"
    assert [s for _, s, _ in got["scalars"]] == list(range(1, 31))
    assert got["states"][0] == "running" and got["states"][-1] == "done"
    with RemoteClient(server.url, server.token) as c:
        assert c.job(h.job_id)["state"] == "done"  # the server ran it under the handle's own id


def test_a_cut_network_shows_reconnecting_and_the_stream_resumes_without_loss_or_duplicates(server, proxy, qtbot):
    seqs = []
    runner = RemoteRunner(f"http://127.0.0.1:{proxy.port}", server.token, backoff_s=(0.05, 0.5),
                          on_event=lambda jid, seq, ev: seqs.append(seq))
    try:
        h = JobHandle(SelfTestSpec(steps=60, size=8, delay=0.05))
        got = collect(h)
        runner.start(h)
        qtbot.waitUntil(lambda: len(seqs) >= 10, timeout=WAIT_MS)
        assert proxy.drop() > 0  # every connection cut mid-job
        with RemoteClient(server.url, server.token) as c:
            assert c.job(h.job_id)["state"] == "running"  # the job goes on without its client
        qtbot.waitUntil(lambda: "reconnecting" in got["states"], timeout=WAIT_MS)
        qtbot.waitUntil(lambda: h.is_final, timeout=WAIT_MS)
    finally:
        runner.close()
    assert h.state == "done"
    assert seqs == list(range(1, len(seqs) + 1))
    assert [s for _, s, _ in got["scalars"]] == list(range(1, 61))
    i = got["states"].index("reconnecting")
    assert "running" in got["states"][i:]  # back to running once the stream resumed


def test_cancelling_the_handle_cancels_the_job_on_the_server(runner, server, qtbot):
    h = JobHandle(SelfTestSpec(steps=100000, size=8, delay=0.01))
    runner.start(h)
    qtbot.waitUntil(lambda: h.state == "running" and h.step > 0, timeout=WAIT_MS)
    with qtbot.waitSignal(h.finished, timeout=WAIT_MS) as blocker:
        h.cancel()
    assert isinstance(blocker.args[0], J.Cancelled)
    with RemoteClient(server.url, server.token) as c:
        assert c.job(h.job_id)["state"] == "cancelled"


def test_reopening_the_app_reattaches_to_jobs_still_running_on_the_server(runner, server, qtbot):
    with RemoteClient(server.url, server.token) as c:  # submitted by an earlier session of the app
        job_id = c.submit({"kind": "selftest", "steps": 40, "size": 8, "delay": 0.03})
    assert job_id in [s["id"] for s in runner.server_jobs() if s["state"] in ("queued", "running")]
    handles = runner.reattach([job_id])
    assert [h.job_id for h in handles] == [job_id] and handles[0].spec.steps == 40
    got = collect(handles[0])
    qtbot.waitUntil(lambda: handles[0].is_final, timeout=WAIT_MS)
    assert handles[0].state == "done"
    assert [s for _, s, _ in got["scalars"]] == list(range(1, 41))  # replayed from the first event


def test_a_spec_the_server_refuses_fails_the_handle_with_the_field_named(runner, qtbot):
    h = JobHandle(J.parse_spec({"kind": "recon", "input": "/etc/passwd.npz"}))
    with qtbot.waitSignal(h.finished, timeout=WAIT_MS):
        runner.start(h)
    assert h.state == "failed" and "input" in h.message and "outside" in h.message


def test_a_wrong_token_fails_the_handle_with_a_clear_message(server, qtbot):
    r = RemoteRunner(server.url, "definitely-not-the-token-0000")
    try:
        h = JobHandle(SelfTestSpec(steps=2, size=8))
        with qtbot.waitSignal(h.finished, timeout=WAIT_MS):
            r.start(h)
    finally:
        r.close()
    assert h.state == "failed" and "token" in h.message


def test_the_connection_dialog_tests_the_server_and_keeps_the_token_out_of_qsettings(server, qtbot, tmp_path):
    from PySide6.QtCore import QSettings

    from app.views.connection_dialog import ConnectionDialog, runner_from_settings

    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.IniFormat)
    tokens = tmp_path / "cfg" / "tokens.json"
    dlg = ConnectionDialog(settings, token_path=tokens)
    qtbot.addWidget(dlg)
    assert dlg.mode() == "local" and not dlg.url_edit.isEnabled()
    dlg.remote_radio.setChecked(True)
    dlg.url_edit.setText(f"127.0.0.1:{server.port}")
    dlg.token_edit.setText("wrong-token-wrong-token")
    dlg.test_button.click()
    qtbot.waitUntil(lambda: dlg.last_error is not None, timeout=WAIT_MS)
    assert "401" in dlg.result_label.text()
    dlg.token_edit.setText(server.token)
    dlg.test_button.click()
    qtbot.waitUntil(lambda: dlg.last_info is not None, timeout=WAIT_MS)
    text = dlg.result_label.text()
    assert "torch" in text and ("GPU" in text or "no GPU" in text) and dlg.last_info["version"] in text
    dlg.accept()
    settings.sync()
    assert server.token not in Path(settings.fileName()).read_text()
    assert stat.S_IMODE(os.stat(tokens).st_mode) == 0o600
    runner = runner_from_settings(settings, workspace=None, token_path=tokens)
    assert isinstance(runner, RemoteRunner) and runner.token == server.token
    assert runner.transport == f"remote: 127.0.0.1:{server.port}"
    assert runner.compute_info()["torch"].startswith("2.")
    reopened = ConnectionDialog(settings, token_path=tokens)  # the next session shows the saved choice
    qtbot.addWidget(reopened)
    assert reopened.mode() == "remote" and reopened.token() == server.token


def test_the_main_window_connection_entry_sends_jobs_to_the_remote_server(server, qtbot, tmp_path, monkeypatch):
    from PySide6.QtCore import QSettings, QTimer
    from PySide6.QtWidgets import QApplication

    from app.views.main_window import MainWindow

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))  # the token file goes here
    w = MainWindow(tmp_path / "ws", settings=QSettings(str(tmp_path / "s.ini"), QSettings.IniFormat),
                   error_mode="record", demo_at_first_start=False)
    qtbot.addWidget(w)

    def fill_and_accept():
        dlg = QApplication.activeModalWidget()
        dlg.remote_radio.setChecked(True)
        dlg.url_edit.setText(server.url)
        dlg.token_edit.setText(server.token)
        dlg.buttons.accepted.emit()

    QTimer.singleShot(0, fill_and_accept)
    w.open_connection_dialog()
    assert w.jobs.transport == f"remote: 127.0.0.1:{server.port}"
    h = w.jobs.submit(SelfTestSpec(steps=3, size=8))
    qtbot.waitUntil(lambda: h.is_final, timeout=WAIT_MS)
    assert h.state == "done"
    with RemoteClient(server.url, server.token) as c:
        assert c.job(h.job_id)["state"] == "done"
    w.jobs.runner.close()
