"""Reconstruction panel: design a mask live, run MRI / CT reconstructions as jobs, compare them linked.

Three tabs:

- **MRI**: the source is a k-space / complex-image file (fastMRI HDF5, NPZ, NPY; slice picker, coil
  view for multi-coil data) or an image of a workspace dataset (k-space simulated from it: the
  image is written to a small NPZ the recon job reads). The mask designer (type, acceleration,
  centre fraction, seed) redraws the mask and the undersampled k-space (log magnitude) with the
  achieved acceleration while the values change: debounced by a 150 ms timer and computed on a
  worker thread (a Poisson-disc mask takes a moment), stale results dropped. Each checked method
  (zero-filled, CS-TV with its lambda, score-based with a checkpoint of the workspace's runs and N
  posterior samples) is one "recon" job in the Jobs dock; its intermediate images fill the
  comparison grid (``widgets/comparison_grid.py``) as they come; PSNR / SSIM / NMSE go to the
  table under the images. The flicker view flips between two results. Export writes the grid as
  a PNG (``grab()``) and every array as an NPZ.
- **Acceleration sweep**: the "recon-sweep" job over slices x accelerations x methods; metric
  against acceleration per method (mean with a ±1 std bar), and the best / worst slice of each
  cell one click away (its error map, or open it in the MRI comparison).
- **CT**: the same comparison for sparse-view reconstruction and denoising ("ct-recon" jobs).

Views never import torch: spec classes of these kinds import it (their modules load the
operators), so specs are validated on a worker thread (``run_in_thread(parse_spec)``) and then
submitted; the preview uses only the numpy modules ``recon.mri.masks`` / ``fft`` / ``io``.
"""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QKeySequence, QShortcut
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
    QLineEdit,
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

from app.engine.recon.mri.warm import AUTO, warm_default
from app.views.widgets.comparison_grid import ComparisonGrid
from app.views.widgets.image_view import ImageView
from app.views.widgets.plots import PALETTE
from app.workers.manager import run_in_thread

MASK_KINDS = ("random", "equispaced", "gaussian1d", "poisson2d", "radial")  # = recon.mri.masks.MASK_KINDS
METRIC_COLUMNS = (("psnr", "PSNR (dB)", "{:.2f}"), ("ssim", "SSIM", "{:.4f}"), ("nmse", "NMSE", "{:.4f}"))
PREVIEW_DEBOUNCE_MS = 150


def _status(main_window, text: str) -> None:
    if main_window is not None and hasattr(main_window, "statusBar"):
        main_window.statusBar().showMessage(text, 6000)


def _validate_specs(dicts: list[dict]):
    from app.engine.jobs import parse_spec

    return [parse_spec(d) for d in dicts]


def load_source(path: str, slice_index: int) -> dict:
    """Read one slice for the preview (numpy only): k-space, reference, coil images, slice count."""
    from app.engine.recon.mri.fft import ifft2c, rss
    from app.engine.recon.mri.io import load_recon_input

    inp = load_recon_input(path, slice_index)
    k = np.asarray(inp.kspace)
    coils = np.abs(ifft2c(k)) if k.ndim == 3 else None
    if inp.reference is not None:
        ref = np.abs(np.asarray(inp.reference)).astype(np.float32)
    else:
        ref = (rss(ifft2c(k)) if k.ndim == 3 else np.abs(ifft2c(k))).astype(np.float32)
    return {"kspace": k, "reference": ref, "coils": coils, "n_slices": inp.n_slices, "slice": inp.slice_index,
            "measured_mask": inp.measured_mask, "multicoil": inp.multicoil, "source": inp.source}


def preview_mask(kspace: np.ndarray, measured_mask, kind: str, acceleration: float, center_fraction: float,
                 seed: int) -> dict:
    """Mask, undersampled k-space (log magnitude, coil-combined) and the achieved acceleration."""
    from app.engine.recon.mri.masks import make_mask

    shape = kspace.shape[-2:]
    if measured_mask is not None:
        mask = np.asarray(measured_mask, np.float32)
        achieved = float(mask.size / max(mask.sum(), 1.0))
    else:
        mask, achieved = make_mask(kind, shape, acceleration, center_fraction, seed)
    y = kspace * mask
    mag = np.sqrt((np.abs(y) ** 2).sum(0)) if y.ndim == 3 else np.abs(y)
    return {"mask": mask, "log_kspace": np.log1p(mag / max(float(mag.max()), 1e-12) * 1e4).astype(np.float32),
            "achieved": achieved, "measured": measured_mask is not None}


def dataset_image_to_npz(workspace, dataset: str, index: int, out_dir: Path) -> str:
    """Write image ``index`` of a workspace dataset as a complex NPZ the recon job reads (k-space is
    simulated from it; a magnitude image has zero phase, which the path says)."""
    from app.engine.data.imagesets import load_image_set

    s = load_image_set(dataset, workspace=workspace)
    if not 0 <= index < len(s):
        from app.engine.jobs import UserError

        raise UserError(f"dataset {dataset} has {len(s)} images; index {index} is out of range")
    img = (np.asarray(s.images[index, 0], np.float32) + 1.0) / 2.0  # [-1, 1] -> [0, 1] magnitude
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{dataset.replace(':', '_')}_{index:05d}_zero_phase.npz"
    np.savez(path, images=img[None].astype(np.complex64))
    return str(path)


#: network evaluations a sampler needs per posterior sample: annealed Langevin and predictor-corrector
#: anneal the noise slowly; decomposed diffusion moves to a data-consistent image at every step
SCORE_DEFAULT_STEPS = {"score-ald": 100, "score-pc": 100, "score-dds": 30}


def _fit_height(table: QTableWidget, max_rows: int = 6) -> None:
    """Size a small results table to its rows (no scroll bar for a handful of methods)."""
    rows = min(table.rowCount(), max_rows)
    h = table.horizontalHeader().height() + sum(table.rowHeight(r) for r in range(rows)) + 2 * table.frameWidth() + 2
    table.setFixedHeight(max(h, 60))


class _JobGroup:
    """The jobs of one comparison run (one per method) and what came back from them."""

    def __init__(self):
        self.handles: list = []
        self.results: dict[str, dict] = {}
        self.started = time.monotonic()


class ReconstructPanel(QWidget):
    """See the module docstring."""

    preview_updated = Signal()
    comparison_updated = Signal()

    def __init__(self, ctx):
        super().__init__()
        self.ctx = ctx
        self.source: dict | None = None
        self.preview: dict | None = None
        self.preview_count = 0
        self.group: _JobGroup | None = None
        self.ct_group: _JobGroup | None = None
        self.sweep_handle = None
        self.sweep_result: dict | None = None
        self.sweep_arrays: dict[str, np.ndarray] = {}
        self.last_export: list[Path] = []
        self._preview_token = itertools.count()
        self._preview_want = 0

        outer = QVBoxLayout(self)
        outer.setContentsMargins(6, 6, 6, 6)
        title = QLabel("Reconstruction")
        title.setProperty("role", "title")
        outer.addWidget(title)
        self.tabs = QTabWidget()
        self.tabs.setObjectName("reconTabs")
        outer.addWidget(self.tabs, 1)
        self.tabs.addTab(self._build_mri_tab(), "MRI comparison")
        self.tabs.addTab(self._build_sweep_tab(), "Acceleration sweep")
        self.tabs.addTab(self._build_ct_tab(), "CT")

        self._preview_timer = QTimer(self)
        self._preview_timer.setSingleShot(True)
        self._preview_timer.setInterval(PREVIEW_DEBOUNCE_MS)
        self._preview_timer.timeout.connect(self._compute_preview)
        for w in (self.mask_kind, self.accel, self.center, self.seed):
            sig = w.currentIndexChanged if isinstance(w, QComboBox) else w.valueChanged
            sig.connect(lambda *_: self.schedule_preview())
        self.mask_kind.currentIndexChanged.connect(self._on_mask_changed)
        self.accel.valueChanged.connect(self._on_mask_changed)
        ctx.jobs.job_finished.connect(self._on_any_job_finished)
        self.refresh_runs()
        self.refresh_datasets()
        self._update_buttons()

    # ============================================================================================
    # MRI tab
    # ============================================================================================
    def _build_mri_tab(self) -> QWidget:
        tab = QWidget()
        lay = QHBoxLayout(tab)
        lay.setContentsMargins(0, 4, 0, 0)
        split = QSplitter(Qt.Horizontal)
        lay.addWidget(split)

        # -- controls --
        ctl = QWidget()
        cl = QVBoxLayout(ctl)
        cl.setContentsMargins(0, 0, 4, 0)

        src = QGroupBox("Source")
        sf = QFormLayout(src)
        self.source_kind = QComboBox()
        self.source_kind.setObjectName("sourceKind")
        self.source_kind.addItem("k-space / complex image file", "file")
        self.source_kind.addItem("image of a dataset (k-space simulated)", "dataset")
        self.source_kind.currentIndexChanged.connect(self._on_source_kind)
        sf.addRow("From", self.source_kind)
        frow = QHBoxLayout()
        self.file_edit = QLineEdit()
        self.file_edit.setObjectName("sourceFile")
        self.file_edit.setPlaceholderText("fastMRI .h5, .npz (kspace / images), .npy")
        self.file_edit.editingFinished.connect(lambda: self.load_file(self.file_edit.text()))
        browse = QPushButton("…")
        browse.setFixedWidth(28)
        browse.clicked.connect(self._browse_file)
        frow.addWidget(self.file_edit, 1)
        frow.addWidget(browse)
        self.file_row = QWidget()
        self.file_row.setLayout(frow)
        frow.setContentsMargins(0, 0, 0, 0)
        sf.addRow("File", self.file_row)
        drow = QHBoxLayout()
        drow.setContentsMargins(0, 0, 0, 0)
        self.dataset_combo = QComboBox()
        self.dataset_combo.setObjectName("sourceDataset")
        self.dataset_index = QSpinBox()
        self.dataset_index.setRange(0, 10_000_000)
        self.dataset_index.setToolTip("image index in the dataset")
        use = QPushButton("Use")
        use.clicked.connect(self.use_dataset_image)
        drow.addWidget(self.dataset_combo, 1)
        drow.addWidget(self.dataset_index)
        drow.addWidget(use)
        self.dataset_row = QWidget()
        self.dataset_row.setLayout(drow)
        sf.addRow("Dataset", self.dataset_row)
        self.slice_spin = QSpinBox()
        self.slice_spin.setObjectName("sliceSpin")
        self.slice_spin.setRange(0, 0)
        self.slice_spin.setKeyboardTracking(False)
        self.slice_spin.valueChanged.connect(lambda v: self.load_file(self.file_edit.text(), v) if self.input_path else None)
        sf.addRow("Slice", self.slice_spin)
        self.coil_combo = QComboBox()
        self.coil_combo.setObjectName("coilCombo")
        self.coil_combo.addItem("combined (RSS)", -1)
        self.coil_combo.currentIndexChanged.connect(lambda *_: self._show_source_image())
        sf.addRow("Coil view", self.coil_combo)
        self.source_info = QLabel("No source loaded.")
        self.source_info.setWordWrap(True)
        self.source_info.setProperty("role", "hint")
        sf.addRow(self.source_info)
        cl.addWidget(src)
        self._on_source_kind()

        mk = QGroupBox("Mask designer")
        mf = QFormLayout(mk)
        self.mask_kind = QComboBox()
        self.mask_kind.setObjectName("maskKind")
        for k in MASK_KINDS:
            self.mask_kind.addItem(k, k)
        self.accel = QDoubleSpinBox()
        self.accel.setObjectName("acceleration")
        self.accel.setRange(1.0, 64.0)
        self.accel.setSingleStep(0.5)
        self.accel.setValue(4.0)
        self.center = QDoubleSpinBox()
        self.center.setObjectName("centerFraction")
        self.center.setDecimals(3)
        self.center.setRange(0.005, 0.99)
        self.center.setSingleStep(0.01)
        self.center.setValue(0.08)
        self.seed = QSpinBox()
        self.seed.setObjectName("maskSeed")
        self.seed.setRange(0, 2**31 - 1)
        mf.addRow("Type", self.mask_kind)
        mf.addRow("Acceleration R", self.accel)
        mf.addRow("Centre fraction", self.center)
        mf.addRow("Seed", self.seed)
        self.achieved = QLabel("achieved R: –")
        self.achieved.setObjectName("achievedLabel")
        self.achieved.setWordWrap(True)
        mf.addRow(self.achieved)
        cl.addWidget(mk)

        me = QGroupBox("Methods (each one job)")
        mel = QFormLayout(me)
        self.use_zf = QCheckBox("zero-filled")
        self.use_zf.setChecked(True)
        self.use_cs = QCheckBox("CS-TV")
        self.use_cs.setChecked(True)
        mel.addRow(self.use_zf)
        mel.addRow(self.use_cs)
        self.cs_lam = QDoubleSpinBox()
        self.cs_lam.setObjectName("csLambda")
        self.cs_lam.setDecimals(5)
        self.cs_lam.setRange(1e-5, 10.0)
        self.cs_lam.setSingleStep(0.001)
        self.cs_lam.setValue(0.005)
        self.cs_iter = QSpinBox()
        self.cs_iter.setObjectName("csIterations")
        self.cs_iter.setRange(1, 10000)
        self.cs_iter.setValue(100)
        mel.addRow("  λ (TV weight)", self.cs_lam)
        mel.addRow("  iterations", self.cs_iter)
        self.use_score = QCheckBox("score-based (posterior sampling)")
        mel.addRow(self.use_score)
        self.score_method = QComboBox()
        self.score_method.addItem("annealed Langevin + DC", "score-ald")
        self.score_method.addItem("predictor-corrector + DC", "score-pc")
        self.score_method.addItem("decomposed diffusion (DC on x0, fast)", "score-dds")
        self.run_combo = QComboBox()
        self.run_combo.setObjectName("checkpointRun")
        self.run_combo.setToolTip("a training run of this workspace whose prior models 2-channel complex images")
        self.samples = QSpinBox()
        self.samples.setObjectName("posteriorSamples")
        self.samples.setRange(1, 256)
        self.samples.setValue(4)
        self.samples.setToolTip(
            "posterior samples: their mean is the reconstruction and their spread the uncertainty map. More "
            "samples give a better mean and a steadier map at N times the time; on three SIAT validation slices "
            "(Poisson-disc R = 4, warm start) the mean of 1 / 4 / 16 samples had SSIM 0.842 / 0.875 / 0.883")
        self.steps = QSpinBox()
        self.steps.setObjectName("scoreSteps")
        self.steps.setRange(1, 5000)
        self.steps.setValue(100)
        mel.addRow("  sampler", self.score_method)
        mel.addRow("  checkpoint", self.run_combo)
        self.warm = QCheckBox("start from CS-TV at σ")
        self.warm.setObjectName("warmStart")
        self.warm.setChecked(True)
        self.warm.setToolTip("decomposed diffusion only: start from the CS-TV image (λ and iterations above) noised "
                             "to this level instead of from pure noise, in fewer steps. The level follows the mask "
                             "unless you set it: 0.1 for 2D variable-density masks at R <= 5 (better than from "
                             "noise in a third of the time); 0.3 for 1D Cartesian masks, where CS-TV keeps more "
                             "aliasing; 0.5 above R = 5, where a low start keeps CS-TV's artefacts")
        self.warm_level = QDoubleSpinBox()
        self.warm_level.setObjectName("warmStartLevel")
        self.warm_level.setDecimals(3)
        self.warm_level.setRange(0.005, 20.0)
        self.warm_level.setSingleStep(0.05)
        self._warm_level_default = self._warm_default()[0]
        self.warm_level.setValue(self._warm_level_default)
        wrow = QHBoxLayout()
        wrow.setContentsMargins(0, 0, 0, 0)
        wrow.addWidget(self.warm)
        wrow.addWidget(self.warm_level, 1)
        self.warm_row = QWidget()
        self.warm_row.setLayout(wrow)
        mel.addRow("  samples N", self.samples)
        mel.addRow("  warm start", self.warm_row)
        mel.addRow("  steps", self.steps)
        self._score_steps_default = self._default_steps()
        self.steps.setValue(self._score_steps_default)
        self._update_warm_row()
        self.score_method.currentIndexChanged.connect(self._on_score_method)
        self.warm.toggled.connect(self._on_score_method)
        for cb in (self.use_zf, self.use_cs, self.use_score):
            cb.toggled.connect(lambda *_: self._update_buttons())
        cl.addWidget(me)

        brow = QHBoxLayout()
        self.run_button = QPushButton("Reconstruct")
        self.run_button.setObjectName("reconstructButton")
        self.run_button.clicked.connect(self.reconstruct)
        self.stop_button = QPushButton("Stop")
        self.stop_button.clicked.connect(self.stop)
        brow.addWidget(self.run_button, 1)
        brow.addWidget(self.stop_button)
        cl.addLayout(brow)
        self.status = QLabel("")
        self.status.setObjectName("reconStatus")
        self.status.setWordWrap(True)
        cl.addWidget(self.status)
        cl.addStretch(1)
        sc = QScrollArea()
        sc.setWidgetResizable(True)
        sc.setWidget(ctl)
        sc.setMinimumWidth(340)
        sc.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        split.addWidget(sc)

        # -- views --
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
            v.setMinimumHeight(150)
            pl.addWidget(v)
        vs.addWidget(prev)

        cmp = QWidget()
        cml = QVBoxLayout(cmp)
        cml.setContentsMargins(0, 0, 0, 0)
        frow2 = QHBoxLayout()
        frow2.addWidget(QLabel("Flicker"))
        self.flick_a = QComboBox()
        self.flick_a.setObjectName("flickerA")
        self.flick_b = QComboBox()
        self.flick_b.setObjectName("flickerB")
        for c in (self.flick_a, self.flick_b):
            c.setMinimumContentsLength(12)
            c.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
        frow2.addWidget(self.flick_a)
        frow2.addWidget(QLabel("⇄"))
        frow2.addWidget(self.flick_b)
        self.flick_button = QPushButton("Flip (F)")
        self.flick_button.setObjectName("flickButton")
        self.flick_button.clicked.connect(lambda: self.grid.flick())
        self.flick_auto = QCheckBox("auto")
        self.flick_auto.setToolTip("flip every 0.7 s")
        self.flick_auto.toggled.connect(lambda on: self.grid.set_flicker_running(on))
        frow2.addWidget(self.flick_button)
        frow2.addWidget(self.flick_auto)
        frow2.addStretch(1)
        self.export_button = QPushButton("Export comparison…")
        self.export_button.setObjectName("exportComparison")
        self.export_button.setToolTip("PNG of the grid and an NPZ of every array shown")
        self.export_button.clicked.connect(lambda: self.export())
        frow2.addWidget(self.export_button)
        cml.addLayout(frow2)
        self.grid = ComparisonGrid()
        self.grid.setObjectName("comparisonGrid")
        self.grid.changed.connect(self._on_grid_changed)
        cml.addWidget(self.grid, 1)
        self.flick_a.currentIndexChanged.connect(lambda *_: self._on_flicker_choice())
        self.flick_b.currentIndexChanged.connect(lambda *_: self._on_flicker_choice())
        QShortcut(QKeySequence("F"), self, activated=lambda: self.grid.flick())
        self.metrics_table = QTableWidget(0, 6)
        self.metrics_table.setObjectName("metricsTable")
        self.metrics_table.setHorizontalHeaderLabels(["method"] + [c[1] for c in METRIC_COLUMNS] + ["R", "time (s)"])
        self.metrics_table.verticalHeader().setVisible(False)
        self.metrics_table.horizontalHeader().setSectionResizeMode(QHeaderView.Stretch)
        self.metrics_table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        _fit_height(self.metrics_table)
        cml.addWidget(self.metrics_table)
        vs.addWidget(cmp)
        vs.setSizes([190, 700])
        rl.addWidget(vs)
        split.addWidget(right)
        split.setSizes([350, 1100])
        return tab

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
    def input_path(self) -> str:
        return self.file_edit.text().strip()

    def _on_source_kind(self, *_):
        file_mode = self.source_kind.currentData() == "file"
        self.file_row.setEnabled(file_mode)
        self.dataset_row.setEnabled(not file_mode)

    def _browse_file(self):
        path, _ = QFileDialog.getOpenFileName(self, "k-space or complex image file", "",
                                              "MRI data (*.h5 *.hdf5 *.npz *.npy);;All files (*)")
        if path:
            self.file_edit.setText(path)
            self.load_file(path)

    def refresh_datasets(self) -> None:
        keep = self.dataset_combo.currentText()
        self.dataset_combo.clear()
        try:
            names = [d.name for d in self.ctx.workspace.datasets()]
        except Exception:
            names = []
        self.dataset_combo.addItems(names)
        if keep in names:
            self.dataset_combo.setCurrentText(keep)

    def use_dataset_image(self):
        name = self.dataset_combo.currentText()
        if not name:
            self.status.setText("The workspace has no dataset yet.")
            return None
        ws, idx = self.ctx.workspace, self.dataset_index.value()
        out = Path(ws.root) / "recon-inputs"
        self.status.setText(f"Simulating k-space from {name} #{idx}…")
        return run_in_thread(lambda: dataset_image_to_npz(ws, name, idx, out),
                             lambda p: (self.file_edit.setText(p), self.load_file(p, 0)),
                             lambda msg, tb: self.status.setText(f"Could not read {name}: {msg}"))

    def load_file(self, path: str, slice_index: int | None = None):
        """Read a slice for the preview on a worker thread (the job reads it again itself)."""
        path = (path or "").strip()
        if not path:
            return None
        if self.file_edit.text().strip() != path:
            self.file_edit.setText(path)
        s = self.slice_spin.value() if slice_index is None else int(slice_index)
        self.status.setText(f"Reading {Path(path).name} slice {s}…")

        def failed(msg, tb):
            self.source = None
            self.source_info.setText(msg)
            self.status.setText(f"Cannot use this source: {msg}")
            self._update_buttons()

        return run_in_thread(lambda: load_source(path, s), self._on_source_loaded, failed)

    def _on_source_loaded(self, src: dict) -> None:
        self.source = src
        self.slice_spin.blockSignals(True)
        self.slice_spin.setRange(0, max(src["n_slices"] - 1, 0))
        self.slice_spin.setValue(src["slice"])
        self.slice_spin.blockSignals(False)
        self.coil_combo.blockSignals(True)
        self.coil_combo.clear()
        self.coil_combo.addItem("combined (RSS)" if src["multicoil"] else "single coil", -1)
        if src["coils"] is not None:
            for c in range(src["coils"].shape[0]):
                self.coil_combo.addItem(f"coil {c + 1}", c)
        self.coil_combo.blockSignals(False)
        k = src["kspace"]
        shape = "×".join(map(str, k.shape[-2:]))
        self.source_info.setText(
            f"{Path(src['source']).name}: slice {src['slice']} of {src['n_slices']}, {shape}, "
            + (f"{k.shape[0]} coils" if src["multicoil"] else "single coil")
            + (", already undersampled (its own pattern is the mask)" if src["measured_mask"] is not None else ", fully sampled"))
        self.mask_kind.setEnabled(src["measured_mask"] is None)
        self.status.setText("")
        self._show_source_image()
        self.schedule_preview(0)
        self._update_buttons()

    def _show_source_image(self) -> None:
        if self.source is None:
            return
        c = self.coil_combo.currentData()
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
        token = next(self._preview_token)
        self._preview_want = token
        src = self.source
        args = (self.mask_kind.currentData(), self.accel.value(), self.center.value(), self.seed.value())

        def done(p, token=token):
            if token != self._preview_want:  # a newer preview was asked for: this one is stale
                return
            self.preview = p
            self.preview_count += 1
            self.mask_view.set_image(p["mask"], levels=(0.0, 1.0))
            self.kspace_view.set_image(p["log_kspace"], autolevel=True)
            what = "measured pattern" if p["measured"] else f"{args[0]} mask"
            self.achieved.setText(f"achieved R = {p['achieved']:.2f}  ({what}, "
                                  f"{100.0 / p['achieved']:.1f} % of k-space sampled)")
            self.achieved.setProperty("role", "")
            self.achieved.style().polish(self.achieved)
            self._update_buttons()
            self.preview_updated.emit()

        def failed(msg, tb, token=token):
            if token != self._preview_want:
                return
            self.preview = None
            self.achieved.setText(msg)
            self.achieved.setProperty("role", "error")
            self.achieved.style().polish(self.achieved)
            self._update_buttons()

        run_in_thread(lambda: preview_mask(src["kspace"], src["measured_mask"], *args), done, failed)

    # -- runs ------------------------------------------------------------------------------------
    def refresh_runs(self) -> None:
        keep = self.run_combo.currentData()
        for combo in (self.run_combo, getattr(self, "ct_run_combo", None)):
            if combo is None:
                continue
            combo.clear()
            try:
                runs = list(self.ctx.workspace.runs())
            except Exception:
                runs = []
            for r in reversed(runs):
                combo.addItem(f"{r.id} · {r.dataset or ''} ({r.state})", r.id)
        if keep:
            i = self.run_combo.findData(keep)
            if i >= 0:
                self.run_combo.setCurrentIndex(i)
        self._update_buttons()

    def _on_any_job_finished(self, handle) -> None:
        if handle.kind == "train":
            self.refresh_runs()
        elif handle.kind in ("ingest", "demo"):
            self.refresh_datasets()

    def _warm_start(self) -> bool:
        return self.score_method.currentData() == "score-dds" and self.warm.isChecked()

    def _default_steps(self) -> int:
        return self._warm_default()[1] if self._warm_start() else SCORE_DEFAULT_STEPS[self.score_method.currentData()]

    def _warm_default(self) -> tuple[float, int]:
        return warm_default(self.mask_kind.currentData(), self.accel.value())

    def _on_mask_changed(self, *_) -> None:
        """The warm start's level and steps follow the mask, unless the user set them by hand."""
        new = self._warm_default()[0]
        if self._warm_level_is_default():
            self.warm_level.setValue(new)
        self._warm_level_default = new
        self._on_score_method()

    def _warm_level_is_default(self) -> bool:
        return abs(self.warm_level.value() - self._warm_level_default) < 1e-9

    def _update_warm_row(self) -> None:
        self.warm_row.setEnabled(self.score_method.currentData() == "score-dds")
        self.warm_level.setEnabled(self.warm.isChecked())

    def _on_score_method(self, *_) -> None:
        """A sampler's own default step count, unless the user changed the steps by hand."""
        self._update_warm_row()
        new = self._default_steps()
        if self.steps.value() == self._score_steps_default:
            self.steps.setValue(new)
        self._score_steps_default = new

    def selected_methods(self) -> list[str]:
        out = []
        if self.use_zf.isChecked():
            out.append("zero-filled")
        if self.use_cs.isChecked():
            out.append("cs-tv")
        if self.use_score.isChecked():
            out.append(self.score_method.currentData())
        return out

    def method_spec(self, method: str) -> dict:
        d = {"kind": "recon", "input": self.input_path, "slice": self.slice_spin.value(),
             "mask": self.mask_kind.currentData(), "acceleration": self.accel.value(),
             "center_fraction": self.center.value(), "method": [method], "seed": self.seed.value()}
        if method.startswith("cs-"):
            d.update(lam=self.cs_lam.value(), iterations=self.cs_iter.value())
        if method.startswith("score-"):
            d.update(run=self.run_combo.currentData(), samples=self.samples.value(), steps=self.steps.value())
        if method == "score-dds" and self.warm.isChecked():
            d.update(warm_start=self.warm_level.value(), lam=self.cs_lam.value(), iterations=self.cs_iter.value())
        return d

    def reconstruct(self):
        """Submit one recon job per checked method; returns the list of spec dicts asked for."""
        methods = self.selected_methods()
        if not self.input_path or not methods:
            self.status.setText("Choose a source and at least one method.")
            return None
        if any(m.startswith("score-") for m in methods) and not self.run_combo.currentData():
            self.status.setText("Score-based reconstruction needs a checkpoint: train a complex-image prior first.")
            return None
        dicts = [self.method_spec(m) for m in methods]
        self.grid.clear()
        # k-space undersampled at acquisition has no fully sampled reference: no error row then
        self.grid.set_reference_expected(self.source is None or self.source["measured_mask"] is None)
        self.metrics_table.setRowCount(0)
        self.flick_a.clear()
        self.flick_b.clear()
        self.group = _JobGroup()
        self.run_button.setEnabled(False)
        sizes = self.mri_split.sizes()  # give the comparison the room; the designer row stays visible
        self.mri_split.setSizes([min(sizes[0], 150), sum(sizes) - min(sizes[0], 150)])
        self.status.setText(f"Preparing {len(dicts)} job(s)…")
        group = self.group

        def submit(specs):
            if group is not self.group:
                return
            for spec in specs:
                h = self.ctx.jobs.submit(spec)
                method = spec.method[0].value if hasattr(spec.method[0], "value") else str(spec.method[0])
                group.handles.append(h)
                self.grid.ensure_method(method)
                h.image.connect(lambda name, arr, kind, g=group: self._on_image(g, name, arr, kind))
                h.progress.connect(lambda step, total, label: self._on_progress(step, total, label))
                h.finished.connect(lambda _ev, h=h, m=method, g=group: self._on_method_done(g, h, m))
                h.state_changed.connect(lambda _s: self._update_buttons())
            self.status.setText(f"{len(specs)} job(s) submitted: {', '.join(methods)} (see the Jobs dock).")
            self._update_buttons()

        def failed(msg, tb):
            self.status.setText(f"Not valid: {msg}")
            self._update_buttons()

        run_in_thread(lambda: _validate_specs(dicts), submit, failed)
        return dicts

    def stop(self):
        for g in (self.group, self.ct_group):
            if g is not None:
                for h in g.handles:
                    h.cancel()
        if self.sweep_handle is not None:
            self.sweep_handle.cancel()

    def _on_image(self, group, name, arr, kind) -> None:
        if group is not self.group:
            return
        if name in ("mask", "kspace"):
            return  # the designer already shows the same mask (same seed) and k-space
        self.grid.on_image(name, arr, kind)

    def _on_progress(self, step, total, label) -> None:
        if total:
            self.status.setText(f"{label}: {100 * step / total:.0f} %")

    def _on_method_done(self, group, h, method: str) -> None:
        if group is not self.group:
            return
        self._update_buttons()
        if h.state != "done":
            self.status.setText(f"{method}: {'stopped' if h.state == 'cancelled' else 'failed: ' + str(h.message)}")
            return
        res = h.result or {}
        entry = (res.get("methods") or {}).get(method, {})
        entry = dict(entry, acceleration=(res.get("mask") or {}).get("acceleration"))
        group.results[method] = entry
        npz = (entry.get("files") or {}).get("npz")
        if npz:
            def load(p=npz):
                with np.load(p) as z:
                    return {k: z[k] for k in ("magnitude", "error", "std", "reference") if k in z.files}

            run_in_thread(load, lambda arrs, g=group, m=method: self._on_final_arrays(g, m, arrs),
                          lambda msg, tb: self.status.setText(f"Could not read {npz}: {msg}"))
        self._fill_metrics(group)

    def _on_final_arrays(self, group, method, arrs) -> None:
        if group is not self.group:
            return
        if "reference" in arrs and self.grid.reference.image() is None:
            self.grid.set_reference(arrs["reference"])
        self.grid.set_result(method, image=arrs.get("magnitude"), error=arrs.get("error"), std=arrs.get("std"))
        group.results[method]["_final"] = True
        if all(h.is_final for h in group.handles) and all(r.get("_final") for r in group.results.values()):
            secs = time.monotonic() - group.started
            self.status.setText(f"{len(group.results)} reconstruction(s) done in {secs:.1f} s.")
        self.comparison_updated.emit()

    def _fill_metrics(self, group, table: QTableWidget | None = None) -> None:
        table = table or self.metrics_table
        table.setRowCount(0)
        for method, entry in group.results.items():
            r = table.rowCount()
            table.insertRow(r)
            table.setItem(r, 0, QTableWidgetItem(method))
            m = entry.get("metrics") or {}
            for c, (key, _label, fmt) in enumerate(METRIC_COLUMNS, start=1):
                v = m.get(key)
                table.setItem(r, c, QTableWidgetItem(fmt.format(v) if v is not None else "–"))
            acc = entry.get("acceleration")
            extra = entry.get("views") if acc is None else acc
            table.setItem(r, 4, QTableWidgetItem(f"{extra:.2f}" if isinstance(extra, float) else str(extra or "–")))
            secs = entry.get("seconds")
            table.setItem(r, 5, QTableWidgetItem(f"{secs:.2f}" if secs is not None else "–"))
        _fit_height(table)

    # -- flicker and grid --------------------------------------------------------------------------
    def _on_grid_changed(self) -> None:
        names = [m for m in self.grid.methods]
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

    # -- export ------------------------------------------------------------------------------------
    def export(self, out_dir: str | Path | None = None, grid: ComparisonGrid | None = None, stem: str = "comparison"):
        """Write ``<stem>.png`` (the grid as drawn) and ``<stem>.npz`` (every array); returns the paths."""
        grid = grid or self.grid
        if not grid.arrays():
            self.status.setText("Nothing to export yet.")
            return None
        if out_dir is None:
            out_dir = QFileDialog.getExistingDirectory(self, "Export the comparison to")
            if not out_dir:
                return None
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        png = out / f"{stem}.png"
        grid.grab().save(str(png))
        arrays = {k.replace(" ", "_"): v for k, v in grid.arrays().items()}
        group = self.group if grid is self.grid else self.ct_group
        meta = {m: {k: v for k, v in e.items() if not k.startswith("_")} for m, e in (group.results if group else {}).items()}
        npz = out / f"{stem}.npz"
        np.savez_compressed(npz, **arrays, metrics_json=np.array(json.dumps(meta, default=str)))
        self.last_export = [png, npz]
        self.status.setText(f"Exported {png.name} and {npz.name} to {out}")
        return self.last_export

    # ============================================================================================
    # sweep tab
    # ============================================================================================
    def _build_sweep_tab(self) -> QWidget:
        tab = QWidget()
        lay = QHBoxLayout(tab)
        lay.setContentsMargins(0, 4, 0, 0)
        ctl = QWidget()
        ctl.setMaximumWidth(330)
        f = QFormLayout(ctl)
        self.sweep_slices = QLineEdit("0")
        self.sweep_slices.setObjectName("sweepSlices")
        self.sweep_slices.setToolTip("slice indices of the source file, e.g. 120 125 130 or 120-129")
        self.sweep_accels = QLineEdit("2 4 6 8")
        self.sweep_accels.setObjectName("sweepAccelerations")
        f.addRow(QLabel("Uses the MRI tab's source file, mask type,\ncentre fraction, seed and methods."))
        f.addRow("Slices", self.sweep_slices)
        f.addRow("Accelerations", self.sweep_accels)
        self.sweep_metric = QComboBox()
        self.sweep_metric.setObjectName("sweepMetric")
        for key, label, _ in METRIC_COLUMNS:
            self.sweep_metric.addItem(label, key)
        self.sweep_metric.setCurrentIndex(1)
        self.sweep_metric.currentIndexChanged.connect(lambda *_: self._draw_sweep())
        f.addRow("Plot", self.sweep_metric)
        self.sweep_button = QPushButton("Run sweep")
        self.sweep_button.setObjectName("sweepButton")
        self.sweep_button.clicked.connect(self.run_sweep)
        f.addRow(self.sweep_button)
        self.sweep_status = QLabel("")
        self.sweep_status.setWordWrap(True)
        f.addRow(self.sweep_status)
        lay.addWidget(ctl)
        right = QSplitter(Qt.Vertical)
        self.sweep_plot = pg.PlotWidget()
        self.sweep_plot.setObjectName("sweepPlot")
        self.sweep_plot.showGrid(x=True, y=True, alpha=0.25)
        self.sweep_plot.setLabel("bottom", "acceleration R")
        self.sweep_plot.getAxis("left").enableAutoSIPrefix(False)
        self.sweep_plot.addLegend(offset=(-10, 10))
        right.addWidget(self.sweep_plot)
        low = QWidget()
        ll = QHBoxLayout(low)
        ll.setContentsMargins(0, 0, 0, 0)
        self.sweep_table = QTableWidget(0, 6)
        self.sweep_table.setObjectName("sweepTable")
        self.sweep_table.setHorizontalHeaderLabels(["method", "R", "SSIM mean ± std", "PSNR mean", "best slice", "worst slice"])
        self.sweep_table.verticalHeader().setVisible(False)
        self.sweep_table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeToContents)
        self.sweep_table.horizontalHeader().setStretchLastSection(True)
        self.sweep_table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.sweep_table.setSelectionMode(QAbstractItemView.SingleSelection)
        self.sweep_table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.sweep_table.itemSelectionChanged.connect(self._on_sweep_row)
        ll.addWidget(self.sweep_table, 3)
        cases = QVBoxLayout()
        self.best_view = ImageView(title="best slice |error|", colormap="inferno")
        self.worst_view = ImageView(title="worst slice |error|", colormap="inferno")
        self.best_view.link(self.worst_view)
        cv = QHBoxLayout()
        cv.addWidget(self.best_view)
        cv.addWidget(self.worst_view)
        cases.addLayout(cv, 1)
        crow = QHBoxLayout()
        self.open_best = QPushButton("Open best in comparison")
        self.open_best.clicked.connect(lambda: self.open_case("best"))
        self.open_worst = QPushButton("Open worst in comparison")
        self.open_worst.setObjectName("openWorst")
        self.open_worst.clicked.connect(lambda: self.open_case("worst"))
        crow.addWidget(self.open_best)
        crow.addWidget(self.open_worst)
        cases.addLayout(crow)
        ll.addLayout(cases, 3)
        right.addWidget(low)
        right.setSizes([380, 320])
        lay.addWidget(right, 1)
        return tab

    @staticmethod
    def _parse_numbers(text: str, cast=float) -> list:
        out = []
        for tok in text.replace(",", " ").split():
            if "-" in tok and cast is int and not tok.startswith("-"):
                a, b = tok.split("-", 1)
                out.extend(range(int(a), int(b) + 1))
            else:
                out.append(cast(tok))
        return out

    def sweep_spec(self) -> dict:
        """The recon-sweep spec of the form: the MRI tab's source, mask and methods over the sweep tab's slices
        and accelerations. Raises ValueError when those are not numbers."""
        slices = self._parse_numbers(self.sweep_slices.text(), int)
        accels = self._parse_numbers(self.sweep_accels.text(), float)
        methods = self.selected_methods()
        d = {"kind": "recon-sweep", "input": self.input_path, "slices": slices, "accelerations": accels,
             "method": methods, "mask": self.mask_kind.currentData(), "center_fraction": self.center.value(),
             "lam": self.cs_lam.value(), "iterations": self.cs_iter.value(), "seed": self.seed.value()}
        if any(m.startswith("score-") for m in methods):
            d.update(run=self.run_combo.currentData(), samples=min(self.samples.value(), 64), steps=self.steps.value())
        if "score-dds" in methods and self.warm.isChecked():
            if self._warm_level_is_default() and self.steps.value() == self._score_steps_default:
                # not set by hand: every acceleration of the sweep gets its own level and steps, as the MRI
                # tab would give it (the form shows those of its own R only)
                d["warm_start"] = AUTO
                del d["steps"]
            else:
                d["warm_start"] = self.warm_level.value()
        return d

    def run_sweep(self):
        try:
            d = self.sweep_spec()
        except ValueError:
            self.sweep_status.setText("Slices and accelerations are numbers separated by spaces.")
            return None
        if not self.input_path or not d["method"]:
            self.sweep_status.setText("Choose a source file and methods in the MRI tab first.")
            return None
        self.sweep_button.setEnabled(False)
        self.sweep_status.setText("Preparing the sweep…")

        def submit(specs):
            h = self.sweep_handle = self.ctx.jobs.submit(specs[0])
            h.progress.connect(lambda s, t, label: self.sweep_status.setText(f"{label}: {s} / {t}"))
            h.finished.connect(lambda _ev, h=h: self._on_sweep_done(h))

        def failed(msg, tb):
            self.sweep_status.setText(f"Not valid: {msg}")
            self.sweep_button.setEnabled(True)

        run_in_thread(lambda: _validate_specs([d]), submit, failed)
        return d

    def _on_sweep_done(self, h) -> None:
        self.sweep_button.setEnabled(True)
        if h.state != "done":
            self.sweep_status.setText(f"Sweep {'stopped' if h.state == 'cancelled' else 'failed: ' + str(h.message)}")
            return
        self.sweep_result = h.result or {}
        path = Path(self.sweep_result.get("out", "")) / "sweep_arrays.npz"

        def load():
            with np.load(path) as z:
                return {k: z[k] for k in z.files}

        def show(arrs):
            self.sweep_arrays = arrs
            self._fill_sweep_table()
            self._draw_sweep()
            n = len(self.sweep_result.get("rows", []))
            flagged = self.sweep_result.get("flagged_subgroups") or []
            self.sweep_status.setText(f"{n} reconstructions scored."
                                      + (f" {len(flagged)} subgroup(s) flagged (see the Jobs log)." if flagged else ""))
            if self.sweep_table.rowCount():
                self.sweep_table.selectRow(0)

        run_in_thread(load, show, lambda msg, tb: self.sweep_status.setText(f"Could not read the sweep arrays: {msg}"))

    def _fill_sweep_table(self) -> None:
        t = self.sweep_table
        t.setRowCount(0)
        for row in (self.sweep_result or {}).get("table", []):
            r = t.rowCount()
            t.insertRow(r)
            s, p = row.get("ssim", {}), row.get("psnr", {})
            method = row["method"]
            if row.get("steps") is not None:  # score-based: the steps (and warm start) this R was run with
                warm = row.get("warm_start")
                method += (f" · from CS-TV at σ {warm:g}" if warm is not None else "") + f" · {row['steps']} steps"
            vals = [method, f"{row['acceleration']:g}", f"{s.get('mean', float('nan')):.4f} ± {s.get('std', 0):.4f}",
                    f"{p.get('mean', float('nan')):.2f}", str(row.get("best_slice")), str(row.get("worst_slice"))]
            for c, v in enumerate(vals):
                t.setItem(r, c, QTableWidgetItem(v))

    def _draw_sweep(self) -> None:
        plot = self.sweep_plot
        plot.clear()
        if plot.plotItem.legend is not None:
            plot.plotItem.legend.clear()
        table = (self.sweep_result or {}).get("table", [])
        key = self.sweep_metric.currentData()
        plot.setLabel("left", self.sweep_metric.currentText() + " (mean ± std over slices)")
        methods = list(dict.fromkeys(r["method"] for r in table))
        for i, m in enumerate(methods):
            rows = sorted((r for r in table if r["method"] == m), key=lambda r: r["acceleration"])
            x = np.array([r["acceleration"] for r in rows], float)
            y = np.array([r[key]["mean"] for r in rows], float)
            sd = np.array([r[key]["std"] for r in rows], float)
            colour = PALETTE[i % len(PALETTE)]
            plot.plot(x, y, pen=pg.mkPen(colour, width=2), symbol="o", symbolBrush=colour, name=m)
            plot.addItem(pg.ErrorBarItem(x=x, y=y, top=sd, bottom=sd, beam=0.15, pen=pg.mkPen(colour)))

    def _sweep_row(self) -> dict | None:
        rows = self.sweep_table.selectionModel().selectedRows() if self.sweep_table.selectionModel() else []
        table = (self.sweep_result or {}).get("table", [])
        if not rows or rows[0].row() >= len(table):
            return None
        return table[rows[0].row()]

    def _on_sweep_row(self) -> None:
        row = self._sweep_row()
        if row is None:
            return
        key = f"{row['method']} R={row['acceleration']:g}"
        for which, view in (("best", self.best_view), ("worst", self.worst_view)):
            arr = self.sweep_arrays.get(f"{which}_error/{key}")
            if arr is not None:
                view._title = f"{which}: slice {row[which + '_slice']} |error| ({key})"
                view.set_image(arr, autolevel=False)
                view.set_levels(0.0, float(np.percentile(arr, 99.5)) or 1e-6)

    def open_case(self, which: str) -> None:
        """Load the best / worst slice of the selected cell into the MRI comparison and run it."""
        row = self._sweep_row()
        if row is None:
            return
        self.accel.setValue(float(row["acceleration"]))
        self.use_zf.setChecked(row["method"] == "zero-filled" or self.use_zf.isChecked())
        self.load_file(self.input_path, int(row[f"{which}_slice"]))
        self.tabs.setCurrentIndex(0)
        self.status.setText(f"{which} case of {row['method']} at R={row['acceleration']:g}: slice "
                            f"{row[which + '_slice']} loaded; press Reconstruct to compare.")

    # ============================================================================================
    # CT tab
    # ============================================================================================
    def _build_ct_tab(self) -> QWidget:
        tab = QWidget()
        lay = QHBoxLayout(tab)
        lay.setContentsMargins(0, 4, 0, 0)
        ctl = QWidget()
        ctl.setMaximumWidth(330)
        f = QFormLayout(ctl)
        row = QHBoxLayout()
        self.ct_file = QLineEdit()
        self.ct_file.setObjectName("ctFile")
        self.ct_file.setPlaceholderText("NPZ with volume_hu / image_hu, or a CT DICOM file")
        b = QPushButton("…")
        b.setFixedWidth(28)
        b.clicked.connect(self._browse_ct)
        row.addWidget(self.ct_file, 1)
        row.addWidget(b)
        f.addRow("Input", row)
        self.ct_slice = QSpinBox()
        self.ct_slice.setObjectName("ctSlice")
        self.ct_slice.setRange(0, 100000)
        f.addRow("Slice", self.ct_slice)
        self.ct_task = QComboBox()
        self.ct_task.setObjectName("ctTask")
        self.ct_task.addItem("sparse-view reconstruction", "sparse-view")
        self.ct_task.addItem("denoising", "denoise")
        self.ct_task.currentIndexChanged.connect(self._on_ct_task)
        f.addRow("Task", self.ct_task)
        self.ct_views = QSpinBox()
        self.ct_views.setObjectName("ctViews")
        self.ct_views.setRange(2, 2000)
        self.ct_views.setValue(60)
        f.addRow("Views (over 180°)", self.ct_views)
        self.ct_noise = QDoubleSpinBox()
        self.ct_noise.setObjectName("ctNoise")
        self.ct_noise.setRange(1.0, 2000.0)
        self.ct_noise.setValue(50.0)
        self.ct_noise.setSuffix(" HU")
        f.addRow("Noise σ", self.ct_noise)
        self.ct_methods: dict[str, QCheckBox] = {}
        for m, label in (("fbp", "FBP (ramp filter)"), ("backprojection", "unfiltered backprojection"),
                         ("noisy", "noisy input (baseline)"), ("score", "score-based prior")):
            cb = QCheckBox(label)
            self.ct_methods[m] = cb
            f.addRow(cb)
        self.ct_methods["fbp"].setChecked(True)
        self.ct_methods["backprojection"].setChecked(True)
        self.ct_run_combo = QComboBox()
        self.ct_run_combo.setToolTip("a 1-channel CT prior (training run) for the score method")
        f.addRow("  checkpoint", self.ct_run_combo)
        self.ct_button = QPushButton("Reconstruct CT")
        self.ct_button.setObjectName("ctButton")
        self.ct_button.clicked.connect(self.run_ct)
        f.addRow(self.ct_button)
        self.ct_export = QPushButton("Export comparison…")
        self.ct_export.clicked.connect(lambda: self.export(grid=self.ct_grid, stem="ct_comparison"))
        f.addRow(self.ct_export)
        self.ct_status = QLabel("")
        self.ct_status.setObjectName("ctStatus")
        self.ct_status.setWordWrap(True)
        f.addRow(self.ct_status)
        lay.addWidget(ctl)
        right = QVBoxLayout()
        self.ct_grid = ComparisonGrid()
        self.ct_grid.setObjectName("ctGrid")
        right.addWidget(self.ct_grid, 1)
        self.ct_table = QTableWidget(0, 6)
        self.ct_table.setObjectName("ctMetricsTable")
        self.ct_table.setHorizontalHeaderLabels(["method"] + [c[1] for c in METRIC_COLUMNS] + ["views / noise", "time (s)"])
        self.ct_table.verticalHeader().setVisible(False)
        self.ct_table.horizontalHeader().setSectionResizeMode(QHeaderView.Stretch)
        self.ct_table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        _fit_height(self.ct_table)
        right.addWidget(self.ct_table)
        lay.addLayout(right, 1)
        self._on_ct_task()
        return tab

    def _browse_ct(self):
        path, _ = QFileDialog.getOpenFileName(self, "CT volume or slice", "", "CT (*.npz *.dcm);;All files (*)")
        if path:
            self.ct_file.setText(path)

    def _on_ct_task(self, *_):
        sparse = self.ct_task.currentData() == "sparse-view"
        self.ct_views.setEnabled(sparse)
        self.ct_noise.setEnabled(not sparse)
        for m in ("fbp", "backprojection"):
            self.ct_methods[m].setEnabled(sparse)
        self.ct_methods["noisy"].setEnabled(not sparse)
        if not sparse and not self.ct_methods["noisy"].isChecked():
            self.ct_methods["noisy"].setChecked(True)

    def ct_selected_methods(self) -> list[str]:
        return [m for m, cb in self.ct_methods.items() if cb.isChecked() and cb.isEnabled()]

    def run_ct(self):
        methods = self.ct_selected_methods()
        path = self.ct_file.text().strip()
        if not path or not methods:
            self.ct_status.setText("Choose an input and at least one method that applies to the task.")
            return None
        base = {"kind": "ct-recon", "input": path, "slice": self.ct_slice.value(), "task": self.ct_task.currentData(),
                "views": self.ct_views.value(), "noise_hu": self.ct_noise.value(), "seed": self.seed.value()}
        dicts = []
        for m in methods:
            d = dict(base, method=[m])
            if m == "score":
                d.update(run=self.ct_run_combo.currentData(), samples=self.samples.value(), steps=self.steps.value())
            dicts.append(d)
        self.ct_grid.clear()
        self.ct_table.setRowCount(0)
        group = self.ct_group = _JobGroup()
        self.ct_button.setEnabled(False)

        def submit(specs):
            if group is not self.ct_group:
                return
            for spec, m in zip(specs, methods):
                h = self.ctx.jobs.submit(spec)
                group.handles.append(h)
                self.ct_grid.ensure_method(m)
                h.image.connect(lambda name, arr, kind, g=group: g is self.ct_group and self.ct_grid.on_image(name, arr, kind))
                h.finished.connect(lambda _ev, h=h, m=m, g=group: self._on_ct_done(g, h, m))
            self.ct_status.setText(f"{len(specs)} CT job(s) submitted.")

        def failed(msg, tb):
            self.ct_status.setText(f"Not valid: {msg}")
            self.ct_button.setEnabled(True)

        run_in_thread(lambda: _validate_specs(dicts), submit, failed)
        return dicts

    def _on_ct_done(self, group, h, method) -> None:
        if group is not self.ct_group:
            return
        if all(x.is_final for x in group.handles):
            self.ct_button.setEnabled(True)
        if h.state != "done":
            self.ct_status.setText(f"{method}: {'stopped' if h.state == 'cancelled' else 'failed: ' + str(h.message)}")
            return
        res = h.result or {}
        entry = dict((res.get("methods") or {}).get(method, {}))
        entry["views"] = f"{res['views']} views" if "views" in res else f"σ {res.get('noise_hu', 0):g} HU"
        if entry.get("seconds") is None and h.started_at and h.finished_at:
            entry["seconds"] = h.finished_at - h.started_at  # the job's wall time (ct-recon reports none)
        group.results[method] = entry
        self._fill_metrics(group, self.ct_table)
        if all(x.is_final for x in group.handles):
            self.ct_status.setText(f"{len(group.results)} CT reconstruction(s) done.")
        self.comparison_updated.emit()

    # ============================================================================================
    def _update_buttons(self, *_):
        running = self.group is not None and any(not h.is_final for h in self.group.handles)
        ok = bool(self.input_path) and self.source is not None and bool(self.selected_methods())
        if self.use_score.isChecked() and not self.run_combo.currentData():
            ok = False
        self.run_button.setEnabled(ok and not running)
        busy = running or (self.ct_group is not None and any(not h.is_final for h in self.ct_group.handles))
        self.stop_button.setEnabled(busy or (self.sweep_handle is not None and not self.sweep_handle.is_final))
