"""The Evaluation & Audit panel's controls column: the image sets, the options of both jobs, the buttons.

Sets are a workspace dataset (``name`` or ``name:split``; generated ones listed with the synthetic badge), a
folder of images or an NPZ. "Compare at" is the one size every set is resampled to (``size`` of both specs;
"auto": the training / real set's size). Option lists and
ranges come from the spec layer (``AuditSpec``, ``EvaluateSpec``, ``app.engine.specs.options``). The tabs
build their specs from these widgets; each spec's validation errors are shown under the group of the field.
"""

from __future__ import annotations

import typing

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from app.engine.specs.evaluate import AuditSpec, EvaluateSpec
from app.engine.specs.options import EXTRACTORS, AuditExtractorName
from app.views.job_controller import FieldErrors
from app.views.widgets.set_picker import dataset_label
from app.views.widgets.spec_widgets import bounded, error_label

#: the spec fields the image-set pickers set (their errors are shown under the sets)
SET_FIELDS = ("generated", "train", "real", "holdout")


def _set_combo(tip: str, object_name: str) -> QComboBox:
    c = QComboBox()
    c.setEditable(True)
    c.setInsertPolicy(QComboBox.NoInsert)
    c.setMinimumContentsLength(12)
    c.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
    c.setToolTip(tip)
    c.setObjectName(object_name)
    return c


class AuditControls(QScrollArea):
    """See the module docstring. ``changed`` fires when any value that goes into a spec changes."""

    changed = Signal()

    def __init__(self):
        super().__init__()
        box = QWidget()
        lay = QVBoxLayout(box)
        lay.setContentsMargins(0, 0, 4, 0)
        t = QLabel("Evaluation & Audit")
        t.setProperty("role", "title")
        lay.addWidget(t)
        lay.addWidget(self._build_sets())
        lay.addWidget(self._build_options())
        self.audit_button = QPushButton("Run audit")
        self.audit_button.setObjectName("auditButton")
        self.eval_button = QPushButton("Run evaluation")
        self.eval_button.setObjectName("evaluateButton")
        row = QHBoxLayout()
        row.addWidget(self.audit_button)
        row.addWidget(self.eval_button)
        lay.addLayout(row)
        self.stop_button = QPushButton("Stop")
        lay.addWidget(self.stop_button)
        out = QGroupBox("Report and gate")
        ol = QVBoxLayout(out)
        self.export_button = QPushButton("Export HTML report…")
        self.export_button.setObjectName("exportHtml")
        self.gate_button = QPushButton("Apply gate → cleaned set…")
        self.gate_button.setObjectName("applyGate")
        self.gate_button.setToolTip("write the generated set without the currently flagged images (NPZ, with provenance)")
        ol.addWidget(self.export_button)
        ol.addWidget(self.gate_button)
        lay.addWidget(out)
        self.status = QLabel("")
        self.status.setObjectName("auditStatus")
        self.status.setWordWrap(True)
        lay.addWidget(self.status)
        lay.addStretch(1)
        self.setWidgetResizable(True)
        self.setWidget(box)
        # as wide as the controls need beside the vertical scroll bar: nothing is cut off on a small screen
        self.setMinimumWidth(max(380, box.minimumSizeHint().width() + self.verticalScrollBar().sizeHint().width() + 4))
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        self.field_errors = FieldErrors({f: self.sets_error for f in SET_FIELDS}, self.options_error)

    def _build_sets(self) -> QGroupBox:
        sets = QGroupBox("Image sets")
        f = QFormLayout(sets)
        self.generated = _set_combo("generated images: an NPZ, a folder of PNG / DICOM, or a dataset name[:split]",
                                    "generatedSet")
        self.train = _set_combo("the model's training images (dataset name: its train split is used when it has "
                                "val/test)", "trainSet")
        self.holdout = _set_combo("real images the model never saw (calibrates the copy threshold); "
                                  "empty: the dataset's val / test split", "holdoutSet")
        for label, combo in (("Generated", self.generated), ("Training", self.train), ("Held-out", self.holdout)):
            row = QHBoxLayout()
            row.addWidget(combo, 1)
            for text, folder in (("NPZ…", False), ("Dir…", True)):
                b = QPushButton(text)
                b.setFixedWidth(40)
                b.clicked.connect(lambda _=False, c=combo, d=folder: self._browse(c, d))
                row.addWidget(b)
            f.addRow(label, row)
            combo.editTextChanged.connect(lambda *_: self.changed.emit())
        self.sets_error = error_label("setsError")
        f.addRow(self.sets_error)
        return sets

    def _build_options(self) -> QGroupBox:
        opts = QGroupBox("Options")
        of = QFormLayout(opts)
        self.audit_extractor = QComboBox()
        self.audit_extractor.setObjectName("auditExtractor")
        self.audit_extractor.addItems(list(typing.get_args(AuditExtractorName)))
        self.audit_extractor.setToolTip("features for the cosine measure of the audit (none: pixel measures only)")
        of.addRow("Audit features", self.audit_extractor)
        self.size = bounded(QSpinBox(), AuditSpec, "size", object_name="compareSize")
        self.size.setMinimum(self.size.minimum() - 1)  # one below the smallest size: "auto"
        self.size.setSpecialValueText("auto")
        self.size.setValue(self.size.minimum())
        self.size.setSuffix(" px")
        self.size.setToolTip("every set is resampled to this size before it is compared; auto: the training set's "
                             "size (audit) / the real set's (evaluation)")
        of.addRow("Compare at", self.size)
        self.max_rate = QDoubleSpinBox()
        self.max_rate.setDecimals(3)
        bounded(self.max_rate, AuditSpec, "max_memorization_rate", object_name="maxRate")
        self.max_rate.setSingleStep(0.005)
        of.addRow("Allowed flagged rate", self.max_rate)
        self.eval_extractor = QComboBox()
        self.eval_extractor.setObjectName("evalExtractor")
        self.eval_extractor.addItems(list(EXTRACTORS))
        of.addRow("Evaluation features", self.eval_extractor)
        urow = QHBoxLayout()
        self.utility_check = QCheckBox("classifier AUC")
        self.utility_check.setObjectName("utilityCheck")
        self.utility_check.setToolTip("downstream utility: train a classifier on real vs real + generated images and test "
                                      "both on the held-out real images (needs class labels on every set; minutes on a CPU)")
        self.utility_epochs = bounded(QSpinBox(), EvaluateSpec, "utility_epochs", object_name="utilityEpochs")
        self.utility_epochs.setSuffix(" epochs")
        self.utility_epochs.setEnabled(False)
        self.utility_check.toggled.connect(self.utility_epochs.setEnabled)
        urow.addWidget(self.utility_check)
        urow.addWidget(self.utility_epochs)
        of.addRow("Downstream utility", urow)
        self.options_error = error_label("optionsError")
        of.addRow(self.options_error)
        for w in (self.audit_extractor, self.eval_extractor):
            w.currentIndexChanged.connect(lambda *_: self.changed.emit())
        self.max_rate.valueChanged.connect(lambda *_: self.changed.emit())
        self.size.valueChanged.connect(lambda *_: self.changed.emit())
        self.utility_epochs.valueChanged.connect(lambda *_: self.changed.emit())
        self.utility_check.toggled.connect(lambda *_: self.changed.emit())
        return opts

    def _browse(self, combo: QComboBox, folder: bool) -> None:
        if folder:
            path = QFileDialog.getExistingDirectory(self, "Image folder")
        else:
            path, _ = QFileDialog.getOpenFileName(self, "Image set", "", "NPZ (*.npz);;All files (*)")
        if path:
            combo.setEditText(path)

    def compare_size(self) -> int | None:
        """The stated size of both specs; None for auto."""
        v = self.size.value()
        return None if v == self.size.minimum() else int(v)

    @staticmethod
    def _ref(combo: QComboBox) -> str:
        text = combo.currentText().strip()
        idx = combo.findText(text)
        ref = combo.itemData(idx) if idx >= 0 else None
        return ref if isinstance(ref, str) else text  # a listed dataset's ref, without its badge

    def sets(self) -> tuple[str, str, str]:
        """(generated, training, held-out): a listed dataset's ref, else the text as typed."""
        return tuple(self._ref(c) for c in (self.generated, self.train, self.holdout))

    def choose(self, combo: QComboBox, ref: str) -> None:
        """Select the listed entry of ``ref`` (a dataset ``name[:split]``) or type it."""
        idx = combo.findData(ref)
        if idx >= 0:
            combo.setCurrentIndex(idx)
        else:
            combo.setEditText(ref)

    def set_datasets(self, names: list[str], synthetic=()) -> None:
        """The workspace's datasets and their splits; generated ones (``synthetic``) with the badge, listed
        first in the generated-set list and last in the real ones."""
        synthetic = set(synthetic)
        real_first = [n for n in names if n not in synthetic] + [n for n in names if n in synthetic]
        gen_first = [n for n in names if n in synthetic] + [n for n in names if n not in synthetic]
        for combo in (self.generated, self.train, self.holdout):
            ref = self._ref(combo)
            order = gen_first if combo is self.generated else real_first
            combo.blockSignals(True)
            combo.clear()
            if combo is self.holdout:
                combo.addItem("", "")
            for n in order:
                splits = (n,) if n in synthetic else (n, f"{n}:train", f"{n}:val", f"{n}:test")  # generated: one split
                for r in splits:
                    combo.addItem(dataset_label(r, n in synthetic), r)
            idx = combo.findData(ref) if ref else -1
            if idx >= 0:
                combo.setCurrentIndex(idx)
            else:
                combo.setEditText(ref)
            combo.blockSignals(False)
