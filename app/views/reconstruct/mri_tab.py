"""The Reconstruction panel's MRI comparison tab: a live mask preview, one "recon" job per method, linked results.

The source is a k-space / complex-image file (fastMRI HDF5, NPZ, NPY; slice picker, coil view for
multi-coil data) or an image of a workspace dataset (k-space simulated from it: the image is written to a
small NPZ the job reads, on a worker thread). The mask designer redraws the mask and the undersampled
k-space (log magnitude) with the achieved acceleration while the values change: debounced by a 150 ms timer
and computed on a worker thread, stale results dropped. Each checked method is one "recon" job (a
``ReconSpec`` from ``MRIForm``) submitted through a ``JobController``; the jobs' image events fill the
comparison grid (``reference``, ``<method>``, ``<method> error``, ``<method> uncertainty``) and their Done
results the metrics table. The flicker view flips between two results; Export writes the grid as a PNG and
every array as an NPZ, off the GUI thread.
"""

from __future__ import annotations

import itertools
from pathlib import Path

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from app.engine.specs.options import SCORE_METHODS
from app.views.job_controller import JobController
from app.views.reconstruct.common import export_comparison, fill_metrics, metrics_table
from app.views.reconstruct.mri_form import MRIForm
from app.views.reconstruct.sources import dataset_image_to_npz, load_source, preview_mask
from app.views.widgets.comparison_grid import ComparisonGrid
from app.views.widgets.image_view import ImageView
from app.views.widgets.scroll import scrolled
from app.workers.manager import run_in_thread

PREVIEW_DEBOUNCE_MS = 150


class MRITab(QWidget):
    """See the module docstring. ``form`` holds the controls; ``jobs`` the controller of the comparison."""

    preview_updated = Signal()
    comparison_updated = Signal()

    def __init__(self, ctx):
        super().__init__()
        self.ctx = ctx
        self.source: dict | None = None
        self.preview: dict | None = None
        self.preview_count = 0
        self.last_export: list[Path] = []
        self._preview_token = itertools.count()
        self._preview_want = 0

        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 4, 0, 0)
        split = QSplitter(Qt.Horizontal)
        lay.addWidget(split)
        self.form = f = MRIForm()
        # as wide as the form needs beside its vertical scroll bar: nothing is cut off on a small screen
        sc = scrolled(f, horizontal=False, name="mriFormScroll", least_width=340)
        split.addWidget(sc)
        split.addWidget(self._build_views())
        split.setSizes([350, 1100])
        self.jobs = JobController(ctx.jobs, f.status, what="Reconstruction", parent=self)
        self.jobs.changed.connect(self.update_buttons)
        self.jobs.finished.connect(self._on_method_done)

        f.browse_button.clicked.connect(self._browse_file)
        f.file_edit.editingFinished.connect(lambda: self.load_file(f.file_edit.text()))
        f.use_button.clicked.connect(self.use_dataset_image)
        f.slice_spin.valueChanged.connect(lambda v: self.load_file(f.input_path, v) if f.input_path else None)
        f.coil_combo.currentIndexChanged.connect(lambda *_: self._show_source_image())
        f.run_button.clicked.connect(self.reconstruct)
        f.stop_button.clicked.connect(self.jobs.stop)
        f.changed.connect(self.update_buttons)
        self._preview_timer = QTimer(self)
        self._preview_timer.setSingleShot(True)
        self._preview_timer.setInterval(PREVIEW_DEBOUNCE_MS)
        self._preview_timer.timeout.connect(self._compute_preview)
        f.mask_changed.connect(lambda: self.schedule_preview())

    def _build_views(self) -> QWidget:
        right = QWidget()
        rl = QVBoxLayout(right)
        rl.setContentsMargins(0, 0, 0, 0)
        vs = self.mri_split = QSplitter(Qt.Vertical)
        prev = QWidget()
        pl = QHBoxLayout(prev)
        pl.setContentsMargins(0, 0, 0, 0)
        self.source_view = ImageView(title="Source")
        self.source_view.setObjectName("sourceView")
        self.mask_view = ImageView(title="Mask")
        self.mask_view.setObjectName("maskView")
        self.kspace_view = ImageView(title="Undersampled k-space (log)")
        self.kspace_view.setObjectName("kspaceView")
        # mask and k-space share zoom / pan (same k-space grid) but not the window (0/1 vs log |k|)
        self._kspace_sync = False
        self.mask_view.vb.sigRangeChanged.connect(lambda *_: self._sync_kspace(self.mask_view, self.kspace_view))
        self.kspace_view.vb.sigRangeChanged.connect(lambda *_: self._sync_kspace(self.kspace_view, self.mask_view))
        for v in (self.source_view, self.mask_view, self.kspace_view):
            v.setMinimumHeight(110)
            pl.addWidget(v)
        vs.addWidget(prev)

        cmp = QWidget()
        cml = QVBoxLayout(cmp)
        cml.setContentsMargins(0, 0, 0, 0)
        row = QHBoxLayout()
        row.addWidget(QLabel("Flicker"))
        self.flick_a = QComboBox()
        self.flick_a.setObjectName("flickerA")
        self.flick_b = QComboBox()
        self.flick_b.setObjectName("flickerB")
        for c in (self.flick_a, self.flick_b):
            c.setMinimumContentsLength(12)
            c.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
        row.addWidget(self.flick_a)
        row.addWidget(QLabel("⇄"))
        row.addWidget(self.flick_b)
        self.flick_button = QPushButton("Flip (F)")
        self.flick_button.setObjectName("flickButton")
        self.flick_button.clicked.connect(lambda: self.grid.flick())
        self.flick_auto = QCheckBox("auto")
        self.flick_auto.setToolTip("flip every 0.7 s")
        self.flick_auto.toggled.connect(lambda on: self.grid.set_flicker_running(on))
        row.addWidget(self.flick_button)
        row.addWidget(self.flick_auto)
        row.addStretch(1)
        self.export_button = QPushButton("Export comparison…")
        self.export_button.setObjectName("exportComparison")
        self.export_button.setToolTip("PNG of the grid and an NPZ of every array shown")
        self.export_button.clicked.connect(lambda: self.export())
        row.addWidget(self.export_button)
        cml.addLayout(row)
        self.grid = ComparisonGrid()
        self.grid.setObjectName("comparisonGrid")
        self.grid.changed.connect(self._on_grid_changed)
        cml.addWidget(self.grid, 1)
        self.flick_a.currentIndexChanged.connect(lambda *_: self._on_flicker_choice())
        self.flick_b.currentIndexChanged.connect(lambda *_: self._on_flicker_choice())
        QShortcut(QKeySequence("F"), self, activated=lambda: self.grid.flick())
        self.metrics_table = metrics_table("metricsTable", ("R", "time (s)"))
        cml.addWidget(self.metrics_table)
        vs.addWidget(cmp)
        vs.setSizes([190, 700])
        rl.addWidget(vs)
        return right

    def _sync_kspace(self, src: ImageView, dst: ImageView) -> None:
        if self._kspace_sync:
            return
        self._kspace_sync = True
        try:
            dst.vb.setRange(src.target_rect(), padding=0.0)
        finally:
            self._kspace_sync = False

    # -- source ------------------------------------------------------------------------------------
    @property
    def group(self):
        """The jobs of the last comparison (``handles``, ``results``), None before the first."""
        return self.jobs.group

    def _browse_file(self):
        path, _ = QFileDialog.getOpenFileName(self, "k-space or complex image file", "",
                                              "MRI data (*.h5 *.hdf5 *.npz *.npy);;All files (*)")
        if path:
            self.form.file_edit.setText(path)
            self.load_file(path)

    def set_datasets(self, names: list[str]) -> None:
        combo = self.form.dataset_combo
        keep = combo.currentText()
        combo.clear()
        combo.addItems(names)
        if keep in names:
            combo.setCurrentText(keep)

    def use_dataset_image(self):
        """Write the chosen dataset image as an NPZ (worker thread), then load it as the source."""
        name = self.form.dataset_combo.currentText()
        if not name:
            self.jobs.say("The workspace has no dataset yet.")
            return None
        ws, idx = self.ctx.workspace, self.form.dataset_index.value()
        out = Path(ws.root) / "recon-inputs"
        self.jobs.say(f"Simulating k-space from {name} #{idx}…")
        return run_in_thread(lambda: dataset_image_to_npz(ws, name, idx, out),
                             lambda p: (self.form.file_edit.setText(p), self.load_file(p, 0)),
                             lambda msg, tb: self.jobs.say(f"Could not read {name}: {msg}"))

    def load_file(self, path: str, slice_index: int | None = None):
        """Read a slice for the preview on a worker thread (the job reads it again itself)."""
        f = self.form
        path = (path or "").strip()
        if not path:
            return None
        if f.input_path != path:
            f.file_edit.setText(path)
        s = f.slice_spin.value() if slice_index is None else int(slice_index)
        self.jobs.say(f"Reading {Path(path).name} slice {s}…")

        def failed(msg, tb):
            self.source = None
            f.source_info.setText(msg)
            self.jobs.say(f"Cannot use this source: {msg}")
            self.update_buttons()

        return run_in_thread(lambda: load_source(path, s), self._on_source_loaded, failed)

    def _on_source_loaded(self, src: dict) -> None:
        f = self.form
        self.source = src
        f.slice_spin.blockSignals(True)
        f.slice_spin.setRange(0, max(src["n_slices"] - 1, 0))
        f.slice_spin.setValue(src["slice"])
        f.slice_spin.blockSignals(False)
        f.coil_combo.blockSignals(True)
        f.coil_combo.clear()
        f.coil_combo.addItem("combined (RSS)" if src["multicoil"] else "single coil", -1)
        if src["coils"] is not None:
            for c in range(src["coils"].shape[0]):
                f.coil_combo.addItem(f"coil {c + 1}", c)
        f.coil_combo.blockSignals(False)
        k = src["kspace"]
        shape = "×".join(map(str, k.shape[-2:]))
        f.source_info.setText(
            f"{Path(src['source']).name}: slice {src['slice']} of {src['n_slices']}, {shape}, "
            + (f"{k.shape[0]} coils" if src["multicoil"] else "single coil")
            + (", already undersampled (its own pattern is the mask)" if src["measured_mask"] is not None else ", fully sampled"))
        f.mask_kind.setEnabled(src["measured_mask"] is None)
        self.jobs.say("")
        self._show_source_image()
        self.schedule_preview(0)
        self.update_buttons()

    def _show_source_image(self) -> None:
        if self.source is None:
            return
        c = self.form.coil_combo.currentData()
        if c is not None and c >= 0 and self.source["coils"] is not None:
            self.source_view._title = f"Coil {c + 1} (magnitude)"
            self.source_view.set_image(self.source["coils"][c], autolevel=True)
        else:
            self.source_view._title = "Fully sampled (reference)" if self.source["measured_mask"] is None else "Zero-filled RSS"
            self.source_view.set_image(self.source["reference"], autolevel=True)

    # -- live preview ------------------------------------------------------------------------------
    def schedule_preview(self, delay_ms: int | None = None) -> None:
        """Debounce: the preview is computed ``delay_ms`` (150) after the last change."""
        if delay_ms is not None:
            self._preview_timer.setInterval(delay_ms)
        self._preview_timer.start()
        self._preview_timer.setInterval(PREVIEW_DEBOUNCE_MS)

    def _compute_preview(self) -> None:
        if self.source is None:
            return
        f = self.form
        token = next(self._preview_token)
        self._preview_want = token
        src = self.source
        args = (f.mask_kind.currentData(), f.accel.value(), f.center.value(), f.seed.value())

        def done(p, token=token):
            if token != self._preview_want:  # a newer preview was asked for: this one is stale
                return
            self.preview = p
            self.preview_count += 1
            self.mask_view.set_image(p["mask"], levels=(0.0, 1.0))
            self.kspace_view.set_image(p["log_kspace"], autolevel=True)
            what = "measured pattern" if p["measured"] else f"{args[0]} mask"
            self._say_achieved(f"achieved R = {p['achieved']:.2f}  ({what}, "
                               f"{100.0 / p['achieved']:.1f} % of k-space sampled)", "")
            self.update_buttons()
            self.preview_updated.emit()

        def failed(msg, tb, token=token):
            if token != self._preview_want:
                return
            self.preview = None
            self._say_achieved(msg, "error")
            self.update_buttons()

        run_in_thread(lambda: preview_mask(src["kspace"], src["measured_mask"], *args), done, failed)

    def _say_achieved(self, text: str, role: str) -> None:
        a = self.form.achieved
        a.setText(text)
        a.setProperty("role", role)
        a.style().polish(a)

    # -- running -----------------------------------------------------------------------------------
    def update_buttons(self, *_) -> None:
        f = self.form
        valid = f.validate() is not None
        ok = bool(f.input_path) and self.source is not None and valid
        if f.use_score.isChecked() and not f.run_combo.currentData():
            ok = False
        f.run_button.setEnabled(ok and not self.jobs.busy)
        f.stop_button.setEnabled(self.jobs.busy)

    def reconstruct(self):
        """Submit one recon job per checked method; returns their specs (None when nothing was submitted)."""
        f = self.form
        methods = f.selected_methods()
        if not f.input_path or not methods:
            self.jobs.say("Choose a source and at least one method.")
            return None
        if any(m in SCORE_METHODS for m in methods) and not f.run_combo.currentData():
            self.jobs.say("Score-based reconstruction needs a checkpoint: train a complex-image prior first.")
            return None
        specs = f.validate()
        if specs is None:
            self.jobs.say("Not valid: correct the value named in red.")
            return None
        self.grid.clear()
        # k-space undersampled at acquisition has no fully sampled reference: no error row then
        self.grid.set_reference_expected(self.source is None or self.source["measured_mask"] is None)
        self.metrics_table.setRowCount(0)
        self.flick_a.clear()
        self.flick_b.clear()
        sizes = self.mri_split.sizes()  # give the comparison the room; the designer row stays visible
        self.mri_split.setSizes([min(sizes[0], 150), sum(sizes) - min(sizes[0], 150)])
        self.jobs.start()
        for spec, m in zip(specs, methods):
            self.grid.ensure_method(m)
            self.jobs.submit(spec, name=m, on_image=self._on_image)
        self.jobs.say(f"{len(specs)} job(s) submitted: {', '.join(methods)} (see the Jobs dock).")
        self.update_buttons()
        return specs

    def _on_image(self, name, arr, kind) -> None:
        if name in ("mask", "kspace"):
            return  # the designer already shows the same mask (same seed) and k-space
        self.grid.on_image(name, arr, kind)

    def _on_method_done(self, method: str, h) -> None:
        group = self.jobs.group
        if h.state != "done":
            return
        res = h.result or {}
        entry = dict((res.get("methods") or {}).get(method, {}))
        entry["extra"] = (res.get("mask") or {}).get("acceleration")
        # the handle delivers every image event before its end: the grid holds the final images now
        entry["_final"] = True
        group.results[method] = entry
        fill_metrics(self.metrics_table, group.results)
        if group.all_final():
            self.jobs.say(f"{len(group.results)} reconstruction(s) done in {group.seconds():.1f} s.")
        self.comparison_updated.emit()

    # -- flicker and grid --------------------------------------------------------------------------
    def _on_grid_changed(self) -> None:
        names = list(self.grid.methods)
        for combo, default in ((self.flick_a, 0), (self.flick_b, 1)):
            have = [combo.itemText(i) for i in range(combo.count())]
            if have != names:
                keep = combo.currentText()
                combo.blockSignals(True)
                combo.clear()
                combo.addItems(names)
                other = self.flick_a.currentText() if combo is self.flick_b else ""
                if keep in names and not (keep == other and len(names) > default):
                    combo.setCurrentText(keep)
                elif len(names) > default:
                    combo.setCurrentIndex(default)
                combo.blockSignals(False)

    def _on_flicker_choice(self) -> None:
        a, b = self.flick_a.currentText(), self.flick_b.currentText()
        if a and b:
            self.grid.set_flicker(a, b)

    def export(self, out_dir: str | Path | None = None):
        """Write ``comparison.png`` and ``comparison.npz`` off the GUI thread; returns the paths it writes
        (``last_export`` holds them once written)."""
        results = self.group.results if self.group else {}
        return export_comparison(self, self.grid, results, out_dir, "comparison", self.jobs,
                                 lambda paths: setattr(self, "last_export", paths))
