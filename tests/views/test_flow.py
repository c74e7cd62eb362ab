"""The whole flow from the forms, on real jobs with tiny models: train -> checkpoints -> generate -> export."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtWidgets import QApplication

from tests.views.conftest import assert_not_blank
from tests.views.test_panels import make_dataset

SHOTS = Path(os.environ.get("RADSYNTH_SHOTS", "/tmp/shots"))

TINY = {"base_channels": 8, "channel_mults": [1, 2], "num_res_blocks": 1, "attention_resolutions": [],
        "num_heads": 1, "epochs": 2, "batch_size": 4, "max_steps": 6, "warmup_steps": 0, "log_every": 1,
        "preview_every": 1, "preview_n": 4, "preview_steps": 2, "checkpoint_every": 1, "val_every": 1,
        "val_levels": 2, "device": "cpu", "seed": 0, "process": "ddpm", "T": 50, "image_size": 16}


def _train_from_form(main_window, workspace, qtbot, **extra):
    make_dataset(workspace, n=12, size=16)
    panel = main_window.show_panel("train")
    panel.refresh_runs()
    assert panel.form is not None, panel.error
    panel.form.set_values({**TINY, "dataset": "phantoms", **extra})
    assert panel.form.is_valid, panel.form.errors
    assert panel.start_button.isEnabled()
    panel.start_button.click()
    h = panel.handle
    qtbot.waitUntil(lambda: h.is_final, timeout=120000)
    assert h.state == "done", (h.message, h.logs[-3:])
    return panel, h


def test_training_from_the_form_draws_the_loss_curve_and_lists_the_checkpoints(main_window, workspace, qtbot):
    pytest.importorskip("app.engine.training.loop")
    panel, h = _train_from_form(main_window, workspace, qtbot)
    assert panel.loss_plot.points("loss") == 6  # one point per optimizer step (log_every=1)
    assert panel.val_plot.total_points() > 0 and any(n.startswith("val_loss/sigma=") for n in panel.val_plot.series)
    legend = sorted(label.text for _sample, label in panel.val_plot.legend.items)
    assert "mean" in legend and any(t.startswith("σ = ") for t in legend)  # one curve per noise level
    assert panel.val_plot.series["val_loss"].item.getData()[0].size >= 1  # drawn (flushed at the end)
    assert panel.preview_updates >= 1 and panel.preview.image() is not None
    qtbot.waitUntil(lambda: panel.checkpoints.count() >= 1, timeout=10000)
    assert panel.runs.currentData() == h.result["run"]
    assert "finished" in panel.status.text()
    assert_not_blank(panel, SHOTS / "panel_train_after_run.png")

    # resume the run for more steps: the loss curve continues and a newer checkpoint appears
    n_ck = panel.checkpoints.count()
    panel.form.set_values({"max_steps": 8, "epochs": 4})
    assert panel.resume_button.isEnabled()
    h2 = panel.resume()
    qtbot.waitUntil(lambda: h2.is_final, timeout=120000)
    assert h2.state == "done", h2.message
    assert h2.result["run"] == h.result["run"] and h2.result["steps"] == 8
    qtbot.waitUntil(lambda: panel.checkpoints.count() > n_ck, timeout=10000)


def test_a_preset_fills_the_training_form(main_window, qtbot):
    training = pytest.importorskip("app.engine.training.loop")
    names = [p["name"] for p in training.list_presets()]
    if "cpu-quickstart" not in names:
        pytest.skip(f"preset cpu-quickstart not in this build (presets: {names})")
    panel = main_window.panels["train"]
    panel.apply_preset("cpu-quickstart")
    expected = training.load_preset("cpu-quickstart")
    values = panel.form.values()
    for k, v in expected.items():
        if k in panel.form.editors:
            assert values[k] == v, k


def test_an_invalid_training_field_shows_its_message_and_disables_start(main_window, qtbot):
    pytest.importorskip("app.engine.training.loop")
    panel = main_window.panels["train"]
    panel.form.editors["lr"].widget.setText("0")
    assert "greater than 0" in panel.form.errors["lr"]
    assert not panel.start_button.isEnabled()
    panel.form.editors["lr"].widget.setText("2e-4")
    assert "lr" not in panel.form.errors


def test_generating_from_the_trained_checkpoint_fills_the_grid_and_exports_valid_files(
        main_window, workspace, qtbot, tmp_path):
    pytest.importorskip("app.engine.training.loop")
    pytest.importorskip("app.engine.sampling.job")
    _train_from_form(main_window, workspace, qtbot)
    gen = main_window.show_panel("generate")
    gen.refresh_runs()
    qtbot.waitUntil(lambda: gen.ckpts.count() >= 1, timeout=10000)
    values = {}
    for name, v in (("n_images", 4), ("n", 4), ("steps", 3), ("sampler", "ddim"), ("seed", 1), ("batch_size", 4),
                    ("device", "cpu")):
        if name in gen.form.editors:
            values[name] = v
    gen.form.set_values(values)
    # the checkpoint list reloads on a worker after training ends; the button follows it
    qtbot.waitUntil(lambda: gen.ckpts.count() >= 1 and gen.generate_button.isEnabled(), timeout=20000)
    assert gen.form.errors == {}
    # trained without classes: the class picker says so and guidance is off
    assert [gen.class_combo.itemText(i) for i in range(gen.class_combo.count())] == ["unconditional"]
    assert not gen.class_combo.isEnabled() and not gen.form.editors["guidance"].widget.isEnabled()
    gen.generate_button.click()
    h = gen.handle
    qtbot.waitUntil(lambda: h.is_final, timeout=120000)
    assert h.state == "done", (h.message, h.logs[-3:])
    qtbot.waitUntil(lambda: gen.results.count() == 4, timeout=10000)
    assert gen.live_updates >= 1  # the denoising estimate was shown while it ran
    assert "images/s" in gen.status.text()

    gen.results.item(0).setSelected(True)
    gen.results.item(2).setSelected(True)
    assert gen.view_stack.currentIndex() == 1  # two selected: side by side, linked
    gen.compare_a.set_levels(-0.5, 0.5)
    assert gen.compare_b.levels() == (-0.5, 0.5)
    assert_not_blank(gen, SHOTS / "panel_generate_after_run.png")

    pydicom = pytest.importorskip("pydicom")
    out = tmp_path / "dicom-out"
    gen.export(out, "dicom")
    qtbot.waitUntil(lambda: bool(gen.last_export) or gen.export_error is not None, timeout=30000)
    assert gen.export_error is None
    assert len(gen.last_export) == 2  # only the two selected images
    ds = pydicom.dcmread(gen.last_export[0])
    assert ds.pixel_array.shape == (16, 16) and "SYNTHETIC" in str(ds.SeriesDescription).upper()

    gen.results.clearSelection()
    out_png = tmp_path / "png-out"
    gen.last_export = []
    gen.export(out_png, "png")
    qtbot.waitUntil(lambda: bool(gen.last_export), timeout=30000)
    from PIL import Image

    assert len(gen.last_export) == 4
    assert np.asarray(Image.open(gen.last_export[0])).shape == (16, 16)


def test_a_class_conditional_run_offers_its_class_names_and_guidance_in_the_generation_panel(
        main_window, workspace, qtbot):
    pytest.importorskip("app.engine.training.loop")
    pytest.importorskip("app.engine.sampling.job")
    _train_from_form(main_window, workspace, qtbot, class_conditional=True, max_steps=2, epochs=1,
                     preview_every=0, val_every=0)
    gen = main_window.show_panel("generate")
    gen.refresh_runs()
    qtbot.waitUntil(lambda: gen.ckpts.count() >= 1 and gen.class_combo.count() > 1, timeout=20000)
    items = [gen.class_combo.itemText(i) for i in range(gen.class_combo.count())]
    assert items == ["all classes in turn", "normal", "lesion", "no class (null label)"]  # the dataset's labels
    guidance = gen.form.editors["guidance"].widget
    assert gen.class_combo.isEnabled() and guidance.isEnabled()
    gen.class_combo.setCurrentIndex(gen.class_combo.findText("no class (null label)"))
    assert not guidance.isEnabled()  # guidance needs a class
    gen.class_combo.setCurrentIndex(gen.class_combo.findText("lesion"))
    assert guidance.isEnabled()
    gen.form.set_values({"n_images": 2, "steps": 2, "sampler": "ddim", "batch_size": 2, "device": "cpu",
                         "guidance": 1.5, "preview_every": 0})
    spec = gen.build_spec()
    assert spec.class_label == [1] and spec.guidance == 1.5
    gen.class_combo.setCurrentIndex(0)
    assert gen.build_spec().class_label == [0, 1]  # one per image, classes in turn
    gen.class_combo.setCurrentIndex(gen.class_combo.findText("lesion"))
    h = gen.generate()
    qtbot.waitUntil(lambda: h.is_final, timeout=120000)
    assert h.state == "done", (h.message, h.logs[-3:])
    qtbot.waitUntil(lambda: gen.results.count() == 2, timeout=10000)
    assert gen.export_button.isEnabled()  # the results can be exported at once
    assert_not_blank(gen, SHOTS / "panel_generate_conditional.png")


def test_a_run_training_elsewhere_is_drawn_from_its_history_and_followed_until_it_ends(main_window, workspace,
                                                                                        qtbot):
    """A run trained by another process (radsynth train in a terminal): selecting it draws its logged curves,
    new lines appear as they are written, and following stops when the run is done. A run selected later
    is drawn from its history too."""
    from app.engine.run_history import ScalarLog

    panel = main_window.show_panel("train")
    panel._follow.setInterval(50)
    rec = workspace.create_run("ddpm", {"dataset": "x"}, dataset="x")
    workspace.update_run(rec.id, state="running")
    log = ScalarLog(rec.path)
    for step in (1, 2, 3):
        log.write("loss", step, 1.0 / step)
    log.write("val_loss/sigma=0.5", 3, 0.4)
    log.write("val_loss", 3, 0.5)
    panel.refresh_runs(select=rec.id)
    qtbot.waitUntil(lambda: panel.loss_plot.points("loss") == 3, timeout=10000)
    assert panel.val_plot.points("val_loss") == 1 and panel.val_plot.points("val_loss/sigma=0.5") == 1
    assert "another process" in panel.status.text() and panel._follow.isActive()
    assert panel._elsewhere and not panel.resume_button.isEnabled()  # not resumed here while it trains there
    log.write("loss", 4, 0.2)
    log.write("loss", 5, 0.1)
    qtbot.waitUntil(lambda: panel.loss_plot.points("loss") == 5, timeout=10000)
    assert "step 5" in panel.status.text()
    log.write("loss", 6, 0.05)
    log.close()
    workspace.update_run(rec.id, state="done")
    qtbot.waitUntil(lambda: not panel._follow.isActive(), timeout=10000)
    assert panel.loss_plot.points("loss") == 6 and "(finished)" in panel.runs.currentText()
    assert "(finished): its curves up to step 6" in panel.status.text() and not panel._elsewhere
    assert_not_blank(panel, SHOTS / "panel_train_followed_run.png")

    # a run left "running" by a process that crashed: its history stopped growing long ago
    stale = workspace.create_run("ddpm", {"dataset": "x"}, dataset="x")
    workspace.update_run(stale.id, state="running")
    ScalarLog(stale.path).write("loss", 1, 1.0)
    hour_ago = time.time() - 3600
    os.utime(stale.path / "scalars.jsonl", (hour_ago, hour_ago))
    panel.refresh_runs(select=stale.id)
    qtbot.waitUntil(lambda: "may have stopped" in panel.status.text(), timeout=10000)
    assert "60 min" in panel.status.text()

    # another finished run: its own curves replace these; one without a history says so
    other = workspace.create_run("ddpm", {"dataset": "x"}, dataset="x")
    workspace.update_run(other.id, state="done")
    panel.refresh_runs(select=other.id)
    qtbot.waitUntil(lambda: "no loss history" in panel.status.text(), timeout=10000)
    assert panel.loss_plot.total_points() == 0 and not panel._follow.isActive()


def test_the_whole_flow_from_the_widgets_demo_train_generate_audit_and_a_reader_study(qtbot, workspace, themed):
    """As a new user on the demo workspace: train one short epoch with the cpu-quickstart preset (32x32 on the
    64x64 demo set), generate, audit against the training set (no size error: compared at 64x64), pick the
    generated set (listed with its badge, not offered as real) in a new reader study, answer three cases by key
    press, read the statistics. Widgets only."""
    pytest.importorskip("app.engine.training.loop")
    from PySide6.QtCore import Qt

    from app.views.main_window import MainWindow
    from app.views.widgets.set_picker import SYNTHETIC_BADGE

    win = MainWindow(workspace=workspace.root, error_mode="record", demo_at_first_start=True)
    qtbot.addWidget(win)
    win.resize(1366, 768)
    win.show()
    try:
        qtbot.waitUntil(lambda: workspace.has_dataset("demo-phantoms"), timeout=60000)
        qtbot.waitUntil(lambda: win.demo_handle is None or win.demo_handle.is_final, timeout=60000)

        train = win.show_panel("train")
        train.refresh_runs()
        train.apply_preset("cpu-quickstart")
        train.form.set_values({"epochs": 1, "max_steps": 2, "batch_size": 8, "preview_every": 0, "val_every": 0,
                               "warmup_steps": 0, "device": "cpu", "seed": 0})
        assert train.form.values()["dataset"] == "demo-phantoms" and train.form.values()["image_size"] == 32
        assert train.form.is_valid, train.form.errors
        qtbot.mouseClick(train.start_button, Qt.LeftButton)
        th = train.handle
        qtbot.waitUntil(lambda: th.is_final, timeout=120000)
        assert th.state == "done", (th.message, th.logs[-3:])

        gen = win.show_panel("generate")
        gen.refresh_runs()
        qtbot.waitUntil(lambda: gen.ckpts.count() >= 1 and gen.generate_button.isEnabled(), timeout=20000)
        gen.form.set_values({"n_images": 6, "steps": 3, "sampler": "ddim", "batch_size": 6, "device": "cpu",
                             "preview_every": 0})
        qtbot.mouseClick(gen.generate_button, Qt.LeftButton)
        gh = gen.handle
        qtbot.waitUntil(lambda: gh.is_final, timeout=120000)
        assert gh.state == "done", (gh.message, gh.logs[-3:])
        samples = gh.result["dataset"]
        assert workspace.dataset(samples).synthetic

        audit = win.show_panel("audit")
        c = audit.controls
        qtbot.waitUntil(lambda: c.generated.findData(samples) >= 0, timeout=10000)
        assert SYNTHETIC_BADGE in c.generated.itemText(c.generated.findData(samples))
        c.generated.setCurrentIndex(c.generated.findData(samples))
        c.train.setCurrentIndex(c.train.findData("demo-phantoms"))
        c.audit_extractor.setCurrentText("none")
        assert c.compare_size() is None and c.size.text() == "auto"
        qtbot.waitUntil(lambda: c.audit_button.isEnabled(), timeout=10000)
        qtbot.mouseClick(c.audit_button, Qt.LeftButton)
        ah = audit.audit.audit_handle
        qtbot.waitUntil(lambda: ah.is_final, timeout=120000)
        assert ah.state == "done", (ah.message, ah.logs[-3:])
        assert ah.result["image_size"]["size"] == 64 and ah.result["image_size"]["resampled"] == ["generated"]
        qtbot.waitUntil(lambda: audit.verdict.text().startswith(("PASSED", "FAILED")), timeout=30000)
        assert "Compared at 64x64" in c.status.text()
        _shots(audit, "flow_audit")

        study = win.show_panel("study")
        study.refresh()
        assert not any(samples in t for t in study.real_picker.labels())  # never offered as real cases
        assert f"{samples}   {SYNTHETIC_BADGE}" in study.syn_picker.labels()
        study.real_picker.check("demo-phantoms")
        study.syn_picker.check(samples)
        study.readers_edit.setText("ann")
        study.form.set_values({"name": "flow-study", "n_cases": 6, "size": 64, "seed": 0, "time_limit_s": 0})
        assert study.design_spec() is not None, study.design_error.text()
        _shots(study, "flow_study_design")
        qtbot.mouseClick(study.b_create, Qt.LeftButton)
        qtbot.waitUntil(lambda: study.study_list.count() == 1, timeout=20000)
        reader = study.start_reading(full_screen=False)
        qtbot.waitExposed(reader)
        for key in (Qt.Key_S, Qt.Key_R, Qt.Key_S):
            qtbot.keyClick(reader, key)
            qtbot.keyClick(reader, Qt.Key_4)
        reader.close()
        qtbot.waitUntil(lambda: study.reader_table.item(0, 1).text() == "3 / 6", timeout=10000)
        shown: list[dict] = []
        study.stats_shown.connect(shown.append)
        study.refresh_results()  # statistics of an earlier refresh may still arrive first
        qtbot.waitUntil(lambda: bool(shown) and shown[-1]["pooled"]["n"] == 3, timeout=20000)
        assert study.stats_table.item(study.stats_table.rowCount() - 1, 0).text() == "pooled"
        study.tabs.setCurrentWidget(study.results_tab)
        _shots(study, "flow_study_results")
        assert win.errors == [], win.errors
    finally:
        win.jobs.cancel_all()
        win.jobs.wait_all(30000)
        win.close()


def _shots(panel, stem: str) -> None:
    """The panel at a laptop's and a desktop's window size (looked at by hand)."""
    win = panel.window()
    size = win.size()
    for w, h in ((1366, 768), (1920, 1080)):
        win.resize(w, h)
        QApplication.processEvents()
        assert_not_blank(win, SHOTS / f"{stem}_{w}x{h}.png")
    win.resize(size)
