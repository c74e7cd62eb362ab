"""Evaluation & Audit panel: run the evaluate / audit jobs on chosen sets and read their results.

Sets are chosen as a workspace dataset (``name`` or ``name:split``), a folder of images or an NPZ
(the engine's ``load_image_set`` references). "Run evaluation" submits the "evaluate" job,
"Run audit" the "audit" job; both are listed in the Jobs dock. Results:

- a verdict banner, big and coloured: PASSED / FAILED (flagged count against the allowed rate);
- Memorization tab: histograms of generated->train and held-out->train nearest-neighbour
  distances per measure (``widgets/distance_histogram.py``) with a threshold line to drag; every
  move recounts the flagged images with ``app.engine.privacy.flag`` on the stored distance
  arrays (no new search): the dragged measure gets an absolute threshold, the other measures keep
  the audit's thresholds, and images the audit flagged by its ratio route (a lone, much closer
  neighbour) stay flagged. The gallery shows the flagged pairs (generated | nearest training |
  difference, ``privacy.pair_figure``) sorted by distance. "Export HTML report" copies the job's
  self-contained audit.html; "Apply gate" writes the set without the currently flagged images
  through ``privacy.write_cleaned_set`` (the exporter, with provenance) on a worker thread.
- Metrics tab: the table of every row of the evaluation (generated, real held-out floor, noise
  baseline) naming the extractor and the image counts, per class; real vs generated grids per
  class; the radial power spectra; downstream AUC (real-only vs real+synthetic, with confidence
  intervals) when the evaluation result carries it.

Views never import torch: the audit / evaluate spec modules and ``privacy`` load without it; file
reads and pair figures run on worker threads (``run_in_thread``).
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QSize, Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from app.engine.metrics.report import row_label
from app.views.widgets.distance_histogram import DistanceHistogram
from app.views.widgets.plots import PALETTE
from app.views.widgets.thumbnails import ThumbnailGrid
from app.workers.manager import run_in_thread

GALLERY_MAX = 120
EVAL_COLUMNS = (("n", "n", "{:d}"), ("n_real", "n real", "{:d}"), ("fid", "FID", "{:.3f}"), ("kid_mean", "KID", "{:.4f}"),
                ("precision", "precision", "{:.3f}"), ("recall", "recall", "{:.3f}"),
                ("spectrum_log_distance", "spectrum dist.", "{:.3f}"), ("histogram", "histogram W1", "{:.4f}"),
                ("diversity", "MS-SSIM (<0.5 diverse)", "{:.3f}"))


def _set_combo(editable_items: list[str]) -> QComboBox:
    c = QComboBox()
    c.setEditable(True)
    c.addItems(editable_items)
    c.setInsertPolicy(QComboBox.NoInsert)
    c.setMinimumContentsLength(12)
    c.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
    return c


def load_audit_bundle(out_dir: str, gen_ref: str, train_ref: str, workspace, size: int | None) -> dict:
    """The audit report (distances, flags) and the two image sets its pairs are drawn from."""
    from app.engine.metrics.sets import load_set
    from app.engine.privacy import load_report

    report = load_report(out_dir)
    gen = load_set(gen_ref, workspace, size=size, what="generated images")
    train = load_set(train_ref, workspace, size=size, what="training images")
    return {"report": report, "generated": gen, "train": train}


def pair_figures(gen_images, train_images, report, indices, measure: str) -> list[tuple[int, int, np.ndarray]]:
    """(generated index, training index, [generated | nearest training | difference]) per index."""
    from app.engine.privacy import pair_figure

    m = measure if measure in report.generated.index else "ncc"
    out = []
    for i in indices:
        j = int(report.generated.index[m][i])
        # the alignment shift is stored for the NCC-nearest image; other measures' pairs are shown unshifted
        shift = report.generated.shift[i] if j == int(report.generated.index["ncc"][i]) else (0, 0)
        fig = pair_figure(gen_images[i], train_images[j], shift)
        h, w = gen_images.shape[-2:]
        # a shifted pair is drawn on its overlap (smaller): pad to one size so the gallery lines up
        full = np.full((h, 3 * w + 4), -1.0, np.float32)
        full[: fig.shape[0], : fig.shape[1]] = fig[:h, : 3 * w + 4]
        out.append((int(i), j, full))
    return out


class AuditPanel(QWidget):
    """See the module docstring."""

    flagged_changed = Signal(int)
    gallery_updated = Signal()
    results_shown = Signal(str)  # "audit" / "evaluate"

    def __init__(self, ctx):
        super().__init__()
        self.ctx = ctx
        self.audit_handle = None
        self.eval_handle = None
        self.bundle: dict | None = None
        self.eval_result: dict | None = None
        #: further EvaluateSpec fields merged into every evaluation this panel submits (a preset's
        #: KID subsets, bootstrap resamples, classifier width ...); empty: the spec's defaults
        self.eval_options: dict = {}
        self.eval_sets: dict | None = None
        self.live_flags: np.ndarray | None = None
        self.n_flagged = 0
        self.last_export: Path | None = None
        self.cleaned_files: list[Path] = []
        self._pair_cache: dict[tuple[int, str], tuple[int, int, np.ndarray]] = {}
        self._gallery_token = 0

        outer = QHBoxLayout(self)
        outer.setContentsMargins(6, 6, 6, 6)
        split = QSplitter(Qt.Horizontal)
        outer.addWidget(split)
        split.addWidget(self._build_controls())
        split.addWidget(self._build_results())
        split.setSizes([390, 1100])
        self._gallery_timer = QTimer(self)
        self._gallery_timer.setSingleShot(True)
        self._gallery_timer.setInterval(150)
        self._gallery_timer.timeout.connect(self._refresh_gallery)
        ctx.jobs.job_finished.connect(self._on_any_job_finished)
        self.refresh_datasets()
        self._update_buttons()
        self._show_utility({})

    # -- building -------------------------------------------------------------------------------
    def _build_controls(self) -> QWidget:
        box = QWidget()
        lay = QVBoxLayout(box)
        lay.setContentsMargins(0, 0, 4, 0)
        t = QLabel("Evaluation & Audit")
        t.setProperty("role", "title")
        lay.addWidget(t)
        sets = QGroupBox("Image sets")
        f = QFormLayout(sets)
        self.generated = _set_combo([])
        self.generated.setObjectName("generatedSet")
        self.generated.setToolTip("generated images: an NPZ, a folder of PNG / DICOM, or a dataset name[:split]")
        self.train = _set_combo([])
        self.train.setObjectName("trainSet")
        self.train.setToolTip("the model's training images (dataset name: its train split is used when it has val/test)")
        self.holdout = _set_combo([])
        self.holdout.setObjectName("holdoutSet")
        self.holdout.setToolTip("real images the model never saw (calibrates the copy threshold); "
                                "empty: the dataset's val / test split")
        for label, combo in (("Generated", self.generated), ("Training", self.train), ("Held-out", self.holdout)):
            row = QHBoxLayout()
            row.addWidget(combo, 1)
            for text, folder in (("NPZ…", False), ("Dir…", True)):
                b = QPushButton(text)
                b.setFixedWidth(40)
                b.clicked.connect(lambda _=False, c=combo, d=folder: self._browse(c, d))
                row.addWidget(b)
            f.addRow(label, row)
        lay.addWidget(sets)

        opts = QGroupBox("Options")
        of = QFormLayout(opts)
        self.audit_extractor = QComboBox()
        self.audit_extractor.setObjectName("auditExtractor")
        self.audit_extractor.addItems(["radiomics", "none", "inception"])
        self.audit_extractor.setToolTip("features for the cosine measure of the audit (none: pixel measures only)")
        of.addRow("Audit features", self.audit_extractor)
        self.max_rate = QDoubleSpinBox()
        self.max_rate.setObjectName("maxRate")
        self.max_rate.setDecimals(3)
        self.max_rate.setRange(0.0, 1.0)
        self.max_rate.setSingleStep(0.005)
        self.max_rate.setToolTip("the audit passes when at most this fraction of generated images is flagged")
        of.addRow("Allowed flagged rate", self.max_rate)
        self.eval_extractor = QComboBox()
        self.eval_extractor.setObjectName("evalExtractor")
        self.eval_extractor.addItems(["radiomics", "inception", "domain"])
        of.addRow("Evaluation features", self.eval_extractor)
        urow = QHBoxLayout()
        self.utility_check = QCheckBox("classifier AUC")
        self.utility_check.setObjectName("utilityCheck")
        self.utility_check.setToolTip("downstream utility: train a classifier on real vs real + generated images and test "
                                      "both on the held-out real images (needs class labels on every set; minutes on a CPU)")
        self.utility_epochs = QSpinBox()
        self.utility_epochs.setObjectName("utilityEpochs")
        self.utility_epochs.setRange(1, 500)
        self.utility_epochs.setValue(5)
        self.utility_epochs.setSuffix(" epochs")
        self.utility_epochs.setEnabled(False)
        self.utility_check.toggled.connect(self.utility_epochs.setEnabled)
        urow.addWidget(self.utility_check)
        urow.addWidget(self.utility_epochs)
        of.addRow("Downstream utility", urow)
        lay.addWidget(opts)

        self.audit_button = QPushButton("Run audit")
        self.audit_button.setObjectName("auditButton")
        self.audit_button.clicked.connect(self.run_audit)
        self.eval_button = QPushButton("Run evaluation")
        self.eval_button.setObjectName("evaluateButton")
        self.eval_button.clicked.connect(self.run_evaluate)
        row = QHBoxLayout()
        row.addWidget(self.audit_button)
        row.addWidget(self.eval_button)
        lay.addLayout(row)
        self.stop_button = QPushButton("Stop")
        self.stop_button.clicked.connect(self.stop)
        lay.addWidget(self.stop_button)
        out = QGroupBox("Report and gate")
        ol = QVBoxLayout(out)
        self.export_button = QPushButton("Export HTML report…")
        self.export_button.setObjectName("exportHtml")
        self.export_button.clicked.connect(lambda: self.export_html())
        self.gate_button = QPushButton("Apply gate → cleaned set…")
        self.gate_button.setObjectName("applyGate")
        self.gate_button.setToolTip("write the generated set without the currently flagged images (NPZ, with provenance)")
        self.gate_button.clicked.connect(lambda: self.apply_gate())
        ol.addWidget(self.export_button)
        ol.addWidget(self.gate_button)
        lay.addWidget(out)
        self.status = QLabel("")
        self.status.setObjectName("auditStatus")
        self.status.setWordWrap(True)
        lay.addWidget(self.status)
        lay.addStretch(1)
        sc = QScrollArea()
        sc.setWidgetResizable(True)
        sc.setWidget(box)
        sc.setMinimumWidth(380)
        sc.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        return sc

    def _build_results(self) -> QWidget:
        w = QWidget()
        lay = QVBoxLayout(w)
        lay.setContentsMargins(0, 0, 0, 0)
        self.verdict = QLabel("No audit yet")
        self.verdict.setObjectName("verdict")
        self.verdict.setAlignment(Qt.AlignCenter)
        self.verdict.setMinimumHeight(54)
        self._set_verdict(None, "No audit yet: choose the sets and press Run audit.")
        lay.addWidget(self.verdict)
        self.tabs = QTabWidget()
        self.tabs.setObjectName("auditTabs")
        lay.addWidget(self.tabs, 1)

        mem = QWidget()
        ml = QVBoxLayout(mem)
        ml.setContentsMargins(0, 4, 0, 0)
        top = QHBoxLayout()
        top.addWidget(QLabel("Measure"))
        self.measure = QComboBox()
        self.measure.setObjectName("measureCombo")
        self.measure.currentIndexChanged.connect(lambda *_: self._show_measure())
        top.addWidget(self.measure)
        self.flag_label = QLabel("")
        self.flag_label.setObjectName("flaggedLabel")
        top.addWidget(self.flag_label, 1)
        reset = QPushButton("Reset threshold")
        reset.clicked.connect(self._reset_threshold)
        top.addWidget(reset)
        ml.addLayout(top)
        vs = QSplitter(Qt.Vertical)
        self.histogram = DistanceHistogram()
        self.histogram.setObjectName("distanceHistogram")
        self.histogram.threshold_moved.connect(self._on_threshold)
        vs.addWidget(self.histogram)
        gbox = QWidget()
        gl = QVBoxLayout(gbox)
        gl.setContentsMargins(0, 0, 0, 0)
        self.gallery_title = QLabel("Flagged pairs: generated | nearest training | difference (closest first)")
        self.gallery_title.setProperty("role", "hint")
        gl.addWidget(self.gallery_title)
        self.gallery = ThumbnailGrid(icon_size=96)
        self.gallery.setObjectName("flaggedGallery")
        self.gallery.setIconSize(QSize(228, 76))
        self.gallery.setSelectionMode(QAbstractItemView.SingleSelection)
        gl.addWidget(self.gallery, 1)
        vs.addWidget(gbox)
        vs.setSizes([330, 360])
        ml.addWidget(vs, 1)
        self.tabs.addTab(mem, "Memorization audit")

        met = QWidget()
        el = QVBoxLayout(met)
        el.setContentsMargins(0, 4, 0, 0)
        row = QHBoxLayout()
        row.addWidget(QLabel("Class"))
        self.class_combo = QComboBox()
        self.class_combo.setObjectName("classCombo")
        self.class_combo.currentIndexChanged.connect(lambda *_: self._show_eval_group())
        row.addWidget(self.class_combo)
        self.extractor_label = QLabel("")
        self.extractor_label.setObjectName("extractorLabel")
        row.addWidget(self.extractor_label, 1)
        el.addLayout(row)
        self.metrics_table = QTableWidget(0, len(EVAL_COLUMNS) + 1)
        self.metrics_table.setObjectName("evalTable")
        self.metrics_table.setHorizontalHeaderLabels(["set"] + [c[1] for c in EVAL_COLUMNS])
        self.metrics_table.verticalHeader().setVisible(False)
        self.metrics_table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeToContents)
        self.metrics_table.horizontalHeader().setStretchLastSection(True)
        self.metrics_table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.metrics_table.setFixedHeight(120)
        el.addWidget(self.metrics_table)
        mid = QSplitter(Qt.Horizontal)
        self.grid_titles = {}
        for attr, title in (("real_grid", "Real"), ("gen_grid", "Generated")):
            b = QWidget()
            bl = QVBoxLayout(b)
            bl.setContentsMargins(0, 0, 0, 0)
            lab = QLabel(title)
            lab.setProperty("role", "hint")
            self.grid_titles[attr] = lab
            bl.addWidget(lab)
            g = ThumbnailGrid(icon_size=56)
            g.setObjectName(attr)
            setattr(self, attr, g)
            bl.addWidget(g, 1)
            mid.addWidget(b)
        self.spectrum_plot = pg.PlotWidget()
        self.spectrum_plot.setObjectName("spectrumPlot")
        self.spectrum_plot.setTitle("radial power spectrum", size="9pt")
        self.spectrum_plot.setLabel("bottom", "frequency (cycles / pixel)")
        self.spectrum_plot.setLabel("left", "log10 power")
        self.spectrum_plot.showGrid(x=True, y=True, alpha=0.2)
        for ax in ("left", "bottom"):
            self.spectrum_plot.getAxis(ax).enableAutoSIPrefix(False)
        self.spectrum_plot.addLegend(offset=(-10, 10))
        mid.addWidget(self.spectrum_plot)
        mid.setSizes([300, 300, 420])
        vsplit = QSplitter(Qt.Vertical)
        vsplit.addWidget(mid)
        vsplit.addWidget(self._build_utility())
        vsplit.setStretchFactor(0, 1)
        vsplit.setStretchFactor(1, 0)
        vsplit.setSizes([430, 240])
        el.addWidget(vsplit, 1)
        self.tabs.addTab(met, "Evaluation metrics")
        return w

    def _build_utility(self) -> QWidget:
        """Downstream utility: a table (AUC with CI, accuracy, F1, confusion) and an AUC-with-CI plot."""
        box = QGroupBox("Downstream utility: classifier tested on held-out real images")
        box.setObjectName("utilityBox")
        lay = QHBoxLayout(box)
        left = QVBoxLayout()
        self.utility_table = QTableWidget(0, 5)
        self.utility_table.setObjectName("utilityTable")
        self.utility_table.setHorizontalHeaderLabels(["trained on", "AUC [95% CI]", "accuracy", "macro F1", "confusion (rows: true)"])
        self.utility_table.verticalHeader().setVisible(False)
        self.utility_table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeToContents)
        self.utility_table.horizontalHeader().setStretchLastSection(True)
        self.utility_table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.utility_table.verticalHeader().setDefaultSectionSize(24)
        self.utility_table.setFixedHeight(24 * 3 + 6)
        left.addWidget(self.utility_table)
        self.auc_label = QLabel("")
        self.auc_label.setObjectName("aucLabel")
        self.auc_label.setWordWrap(True)
        left.addWidget(self.auc_label)
        left.addStretch(1)
        lay.addLayout(left, 3)
        self.auc_plot = pg.PlotWidget()
        self.auc_plot.setObjectName("aucPlot")
        r, g = ("#%02x%02x%02x" % PALETTE[0]), ("#%02x%02x%02x" % PALETTE[1])
        self.auc_plot.setTitle(f"AUC, 95% CI: <span style='color:{r}'>● real only</span> &nbsp; "
                               f"<span style='color:{g}'>● real + synthetic</span>", size="9pt")
        self.auc_plot.setLabel("left", "AUC")
        self.auc_plot.showGrid(y=True, alpha=0.2)
        self.auc_plot.setMouseEnabled(x=False, y=False)
        self.auc_plot.getAxis("left").enableAutoSIPrefix(False)
        self.auc_plot.setMinimumSize(320, 190)
        lay.addWidget(self.auc_plot, 2)
        self.utility_box = box
        return box

    # -- helpers --------------------------------------------------------------------------------
    def _set_verdict(self, passed: bool | None, text: str) -> None:
        colour = {None: ("#3a3a3e", "#d8d8d8"), True: ("#1f7a3a", "#ffffff"), False: ("#b3261e", "#ffffff")}[passed]
        self.verdict.setText(text)
        self.verdict.setStyleSheet(f"QLabel#verdict {{ background: {colour[0]}; color: {colour[1]}; font-size: 20px;"
                                   f" font-weight: bold; border-radius: 6px; padding: 8px; }}")

    def _browse(self, combo: QComboBox, folder: bool) -> None:
        if folder:
            path = QFileDialog.getExistingDirectory(self, "Image folder")
        else:
            path, _ = QFileDialog.getOpenFileName(self, "Image set", "", "NPZ (*.npz);;All files (*)")
        if path:
            combo.setEditText(path)

    def refresh_datasets(self) -> None:
        try:
            ds = self.ctx.workspace.datasets()
        except Exception:
            ds = []
        items = []
        for d in ds:
            items += [d.name, f"{d.name}:train", f"{d.name}:val", f"{d.name}:test"]
        for combo in (self.generated, self.train, self.holdout):
            text = combo.currentText()
            combo.blockSignals(True)
            combo.clear()
            if combo is self.holdout:
                combo.addItem("")
            combo.addItems(items)
            combo.setEditText(text)
            combo.blockSignals(False)

    def _on_any_job_finished(self, handle) -> None:
        if handle.kind in ("ingest", "demo", "sample"):
            self.refresh_datasets()
        self._update_buttons()

    def _update_buttons(self, *_) -> None:
        busy = any(h is not None and not h.is_final for h in (self.audit_handle, self.eval_handle))
        self.stop_button.setEnabled(busy)
        has = self.bundle is not None
        self.export_button.setEnabled(self._report_kind() is not None)
        self.gate_button.setEnabled(has)
        self.audit_button.setEnabled(not (self.audit_handle is not None and not self.audit_handle.is_final))
        self.eval_button.setEnabled(not (self.eval_handle is not None and not self.eval_handle.is_final))

    def _validate_and_submit(self, d: dict, on_handle) -> None:
        def validate():
            from app.engine.jobs import parse_spec

            return parse_spec(d)

        def failed(msg, tb):
            self.status.setText(f"Not valid: {msg}")
            self._update_buttons()

        run_in_thread(validate, lambda spec: on_handle(self.ctx.jobs.submit(spec)), failed)

    def stop(self) -> None:
        for h in (self.audit_handle, self.eval_handle):
            if h is not None:
                h.cancel()

    # -- audit ----------------------------------------------------------------------------------
    def audit_spec(self) -> dict | None:
        gen, train, hold = (c.currentText().strip() for c in (self.generated, self.train, self.holdout))
        if not gen or not train:
            self.status.setText("Choose the generated set and the training set.")
            return None
        d = {"kind": "audit", "generated": gen, "train": train, "extractor": self.audit_extractor.currentText(),
             "max_memorization_rate": self.max_rate.value()}
        if hold:
            d["holdout"] = hold
        return d

    def run_audit(self):
        d = self.audit_spec()
        if d is None:
            return None
        self.audit_button.setEnabled(False)
        self.status.setText("Auditing…")
        self._set_verdict(None, "Audit running…")

        def on_handle(h):
            self.audit_handle = h
            h.progress.connect(lambda s, t, label: self.status.setText(f"{label}: {s} / {t}"))
            h.finished.connect(lambda _ev, h=h, d=d: self._on_audit_done(h, d))
            self._update_buttons()

        self._validate_and_submit(d, on_handle)
        return d

    def _on_audit_done(self, h, d: dict) -> None:
        self._update_buttons()
        if h.state != "done":
            self._set_verdict(None, "Audit stopped" if h.state == "cancelled" else "Audit failed")
            self.status.setText(h.message or "stopped")
            return
        res = h.result or {}
        train_ref = d["train"]
        ws = self.ctx.workspace
        if "holdout" not in d and ":" not in train_ref and not Path(train_ref).exists() and res.get("holdout"):
            train_ref = f"{train_ref}:train"  # the job used the dataset's train split (its val/test is held out)
        out, gen_ref = res["out"], d["generated"]
        self.status.setText("Reading the audit report…")
        run_in_thread(lambda: dict(load_audit_bundle(out, gen_ref, train_ref, ws, None), result=res),
                      self._show_audit, lambda msg, tb: self.status.setText(f"Could not read the report: {msg}"))

    def _show_audit(self, bundle: dict) -> None:
        self.bundle = bundle
        self._pair_cache.clear()
        rep = bundle["report"]
        res = bundle["result"]
        self.live_flags = np.asarray(rep.flagged, bool)
        measures = [m for m in rep.generated.index]
        self.measure.blockSignals(True)
        self.measure.clear()
        self.measure.addItems(measures)
        first = next((m for m in rep.rule.measures if m in measures), measures[0] if measures else "")
        self.measure.setCurrentText(first)
        self.measure.blockSignals(False)
        c = rep.counts
        self.status.setText(f"Audit of {c.get('generated')} generated vs {c.get('train')} training images, "
                            f"{c.get('holdout')} held-out; features: {rep.extractor}; rule {rep.rule.mode}; "
                            f"{res.get('seconds', 0):.1f} s. Report: {res.get('html')}")
        self._show_measure()
        self._update_verdict()
        self._update_buttons()
        self.tabs.setCurrentIndex(0)
        self.results_shown.emit("audit")

    def _show_measure(self) -> None:
        if self.bundle is None:
            return
        rep = self.bundle["report"]
        m = self.measure.currentText()
        if not m:
            return
        hold = rep.holdout.distances.get(m) if rep.holdout else None
        th = self._current_thresholds().get(m, rep.thresholds.get(m))
        if th is None:
            d = rep.generated.distances[m]
            th = float(np.nanmin(d[np.isfinite(d)])) if np.isfinite(d).any() else 0.0
        self.histogram.set_data(rep.generated.distances[m], hold, th, m)
        self._recount()

    def _current_thresholds(self) -> dict[str, float]:
        return getattr(self, "_thresholds", None) or dict(self.bundle["report"].thresholds)

    def _reset_threshold(self) -> None:
        if self.bundle is None:
            return
        self._thresholds = dict(self.bundle["report"].thresholds)
        self._show_measure()

    def _on_threshold(self, x: float) -> None:
        if self.bundle is None:
            return
        th = self._current_thresholds()
        th[self.measure.currentText()] = max(float(x), 0.0)
        self._thresholds = th
        self._recount()

    def _recount(self) -> None:
        """Flags for the current thresholds with the engine's ``flag`` on the stored distances."""
        from app.engine.privacy import FlagRule, flag

        rep = self.bundle["report"]
        gd = rep.generated.distances
        hd = rep.holdout.distances if rep.holdout else None
        th = {m: t for m, t in self._current_thresholds().items() if m in gd}
        live = flag(gd, hd, FlagRule(mode="absolute", thresholds=th)) if th else np.zeros(len(rep.flagged), bool)
        if rep.rule.mode != "absolute":
            # the audit's ratio route (lone much-closer neighbour) is not a threshold: its flags stay
            base = flag(gd, hd, FlagRule(mode="absolute", thresholds=dict(rep.thresholds))) if rep.thresholds else live
            live = live | (np.asarray(rep.flagged, bool) & ~base)
        self.live_flags = live
        self.n_flagged = int(live.sum())
        n = len(live)
        m = self.measure.currentText()
        self.flag_label.setText(f"  {self.n_flagged} of {n} generated images flagged  ·  {m} threshold "
                                f"{th.get(m, float('nan')):.4g}  (drag the red line)")
        self._update_verdict()
        self.flagged_changed.emit(self.n_flagged)
        self._gallery_timer.start()

    def _update_verdict(self) -> None:
        if self.bundle is None or self.live_flags is None:
            return
        rep = self.bundle["report"]
        n = len(self.live_flags)
        rate = self.n_flagged / n if n else 0.0
        passed = rate <= rep.max_memorization_rate
        moved = self._current_thresholds() != dict(rep.thresholds)
        self._set_verdict(passed, f"{'PASSED' if passed else 'FAILED'} — {self.n_flagged} of {n} generated images "
                          f"flagged as near-copies (allowed {rep.max_memorization_rate:.1%})"
                          + ("  · thresholds edited" if moved else ""))

    def _refresh_gallery(self) -> None:
        if self.bundle is None:
            return
        rep = self.bundle["report"]
        m = self.measure.currentText() or "ncc"
        idx = np.flatnonzero(self.live_flags)
        d = rep.generated.distances[m]
        idx = idx[np.argsort(d[idx], kind="stable")][:GALLERY_MAX]
        need = [int(i) for i in idx if (int(i), m) not in self._pair_cache]
        self._gallery_token += 1
        token = self._gallery_token
        gen, train = self.bundle["generated"].images, self.bundle["train"].images

        def done(figs, m=m, idx=idx, token=token):
            for i, j, fig in figs:
                self._pair_cache[(i, m)] = (i, j, fig)
            if token != self._gallery_token:
                return
            rows = [self._pair_cache[(int(i), m)] for i in idx]
            labels = [f"gen {i} · train {j} · {m} {d[i]:.3g}" for i, j, _ in rows]
            self.gallery.set_images(np.stack([f for _, _, f in rows])[:, None] if rows else np.zeros((0, 1, 4, 4)),
                                    labels=labels, keys=[i for i, _, _ in rows])
            more = f" (first {GALLERY_MAX} shown)" if self.n_flagged > GALLERY_MAX else ""
            self.gallery_title.setText(f"Flagged pairs: generated | nearest training ({m}) | difference — "
                                       f"{len(rows)} sorted by {m} distance{more}")
            self.gallery_updated.emit()

        run_in_thread(lambda: pair_figures(gen, train, rep, need, m), done,
                      lambda msg, tb: self.status.setText(f"Could not draw the pairs: {msg}"))

    def gallery_keys(self) -> list[int]:
        return list(self.gallery.keys)

    # -- report and gate ------------------------------------------------------------------------
    def _report_kind(self) -> str | None:
        """Which report the export button writes: the shown tab's, else whichever exists."""
        has = {"audit": self.bundle is not None and bool(self.bundle["result"].get("html")),
               "evaluate": bool((self.eval_result or {}).get("html"))}
        shown = "evaluate" if self.tabs.currentIndex() == 1 else "audit"
        return shown if has[shown] else next((k for k, v in has.items() if v), None)

    def export_html(self, path: str | Path | None = None, kind: str | None = None):
        """Copy the self-contained HTML report (audit.html or evaluation.html) to ``path``."""
        kind = kind or self._report_kind()
        if kind is None:
            return None
        src = self.bundle["result"].get("html") if kind == "audit" else self.eval_result.get("html")
        if path is None:
            name = "audit.html" if kind == "audit" else "evaluation.html"
            path, _ = QFileDialog.getSaveFileName(self, f"Save the {'audit' if kind == 'audit' else 'evaluation'} report",
                                                  name, "HTML (*.html)")
            if not path:
                return None
        dst = Path(path)

        def done(_):
            self.last_export = dst
            self.status.setText(f"Report written to {dst}")

        return run_in_thread(lambda: shutil.copyfile(src, dst), done,
                             lambda msg, tb: self.status.setText(f"Export failed: {msg}"))

    def apply_gate(self, out_dir: str | Path | None = None):
        """Write the generated set without the currently flagged images (NPZ through the exporter)."""
        if self.bundle is None:
            return None
        if out_dir is None:
            out_dir = QFileDialog.getExistingDirectory(self, "Folder for the cleaned set")
            if not out_dir:
                return None
        rep = dataclasses.replace(self.bundle["report"], flagged=np.asarray(self.live_flags, bool).copy(),
                                  thresholds=dict(self._current_thresholds()))
        gen = self.bundle["generated"]
        self.gate_button.setEnabled(False)

        def work():
            from app.engine.privacy import write_cleaned_set

            return write_cleaned_set(gen, rep, out_dir, format="npz", provenance={"source": gen.source})

        def done(files):
            self.cleaned_files = [Path(f) for f in files]
            self.gate_button.setEnabled(True)
            self.status.setText(f"Cleaned set: {int((~rep.flagged).sum())} of {len(rep.flagged)} images kept, "
                                f"written to {out_dir}")

        def failed(msg, tb):
            self.gate_button.setEnabled(True)
            self.status.setText(f"The gate failed: {msg}")

        return run_in_thread(work, done, failed)

    # -- evaluation -----------------------------------------------------------------------------
    def run_evaluate(self):
        gen, train, hold = (c.currentText().strip() for c in (self.generated, self.train, self.holdout))
        if not gen or not train:
            self.status.setText("Choose the generated set and the real (training) set.")
            return None
        d = {"kind": "evaluate", "real": train, "generated": gen, "extractor": self.eval_extractor.currentText()}
        if hold:
            d["holdout"] = hold
        if self.utility_check.isChecked():
            d.update(utility=True, utility_epochs=self.utility_epochs.value())
        d.update(self.eval_options)
        self.eval_button.setEnabled(False)
        self.status.setText("Evaluating…")

        def on_handle(h):
            self.eval_handle = h
            h.progress.connect(lambda s, t, label: self.status.setText(f"{label}: {s} / {t}"))
            h.finished.connect(lambda _ev, h=h, d=d: self._on_eval_done(h, d))
            self._update_buttons()

        self._validate_and_submit(d, on_handle)
        return d

    def _on_eval_done(self, h, d: dict) -> None:
        self._update_buttons()
        if h.state != "done":
            self.status.setText(f"Evaluation {'stopped' if h.state == 'cancelled' else 'failed: ' + str(h.message)}")
            return
        res = h.result or {}
        if self.verdict.text().startswith("No audit yet"):  # the banner speaks of the audit only
            self._set_verdict(None, "Evaluation done · no privacy audit yet: press Run audit for pass / fail.")
        ws = self.ctx.workspace
        real_ref = d["real"]
        if "holdout" not in d and ":" not in real_ref and not Path(real_ref).exists() and ws.has_dataset(real_ref):
            real_ref = f"{real_ref}:train"

        def load():
            from app.engine.metrics.sets import load_set

            return {"real": load_set(real_ref, ws, what="real images"), "generated": load_set(d["generated"], ws, what="generated images")}

        def show(sets):
            self.eval_sets = sets
            self._show_eval(res)

        run_in_thread(load, show, lambda msg, tb: (self.status.setText(f"Could not read the sets: {msg}"), self._show_eval(res)))

    def _show_eval(self, res: dict) -> None:
        self.eval_result = res
        c = res.get("counts", {})
        self.extractor_label.setText(f"  features: {res.get('extractor')}  ·  {c.get('real')} real reference, "
                                     f"{c.get('generated')} generated, {c.get('holdout')} held-out images")
        self.class_combo.blockSignals(True)
        self.class_combo.clear()
        self.class_combo.addItems(list((res.get("tables") or {}).keys()))
        self.class_combo.blockSignals(False)
        self._show_eval_group()
        sp = res.get("spectrum") or {}
        self.spectrum_plot.clear()
        leg = self.spectrum_plot.plotItem.legend
        if leg is not None:
            leg.clear()
        if sp:
            f = np.asarray(sp["frequency"], float)
            curves = {k: np.asarray(sp[k], float) for k in ("real_log10_power", "generated_log10_power")}
            # the DC bin (power 0 after mean removal, stored at the log floor -12) would squash the plot
            keep = (f > 0) & (curves["real_log10_power"] > -11) & (curves["generated_log10_power"] > -11)
            for key, colour, name in (("real_log10_power", PALETTE[0], "real"), ("generated_log10_power", PALETTE[1], "generated")):
                self.spectrum_plot.plot(f[keep], curves[key][keep], pen=pg.mkPen(colour, width=2), name=name)
        self._show_utility(res)
        self.status.setText(f"Evaluation done ({res.get('extractor')} features). Report: {res.get('html')}")
        self.tabs.setCurrentIndex(1)
        self._update_buttons()
        self.results_shown.emit("evaluate")

    @staticmethod
    def _auc_text(res: dict) -> str:
        """Downstream AUC real-only vs real + synthetic (with CIs), the difference and McNemar, as text."""
        u = res.get("utility")
        if not isinstance(u, dict):
            return ("Downstream utility was not part of this evaluation (tick “classifier AUC”; "
                    "needs class labels on every set).")
        parts = []
        for key, label in (("real_only", "real only"), ("real_plus_synthetic", "real + synthetic")):
            a = (u.get(key) or {}).get("auc")
            if a:
                parts.append(f"{label}: AUC {a['auc']:.3f} [{a['ci95'][0]:.3f}, {a['ci95'][1]:.3f}]")
        c = u.get("counts", {})
        txt = "; ".join(parts)
        d = u.get("auc_difference")
        if d:
            txt += f".  Difference {d['difference']:+.3f} [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}]"
        mc = u.get("mcnemar")
        if mc:
            txt += f"; McNemar p = {mc['p_value']:.3g}"
        txt += (f".  {c.get('real_train')} real + {c.get('synthetic')} synthetic training images, {c.get('test')} held-out "
                f"real test images; {u.get('epochs')} epochs, 95% CI by bootstrap ({u.get('n_boot')}).")
        return txt

    def _show_utility(self, res: dict) -> None:
        u = res.get("utility")
        self.auc_label.setText(self._auc_text(res))
        t = self.utility_table
        t.setRowCount(0)
        self.auc_plot.clear()
        leg = self.auc_plot.plotItem.legend
        if leg is not None:
            leg.clear()
        if not isinstance(u, dict):
            t.hide()
            self.auc_plot.hide()
            return
        t.show()
        self.auc_plot.show()
        c = u.get("counts", {})
        models = (("real_only", f"real ({c.get('real_train')})"),
                  ("real_plus_synthetic", f"real + synthetic ({c.get('real_train')} + {c.get('synthetic')})"))
        for r, (key, label) in enumerate(models):
            rep = u.get(key) or {}
            a = rep.get("auc")
            t.insertRow(r)
            cells = [label, f"{a['auc']:.3f}  [{a['ci95'][0]:.3f}, {a['ci95'][1]:.3f}]" if a else "–",
                     f"{rep.get('accuracy', float('nan')):.3f}", f"{rep.get('f1_macro', float('nan')):.3f}",
                     "  ".join(str(row) for row in rep.get("confusion_matrix", []))]
            for col, text in enumerate(cells):
                t.setItem(r, col, QTableWidgetItem(text))
        # the plot: headline AUC, and each class's one-vs-rest AUC when there are more than two classes
        names = u.get("class_names") or []
        cats = [("overall", None)]
        per = (u.get("real_only") or {}).get("per_class_auc") or {}
        if len(names) > 2:
            cats += [(names[int(k)] if int(k) < len(names) else str(k), k) for k in per]
        lo = 1.0
        for j, (key, label) in enumerate(models):
            xs, ys, los, his = [], [], [], []
            for i, (_, k) in enumerate(cats):
                rep = u.get(key) or {}
                a = rep.get("auc") if k is None else (rep.get("per_class_auc") or {}).get(k)
                if not a:
                    continue
                xs.append(i + (j - 0.5) * 0.3)
                ys.append(a["auc"])
                ci = [v if v is not None and np.isfinite(v) else a["auc"] for v in a["ci95"]]
                los.append(a["auc"] - ci[0])
                his.append(ci[1] - a["auc"])
                lo = min(lo, ci[0])
            if not xs:
                continue
            col = PALETTE[j]
            self.auc_plot.addItem(pg.ErrorBarItem(x=np.array(xs), y=np.array(ys), bottom=np.array(los), top=np.array(his),
                                                  beam=0.08, pen=pg.mkPen(col, width=2)))
            self.auc_plot.plot(xs, ys, pen=None, symbol="o", symbolSize=9, symbolBrush=col, symbolPen=col,
                               name=label.split(" (")[0])
        self.auc_plot.getAxis("bottom").setTicks([[(i, name) for i, (name, _) in enumerate(cats)]])
        self.auc_plot.setXRange(-0.6, len(cats) - 0.4, padding=0)
        self.auc_plot.setYRange(max(0.0, lo - 0.05), 1.0, padding=0.02)

    def _show_eval_group(self) -> None:
        res = self.eval_result or {}
        group = self.class_combo.currentText()
        table = (res.get("tables") or {}).get(group, {})
        t = self.metrics_table
        t.setRowCount(0)
        for name, row in table.items():
            r = t.rowCount()
            t.insertRow(r)
            item = QTableWidgetItem(row_label(name, res.get("noise_sigma")))
            item.setData(Qt.UserRole, name)
            item.setToolTip(name)
            t.setItem(r, 0, item)
            for c, (key, _label, fmt) in enumerate(EVAL_COLUMNS, start=1):
                v = row.get(key)
                if key == "histogram":
                    v = (v or {}).get("wasserstein")
                elif key == "diversity":
                    v = (v or {}).get("ms_ssim_mean")
                if key == "kid_mean" and v is not None:
                    text = f"{v:.4f} ± {row.get('kid_std', 0):.4f}"
                else:
                    text = fmt.format(v) if isinstance(v, (int, float)) and np.isfinite(v) else "–"
                t.setItem(r, c, QTableWidgetItem(text))
        t.setToolTip(f"extractor: {res.get('extractor')}; per class when both sets carry labels")
        if self.eval_sets:
            for grid, key in ((self.real_grid, "real"), (self.gen_grid, "generated")):
                s = self.eval_sets[key]
                sel = np.arange(len(s.images))
                if group != "overall" and s.labels is not None and group in s.class_names:
                    sel = np.flatnonzero(s.labels == s.class_names.index(group))
                elif group != "overall" and s.labels is not None and group.isdigit():
                    sel = np.flatnonzero(s.labels == int(group))
                total = len(sel)
                sel = sel[:24]
                grid.set_images(s.images[sel], labels=None)
                attr = "real_grid" if key == "real" else "gen_grid"
                what = "all classes" if group == "overall" else f"class {group}"
                self.grid_titles[attr].setText(f"{'Real' if key == 'real' else 'Generated'} — {what}: "
                                               f"{len(sel)} of {total} shown")
