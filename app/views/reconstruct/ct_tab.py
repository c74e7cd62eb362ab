"""The Reconstruction panel's CT tab: sparse-view reconstruction or denoising of one slice, one "ct-recon" job per method.

Each checked method that applies to the task is one ``CTReconSpec``, built on the GUI thread as the values
change (an invalid value is named under the form; Reconstruct CT waits for a valid one) and submitted
through a ``JobController``, after one read of the input off the GUI thread (``sources.check_ct_input``: the
file, its modality, the slice), so a bad input gives one message and one error dialog, not one failed job per
method. The jobs' image events fill the comparison grid; their Done results the metrics table. Methods and
tasks come from ``app.engine.specs.options``.
"""

from __future__ import annotations

import typing
from pathlib import Path

from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from app.engine.specs.options import CT_METHODS, CTTask
from app.engine.specs.recon import CTReconSpec
from app.views.job_controller import FieldErrors, JobController, build_spec
from app.views.reconstruct.common import export_comparison, fill_metrics, metrics_table
from app.views.reconstruct.sources import check_ct_input
from app.views.widgets.comparison_grid import ComparisonGrid
from app.views.widgets.spec_widgets import bounded, error_label
from app.workers.manager import run_in_thread

#: how the form names the CT methods and tasks of ``app.engine.specs.options``
CT_METHOD_LABELS = {"fbp": "FBP (ramp filter)", "backprojection": "unfiltered backprojection",
                    "noisy": "noisy input (baseline)", "score": "score-based prior"}
CT_TASK_LABELS = {"sparse-view": "sparse-view reconstruction", "denoise": "denoising"}
#: the methods of each task (the job refuses the others)
TASK_METHODS = {"sparse-view": ("fbp", "backprojection", "score"), "denoise": ("noisy", "score")}


class CTTab(QWidget):
    """See the module docstring. ``mri`` lends its score settings (samples, steps) and seed."""

    def __init__(self, ctx, mri):
        super().__init__()
        self.ctx = ctx
        self.mri = mri
        self.last_export: list[Path] = []
        self.checking = False  # the input is being read before the jobs start
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 4, 0, 0)
        lay.addWidget(self._build_controls())
        right = QVBoxLayout()
        self.ct_grid = ComparisonGrid()
        self.ct_grid.setObjectName("ctGrid")
        right.addWidget(self.ct_grid, 1)
        self.ct_table = metrics_table("ctMetricsTable", ("views / noise", "time (s)"))
        right.addWidget(self.ct_table)
        lay.addLayout(right, 1)
        self.jobs = JobController(ctx.jobs, self.ct_status, what="CT reconstruction", parent=self)
        self.jobs.changed.connect(self.update_buttons)
        self.jobs.finished.connect(self._on_ct_done)
        self.ct_task.currentIndexChanged.connect(self._on_ct_task)
        self.ct_file.textChanged.connect(self.update_buttons)
        for w in (self.ct_slice, self.ct_views, self.ct_noise):
            w.valueChanged.connect(self.update_buttons)
        for cb in self.ct_methods.values():
            cb.toggled.connect(self.update_buttons)
        self._on_ct_task()

    def _build_controls(self) -> QWidget:
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
        self.ct_slice = bounded(QSpinBox(), CTReconSpec, "slice", hi=100000, object_name="ctSlice")
        f.addRow("Slice", self.ct_slice)
        self.ct_task = QComboBox()
        self.ct_task.setObjectName("ctTask")
        for task in typing.get_args(CTTask):
            self.ct_task.addItem(CT_TASK_LABELS.get(task, task), task)
        f.addRow("Task", self.ct_task)
        self.ct_views = bounded(QSpinBox(), CTReconSpec, "views", object_name="ctViews")
        f.addRow("Views (over 180°)", self.ct_views)
        self.ct_noise = QDoubleSpinBox()
        bounded(self.ct_noise, CTReconSpec, "noise_hu", object_name="ctNoise")
        self.ct_noise.setSuffix(" HU")
        f.addRow("Noise σ", self.ct_noise)
        self.ct_methods: dict[str, QCheckBox] = {}
        for m in CT_METHODS:
            cb = QCheckBox(CT_METHOD_LABELS.get(m, m))
            self.ct_methods[m] = cb
            f.addRow(cb)
        self.ct_methods["fbp"].setChecked(True)
        self.ct_methods["backprojection"].setChecked(True)
        self.ct_run_combo = QComboBox()
        self.ct_run_combo.setToolTip("a 1-channel CT prior (training run) for the score method")
        f.addRow("  checkpoint", self.ct_run_combo)
        self.ct_error = error_label("ctFormError")
        f.addRow(self.ct_error)
        brow = QHBoxLayout()
        self.ct_button = QPushButton("Reconstruct CT")
        self.ct_button.setObjectName("ctButton")
        self.ct_button.clicked.connect(self.run_ct)
        self.stop_button = QPushButton("Stop")
        self.stop_button.setObjectName("ctStop")
        self.stop_button.clicked.connect(lambda: self.jobs.stop())
        brow.addWidget(self.ct_button, 1)
        brow.addWidget(self.stop_button)
        f.addRow(brow)
        self.ct_export = QPushButton("Export comparison…")
        self.ct_export.clicked.connect(lambda: self.export())
        f.addRow(self.ct_export)
        self.ct_status = QLabel("")
        self.ct_status.setObjectName("ctStatus")
        self.ct_status.setWordWrap(True)
        f.addRow(self.ct_status)
        self.field_errors = FieldErrors({}, self.ct_error)
        return ctl

    @property
    def ct_group(self):
        return self.jobs.group

    def _browse_ct(self):
        path, _ = QFileDialog.getOpenFileName(self, "CT volume or slice", "", "CT (*.npz *.dcm);;All files (*)")
        if path:
            self.ct_file.setText(path)

    def set_runs(self, runs) -> None:
        keep = self.ct_run_combo.currentData()
        self.ct_run_combo.clear()
        for r in reversed(list(runs)):
            self.ct_run_combo.addItem(f"{r.id} · {r.dataset or ''} ({r.state})", r.id)
        i = self.ct_run_combo.findData(keep) if keep else -1
        if i >= 0:
            self.ct_run_combo.setCurrentIndex(i)

    def _on_ct_task(self, *_):
        task = self.ct_task.currentData()
        for m, cb in self.ct_methods.items():
            cb.setEnabled(m in TASK_METHODS.get(task, CT_METHODS))
        if task == "denoise" and not self.ct_methods["noisy"].isChecked():
            self.ct_methods["noisy"].setChecked(True)
        self.ct_views.setEnabled(task == "sparse-view")
        self.ct_noise.setEnabled(task == "denoise")
        self.update_buttons()

    def ct_selected_methods(self) -> list[str]:
        return [m for m, cb in self.ct_methods.items() if cb.isChecked() and cb.isEnabled()]

    # -- specs ------------------------------------------------------------------------------------
    def ct_values(self, method: str) -> dict:
        m = self.mri.form
        v = {"input": self.ct_file.text().strip(), "slice": self.ct_slice.value(), "task": self.ct_task.currentData(),
             "views": self.ct_views.value(), "noise_hu": self.ct_noise.value(), "method": [method],
             "seed": m.seed.value()}
        if method == "score":
            v.update(run=self.ct_run_combo.currentData(), samples=m.samples.value(), steps=m.steps.value())
        return v

    def validate(self) -> list[CTReconSpec] | None:
        """The specs of the checked methods, or None with the errors shown under the form."""
        specs, errors = [], {}
        for method in self.ct_selected_methods():
            spec, errs = build_spec(CTReconSpec, self.ct_values(method))
            if spec is not None:
                specs.append(spec)
            for k, msg in errs.items():
                errors.setdefault(k, msg)
        if not self.ct_file.text().strip():
            errors.pop("input", None)  # not chosen yet: the button says so
        self.field_errors.show(errors)
        return None if errors or not specs else specs

    def update_buttons(self, *_) -> None:
        ok = self.validate() is not None and bool(self.ct_file.text().strip())
        self.ct_button.setEnabled(ok and not self.jobs.busy and not self.checking)
        self.stop_button.setEnabled(self.jobs.busy)

    # -- running ----------------------------------------------------------------------------------
    def run_ct(self):
        """Submit one ct-recon job per method; returns their specs (None when nothing was submitted)."""
        methods = self.ct_selected_methods()
        if not self.ct_file.text().strip() or not methods:
            self.jobs.say("Choose an input and at least one method that applies to the task.")
            return None
        specs = self.validate()
        if specs is None:
            self.jobs.say("Not valid: correct the value named in red.")
            return None
        path, index = specs[0].input, specs[0].slice
        self.checking = True
        self.update_buttons()
        self.jobs.say(f"Reading {Path(path).name}…")
        run_in_thread(lambda: check_ct_input(path, index), lambda _desc: self._submit(specs, methods),
                      self._input_refused)
        return specs

    def _submit(self, specs: list[CTReconSpec], methods: list[str]) -> None:
        self.checking = False
        self.ct_grid.clear()
        self.ct_table.setRowCount(0)
        self.jobs.start()
        for spec, m in zip(specs, methods):
            self.ct_grid.ensure_method(m)
            self.jobs.submit(spec, name=m, on_image=self.ct_grid.on_image)
        self.jobs.say(f"{len(specs)} CT job(s) submitted.")
        self.update_buttons()

    def _input_refused(self, msg: str, _tb: str) -> None:
        """One bad input, one message: on the status line (the file by its name) and in one error dialog (the
        whole message, its path included); no job was started."""
        self.checking = False
        path = self.ct_file.text().strip()
        self.jobs.say(f"Cannot reconstruct {Path(path).name}: {msg.removeprefix(f'{path}: ')}")
        main = self.ctx.main_window
        if main is not None and hasattr(main, "show_error"):
            main.show_error("CT input refused", msg)
        self.update_buttons()

    def _on_ct_done(self, method: str, h) -> None:
        group = self.jobs.group
        if h.state != "done":
            return
        res = h.result or {}
        entry = dict((res.get("methods") or {}).get(method, {}))
        entry["extra"] = f"{res['views']} views" if "views" in res else f"σ {res.get('noise_hu', 0):g} HU"
        group.results[method] = entry
        fill_metrics(self.ct_table, group.results)
        if group.all_final():
            self.jobs.say(f"{len(group.results)} CT reconstruction(s) done.")

    def export(self, out_dir: str | Path | None = None):
        results = self.ct_group.results if self.ct_group else {}
        return export_comparison(self, self.ct_grid, results, out_dir, "ct_comparison", self.jobs,
                                 lambda paths: setattr(self, "last_export", paths))
