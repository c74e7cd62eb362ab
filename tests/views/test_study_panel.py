"""The Reader Study panel: design a study from the form, read it, see the statistics and plots, export."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import Qt

from app.engine import study as S
from tests.conftest import shared_file

SHOTS = Path("/tmp/shots")


@pytest.fixture
def image_sets(tmp_path):
    z = np.load(shared_file("pneumoniamnist_balanced_28.npz"))
    real = z["train_images"][:60].astype(np.float32) / 127.5 - 1
    syn = np.clip(z["test_images"][:60].astype(np.float32) / 255 * 1.4 - 0.8, -1, 1)
    paths = {"real": tmp_path / "real.npz", "synthetic": tmp_path / "synthetic.npz"}
    np.savez(paths["real"], images=real)
    np.savez(paths["synthetic"], images=syn)
    return {k: str(v) for k, v in paths.items()}


@pytest.fixture
def panel(qtbot, workspace):
    from app.views.context import AppContext
    from app.views.study_panel import StudyPanel
    from app.workers.manager import JobManager

    from app.views.theme import apply_dark_theme

    apply_dark_theme(qtbot_app())  # the look users get, for the screenshots
    jobs = JobManager(workspace)
    p = StudyPanel(AppContext(workspace=workspace, jobs=jobs))
    qtbot.addWidget(p)
    p.resize(1280, 820)
    p.show()
    qtbot.waitExposed(p)
    yield p
    from app.workers.manager import wait_for_calls

    for h in jobs.handles():
        qtbot.waitUntil(lambda h=h: h.is_final, timeout=20000)
    wait_for_calls()


def qtbot_app():
    from PySide6.QtWidgets import QApplication

    return QApplication.instance()


def assert_not_blank(widget, name):
    from PIL import Image

    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / name
    assert widget.grab().save(str(path))
    arr = np.asarray(Image.open(path).convert("L"), dtype=np.float64)
    assert arr.std() > 10 and len(np.unique(arr)) > 32, f"{path} looks blank"


def read_all(session, truth, wrong_every=4):
    for i, cid in enumerate(session.order):
        right = truth[cid]
        other = {"real": "synthetic", "synthetic": "real"}[right]
        session.record(i, answer=other if i % wrong_every == 0 else right, confidence=1 + i % 5, seconds=2.0 + i % 3)


def test_the_panel_designs_a_study_and_a_reader_reads_it_from_the_panel(qtbot, panel, workspace, image_sets):
    assert panel.objectName() == "study"
    panel.real_picker.add_ref(image_sets["real"])
    panel.syn_picker.add_ref(image_sets["synthetic"])
    panel.readers_edit.setText("ann, bob")
    panel.form.set_values({"name": "pneumo-turing", "n_cases": 12, "size": 64, "seed": 1, "time_limit_s": 0})
    assert panel.design_spec() is not None
    assert_not_blank(panel, "study_panel_design.png")
    qtbot.mouseClick(panel.b_create, Qt.LeftButton)
    qtbot.waitUntil(lambda: panel.study_list.count() == 1, timeout=20000)
    st = S.get_study(workspace, "pneumo-turing")
    assert st.spec["real"] == [image_sets["real"]] and st.n_cases == 12
    assert panel.reader_table.rowCount() == 2 and panel.selected_reader() == "ann"
    win = panel.start_reading(full_screen=False)
    qtbot.waitExposed(win)
    for _ in range(5):
        qtbot.keyClick(win, Qt.Key_S)
        qtbot.keyClick(win, Qt.Key_3)
    win.close()
    qtbot.waitUntil(lambda: panel.reader_table.item(0, 1).text() == "5 / 12", timeout=5000)
    assert panel.reader_table.item(0, 2).text() == "in progress"
    assert_not_blank(panel, "study_panel_readers.png")


def test_a_new_design_shows_no_errors_until_the_user_acts(panel, qtbot):
    form = panel.form
    assert not form.is_valid  # nothing chosen yet: not creatable, but not shouted about either
    assert form.spec_error.isHidden() and all(ed.error.isHidden() for ed in form.editors.values())
    qtbot.keyClicks(form.editors["name"].widget, "bad name!")  # typed by hand: its error shows at once
    assert form.editors["name"].error.isVisibleTo(panel) and "not valid" in form.editors["name"].error.text()


def test_a_design_without_sets_says_what_is_missing_in_plain_words(panel):
    panel.form.set_values({"name": "incomplete"})
    assert panel.design_spec() is None
    text = panel.form.spec_error.text()  # under the form, as the design changes
    assert "Tick at least one real set" in text and "Tick at least one synthetic set" in text
    assert panel.design_error.text() == "Not created: complete what is marked above first."
    for shown in (text, panel.design_error.text()):
        assert "validation" not in shown and "List should" not in shown
    panel.real_picker.add_ref("elsewhere.npz")
    assert panel.design_spec() is None
    text = panel.form.spec_error.text()
    assert "real set" not in text and "synthetic set" in text
    panel.resize(1366, 768)
    assert_not_blank(panel, "study_design_missing_1366x768.png")


def _ingest_chest(jobs, qtbot, tmp_path, name="chest"):
    """A real import job (through the panel's job manager) of 60 chest X-rays, 10 % held out for test."""
    from app.engine.data.ingest import IngestSpec

    z = np.load(shared_file("pneumoniamnist_balanced_28.npz"))
    src = tmp_path / f"{name}.npz"
    np.savez(src, images=z["train_images"][:60])
    h = jobs.submit(IngestSpec(source=str(src), name=name))
    qtbot.waitUntil(lambda: h.is_final, timeout=30000)
    assert h.state == "done", h.message


def test_the_dataset_lists_follow_imports_and_real_cases_come_from_the_held_out_split(
        qtbot, panel, workspace, image_sets, tmp_path):
    from app.engine.data.cache import ImageDataset

    assert "chest" not in panel.real_picker.labels()
    _ingest_chest(panel.ctx.jobs, qtbot, tmp_path)  # the panel stays on screen: no other panel is visited
    qtbot.waitUntil(lambda: "chest" in panel.real_picker.labels(), timeout=5000)
    assert "chest" in panel.syn_picker.labels()
    held_out = set(ImageDataset.from_workspace(workspace, "chest").indices("test").tolist())
    assert 0 < len(held_out) < 60
    panel.real_picker.check("chest")
    panel.syn_picker.add_ref(image_sets["synthetic"])
    panel.form.set_values({"name": "held-out", "n_cases": 2 * len(held_out), "size": 32, "seed": 1})
    assert panel.form.values()["real_split"] == "test"  # the default
    qtbot.mouseClick(panel.b_create, Qt.LeftButton)
    qtbot.waitUntil(lambda: panel.study_list.count() == 1, timeout=20000)
    st = S.get_study(workspace, "held-out")
    rows = workspace.query("SELECT origin FROM study_cases WHERE study_id = ?", (st.id,))
    real = [o for r in rows for o in json.loads(r["origin"]) if o["truth"] == "real"]
    assert {o["set"] for o in real} == {"chest:test"} and {o["index"] for o in real} == held_out
    assert "training images" not in panel.verdict.text()
    # training images only by explicit choice, and the results say so
    panel.form.set_values({"name": "with-training", "real_split": "train", "n_cases": 20})
    qtbot.mouseClick(panel.b_create, Qt.LeftButton)
    qtbot.waitUntil(lambda: panel.study_list.count() == 2, timeout=20000)
    panel.select_study("with-training")
    qtbot.waitUntil(lambda: "include training images (chest:train)" in panel.verdict.text(), timeout=10000)
    assert "chest:train" in panel.summary.text()
    for tab, name in ((panel.design_tab, "design"), (panel.results_tab, "results")):
        panel.tabs.setCurrentWidget(tab)
        for size in ((1366, 768), (1920, 1080)):
            panel.resize(*size)
            qtbot.wait(50)
            assert_not_blank(panel, f"study_{name}_{size[0]}x{size[1]}.png")


def test_the_results_view_shows_the_statistics_the_plots_and_exports_csv_and_json(qtbot, panel, workspace,
                                                                                  image_sets, tmp_path):
    st = S.create_study(workspace, S.StudyCreateSpec(name="results", real=[image_sets["real"]],
                                                     synthetic=[image_sets["synthetic"]], n_cases=24, size=48,
                                                     readers=["ann", "bob", "cy"]))
    truth = {r["case_id"]: r["truth"] for r in workspace.query("SELECT case_id, truth FROM study_cases")}
    for rid, every in (("ann", 4), ("bob", 2), ("cy", 3)):
        read_all(S.ReadingSession(workspace, st.id, rid), truth, every)
    with qtbot.waitSignal(panel.stats_shown, timeout=20000) as sig:
        panel.refresh()
    stats = sig.args[0]
    assert stats == json.loads(json.dumps(S.study_stats(workspace, st.id)))
    assert panel.stats_table.rowCount() == 4
    assert panel.stats_table.item(3, 0).text() == "pooled"
    assert panel.stats_table.item(3, 2).text() == f"{stats['pooled']['accuracy']:.3f}"
    assert ("goal met" in panel.verdict.text()) == stats["verdict"]["passed"]
    v = stats["verdict"]  # 72 answers: the verdict is read from the pooled accuracy's 95 % interval
    assert v["rule"] == "upper_ci" and f"{v['ci'][0]:.3f}-{v['ci'][1]:.3f}" in panel.verdict.text()
    assert len(panel.roc_plot.listDataItems()) == 1 + 3 + 1  # chance line, readers, pooled
    assert "κ" in panel.kappa_label.text() and panel.case_table.rowCount() == 10
    panel.tabs.setCurrentWidget(panel.results_tab)
    assert_not_blank(panel, "study_panel_results.png")
    panel.export_results(tmp_path / "out")
    qtbot.waitUntil(lambda: (tmp_path / "out" / "answers.csv").exists(), timeout=20000)
    assert json.loads((tmp_path / "out" / "stats.json").read_text())["pooled"]["n"] == 72
    panel.export_package(tmp_path / "pkg.h5")
    qtbot.waitUntil(lambda: (tmp_path / "pkg.h5").exists(), timeout=20000)
    assert S.read_blinded(tmp_path / "pkg.h5")[0].shape == (24, 1, 48, 48)
