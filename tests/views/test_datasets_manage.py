"""The Datasets panel as a researcher and a radiologist use it: rename, name the classes, delete with what
depends on it named first, split and modality counts, CT shown in Hounsfield units with window presets
and the HU under the cursor, and errors in one dialog with the traceback behind Details."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QPointF

from app.engine.jobs import Done, run
from app.engine.specs.data import IngestSpec
from tests.conftest import shared_file
from tests.views.test_panels import make_dataset

SHOTS = Path(os.environ.get("RADSYNTH_SHOTS", "/tmp/shots"))


def _ingest(workspace, source, name, **kw):
    final = run(IngestSpec(source=str(source), name=name, **kw), lambda ev: None, lambda: False, workspace=workspace)
    assert isinstance(final, Done), final
    return final.result


@pytest.fixture
def ct_dataset(workspace, tmp_path):
    vol = np.load(shared_file("ct_head_hu.npz"))["volume_hu"][48:56]
    np.savez(tmp_path / "head.npz", volume_hu=vol)
    _ingest(workspace, tmp_path / "head.npz", "head-ct", size=128)
    return vol


def _panel(main_window, name=None):
    panel = main_window.panels["datasets"]
    panel.refresh(select=name)
    return panel


def _hover(view, row, col):
    view._on_mouse_moved(view.vb.mapViewToScene(QPointF(col + 0.5, row + 0.5)))


def test_ct_in_hounsfield_units_is_shown_in_hu_with_presets_and_the_hu_under_the_cursor(main_window, workspace,
                                                                                        ct_dataset, qtbot):
    panel = _panel(main_window, "head-ct")
    qtbot.waitUntil(lambda: panel.view.image() is not None and panel.ct_bar.isVisible(), timeout=15000)
    img = panel.view.image()
    assert img.min() >= -1100 and img.max() > 300  # HU, not [-1, 1]
    assert "CT in Hounsfield units" in panel.info.text()
    for key, (c, w) in {"brain": (40, 80), "subdural": (75, 215), "bone": (400, 1800), "lung": (-600, 1500),
                        "soft": (50, 400)}.items():
        panel.ct_buttons[key].click()
        assert panel.view.levels() == pytest.approx((c - w / 2, c + w / 2))
        assert f"W {w} HU  C {c} HU" in panel.view.info.text()
    _hover(panel.view, 64, 64)
    want = float(img[64, 64])
    assert f"(r 64, c 64) = {want:.4g} HU" in panel.view.info.text()
    # the next image keeps the chosen preset
    panel.thumbs.clearSelection()
    panel.thumbs.item(3).setSelected(True)
    qtbot.waitUntil(lambda: panel.view._title.endswith("#3"), timeout=10000)
    assert panel.view.levels() == pytest.approx((50 - 200, 50 + 200))


def test_the_readout_never_shows_a_pixel_of_the_dataset_shown_before(main_window, workspace, ct_dataset, qtbot):
    make_dataset(workspace, "mr-phantoms")
    panel = _panel(main_window, "head-ct")
    qtbot.waitUntil(lambda: panel.view.image() is not None and panel.ct_bar.isVisible(), timeout=15000)
    _hover(panel.view, 10, 10)
    assert "HU" in panel.view.info.text()
    panel.list.setCurrentRow(panel.dataset_names().index("mr-phantoms"))
    assert panel.view.image() is None and "HU" not in panel.view.info.text()  # cleared at once
    qtbot.waitUntil(lambda: panel.view.image() is not None and panel.view.image().shape == (32, 32), timeout=15000)
    text = panel.view.info.text()
    assert "HU" not in text and not panel.ct_bar.isVisible()
    assert f"= {float(panel.view.image()[10, 10]):.4g}" in text  # the pixel of the image shown now


def test_the_summary_gives_split_counts_and_every_modality(main_window, workspace, tmp_path, qtbot):
    import shutil

    from pydicom.data import get_testdata_file

    src = tmp_path / "mix"
    src.mkdir()
    shutil.copy(get_testdata_file("CT_small.dcm"), src / "ct.dcm")
    shutil.copy(get_testdata_file("MR_small.dcm"), src / "mr.dcm")
    _ingest(workspace, src, "mix", size=32, min_size=8)
    panel = _panel(main_window, "mix")
    qtbot.waitUntil(lambda: panel.dataset is not None, timeout=15000)
    text = panel.info.text()
    assert "modality: CT 1 · MR 1" in text
    assert "splits: train " in text and " · val " in text and " · test " in text
    counts = panel.dataset.split_counts()
    assert f"train {counts['train']} · val {counts['val']} · test {counts['test']}" in text


def test_classes_are_named_in_the_panel_and_the_names_show_in_thumbnails_and_provenance(main_window, workspace,
                                                                                         tmp_path, qtbot):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "x.npz", images=rng.random((8, 16, 16)).astype(np.float32), labels=np.arange(8) % 2)
    _ingest(workspace, tmp_path / "x.npz", "xr", size=16)
    panel = _panel(main_window, "xr")
    qtbot.waitUntil(lambda: panel.thumbs.count() == 8, timeout=15000)
    assert "classes: 0 (4), 1 (4)" in panel.info.text()
    assert panel.set_class_names(["normal", "pneumonia"])
    assert workspace.dataset("xr").classes == ["normal", "pneumonia"]
    qtbot.waitUntil(lambda: panel.thumbs.count() == 8 and "pneumonia" in panel.thumbs.item(1).text(), timeout=15000)
    assert "classes: normal (4), pneumonia (4)" in panel.info.text()
    qtbot.waitUntil(lambda: any(panel.provenance.item(r, 1) is not None and panel.provenance.item(r, 1).text()
                                in ("normal", "pneumonia") for r in range(panel.provenance.rowCount())), timeout=10000)
    qtbot.waitUntil(lambda: "xr" in panel.eda_results, timeout=60000)  # statistics computed again, with the names
    assert set(panel.eda_results["xr"]["class_counts"]) == {"normal", "pneumonia"}
    assert not panel.set_class_names(["a", "a"])
    assert "differ" in main_window.last_error["message"]


def test_rename_and_delete_from_the_panel_name_what_depends_on_the_dataset_first(main_window, workspace, qtbot):
    make_dataset(workspace, "phantoms")
    make_dataset(workspace, "other")
    workspace.create_run("ddpm", {"kind": "train", "dataset": "phantoms"}, dataset="phantoms", run_id="r1")
    workspace.update_run("r1", state="done")
    panel = _panel(main_window, "phantoms")
    assert panel.rename_dataset("brain-phantoms")
    assert panel.dataset_names() == ["brain-phantoms", "other"] and panel.current == "brain-phantoms"
    assert workspace.run("r1").dataset == "brain-phantoms"
    assert not panel.rename_dataset("other")  # taken: one clear message, nothing changed
    assert "already exists" in main_window.last_error["message"]
    assert panel.delete_dataset()
    question = [e for e in main_window.errors if e["title"] == "question"][-1]["message"]
    assert "Delete dataset 'brain-phantoms'" in question and "run r1 (done) was trained on it" in question
    assert panel.dataset_names() == ["other"] and not workspace.has_dataset("brain-phantoms")


def test_an_error_dialog_says_what_went_wrong_with_the_traceback_behind_details(qtbot, tmp_path, caplog):
    from app.views.dialogs import ErrorDialog, report_error

    dlg = report_error(None, "Import failed", f"{tmp_path}/scan.npz: not a NumPy file (it holds text); give an .npz",
                       "Traceback (most recent call last):\n  File ...\nUserError: ...")
    qtbot.addWidget(dlg)
    assert isinstance(dlg, ErrorDialog) and dlg.isVisible()
    assert "scan.npz" in dlg.message.text() and "give an .npz" in dlg.message.text()
    assert not dlg.details.isVisible()  # the traceback is not in the user's face
    dlg.details_button.click()
    assert dlg.details.isVisible() and "Traceback" in dlg.details.toPlainText()
    assert any("Traceback" in r.getMessage() for r in caplog.records)  # and it is in the log


def test_a_failed_import_shows_the_error_and_its_bar_is_not_at_100_percent(main_window, workspace, tmp_path, qtbot):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "notes.npz").write_text("text, not numpy")
    panel = main_window.panels["datasets"]
    wiz = panel.open_import_wizard(str(tmp_path / "src"))
    qtbot.addWidget(wiz)
    wiz.next()
    wiz.next()
    qtbot.waitUntil(lambda: wiz.handle is not None and wiz.handle.is_final, timeout=30000)
    qtbot.waitUntil(lambda: "failed" in wiz.run_page.bar.format(), timeout=5000)
    bar = wiz.run_page.bar
    assert bar.value() < bar.maximum()
    assert "Import failed" in wiz.run_page.status.text() and "notes.npz" in wiz.run_page.status.text()
    err = main_window.last_error
    assert "notes.npz" in err["message"] and "Traceback" not in err["message"]
    dock_bar = main_window.jobs_dock.jobs.bars[wiz.handle.job_id]
    qtbot.waitUntil(lambda: "failed" in dock_bar.format(), timeout=5000)
    assert dock_bar.value() < dock_bar.maximum()
    wiz.reject()


@pytest.mark.parametrize("size", [(1366, 768), (1920, 1080)])
def test_the_datasets_panel_with_ct_in_hu_and_the_error_dialog_renders(main_window, workspace, ct_dataset, qtbot,
                                                                         size):
    from tests.views.conftest import assert_not_blank

    main_window.resize(*size)
    panel = _panel(main_window, "head-ct")
    main_window.show_panel("datasets")
    qtbot.waitUntil(lambda: panel.view.image() is not None and panel.ct_bar.isVisible(), timeout=15000)
    panel.ct_buttons["brain"].click()
    _hover(panel.view, 70, 60)
    qtbot.wait(100)
    assert_not_blank(main_window, SHOTS / f"datasets_ct_{size[0]}x{size[1]}.png")
    from app.views.dialogs import ErrorDialog

    dlg = ErrorDialog("The ingest job failed", "no usable images in /data/notes: 1 file(s) skipped (notes.npz: not a "
                      "recognised image format). Choose a file or folder of DICOM, PNG / JPEG / TIFF, NIfTI, "
                      "fastMRI HDF5 or NPZ images", "Traceback (most recent call last):\n  ...", main_window)
    qtbot.addWidget(dlg)
    dlg.show()
    qtbot.wait(50)
    assert_not_blank(dlg, SHOTS / f"error_dialog_{size[0]}x{size[1]}.png", min_std=4.0, min_colours=8)
    dlg.details_button.click()
    qtbot.wait(50)
    assert_not_blank(dlg, SHOTS / f"error_dialog_details_{size[0]}x{size[1]}.png", min_std=4.0, min_colours=8)


def test_the_image_views_readout_follows_a_new_image_under_a_still_cursor(qtbot):
    from app.views.widgets.image_view import ImageView

    view = ImageView()
    qtbot.addWidget(view)
    view.resize(300, 300)
    view.show()
    view.set_image(np.full((16, 16), 7.0, np.float32))
    _hover(view, 4, 5)
    assert "(r 4, c 5) = 7" in view.info.text()
    view.set_image(np.full((16, 16), -3.0, np.float32))  # same shape: the window is kept, the readout is not
    assert "(r 4, c 5) = -3" in view.info.text() and "= 7" not in view.info.text()
    view.set_unit("HU")
    assert "(r 4, c 5) = -3 HU" in view.info.text()
