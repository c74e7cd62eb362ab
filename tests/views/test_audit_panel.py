"""Evaluation & Audit panel: a real audit of PneumoniaMNIST with planted copies, a live threshold, the gate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import Qt

from tests.conftest import shared_file
from tests.views.conftest import assert_not_blank

SHOTS = Path("/tmp/shots")
JOB_TIMEOUT = 120_000
N_COPIES = 6


@pytest.fixture
def planted(tmp_path):
    """Training = 200 train X-rays; held-out = 40 val; generated = 24 other val images + 6 training
    images shifted by 1 px (3) or noised with sigma 0.05 (3): the planted copies are generated 24..29."""
    d = np.load(shared_file("pneumoniamnist_balanced_28.npz"))

    def imgs(split):
        return d[f"{split}_images"][:, None].astype(np.float32) / 127.5 - 1, d[f"{split}_labels"].ravel().astype(np.int64)

    (tr, ytr), (va, yva) = imgs("train"), imgs("val")
    rng = np.random.default_rng(0)
    src = [10, 50, 90, 130, 170, 199]
    copies = np.concatenate([np.roll(tr[src[:3]], 1, axis=-1),
                             np.clip(tr[src[3:]] + rng.normal(0, 0.05, tr[src[3:]].shape), -1, 1).astype(np.float32)])
    gen = np.concatenate([va[40:64], copies])
    ygen = np.concatenate([yva[40:64], ytr[src]])
    paths = {}
    for name, x, y in (("train", tr[:200], ytr[:200]), ("holdout", va[:40], yva[:40]), ("generated", gen, ygen)):
        paths[name] = tmp_path / f"{name}.npz"
        np.savez(paths[name], images=x, labels=y)
    return paths, src


@pytest.fixture
def labelled(tmp_path):
    """Both classes in every set (the NPZ splits are ordered by class, hence the strides): training =
    every 12th train X-ray (203), held-out = every 12th test X-ray (39), generated = every 9th val (30)."""
    d = np.load(shared_file("pneumoniamnist_balanced_28.npz"))
    paths = {}
    for name, split, step in (("train", "train", 12), ("holdout", "test", 12), ("generated", "val", 9)):
        paths[name] = tmp_path / f"{name}.npz"
        np.savez(paths[name], images=d[f"{split}_images"][::step, None].astype(np.float32) / 127.5 - 1,
                 labels=d[f"{split}_labels"].ravel()[::step].astype(np.int64))
    return paths


@pytest.fixture
def panel(main_window):
    main_window.resize(1700, 1100)
    return main_window.show_panel("audit")


def _fill(panel, paths):
    panel.generated.setEditText(str(paths["generated"]))
    panel.train.setEditText(str(paths["train"]))
    panel.holdout.setEditText(str(paths["holdout"]))


def test_audit_flags_the_planted_copies_in_the_gallery_and_dragging_the_threshold_recounts(panel, qtbot, planted, tmp_path):
    paths, src = planted
    _fill(panel, paths)
    panel.audit_extractor.setCurrentText("none")
    assert panel.run_audit() is not None
    qtbot.waitUntil(lambda: panel.audit_handle is not None and panel.audit_handle.is_final, timeout=JOB_TIMEOUT)
    assert panel.audit_handle.state == "done", panel.audit_handle.message
    qtbot.waitUntil(lambda: panel.bundle is not None and panel.gallery.count() > 0, timeout=30000)
    keys = panel.gallery_keys()
    planted_idx = set(range(24, 24 + N_COPIES))
    assert planted_idx <= set(keys), keys  # every planted copy is in the flagged gallery
    rep = panel.bundle["report"]
    m = panel.measure.currentText()
    d = rep.generated.distances[m]
    assert list(d[keys]) == sorted(d[keys])  # sorted by distance, closest first
    for i in planted_idx:  # ... each paired with the training image it was made from
        assert int(rep.generated.index["ncc"][i]) == src[i - 24]
    assert "FAILED" in panel.verdict.text()  # allowed rate 0: copies fail the audit
    before = panel.n_flagged

    # dragging the line: lower -> fewer flagged, higher -> more; the count follows live
    thresholds = dict(rep.thresholds)
    for meas in thresholds:  # switch the other measures off so the dragged one decides
        thresholds[meas] = 0.0
    panel.set_thresholds(thresholds)
    panel.measure.setCurrentText("ncc")
    panel.histogram.set_threshold(0.0)
    low = panel.n_flagged
    hold_max = float(np.max(rep.holdout.distances["ncc"]))
    panel.histogram.set_threshold(hold_max * 1.01)
    high = panel.n_flagged
    assert high > low and high >= 25  # nearly every generated image is closer than the farthest held-out one
    assert str(high) in panel.flag_label.text()
    qtbot.waitUntil(lambda: panel.gallery.count() == min(high, 120), timeout=30000)
    panel.reset_thresholds()
    assert panel.n_flagged == before
    qtbot.waitUntil(lambda: panel.gallery.count() == before, timeout=30000)

    # the gate writes the set without the flagged images; the HTML report is exported
    panel.apply_gate(tmp_path / "clean")
    qtbot.waitUntil(lambda: bool(panel.cleaned_files) or "failed" in panel.status.text(), timeout=30000)
    npz = next(f for f in panel.cleaned_files if f.suffix == ".npz")
    with np.load(npz) as z:
        assert len(z["images"]) == 30 - before
    panel.export_html(tmp_path / "audit.html")
    qtbot.waitUntil(lambda: panel.last_export is not None, timeout=10000)
    assert "Memorization audit" in (tmp_path / "audit.html").read_text()
    assert_not_blank(panel, SHOTS / "audit_panel_audit.png")


def test_evaluation_fills_the_metrics_table_with_the_extractor_the_power_spectrum_and_the_downstream_auc(panel, qtbot, labelled, tmp_path):
    _fill(panel, labelled)
    assert panel.utility_table.isHidden()  # no utility result yet
    panel.utility_check.setChecked(True)
    panel.utility_epochs.setValue(1)
    # small settings so the test stays quick on two cores (the numbers are not the point here)
    panel.eval_options = {"utility_width": 4, "utility_bootstrap": 100, "kid_subsets": 10, "kid_subset_size": 100,
                          "ms_ssim_pairs": 40, "clusters": 5}
    d = panel.run_evaluate()
    assert d.utility is True and d.utility_epochs == 1
    qtbot.waitUntil(lambda: panel.eval_handle is not None and panel.eval_handle.is_final, timeout=JOB_TIMEOUT)
    assert panel.eval_handle.state == "done", panel.eval_handle.message
    qtbot.waitUntil(lambda: panel.eval_result is not None and panel.gen_grid.count() > 0, timeout=30000)
    t = panel.metrics_table
    names = [t.item(r, 0).text() for r in range(t.rowCount())]
    assert names == ["generated", "real held-out (floor)", "pixel-noise baseline (σ=0.3)"]
    assert "radiomics" in panel.extractor_label.text() and "30 generated" in panel.extractor_label.text()
    assert panel.class_combo.count() >= 2  # overall + per class
    assert len(panel.spectrum_plot.plotItem.listDataItems()) == 2

    # downstream utility: both classifiers' AUC with its interval, in the table and the plot
    u = panel.eval_result["utility"]
    assert not panel.utility_table.isHidden() and panel.utility_table.rowCount() == 2
    for r, key in enumerate(("real_only", "real_plus_synthetic")):
        a = u[key]["auc"]
        assert f"{a['auc']:.3f}  [{a['ci95'][0]:.3f}, {a['ci95'][1]:.3f}]" == panel.utility_table.item(r, 1).text()
    points = [it for it in panel.auc_plot.plotItem.listDataItems()]
    assert len(points) == 2 and [float(p.getData()[1][0]) for p in points] == [u["real_only"]["auc"]["auc"],
                                                                               u["real_plus_synthetic"]["auc"]["auc"]]
    assert "McNemar p" in panel.auc_label.text() and "203 real + 30 synthetic" in panel.auc_label.text()

    # real vs generated side by side per class: the class's images only
    panel.class_combo.setCurrentText("0")
    real_set, gen_set = panel.eval_sets["real"], panel.eval_sets["generated"]
    n0 = int((real_set.labels == real_set.class_names.index("0")).sum())
    g0 = int((gen_set.labels == gen_set.class_names.index("0")).sum())
    assert panel.real_grid.count() == min(24, n0) and panel.gen_grid.count() == min(24, g0) and g0 < 30
    assert "class 0" in panel.grid_titles["gen_grid"].text() and f"of {g0} shown" in panel.grid_titles["gen_grid"].text()
    # the export button writes the evaluation's self-contained report when no audit exists
    assert panel.export_button.isEnabled()
    panel.export_html(tmp_path / "evaluation.html")
    qtbot.waitUntil(lambda: panel.last_export is not None, timeout=10000)
    page = (tmp_path / "evaluation.html").read_text(encoding="utf-8")
    assert "Downstream utility" in page and "pixel-noise baseline (σ=0.3)" in page
    assert_not_blank(panel, SHOTS / "audit_panel_evaluation.png")


def test_an_invalid_evaluation_option_disables_run_evaluation_and_is_named_without_a_job(panel, main_window, labelled):
    _fill(panel, labelled)
    assert panel.eval_button.isEnabled() and panel.audit_button.isEnabled()
    n_jobs = len(main_window.jobs.handles())
    panel.eval_options = {"kid_subsets": 0}
    assert not panel.eval_button.isEnabled() and panel.audit_button.isEnabled()  # the audit's spec is fine
    assert panel.options_error.text() == "kid_subsets: Input should be greater than or equal to 1"
    assert panel.run_evaluate() is None and len(main_window.jobs.handles()) == n_jobs
    panel.eval_options = {}
    assert panel.eval_button.isEnabled() and panel.options_error.isHidden()


def test_the_gallery_names_the_transformation_of_each_flagged_copy(main_window, qtbot, tmp_path):
    """SIAT slices: training series 0-11, held-out series 12, generated = series 13-14 plus a mirrored +
    shifted + gamma copy, a rotated copy and a zoomed copy of training slices: the gallery shows them
    against their training slice under the fitted transformation and names it."""
    from tests.engine.metrics.realdata import siat_magnitude
    from tests.engine.metrics.test_audit_invariance import plant

    images, series = siat_magnitude(128)
    train, calib, new = images[series < 12], images[series == 12], images[series >= 13]
    rng = np.random.default_rng(5)
    copies = np.stack([plant(train[7], rng, mirrored=True, dx=5, gamma=0.8), plant(train[40], rng, rotation=4.0),
                       plant(train[90], rng, zoom=1.08)])
    paths = {}
    for name, x in (("train", train), ("holdout", calib), ("generated", np.concatenate([new, copies]))):
        paths[name] = tmp_path / f"{name}.npz"
        np.savez(paths[name], images=x)
    panel = main_window.show_panel("audit")
    _fill(panel, paths)
    panel.audit_extractor.setCurrentText("none")
    assert panel.run_audit() is not None
    qtbot.waitUntil(lambda: panel.audit_handle is not None and panel.audit_handle.is_final, timeout=JOB_TIMEOUT)
    assert panel.audit_handle.state == "done", panel.audit_handle.message
    qtbot.waitUntil(lambda: panel.bundle is not None and panel.gallery.count() > 0, timeout=30000)
    n = len(new)
    assert set(panel.gallery_keys()) == {n, n + 1, n + 2}  # the three copies, no slice of a new patient
    labels = {panel.gallery.item(r).data(Qt.UserRole): panel.gallery.item(r).text() for r in range(panel.gallery.count())}
    assert "mirrored" in labels[n] and "shifted 5 px" in labels[n] and "gamma 0.8" in labels[n], labels[n]
    assert "rotated +4" in labels[n + 1] and "zoomed 1.08x" in labels[n + 2], labels
    for w, h in ((1366, 768), (1920, 1080)):
        main_window.resize(w, h)
        qtbot.wait(200)
        assert_not_blank(main_window, SHOTS / f"audit_gallery_{w}x{h}.png")
