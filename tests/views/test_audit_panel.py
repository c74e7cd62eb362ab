"""Evaluation & Audit panel: a real audit of PneumoniaMNIST with planted copies, a live threshold, the gate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

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
    panel._thresholds = thresholds
    panel.measure.setCurrentText("ncc")
    panel.histogram.set_threshold(0.0)
    low = panel.n_flagged
    hold_max = float(np.max(rep.holdout.distances["ncc"]))
    panel.histogram.set_threshold(hold_max * 1.01)
    high = panel.n_flagged
    assert high > low and high >= 25  # nearly every generated image is closer than the farthest held-out one
    assert str(high) in panel.flag_label.text()
    qtbot.waitUntil(lambda: panel.gallery.count() == min(high, 120), timeout=30000)
    panel._reset_threshold()
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


def test_evaluation_fills_the_metrics_table_with_the_extractor_and_the_power_spectrum(panel, qtbot, planted):
    paths, _ = planted
    _fill(panel, paths)
    assert panel.run_evaluate() is not None
    qtbot.waitUntil(lambda: panel.eval_handle is not None and panel.eval_handle.is_final, timeout=JOB_TIMEOUT)
    assert panel.eval_handle.state == "done", panel.eval_handle.message
    qtbot.waitUntil(lambda: panel.eval_result is not None and panel.gen_grid.count() > 0, timeout=30000)
    t = panel.metrics_table
    names = [t.item(r, 0).text() for r in range(t.rowCount())]
    assert "generated" in names and "real_holdout_floor" in names
    assert "radiomics" in panel.extractor_label.text() and "30 generated" in panel.extractor_label.text()
    assert panel.class_combo.count() >= 2  # overall + per class
    assert len(panel.spectrum_plot.plotItem.listDataItems()) == 2
    panel.class_combo.setCurrentIndex(1)
    assert panel.real_grid.count() > 0
    assert_not_blank(panel, SHOTS / "audit_panel_evaluation.png")
