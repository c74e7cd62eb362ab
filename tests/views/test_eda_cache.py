"""Datasets panel: EDA statistics kept across sessions (real workspace, real eda job, real event loop).

A second main window on the same workspace shows the stored statistics without an eda job; a
changed dataset, a corrupt stored result or the Statistics button run the job again."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.views.conftest import assert_not_blank

SHOTS = Path(os.environ.get("RADSYNTH_SHOTS", "/tmp/shots"))
NAME = "demo-phantoms"

pytest.importorskip("app.engine.data.eda")


@pytest.fixture
def demo(workspace):
    from app.engine.data.demo import DemoSpec, write_demo_dataset

    return write_demo_dataset(workspace, DemoSpec(n_images=24, size=32, seed=0))


def _window(workspace, qtbot):
    from app.views.main_window import MainWindow

    win = MainWindow(workspace=workspace.root, error_mode="record", demo_at_first_start=False)
    qtbot.addWidget(win)
    win.resize(1300, 820)
    win.show()
    return win


def _close(win):
    from app.workers.manager import wait_for_calls

    wait_for_calls(10)
    win.jobs.cancel_all()
    win.jobs.wait_all(30000)
    win.close()


def _eda_jobs(win) -> list:
    return [h for h in win.jobs.handles() if h.kind == "eda"]


def _index(workspace) -> Path:
    return workspace.dataset(NAME).path / "eda" / "stored.json"


def _first_session(workspace, qtbot) -> dict:
    """A window that computes the statistics (one eda job) and stores them; closed again."""
    win = _window(workspace, qtbot)
    panel = win.panels["datasets"]
    qtbot.waitUntil(lambda: panel.eda_sources.get(NAME) == "job", timeout=60000)
    qtbot.waitUntil(lambda: _index(workspace).exists(), timeout=10000)
    assert len(_eda_jobs(win)) == 1
    res = panel.eda_results[NAME]
    _close(win)
    return res


def _wait_shown(panel, qtbot, source: str) -> None:
    qtbot.waitUntil(lambda: panel.eda_sources.get(NAME) == source, timeout=60000)
    qtbot.waitUntil(lambda: panel.means.count() == 2, timeout=10000)


def test_a_new_session_shows_the_stored_statistics_without_an_eda_job(workspace, demo, qtbot):
    first = _first_session(workspace, qtbot)
    assert [j.kind for j in workspace.jobs()].count("eda") == 1

    win = _window(workspace, qtbot)
    panel = win.panels["datasets"]
    _wait_shown(panel, qtbot, "stored")
    qtbot.wait(300)  # nothing starts a little later either
    assert _eda_jobs(win) == []
    assert [j.kind for j in workspace.jobs()].count("eda") == 1  # the workspace's jobs table
    # the Jobs dock lists only the first session's job, from the history, as done
    first_job = workspace.jobs()[0]
    assert set(win.jobs_dock.jobs.rows) == {first_job.id} and first_job.kind == "eda"
    assert win.jobs_dock.jobs.rows[first_job.id].text(3) == "done"
    assert panel.eda_results[NAME]["class_counts"] == first["class_counts"] == {"healthy": 16, "lesion": 8}
    # the charts are drawn from the stored numbers
    assert list(panel.classes.bars.opts["height"]) == [16, 8]
    assert sum(panel.histogram.bars.opts["height"]) == 24 * 32 * 32
    assert [panel.means.item(i).text() for i in range(2)] == ["healthy", "lesion"]
    win.show_panel("datasets")
    qtbot.wait(100)
    assert_not_blank(panel, SHOTS / "datasets_after_restart.png", min_std=4.0, min_colours=8)
    _close(win)


def test_a_reimported_or_touched_dataset_gets_fresh_statistics(workspace, demo, qtbot):
    from app.engine.data.demo import DemoSpec, write_demo_dataset

    _first_session(workspace, qtbot)
    write_demo_dataset(workspace, DemoSpec(n_images=20, size=32, seed=1, replace=True))  # same name
    win = _window(workspace, qtbot)
    panel = win.panels["datasets"]
    _wait_shown(panel, qtbot, "job")
    assert len(_eda_jobs(win)) == 1
    assert panel.eda_results[NAME]["n_images"] == 20
    counts = panel.eda_results[NAME]["class_counts"]
    assert sum(counts.values()) == 20 and list(panel.classes.bars.opts["height"]) == list(counts.values())
    qtbot.waitUntil(lambda: _index(workspace).exists(), timeout=10000)
    _close(win)

    cache = workspace.dataset(NAME).cache_path  # same content, newer modification time
    st = cache.stat()
    os.utime(cache, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))
    win = _window(workspace, qtbot)
    panel = win.panels["datasets"]
    _wait_shown(panel, qtbot, "job")
    assert len(_eda_jobs(win)) == 1
    _close(win)
    assert [j.kind for j in workspace.jobs()].count("eda") == 3


@pytest.mark.parametrize("damage", ["garbage", "wrong shape"])
def test_a_corrupt_stored_result_is_computed_again(workspace, demo, qtbot, damage):
    _first_session(workspace, qtbot)
    index = _index(workspace)
    if damage == "garbage":
        index.write_bytes(b"\x00\x01 not json")
    else:  # valid JSON, right fingerprint, but numbers the panel cannot draw
        doc = json.loads(index.read_text())
        doc["result"]["histogram"]["counts"] = "x"
        index.write_text(json.dumps(doc))
    win = _window(workspace, qtbot)
    panel = win.panels["datasets"]
    _wait_shown(panel, qtbot, "job")
    assert len(_eda_jobs(win)) == 1 and not win.errors
    assert sum(panel.histogram.bars.opts["height"]) == 24 * 32 * 32
    # the fresh result was stored in place of the bad one
    qtbot.waitUntil(lambda: json.loads(index.read_text())["result"]["histogram"]["counts"] != "x", timeout=10000)
    _close(win)


def test_the_statistics_button_runs_the_job_again_and_stores_its_result(workspace, demo, qtbot):
    _first_session(workspace, qtbot)
    before = json.loads(_index(workspace).read_text())["stored"]
    win = _window(workspace, qtbot)
    panel = win.panels["datasets"]
    _wait_shown(panel, qtbot, "stored")
    panel.eda_button.click()
    _wait_shown(panel, qtbot, "job")
    assert len(_eda_jobs(win)) == 1
    qtbot.waitUntil(lambda: _index(workspace).exists()
                    and json.loads(_index(workspace).read_text())["stored"] > before, timeout=10000)
    _close(win)


def test_a_reimport_in_the_same_session_shows_the_new_contents_statistics(workspace, demo, qtbot):
    from app.engine.data.demo import DemoSpec

    win = _window(workspace, qtbot)
    panel = win.panels["datasets"]
    _wait_shown(panel, qtbot, "job")
    assert panel.eda_results[NAME]["n_images"] == 24
    h = win.jobs.submit(DemoSpec(n_images=20, size=32, seed=1, replace=True))  # same name, new content
    qtbot.waitUntil(lambda: h.is_final, timeout=60000)
    assert h.state == "done", h.message
    qtbot.waitUntil(lambda: panel.eda_results.get(NAME, {}).get("n_images") == 20, timeout=60000)
    assert len(_eda_jobs(win)) == 2 and panel.eda_sources[NAME] == "job"
    assert sum(panel.histogram.bars.opts["height"]) == 20 * 32 * 32
    qtbot.waitUntil(lambda: _index(workspace).exists(), timeout=10000)
    assert json.loads(_index(workspace).read_text())["result"]["n_images"] == 20
    _close(win)
