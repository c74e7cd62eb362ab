"""The Reconstruction panel's acceleration sweep tab: one "recon-sweep" job over slices x accelerations x methods.

The source, mask, methods and their settings are the MRI tab's (``MRIForm``); this tab adds the slices and
the accelerations, builds the ``ReconSweepSpec`` on the GUI thread as they change (an invalid value is named
under the field, Run sweep waits for a valid one), and draws the job's Done result: the metric against the
acceleration per method (mean with a ±1 std bar) and the table of cells. The best / worst slice of a cell is
one click away: its error map (the job's image event ``<method> R=<R> best|worst (slice <s>)``) or the slice
opened in the MRI comparison.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.engine.recon.mri.warm import AUTO
from app.engine.specs.options import SCORE_METHODS
from app.engine.specs.recon import ReconSweepSpec
from app.views.job_controller import FieldErrors, JobController, build_spec
from app.views.reconstruct.common import METRIC_COLUMNS
from app.views.widgets.image_view import ImageView
from app.views.widgets.plots import PALETTE, side_legend
from app.views.widgets.spec_widgets import error_label

SWEEP_FIELDS = ("slices", "accelerations")


def parse_numbers(text: str, cast=float) -> list:
    """``"120 125, 130"`` -> [120, 125, 130]; for whole numbers ``"120-122"`` -> [120, 121, 122].
    ValueError for a token that is not a number."""
    out = []
    for tok in text.replace(",", " ").split():
        if "-" in tok and cast is int and not tok.startswith("-"):
            a, b = tok.split("-", 1)
            out.extend(range(int(a), int(b) + 1))
        else:
            out.append(cast(tok))
    return out


def case_image_name(row: dict, which: str) -> str:
    """The name of the sweep job's image event of a cell's best / worst error map."""
    return f"{row['method']} R={row['acceleration']:g} {which} (slice {row[which + '_slice']})"


class SweepTab(QWidget):
    """See the module docstring. ``mri`` is the MRI tab whose form the sweep takes its settings from."""

    case_opened = Signal()  # a best / worst slice was loaded into the MRI comparison

    def __init__(self, ctx, mri):
        super().__init__()
        self.ctx = ctx
        self.mri = mri
        self.sweep_result: dict | None = None
        self.case_images: dict[str, np.ndarray] = {}
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 4, 0, 0)
        lay.addWidget(self._build_controls())
        lay.addWidget(self._build_results(), 1)
        self.jobs = JobController(ctx.jobs, self.sweep_status, what="Sweep", parent=self)
        self.jobs.changed.connect(self.update_buttons)
        self.jobs.finished.connect(self._on_sweep_done)
        self.sweep_slices.textChanged.connect(self.update_buttons)
        self.sweep_accels.textChanged.connect(self.update_buttons)
        mri.form.changed.connect(self.update_buttons)
        self.update_buttons()

    def _build_controls(self) -> QWidget:
        ctl = QWidget()
        ctl.setMaximumWidth(330)
        f = QFormLayout(ctl)
        self.sweep_slices = QLineEdit("0")
        self.sweep_slices.setObjectName("sweepSlices")
        self.sweep_slices.setToolTip("slice indices of the source file, e.g. 120 125 130 or 120-129")
        self.sweep_accels = QLineEdit("2 4 6 8")
        self.sweep_accels.setObjectName("sweepAccelerations")
        intro = QLabel("Uses the MRI tab's source file, mask type, centre fraction, seed and methods.")
        intro.setWordWrap(True)
        f.addRow(intro)
        self.slices_error = error_label("sweepSlicesError")
        self.accels_error = error_label("sweepAccelerationsError")
        f.addRow("Slices", self.sweep_slices)
        f.addRow(self.slices_error)
        f.addRow("Accelerations", self.sweep_accels)
        f.addRow(self.accels_error)
        self.sweep_metric = QComboBox()
        self.sweep_metric.setObjectName("sweepMetric")
        for key, label, _ in METRIC_COLUMNS:
            self.sweep_metric.addItem(label, key)
        self.sweep_metric.setCurrentIndex(1)
        self.sweep_metric.currentIndexChanged.connect(lambda *_: self._draw_sweep())
        f.addRow("Plot", self.sweep_metric)
        self.sweep_error = error_label("sweepFormError")
        f.addRow(self.sweep_error)
        row = QHBoxLayout()
        self.sweep_button = QPushButton("Run sweep")
        self.sweep_button.setObjectName("sweepButton")
        self.sweep_button.clicked.connect(self.run_sweep)
        self.stop_button = QPushButton("Stop")
        self.stop_button.setObjectName("sweepStop")
        self.stop_button.clicked.connect(lambda: self.jobs.stop())
        row.addWidget(self.sweep_button, 1)
        row.addWidget(self.stop_button)
        f.addRow(row)
        self.sweep_status = QLabel("")
        self.sweep_status.setObjectName("sweepStatus")
        self.sweep_status.setWordWrap(True)
        f.addRow(self.sweep_status)
        self.field_errors = FieldErrors({"slices": self.slices_error, "accelerations": self.accels_error},
                                        self.sweep_error)
        return ctl

    def _build_results(self) -> QWidget:
        right = QSplitter(Qt.Vertical)
        self.sweep_plot = pg.PlotWidget()
        self.sweep_plot.setObjectName("sweepPlot")
        self.sweep_plot.showGrid(x=True, y=True, alpha=0.25)
        self.sweep_plot.setLabel("bottom", "acceleration R")
        self.sweep_plot.getAxis("left").enableAutoSIPrefix(False)
        side_legend(self.sweep_plot)
        right.addWidget(self.sweep_plot)
        low = QWidget()
        ll = QHBoxLayout(low)
        ll.setContentsMargins(0, 0, 0, 0)
        t = self.sweep_table = QTableWidget(0, 6)
        t.setObjectName("sweepTable")
        t.setHorizontalHeaderLabels(["method", "R", "SSIM mean ± std", "PSNR mean", "best slice", "worst slice"])
        t.verticalHeader().setVisible(False)
        t.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeToContents)
        t.horizontalHeader().setStretchLastSection(True)
        t.setSelectionBehavior(QAbstractItemView.SelectRows)
        t.setSelectionMode(QAbstractItemView.SingleSelection)
        t.setEditTriggers(QAbstractItemView.NoEditTriggers)
        t.itemSelectionChanged.connect(self._on_sweep_row)
        ll.addWidget(t, 3)
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
        return right

    # -- the spec ---------------------------------------------------------------------------------
    @property
    def sweep_handle(self):
        return self.jobs.handle

    def sweep_check(self):
        """(ReconSweepSpec, {}) or (None, {field: message}): the MRI tab's source, mask and methods over
        this tab's slices and accelerations."""
        f = self.mri.form
        errors = {}
        try:
            slices = parse_numbers(self.sweep_slices.text(), int)
        except ValueError:
            errors["slices"] = "whole numbers separated by spaces, e.g. 120 125 130 or 120-129"
        try:
            accels = parse_numbers(self.sweep_accels.text(), float)
        except ValueError:
            errors["accelerations"] = "numbers separated by spaces, e.g. 2 4 6 8"
        if errors:
            return None, errors
        methods = f.selected_methods()
        v = {"input": f.input_path, "slices": slices, "accelerations": accels, "method": methods,
             "mask": f.mask_kind.currentData(), "center_fraction": f.center.value(), "lam": f.cs_lam.value(),
             "iterations": f.cs_iter.value(), "seed": f.seed.value()}
        if any(m in SCORE_METHODS for m in methods):
            v.update(run=f.run_combo.currentData(), samples=f.samples.value(), steps=f.steps.value())
        if "score-dds" in methods and f.warm.isChecked():
            if f.warm_level_is_default() and f.steps.value() == f.score_steps_default:
                # not set by hand: every acceleration of the sweep gets its own level and steps, as the MRI
                # tab would give it (the form shows those of its own R only)
                v["warm_start"] = AUTO
                del v["steps"]
            else:
                v["warm_start"] = f.warm_level.value()
        return build_spec(ReconSweepSpec, v)

    def sweep_spec(self) -> ReconSweepSpec:
        """The validated spec; ValueError naming the bad field(s) otherwise."""
        spec, errors = self.sweep_check()
        if spec is None:
            raise ValueError("; ".join(f"{k}: {m}" for k, m in errors.items()))
        return spec

    def update_buttons(self, *_) -> None:
        spec, errors = self.sweep_check()
        if not self.mri.form.input_path:
            errors.pop("input", None)
        self.field_errors.show({k: m + ("" if k in SWEEP_FIELDS or not k else " (set in the MRI tab)")
                                for k, m in errors.items()})
        self.sweep_button.setEnabled(spec is not None and not self.jobs.busy)
        self.stop_button.setEnabled(self.jobs.busy)

    # -- running ----------------------------------------------------------------------------------
    def run_sweep(self):
        """Submit the sweep; returns its spec (None when it is not valid)."""
        if not self.mri.form.input_path or not self.mri.form.selected_methods():
            self.jobs.say("Choose a source file and methods in the MRI tab first.")
            return None
        spec, errors = self.sweep_check()
        if spec is None:
            self.field_errors.show(errors)
            self.jobs.say("Not valid: correct the value named in red.")
            return None
        self.case_images = {}
        self.jobs.start()
        self.jobs.submit(spec, name="sweep", on_image=self._on_image)
        self.jobs.say("Sweep submitted (see the Jobs dock).")
        return spec

    def _on_image(self, name, arr, kind) -> None:
        if kind == "difference":
            self.case_images[name] = np.asarray(arr, np.float32)

    def _on_sweep_done(self, _name: str, h) -> None:
        if h.state != "done":
            return
        self.sweep_result = res = h.result or {}
        self._fill_sweep_table()
        self._draw_sweep()
        flagged = res.get("flagged_subgroups") or []
        self.jobs.say(f"{len(res.get('rows', []))} reconstructions scored."
                      + (f" {len(flagged)} subgroup(s) flagged (see the Jobs log)." if flagged else ""))
        if self.sweep_table.rowCount():
            self.sweep_table.selectRow(0)

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
            arr = self.case_images.get(case_image_name(row, which))
            if arr is not None:
                view._title = f"{which}: slice {row[which + '_slice']} |error| ({key})"
                view.set_image(arr, autolevel=False)
                view.set_levels(0.0, float(np.percentile(arr, 99.5)) or 1e-6)

    def open_case(self, which: str) -> None:
        """Load the best / worst slice of the selected cell into the MRI comparison."""
        row = self._sweep_row()
        if row is None:
            return
        f = self.mri.form
        f.accel.setValue(float(row["acceleration"]))
        f.use_zf.setChecked(row["method"] == "zero-filled" or f.use_zf.isChecked())
        self.mri.load_file(f.input_path, int(row[f"{which}_slice"]))
        self.case_opened.emit()
        self.mri.jobs.say(f"{which} case of {row['method']} at R={row['acceleration']:g}: slice "
                          f"{row[which + '_slice']} loaded; press Reconstruct to compare.")
