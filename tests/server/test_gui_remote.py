"""The main window against a live `radsynth serve` (issue 9): reopening with a saved remote connection
reattaches to the jobs still on the server, closing leaves them running, an unreachable server
falls back to local with a status-bar message, a cut network shows "reconnecting" in the Jobs dock,
and the Generation panel lists the server's runs and generates from one of them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from app.engine import jobs as J
from app.engine.selftest import SelfTestSpec
from app.workers.remote import RemoteClient, normalise_url, save_token
from tests.server.conftest import free_port

WAIT_MS = 120000
SHOTS = Path(os.environ.get("RADSYNTH_SHOTS", "/tmp/shots"))

TINY_TRAIN = {"kind": "train", "dataset": "demo-phantoms", "base_channels": 8, "channel_mults": [1, 2],
              "num_res_blocks": 1, "attention_resolutions": [], "num_heads": 1, "epochs": 1, "batch_size": 4,
              "max_steps": 3, "warmup_steps": 0, "log_every": 1, "preview_every": 0, "checkpoint_every": 1,
              "val_every": 0, "device": "cpu", "seed": 0, "process": "ddpm", "T": 50, "image_size": 16}


@pytest.fixture
def saved_connection(tmp_path, monkeypatch):
    """QSettings (an INI file) saying Remote with this URL, the token in the user's token store."""
    from PySide6.QtCore import QSettings

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))  # the token store goes here

    def make(url: str, token: str) -> QSettings:
        s = QSettings(str(tmp_path / "settings.ini"), QSettings.IniFormat)
        s.setValue("connection/mode", "remote")
        s.setValue("connection/url", normalise_url(url))
        save_token(url, token)
        s.sync()
        return s

    return make


def open_window(tmp_path, settings, qtbot):
    from app.views.main_window import MainWindow

    w = MainWindow(tmp_path / "ws", settings=settings, error_mode="record", demo_at_first_start=False)
    qtbot.addWidget(w)
    w.resize(1280, 800)
    w.show()
    return w


def handle_of(window, job_id):
    return next((h for h in window.jobs.handles() if h.job_id == job_id), None)


def wait_on_server(client: RemoteClient, job_id: str) -> J.Event:
    last = None
    for _seq, ev in client.events(job_id, timeout=300):
        last = ev
    return last


def test_reopening_the_app_reattaches_to_server_jobs_and_closing_leaves_them_running(
        server, saved_connection, qtbot, tmp_path):
    settings = saved_connection(server.url, server.token)
    with RemoteClient(server.url, server.token) as c:  # started by an earlier session of the app
        job_id = c.submit({"kind": "selftest", "steps": 100000, "size": 8, "delay": 0.01})
    w = open_window(tmp_path, settings, qtbot)
    qtbot.waitUntil(lambda: w.connection_state == "remote", timeout=WAIT_MS)
    assert w.jobs.transport == f"remote: 127.0.0.1:{server.port}"
    rows = w.jobs_dock.jobs.rows
    qtbot.waitUntil(lambda: job_id in rows and rows[job_id].text(3) == "running", timeout=WAIT_MS)
    h = handle_of(w, job_id)
    qtbot.waitUntil(lambda: h.step > 0, timeout=WAIT_MS)
    assert h in w.jobs.active() and "following 1 job" in w.connection_message
    qtbot.waitUntil(lambda: w.jobs_label.text() == "1 running · 0 queued", timeout=5000)
    where = f"Compute: remote 127.0.0.1:{server.port} · "
    qtbot.waitUntil(lambda: w.compute_text.startswith(where) and "connecting" not in w.compute_text, timeout=WAIT_MS)
    assert w.compute_text.count("remote") == 1  # not "remote remote: host:port"
    assert ("GPU " in w.compute_text) or ("CPU" in w.compute_text and "torch" in w.compute_text)
    SHOTS.mkdir(parents=True, exist_ok=True)
    qtbot.wait(300)  # a few drains so the progress bar shows the replayed steps
    assert w.grab().save(str(SHOTS / "main_window_remote.png"))

    assert w.close()  # nothing asked about the remote job: it outlives the client
    assert not [e for e in w.errors if e["title"] == "question"]
    assert "keep running on the server" in w.connection_message
    with RemoteClient(server.url, server.token) as c:
        before = c.job(job_id)["events"]
        qtbot.waitUntil(lambda: c.job(job_id)["events"] > before, timeout=WAIT_MS)  # still making progress
        assert c.job(job_id)["state"] == "running"

    again = open_window(tmp_path, settings, qtbot)  # the next session follows it again
    qtbot.waitUntil(lambda: handle_of(again, job_id) is not None, timeout=WAIT_MS)
    h2 = handle_of(again, job_id)
    rows2 = again.jobs_dock.jobs.rows
    qtbot.waitUntil(lambda: rows2[job_id].text(3) == "running" and h2.step > h.step, timeout=WAIT_MS)
    with qtbot.waitSignal(h2.finished, timeout=WAIT_MS):  # the dock's Cancel reaches the server
        again.jobs_dock.jobs.cancel_buttons[job_id].click()
    assert h2.state == "cancelled"
    qtbot.waitUntil(lambda: rows2[job_id].text(3) == "cancelled", timeout=5000)
    with RemoteClient(server.url, server.token) as c:
        assert c.job(job_id)["state"] == "cancelled"
    again.close()


def test_an_unreachable_saved_server_leaves_a_status_message_and_jobs_run_locally(saved_connection, qtbot, tmp_path):
    settings = saved_connection(f"http://127.0.0.1:{free_port()}", "a-token-for-a-server-that-is-not-there")
    w = open_window(tmp_path, settings, qtbot)
    qtbot.waitUntil(lambda: w.connection_state == "unreachable", timeout=WAIT_MS)
    msg = w.statusBar().currentMessage()
    assert "is not reachable" in msg and "Jobs run on this computer" in msg and "127.0.0.1" in msg
    assert w.jobs.transport == "local"
    qtbot.waitUntil(lambda: w.compute_text.startswith("Compute: CPU") or "GPU" in w.compute_text, timeout=WAIT_MS)
    h = w.jobs.submit(SelfTestSpec(steps=3, size=8))  # the app keeps working, locally
    qtbot.waitUntil(lambda: h.is_final, timeout=WAIT_MS)
    assert h.state == "done" and h.transport == "local"
    w.close()


def test_a_cut_network_shows_reconnecting_in_the_jobs_dock_and_the_stream_resumes(
        server, proxy, saved_connection, qtbot, tmp_path):
    settings = saved_connection(f"http://127.0.0.1:{proxy.port}", server.token)
    w = open_window(tmp_path, settings, qtbot)
    qtbot.waitUntil(lambda: w.connection_state == "remote", timeout=WAIT_MS)
    h = w.jobs.submit(SelfTestSpec(steps=80, size=8, delay=0.05))
    scalars, states = [], []
    h.scalars.connect(lambda batch: scalars.extend(batch))
    h.state_changed.connect(states.append)
    row = w.jobs_dock.jobs.rows[h.job_id]
    qtbot.waitUntil(lambda: h.step >= 5, timeout=WAIT_MS)
    proxy.refusing = True  # the network goes down and stays down for a while
    assert proxy.drop() > 0
    qtbot.waitUntil(lambda: row.text(3) == "reconnecting", timeout=WAIT_MS)
    assert w.jobs_dock.jobs.cancel_buttons[h.job_id].isEnabled()
    assert w.jobs_dock.grab().save(str(SHOTS / "jobs_dock_reconnecting.png"))
    with RemoteClient(server.url, server.token) as c:
        assert c.job(h.job_id)["state"] in ("running", "done")  # the server goes on without its client
    proxy.refusing = False
    qtbot.waitUntil(lambda: h.is_final, timeout=WAIT_MS)
    assert h.state == "done"
    assert [s for _, s, _ in scalars] == list(range(1, 81))  # nothing lost, nothing twice
    i = states.index("reconnecting")
    assert "running" in states[i:] or states[-1] == "done"
    qtbot.waitUntil(lambda: row.text(3) == "done", timeout=5000)
    w.close()


def test_the_generation_panel_lists_the_server_runs_and_generates_from_one(
        server, saved_connection, qtbot, tmp_path):
    pytest.importorskip("app.engine.training.loop")
    pytest.importorskip("app.engine.sampling.job")
    with RemoteClient(server.url, server.token) as c:  # a tiny model trained on the server
        ev = wait_on_server(c, c.submit({"kind": "demo", "name": "demo-phantoms", "n_images": 16, "size": 32,
                                         "replace": True}))
        assert isinstance(ev, J.Done), ev
        train_id = c.submit(TINY_TRAIN)
        ev = wait_on_server(c, train_id)
        assert isinstance(ev, J.Done), ev
        run_id = ev.result["run"]
        runs = {r["id"]: r for r in c.runs()}
    server_ws = server.workspace.resolve()
    assert runs[run_id]["checkpoints"] and all(
        Path(ck["path"]).is_relative_to(server_ws) for ck in runs[run_id]["checkpoints"])

    settings = saved_connection(server.url, server.token)
    w = open_window(tmp_path, settings, qtbot)
    qtbot.waitUntil(lambda: w.connection_state == "remote", timeout=WAIT_MS)
    gen = w.show_panel("generate")
    qtbot.waitUntil(lambda: gen.runs.findData(run_id) >= 0, timeout=WAIT_MS)  # listed from the server
    assert run_id not in [r.id for r in w.workspace.runs()]  # not a local run
    gen.runs.setCurrentIndex(gen.runs.findData(run_id))
    qtbot.waitUntil(lambda: gen.ckpts.count() == len(runs[run_id]["checkpoints"]), timeout=WAIT_MS)
    assert Path(gen.ckpts.currentData()).is_relative_to(server_ws)
    gen.form.set_values({"n_images": 4, "steps": 3, "sampler": "ddim", "seed": 1, "batch_size": 4, "device": "cpu",
                         "preview_every": 1})
    qtbot.waitUntil(lambda: gen.generate_button.isEnabled(), timeout=WAIT_MS)
    gen.generate_button.click()
    h = gen.handle
    assert h.transport == f"remote: 127.0.0.1:{server.port}"
    qtbot.waitUntil(lambda: h.is_final, timeout=WAIT_MS)
    assert h.state == "done", (h.message, h.logs[-3:])
    assert h.spec.run == gen.ckpts.currentData()  # the server's checkpoint folder, sent as the run
    local = Path(h.result["files"][0])  # the output was fetched: the panel reads it like a local job's
    assert local.is_relative_to(w.workspace.root / "remote-results") and local.is_file()
    assert Path(h.result["server_files"][0]).is_relative_to(server_ws)
    qtbot.waitUntil(lambda: gen.results.count() == 4, timeout=WAIT_MS)
    assert gen.live_updates >= 1 and "images/s" in gen.status.text()
    assert gen.grab().save(str(SHOTS / "panel_generate_remote.png"))

    # the Jobs dock's Results menu names the server's files and fetches one before opening it
    from PySide6.QtCore import QObject, Slot
    from PySide6.QtGui import QDesktopServices
    from PySide6.QtWidgets import QMenu

    class Opened(QObject):
        urls: list = []

        @Slot("QUrl")
        def open(self, url):
            self.urls.append(url.toLocalFile())

    opened = Opened()
    QDesktopServices.setUrlHandler("file", opened, "open")  # no real file browser in a test
    try:
        dock = w.jobs_dock.jobs
        arts = dock.artifacts(h.job_id)
        assert arts and all(Path(p).is_relative_to(server_ws) for _, p in arts)
        menu = QMenu()
        dock._fill_results_menu(menu, h.job_id)
        fetches = [a for a in menu.actions() if a.text().endswith("(download from the server)")]
        assert len(fetches) == len(arts[:20])
        with qtbot.waitSignal(dock.open_requested, timeout=WAIT_MS) as sig:
            fetches[0].trigger()
        local = Path(sig.args[0])
        assert local.exists() and local.is_relative_to(w.workspace.root / "remote-results")
        assert opened.urls and Path(opened.urls[-1]) == local
    finally:
        QDesktopServices.unsetUrlHandler("file")
    w.close()
