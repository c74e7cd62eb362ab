"""Panels on a real workspace: datasets browser, import wizard over the ingest job, every panel rendered."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from tests.views.conftest import assert_not_blank

SHOTS = Path(os.environ.get("RADSYNTH_SHOTS", "/tmp/shots"))


def make_dataset(workspace, name="phantoms", n=12, size=32, classes=("normal", "lesion")):
    """A small real dataset cache written with the engine's CacheWriter (no ingest needed)."""
    from app.engine.data.cache import CacheWriter

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:size, :size]
    st = workspace.staging_dir()
    w = CacheWriter(st / "cache.h5", size, size, list(classes))
    for i in range(n):
        r = size // 4 + int(rng.integers(0, size // 8))
        img = np.where((yy - size / 2) ** 2 + (xx - size / 2) ** 2 < r * r, 0.3, -1.0)
        img = img + 0.05 * rng.standard_normal((size, size))
        if i % 2:
            img[(yy - size / 2 + 3) ** 2 + (xx - size / 2 - 3) ** 2 < 6] = 0.95
        w.append(np.clip(img, -1, 1).astype(np.float32), i % 2, f"patient{i // 2}", f"/src/img{i}.dcm", 0, "MR")
    w.close()
    return workspace.commit_dataset(st, name, n_images=n, height=size, width=size, classes=list(classes),
                                    source="/src", meta={"modality": "MR"})


def test_the_datasets_panel_lists_a_dataset_and_shows_thumbnails_and_an_images_provenance(main_window, workspace, qtbot):
    make_dataset(workspace)
    panel = main_window.panels["datasets"]
    panel.refresh()
    assert panel.dataset_names() == ["phantoms"]
    qtbot.waitUntil(lambda: panel.thumbs.count() == 12, timeout=10000)
    panel.thumbs.clearSelection()
    panel.thumbs.item(3).setSelected(True)
    qtbot.waitUntil(lambda: panel.provenance.rowCount() > 0 and panel.provenance.item(0, 1).text() == "3",
                    timeout=10000)
    prov = {panel.provenance.item(r, 0).text(): panel.provenance.item(r, 1).text()
            for r in range(panel.provenance.rowCount())}
    assert prov["source"] == "/src/img3.dcm" and prov["class"] == "lesion" and prov["modality"] == "MR"
    assert panel.view.image().shape == (32, 32)
    assert "12 images" in panel.info.text()


def test_the_eda_job_fills_the_histogram_class_distribution_and_mean_image_per_class(main_window, workspace, qtbot):
    pytest.importorskip("app.engine.data.eda")
    make_dataset(workspace)
    panel = main_window.panels["datasets"]
    panel.refresh()
    qtbot.waitUntil(lambda: "phantoms" in panel.eda_results, timeout=30000)
    res = panel.eda_results["phantoms"]
    assert res["class_counts"] == {"normal": 6, "lesion": 6}
    qtbot.waitUntil(lambda: panel.means.count() == 2, timeout=10000)
    assert [panel.means.item(i).text() for i in range(2)] == ["normal", "lesion"]
    heights = panel.classes.bars.opts["height"]
    assert list(heights) == [6, 6]
    assert sum(panel.histogram.bars.opts["height"]) == 12 * 32 * 32  # every pixel counted once
    kinds = [h.kind for h in main_window.jobs.handles()]
    assert kinds.count("eda") == 1  # a job in the Jobs dock, once per dataset and session


def test_every_panel_renders_to_a_non_blank_png(main_window, workspace, qtbot):
    make_dataset(workspace)
    main_window.panels["datasets"].refresh()
    qtbot.waitUntil(lambda: main_window.panels["datasets"].thumbs.count() == 12, timeout=10000)
    main_window.resize(1400, 880)
    for key in ("datasets", "train", "generate", "reconstruct", "audit", "study"):
        panel = main_window.show_panel(key)
        qtbot.wait(50)
        assert_not_blank(panel, SHOTS / f"panel_{key}.png", min_std=4.0, min_colours=8)
    assert_not_blank(main_window, SHOTS / "main_window.png")


def test_the_shortcuts_and_about_dialogs_open_without_blocking(main_window, qtbot):
    from PySide6.QtGui import QAction, QKeySequence

    from app.views.dialogs import _plain

    assert _plain("&Open workspace…") == "Open workspace" and _plain("Evaluation && Audit") == "Evaluation & Audit"
    dlg = main_window.show_shortcuts()
    assert dlg.isVisible() and not dlg.isModal()
    listed = {(r[1], r[2]) for r in dlg.rows}
    # every menu action that has a shortcut is listed with its real keys, and nothing made up
    real = {(a.shortcut().toString(QKeySequence.NativeText), _plain(a.text()))
            for a in main_window.findChildren(QAction) if not a.shortcut().isEmpty()}
    assert real and real <= listed
    menu_rows = [r for r in dlg.rows if r[0] in ("File", "View", "Help")]
    assert {(r[1], r[2]) for r in menu_rows} == real
    keys = {r[1] for r in menu_rows}
    assert {"F1", "Ctrl+Shift+K", "Ctrl+1", "Ctrl+6"} <= keys
    assert dlg.table.rowCount() == len(dlg.rows)
    assert_not_blank(dlg, SHOTS / "shortcuts_dialog.png", min_std=4.0, min_colours=8)
    dlg.close()
    main_window.show_about()


def test_the_application_icon_and_the_desktop_entry(themed):
    import configparser
    import tomllib

    from app.views.app import APP_ICON, DESKTOP_ID, app_icon, create_application

    app = create_application(["test"])
    assert not app.windowIcon().isNull() and not app_icon().pixmap(64, 64).isNull()
    assert app.desktopFileName() == DESKTOP_ID
    root = Path(__file__).resolve().parents[2]
    entry = configparser.ConfigParser(interpolation=None)
    entry.optionxform = str
    entry.read(root / "packaging" / "linux" / f"{DESKTOP_ID}.desktop")
    e = entry["Desktop Entry"]
    assert e["Type"] == "Application" and e["Icon"] == APP_ICON.stem == DESKTOP_ID
    gui_scripts = tomllib.loads((root / "pyproject.toml").read_text())["project"]["gui-scripts"]
    assert e["Exec"].split()[0] in gui_scripts  # the command pip installs
    assert (root / "resources" / "icons" / f"{DESKTOP_ID}.png").exists()


# ------------------------------------------------------------------------------------------------
# Import wizard over the real ingest job (DICOM from pydicom's bundled files, PNG)
# ------------------------------------------------------------------------------------------------


def _dicom_folder(tmp_path) -> Path:
    pydicom = pytest.importorskip("pydicom")
    from pydicom.data import get_testdata_file

    folder = tmp_path / "dicom"
    folder.mkdir()
    n = 0
    for name in ("CT_small.dcm", "MR_small.dcm", "rtplan.dcm"):  # rtplan has no pixels: skipped
        p = get_testdata_file(name)
        if p is None:
            continue
        ds = pydicom.dcmread(p)
        ds.save_as(folder / name)
        n += 1
    return folder


def _run_wizard(panel, qtbot, source: Path, name: str):
    wiz = panel.open_import_wizard(str(source))
    wiz.source_page.name.setText(name)
    qtbot.waitUntil(lambda: "…" not in wiz.source_page.detected.text(), timeout=10000)
    assert wiz.source_page.isComplete()
    wiz.next()  # -> options
    assert wiz.options_page.isComplete(), wiz.options_page.form.errors
    return wiz


def test_importing_a_folder_of_dicom_through_the_wizard_shows_kept_and_skipped_and_the_dataset(
        main_window, tmp_path, qtbot):
    pytest.importorskip("app.engine.data.ingest")
    folder = _dicom_folder(tmp_path)
    panel = main_window.panels["datasets"]
    wiz = _run_wizard(panel, qtbot, folder, "dicom-test")
    assert "dicom" in wiz.source_page.detected.text().lower()
    wiz.next()  # -> run: starts the ingest job
    h = wiz.run_page.handle
    qtbot.waitUntil(lambda: h.is_final, timeout=60000)
    assert h.state == "done", h.message
    qtbot.waitUntil(lambda: "dicom-test" in panel.dataset_names(), timeout=5000)
    rec = main_window.workspace.dataset("dicom-test")
    assert rec.n_images >= 2
    assert wiz.run_page.summary.rowCount() > 0
    assert "kept" in wiz.run_page.status.text()
    assert_not_blank(wiz, SHOTS / "import_wizard.png", min_std=4.0, min_colours=8)


def test_importing_png_files_through_the_wizard_registers_them_all(main_window, tmp_path, qtbot):
    pytest.importorskip("app.engine.data.ingest")
    from PIL import Image

    folder = tmp_path / "pngs"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for i in range(6):
        Image.fromarray(rng.integers(0, 255, (40, 48), dtype=np.uint8)).save(folder / f"x{i}.png")
    (folder / "notes.txt").write_text("not an image")
    panel = main_window.panels["datasets"]
    wiz = _run_wizard(panel, qtbot, folder, "png-test")
    wiz.next()
    h = wiz.run_page.handle
    qtbot.waitUntil(lambda: h.is_final, timeout=60000)
    assert h.state == "done", h.message
    assert main_window.workspace.dataset("png-test").n_images == 6


# ------------------------------------------------------------------------------------------------
# SpecForm bounds and the live curve plot
# ------------------------------------------------------------------------------------------------


def test_spec_form_keeps_float_bounds_as_floats_and_strict_bounds_strict(qtbot):
    from pydantic import Field
    from PySide6.QtWidgets import QDoubleSpinBox, QLineEdit, QSpinBox

    from app.engine.jobs import Spec
    from app.views.widgets.spec_form import SpecForm

    class BoundSpec(Spec):
        snr: float = Field(0.16, gt=0, le=10)  # an int-typed strict bound on a float
        frac: float = Field(0.08, gt=0.0, lt=1.0)
        count: int = Field(3, gt=0, lt=10)  # strict bounds of an int: 1 .. 9
        seed: int = Field(0, ge=0, le=2**63 - 1)  # beyond a 32-bit spin box

    form = SpecForm(BoundSpec)
    qtbot.addWidget(form)
    snr, frac, count = (form.editors[n].widget for n in ("snr", "frac", "count"))
    assert isinstance(snr, QDoubleSpinBox) and isinstance(frac, QDoubleSpinBox) and isinstance(count, QSpinBox)
    assert 0.0 < snr.minimum() < 1e-3 and snr.maximum() == 10.0  # 0 itself is not offered
    assert 0.0 < frac.minimum() < 1e-3 and 0.999 < frac.maximum() < 1.0
    assert (count.minimum(), count.maximum()) == (1, 9)
    snr.setValue(0.0)  # the spin box stops inside the bound: the form stays valid
    assert snr.value() > 0 and form.is_valid and form.spec().snr == snr.value()
    assert "0 < x ≤ 10" in snr.toolTip()
    seed = form.editors["seed"].widget
    assert isinstance(seed, QLineEdit)  # a 64-bit seed is never clamped to 2**31 - 1
    form.set_values({"seed": 2**40 + 7})
    assert form.spec().seed == 2**40 + 7
    seed.setText("-1")
    err = form.editors["seed"].error
    assert not form.is_valid and "greater than or equal to 0" in err.text() and not err.isHidden()


def test_curve_plot_stores_every_point_at_once_and_redraws_at_most_a_few_times_a_second(qtbot):
    from app.views.widgets.plots import CurvePlot, nice_ceil

    p = CurvePlot(accept=lambda n: n == "loss", log_y=True, max_hz=4.0)
    qtbot.addWidget(p)
    p.show()
    for i in range(1, 41):  # 40 batches arriving back to back
        p.add_points([("loss", i, 1.0 / i), ("lr", i, 1e-3)])
    assert p.points("loss") == 40 and "lr" not in p.series
    assert p.updates == 0  # nothing drawn yet: the redraw waits for its timer
    qtbot.waitUntil(lambda: p.updates == 1, timeout=2000)
    x, y = p.series["loss"].item.getData()
    assert len(x) == 40 and y[-1] == pytest.approx(np.log10(1 / 40))  # drawn on the log axis
    assert p.plot.getPlotItem().ctrl.logYCheck.isChecked()  # log scale is the default here
    assert p.plot.getViewBox().viewRange()[0][1] >= nice_ceil(40) == 50
    p.add_points([("loss", 41, -1.0)])  # not positive: a gap on a log axis, not a crash
    p.flush()
    assert p.updates == 2 and p.points("loss") == 41
    # log axis labels only at 1, 2, 5 x 10^k (pyqtgraph's labels on every minor tick overlap)
    axis = p.plot.getAxis("left")
    assert axis.tickStrings([0.0, np.log10(2), np.log10(3), -1.0, np.log10(0.05)], 1, 1) == ["1", "2", "", "0.1", "0.05"]
    p.set_log_y(False)
    assert not p.log_box.isChecked() and p.series["loss"].item.getData()[1][-1] == -1.0


def test_a_job_next_to_the_gui_leaves_a_core_and_the_cpu_priority_to_the_gui_thread():
    import sys
    import threading

    from app.workers.local import gui_job_threads, lower_thread_priority

    assert [gui_job_threads(c) for c in (1, 2, 16)] == [1, 1, 15]
    if not sys.platform.startswith("linux"):
        pytest.skip("per-thread nice values are a Linux feature")
    got = {}

    def worker():
        tid = threading.get_native_id()
        before = os.getpriority(os.PRIO_PROCESS, tid)
        got["lowered"] = lower_thread_priority(5)
        got["delta"] = os.getpriority(os.PRIO_PROCESS, tid) - before
        got["expected"] = min(5, 19 - before)  # nice stops at 19

    main_before = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert got["lowered"] and got["delta"] == got["expected"]
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == main_before  # the GUI thread keeps its own


def test_the_training_form_has_every_field_the_issue_lists_with_messages_next_to_them(main_window):
    pytest.importorskip("app.engine.training.loop")
    panel = main_window.panels["train"]
    listed = ("dataset", "process", "base_channels", "schedule", "epochs", "batch_size", "lr", "ema_decay",
              "precision", "seed", "device", "checkpoint_every", "preview_every")
    missing = [n for n in listed if n not in panel.form.editors]
    assert not missing, missing
    ed = panel.form.editors["batch_size"]
    panel.form.set_values({"ema_decay": 0.5, "preview_every": 1})
    panel.form.editors["seed"].widget.setText("twelve")
    assert panel.form.errors["seed"] == "enter a whole number" and not panel.form.editors["seed"].error.isHidden()
    assert ed.error.isHidden() and not panel.start_button.isEnabled()
    panel.form.editors["seed"].widget.setText("12")
    assert "seed" not in panel.form.errors and panel.form.spec().seed == 12
    assert panel.loss_plot.log_box.isChecked() and panel.val_plot.log_box.isChecked()  # log scale option, on
