"""The Evaluation & Audit panel's metrics tab: the "evaluate" job and its Done result.

``EvaluateSpec`` is built from the controls (and ``options``: further fields such as a preset's KID subsets)
on the GUI thread and submitted through a ``JobController``. The Done result fills the table of every row
of the evaluation (generated, real held-out floor, noise baseline) naming the extractor and the image
counts, per class; the radial power spectra; downstream AUC (real-only vs real+synthetic, with confidence
intervals) when the result carries it. The real and generated images shown side by side per class are the
job's input sets, read on a worker thread.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.engine.evaluation.report import row_label
from app.engine.metrics.sets import load_set, size_sentence
from app.engine.specs.evaluate import EvaluateSpec
from app.views.job_controller import JobController, build_spec
from app.views.widgets.plots import PALETTE, side_legend
from app.views.widgets.thumbnails import ThumbnailGrid
from app.workers.manager import run_in_thread

#: the columns of a result row (``evaluation.job``'s table keys) as the table shows them
EVAL_COLUMNS = (("n", "n", "{:d}"), ("n_real", "n real", "{:d}"), ("fid", "FID", "{:.3f}"), ("kid_mean", "KID", "{:.4f}"),
                ("precision", "precision", "{:.3f}"), ("recall", "recall", "{:.3f}"),
                ("spectrum_log_distance", "spectrum dist.", "{:.3f}"), ("histogram", "histogram W1", "{:.4f}"),
                ("diversity", "MS-SSIM (<0.5 diverse)", "{:.3f}"))


def auc_text(res: dict) -> str:
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


class EvaluationTab(QWidget):
    """See the module docstring."""

    shown = Signal()  # an evaluation's results are on screen

    def __init__(self, ctx, controls):
        super().__init__()
        self.ctx = ctx
        self.controls = controls
        self.eval_result: dict | None = None
        self.eval_sets: dict | None = None
        #: further EvaluateSpec fields merged into every evaluation this tab submits (a preset's KID
        #: subsets, bootstrap resamples, classifier width ...); empty: the spec's defaults
        self.options: dict = {}
        self._build()
        self.jobs = JobController(ctx.jobs, controls.status, what="Evaluation", parent=self)
        self.jobs.finished.connect(self._on_eval_done)
        self.show_utility({})

    def _build(self) -> None:
        el = QVBoxLayout(self)
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
        t = self.metrics_table = QTableWidget(0, len(EVAL_COLUMNS) + 1)
        t.setObjectName("evalTable")
        t.setHorizontalHeaderLabels(["set"] + [c[1] for c in EVAL_COLUMNS])
        t.verticalHeader().setVisible(False)
        t.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeToContents)
        t.horizontalHeader().setStretchLastSection(True)
        t.setEditTriggers(QAbstractItemView.NoEditTriggers)
        t.setFixedHeight(120)
        el.addWidget(t)
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
        sp = self.spectrum_plot = pg.PlotWidget()
        sp.setObjectName("spectrumPlot")
        sp.setMinimumHeight(140)  # readable ticks; the splitter gives it no less on a 1366x768 screen
        # no title row: the axis labels name it, and the data keep the height on a small screen
        sp.setLabel("bottom", "radial frequency (cycles / pixel)")
        sp.setLabel("left", "log10 power")
        sp.showGrid(x=True, y=True, alpha=0.2)
        for ax in ("left", "bottom"):
            sp.getAxis(ax).enableAutoSIPrefix(False)
        side_legend(sp)
        mid.addWidget(sp)
        mid.setSizes([300, 300, 420])
        vsplit = QSplitter(Qt.Vertical)
        vsplit.addWidget(mid)
        vsplit.addWidget(self._build_utility())
        vsplit.setStretchFactor(0, 1)
        vsplit.setStretchFactor(1, 0)
        vsplit.setSizes([430, 240])
        el.addWidget(vsplit, 1)

    def _build_utility(self) -> QWidget:
        """Downstream utility: a table (AUC with CI, accuracy, F1, confusion) and an AUC-with-CI plot."""
        box = self.utility_box = QGroupBox("Downstream utility: classifier tested on held-out real images")
        box.setObjectName("utilityBox")
        lay = QHBoxLayout(box)
        left = QVBoxLayout()
        t = self.utility_table = QTableWidget(0, 5)
        t.setObjectName("utilityTable")
        t.setHorizontalHeaderLabels(["trained on", "AUC [95% CI]", "accuracy", "macro F1", "confusion (rows: true)"])
        t.verticalHeader().setVisible(False)
        t.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeToContents)
        t.horizontalHeader().setStretchLastSection(True)
        t.setEditTriggers(QAbstractItemView.NoEditTriggers)
        t.verticalHeader().setDefaultSectionSize(24)
        t.setFixedHeight(24 * 3 + 6)
        left.addWidget(t)
        self.auc_label = QLabel("")
        self.auc_label.setObjectName("aucLabel")
        self.auc_label.setWordWrap(True)
        left.addWidget(self.auc_label)
        left.addStretch(1)
        lay.addLayout(left, 3)
        p = self.auc_plot = pg.PlotWidget()
        p.setObjectName("aucPlot")
        r, g = ("#{:02x}{:02x}{:02x}".format(*PALETTE[i]) for i in (0, 1))
        p.setTitle(f"AUC, 95% CI: <span style='color:{r}'>● real only</span> &nbsp; "
                   f"<span style='color:{g}'>● real + synthetic</span>", size="9pt")
        p.setLabel("left", "AUC")
        p.showGrid(y=True, alpha=0.2)
        p.setMouseEnabled(x=False, y=False)
        p.getAxis("left").enableAutoSIPrefix(False)
        p.setMinimumSize(320, 190)
        lay.addWidget(p, 2)
        return box

    # -- the job ----------------------------------------------------------------------------------
    @property
    def eval_handle(self):
        return self.jobs.handle

    @property
    def html(self) -> str | None:
        """The self-contained report of the evaluation shown (its Done result's ``html``)."""
        return (self.eval_result or {}).get("html") or None

    def eval_check(self):
        """(EvaluateSpec, {}) or (None, {field: message}) for the controls' values and ``options``."""
        c = self.controls
        gen, train, hold = c.sets()
        v = {"real": train, "generated": gen, "extractor": c.eval_extractor.currentText()}
        if c.compare_size() is not None:
            v["size"] = c.compare_size()
        if hold:
            v["holdout"] = hold
        if c.utility_check.isChecked():
            v.update(utility=True, utility_epochs=c.utility_epochs.value())
        v.update(self.options)
        return build_spec(EvaluateSpec, v)

    def run_evaluate(self):
        """Submit the evaluation; returns its spec (None when it is not valid)."""
        gen, train, _ = self.controls.sets()
        if not gen or not train:
            self.jobs.say("Choose the generated set and the real (training) set.")
            return None
        spec, errors = self.eval_check()
        if spec is None:
            self.controls.field_errors.show(errors)
            self.jobs.say("Not valid: correct the value named in red.")
            return None
        self.jobs.start()
        self.jobs.submit(spec, name="evaluate")
        self.jobs.say("Evaluating…")
        return spec

    def _on_eval_done(self, _name: str, h) -> None:
        if h.state != "done":
            return
        spec, res, ws = h.spec, h.result or {}, self.ctx.workspace
        real_ref = spec.real
        if spec.holdout is None and ":" not in real_ref and not Path(real_ref).exists() and ws.has_dataset(real_ref):
            real_ref = f"{real_ref}:train"

        size = (res.get("image_size") or {}).get("size", spec.size)  # the size the job compared at

        def load():
            return {"real": load_set(real_ref, ws, size=size, what="real images"),
                    "generated": load_set(spec.generated, ws, size=size, what="generated images")}

        def show(sets):
            self.eval_sets = sets
            self.show_result(res)

        def failed(msg, tb):
            self.jobs.say(f"Could not read the sets: {msg}")
            self.show_result(res)

        run_in_thread(load, show, failed)

    # -- showing the result -----------------------------------------------------------------------
    def show_result(self, res: dict) -> None:
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
        self.show_utility(res)
        self.jobs.say(f"Evaluation done ({res.get('extractor')} features). "
                      + (size_sentence(res["image_size"]) + " " if res.get("image_size") else "")
                      + f"Report: {res.get('html')}")
        self.shown.emit()

    def show_utility(self, res: dict) -> None:
        u = res.get("utility")
        self.auc_label.setText(auc_text(res))
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
        self._plot_auc(u, models)

    def _plot_auc(self, u: dict, models) -> None:
        """Headline AUC per model, and each class's one-vs-rest AUC when there are more than two classes."""
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
            self._show_images(group)

    def _show_images(self, group: str) -> None:
        """The real and generated images of the chosen class (``overall``: all), at most 24 of each."""
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
