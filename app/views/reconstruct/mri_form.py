"""The MRI tab's form: source, mask designer and methods, and the ``ReconSpec`` of each checked method.

Specs are built with ``ReconSpec(...)`` on the GUI thread as the values change (pydantic, no torch); an
invalid value is named under the group that sets it and the tab keeps Run disabled. Option lists come from
``app.engine.specs.options`` and number ranges from the spec fields (``common.bounded``). The warm start of
decomposed diffusion follows ``recon.mri.warm.warm_default`` unless the user set it.
"""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from app.engine.recon.mri.warm import warm_default
from app.engine.specs.options import DEFAULT_LAM, MASK_KINDS, SCORE_METHODS
from app.engine.specs.recon import ReconSpec
from app.views.job_controller import FieldErrors, build_spec
from app.views.widgets.spec_widgets import bounded, error_label

#: network evaluations a sampler needs per posterior sample: annealed Langevin and predictor-corrector
#: anneal the noise slowly; decomposed diffusion moves to a data-consistent image at every step
SCORE_DEFAULT_STEPS = {"score-ald": 100, "score-pc": 100, "score-dds": 30}
#: how the form names the score-based samplers of ``SCORE_METHODS``
SAMPLER_LABELS = {"score-ald": "annealed Langevin + DC", "score-pc": "predictor-corrector + DC",
                  "score-dds": "decomposed diffusion (DC on x0, fast)"}
#: which group of the form sets a spec field (its errors are shown under that group)
SOURCE_FIELDS = ("input", "slice")
MASK_FIELDS = ("mask", "acceleration", "center_fraction", "seed")


class MRIForm(QWidget):
    """The controls column of the MRI tab (see the module docstring)."""

    changed = Signal()  # a value that goes into the specs changed (they were validated again)
    mask_changed = Signal()  # mask type, R, centre fraction or seed: the preview is out of date

    def __init__(self):
        super().__init__()
        cl = QVBoxLayout(self)
        cl.setContentsMargins(0, 0, 4, 0)
        cl.addWidget(self._build_source())
        cl.addWidget(self._build_mask())
        cl.addWidget(self._build_methods())
        self.form_error = error_label("reconFormError")
        cl.addWidget(self.form_error)
        brow = QHBoxLayout()
        self.run_button = QPushButton("Reconstruct")
        self.run_button.setObjectName("reconstructButton")
        self.stop_button = QPushButton("Stop")
        brow.addWidget(self.run_button, 1)
        brow.addWidget(self.stop_button)
        cl.addLayout(brow)
        self.status = QLabel("")
        self.status.setObjectName("reconStatus")
        self.status.setWordWrap(True)
        cl.addWidget(self.status)
        cl.addStretch(1)
        labels = {f: self.source_error for f in SOURCE_FIELDS} | {f: self.mask_error for f in MASK_FIELDS}
        self.field_errors = FieldErrors(labels | {f: self.methods_error for f in ReconSpec.model_fields
                                                  if f not in labels}, self.form_error)
        self._on_source_kind()
        self._update_warm_row()

        for w in (self.mask_kind, self.accel, self.center, self.seed):
            sig = w.currentIndexChanged if isinstance(w, QComboBox) else w.valueChanged
            sig.connect(lambda *_: self.mask_changed.emit())
        self.mask_kind.currentIndexChanged.connect(self._on_mask_changed)
        self.accel.valueChanged.connect(self._on_mask_changed)
        self.score_method.currentIndexChanged.connect(self._on_score_method)
        self.warm.toggled.connect(self._on_score_method)
        for w in (self.use_zf, self.use_cs, self.use_score, self.warm):
            w.toggled.connect(lambda *_: self.changed.emit())
        for w in (self.accel, self.center, self.seed, self.cs_lam, self.cs_iter, self.samples, self.steps,
                  self.warm_level, self.slice_spin):
            w.valueChanged.connect(lambda *_: self.changed.emit())
        for w in (self.mask_kind, self.score_method, self.run_combo):
            w.currentIndexChanged.connect(lambda *_: self.changed.emit())
        self.file_edit.textChanged.connect(lambda *_: self.changed.emit())

    # -- building ---------------------------------------------------------------------------------
    def _build_source(self) -> QGroupBox:
        src = QGroupBox("Source")
        sf = QFormLayout(src)
        self.source_kind = QComboBox()
        self.source_kind.setObjectName("sourceKind")
        self.source_kind.addItem("k-space / complex image file", "file")
        self.source_kind.addItem("image of a dataset (k-space simulated)", "dataset")
        self.source_kind.currentIndexChanged.connect(self._on_source_kind)
        sf.addRow("From", self.source_kind)
        frow = QHBoxLayout()
        frow.setContentsMargins(0, 0, 0, 0)
        self.file_edit = QLineEdit()
        self.file_edit.setObjectName("sourceFile")
        self.file_edit.setPlaceholderText("fastMRI .h5, .npz (kspace / images), .npy")
        self.browse_button = QPushButton("…")
        self.browse_button.setFixedWidth(28)
        frow.addWidget(self.file_edit, 1)
        frow.addWidget(self.browse_button)
        self.file_row = QWidget()
        self.file_row.setLayout(frow)
        sf.addRow("File", self.file_row)
        drow = QHBoxLayout()
        drow.setContentsMargins(0, 0, 0, 0)
        self.dataset_combo = QComboBox()
        self.dataset_combo.setObjectName("sourceDataset")
        self.dataset_index = QSpinBox()
        self.dataset_index.setRange(0, 10_000_000)
        self.dataset_index.setToolTip("image index in the dataset")
        self.use_button = QPushButton("Use")
        drow.addWidget(self.dataset_combo, 1)
        drow.addWidget(self.dataset_index)
        drow.addWidget(self.use_button)
        self.dataset_row = QWidget()
        self.dataset_row.setLayout(drow)
        sf.addRow("Dataset", self.dataset_row)
        self.slice_spin = bounded(QSpinBox(), ReconSpec, "slice", object_name="sliceSpin")
        self.slice_spin.setRange(0, 0)
        self.slice_spin.setKeyboardTracking(False)
        sf.addRow("Slice", self.slice_spin)
        self.coil_combo = QComboBox()
        self.coil_combo.setObjectName("coilCombo")
        self.coil_combo.addItem("combined (RSS)", -1)
        sf.addRow("Coil view", self.coil_combo)
        self.source_info = QLabel("No source loaded.")
        self.source_info.setWordWrap(True)
        self.source_info.setProperty("role", "hint")
        sf.addRow(self.source_info)
        self.source_error = error_label("sourceError")
        sf.addRow(self.source_error)
        return src

    def _build_mask(self) -> QGroupBox:
        mk = QGroupBox("Mask designer")
        mf = QFormLayout(mk)
        self.mask_kind = QComboBox()
        self.mask_kind.setObjectName("maskKind")
        for k in MASK_KINDS:
            self.mask_kind.addItem(k, k)
        self.accel = bounded(QDoubleSpinBox(), ReconSpec, "acceleration", object_name="acceleration")
        self.accel.setSingleStep(0.5)
        self.center = QDoubleSpinBox()
        self.center.setDecimals(3)
        bounded(self.center, ReconSpec, "center_fraction", object_name="centerFraction")
        self.center.setSingleStep(0.01)
        self.seed = bounded(QSpinBox(), ReconSpec, "seed", object_name="maskSeed")
        self.seed.setMinimum(0)
        mf.addRow("Type", self.mask_kind)
        mf.addRow("Acceleration R", self.accel)
        mf.addRow("Centre fraction", self.center)
        mf.addRow("Seed", self.seed)
        self.achieved = QLabel("achieved R: –")
        self.achieved.setObjectName("achievedLabel")
        self.achieved.setWordWrap(True)
        mf.addRow(self.achieved)
        self.mask_error = error_label("maskError")
        mf.addRow(self.mask_error)
        return mk

    def _build_methods(self) -> QGroupBox:
        me = QGroupBox("Methods (each one job)")
        mel = QFormLayout(me)
        self.use_zf = QCheckBox("zero-filled")
        self.use_zf.setChecked(True)
        self.use_cs = QCheckBox("CS-TV")
        self.use_cs.setChecked(True)
        mel.addRow(self.use_zf)
        mel.addRow(self.use_cs)
        self.cs_lam = QDoubleSpinBox()
        self.cs_lam.setDecimals(5)
        bounded(self.cs_lam, ReconSpec, "lam", hi=10.0, default=DEFAULT_LAM, object_name="csLambda")
        self.cs_lam.setSingleStep(0.001)
        self.cs_iter = bounded(QSpinBox(), ReconSpec, "iterations", object_name="csIterations")
        mel.addRow("  λ (TV weight)", self.cs_lam)
        mel.addRow("  iterations", self.cs_iter)
        self.use_score = QCheckBox("score-based (posterior sampling)")
        mel.addRow(self.use_score)
        self.score_method = QComboBox()
        for m in SCORE_METHODS:
            self.score_method.addItem(SAMPLER_LABELS.get(m, m), m)
        self.run_combo = QComboBox()
        self.run_combo.setObjectName("checkpointRun")
        self.run_combo.setToolTip("a training run of this workspace whose prior models 2-channel complex images")
        self.samples = bounded(QSpinBox(), ReconSpec, "samples", object_name="posteriorSamples")
        self.samples.setToolTip(
            "posterior samples: their mean is the reconstruction and their spread the uncertainty map. More "
            "samples give a better mean and a steadier map at N times the time; on three SIAT validation slices "
            "(Poisson-disc R = 4, warm start) the mean of 1 / 4 / 16 samples had SSIM 0.842 / 0.875 / 0.883")
        self.steps = bounded(QSpinBox(), ReconSpec, "steps", object_name="scoreSteps")
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
        self.warm_level.setRange(0.001, 20.0)  # the spec's WarmStart says which levels it takes
        self.warm_level.setSingleStep(0.05)
        self._warm_level_default = self.warm_defaults()[0]
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
        self.score_steps_default = self._default_steps()
        self.steps.setValue(self.score_steps_default)
        self.methods_error = error_label("methodsError")
        mel.addRow(self.methods_error)
        return me

    # -- source -----------------------------------------------------------------------------------
    @property
    def input_path(self) -> str:
        return self.file_edit.text().strip()

    def _on_source_kind(self, *_):
        file_mode = self.source_kind.currentData() == "file"
        self.file_row.setEnabled(file_mode)
        self.dataset_row.setEnabled(not file_mode)

    def set_runs(self, runs) -> None:
        """Fill the checkpoint picker with the workspace's runs (newest first), keeping the choice."""
        keep = self.run_combo.currentData()
        self.run_combo.blockSignals(True)
        self.run_combo.clear()
        for r in reversed(list(runs)):
            self.run_combo.addItem(f"{r.id} · {r.dataset or ''} ({r.state})", r.id)
        i = self.run_combo.findData(keep) if keep else -1
        if i >= 0:
            self.run_combo.setCurrentIndex(i)
        self.run_combo.blockSignals(False)
        self.changed.emit()

    # -- warm start and steps ---------------------------------------------------------------------
    def warm_start_on(self) -> bool:
        return self.score_method.currentData() == "score-dds" and self.warm.isChecked()

    def warm_defaults(self) -> tuple[float, int]:
        return warm_default(self.mask_kind.currentData(), self.accel.value())

    def _default_steps(self) -> int:
        return self.warm_defaults()[1] if self.warm_start_on() else SCORE_DEFAULT_STEPS[self.score_method.currentData()]

    def warm_level_is_default(self) -> bool:
        return abs(self.warm_level.value() - self._warm_level_default) < 1e-9

    def _on_mask_changed(self, *_) -> None:
        """The warm start's level and steps follow the mask, unless the user set them by hand."""
        new = self.warm_defaults()[0]
        if self.warm_level_is_default():
            self.warm_level.setValue(new)
        self._warm_level_default = new
        self._on_score_method()

    def _update_warm_row(self) -> None:
        self.warm_row.setEnabled(self.score_method.currentData() == "score-dds")
        self.warm_level.setEnabled(self.warm.isChecked())

    def _on_score_method(self, *_) -> None:
        """A sampler's own default step count, unless the user changed the steps by hand."""
        self._update_warm_row()
        new = self._default_steps()
        if self.steps.value() == self.score_steps_default:
            self.steps.setValue(new)
        self.score_steps_default = new

    # -- specs ------------------------------------------------------------------------------------
    def selected_methods(self) -> list[str]:
        out = []
        if self.use_zf.isChecked():
            out.append("zero-filled")
        if self.use_cs.isChecked():
            out.append("cs-tv")
        if self.use_score.isChecked():
            out.append(self.score_method.currentData())
        return out

    def method_values(self, method: str) -> dict:
        """The ReconSpec fields the form sets for one method (the others keep the spec's defaults)."""
        v = {"input": self.input_path, "slice": self.slice_spin.value(), "mask": self.mask_kind.currentData(),
             "acceleration": self.accel.value(), "center_fraction": self.center.value(), "method": [method],
             "seed": self.seed.value()}
        warm = method == "score-dds" and self.warm.isChecked()
        if method.startswith("cs-") or warm:  # a warm start begins from the CS-TV image of these
            v.update(lam=self.cs_lam.value(), iterations=self.cs_iter.value())
        if method in SCORE_METHODS:
            v.update(run=self.run_combo.currentData(), samples=self.samples.value(), steps=self.steps.value())
        if warm:
            v["warm_start"] = self.warm_level.value()
        return v

    def method_spec(self, method: str) -> ReconSpec:
        """The validated spec of one method; raises ValidationError naming the bad field."""
        return ReconSpec(**self.method_values(method))

    def validate(self) -> list[ReconSpec] | None:
        """The specs of the checked methods, or None with each error shown under the group of its field.
        An empty source is not called an error here: Run says to choose one."""
        specs, errors = [], {}
        for m in self.selected_methods():
            spec, errs = build_spec(ReconSpec, self.method_values(m))
            if spec is not None:
                specs.append(spec)
            for k, msg in errs.items():
                errors.setdefault(k, msg)
        if not self.input_path:
            errors.pop("input", None)
        self.field_errors.show(errors)
        return None if errors or not specs else specs
