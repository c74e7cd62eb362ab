"""The Reader Study panel: design blinded studies, manage readers and readings, see the statistics.

Left: the studies of the workspace. Right, three tabs:

- **Design**: pick real and synthetic sets (workspace datasets, or image folders / NPZ files), the split
  real cases come from (``real_split``: the held-out test split unless training images are chosen on
  purpose), the number of cases, the share of synthetic cases, the mode, the display size, the seed,
  the goal and its rule (the 95 % interval by default, the point estimate by name) and an optional
  time limit per case; "Create study" runs the ``study-create`` job. What is missing is said in plain
  words (``DESIGN_MESSAGES``), not as validation text. The dataset lists follow the workspace: they
  are read again whenever a job adds datasets (``JobManager.datasets_changed``).
- **Readers**: the selected study's readers and their progress; add a reader; start / resume a
  reading (opens the full-screen ``ReaderWindow``); export the study for reading on another
  machine; import a study package or the answers that come back.
- **Results**: the verdict against the study's goal (read from the interval: "not distinguishable from
  chance" when it holds 0.5; a note when the real cases include training images), per-reader and pooled statistics, Fleiss'
  kappa, the ROC curves and the per-reader accuracies with their Wilson intervals, the cases that
  fooled most readers; export CSV + JSON.

Every engine call that touches files runs as a job through ``ctx.jobs`` (or inline when a test
gives no job manager); the SQLite reads for the lists are a few rows and stay on the GUI thread.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from app.engine import jobs as J
from app.engine import study as S
from app.views.widgets.plots import side_legend
from app.views.widgets.set_picker import SetPicker
from app.views.widgets.spec_form import SpecForm

#: what the design lacks, in plain words (the form's hidden set fields)
DESIGN_MESSAGES = {
    "real": "Tick at least one real set (a workspace dataset, or add an image folder / NPZ).",
    "synthetic": "Tick at least one synthetic set (a generated dataset, or add an image folder / NPZ).",
}
#: the verdict's colour by its state: met, not met, not shown yet (an interval that straddles the goal), no answers
VERDICT_COLOURS = {"met": "#7bd17b", "not met": "#e8a04a", "not shown": "#bbbbbb", None: "#bbbbbb"}

PALETTE = [(90, 160, 240), (240, 150, 70), (120, 200, 120), (220, 100, 200), (230, 220, 90),
           (100, 220, 220), (240, 100, 100), (170, 140, 250)]


def _fmt(v, digits=3) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


class StudyPanel(QWidget):
    """``StudyPanel(ctx)``: see the module docstring."""

    stats_shown = Signal(dict)
    studies_changed = Signal()

    def __init__(self, ctx, parent=None):
        super().__init__(parent)
        self.setObjectName("study")
        self.ctx = ctx
        self.reader_windows: list = []
        self.stats: dict | None = None
        self._handles: dict[str, tuple] = {}  # job id -> (handle, on_done, what)
        self._shown_once = False
        self._build()
        self.refresh()
        if getattr(ctx.jobs, "datasets_changed", None) is not None:
            ctx.jobs.datasets_changed.connect(self.refresh_datasets)

    @property
    def ws(self):
        return self.ctx.workspace

    # -- building -------------------------------------------------------------------------------
    def _build(self) -> None:
        lay = QVBoxLayout(self)
        lay.setContentsMargins(12, 10, 12, 10)
        title = QLabel("Reader Study")
        title.setProperty("role", "title")
        lay.addWidget(title)
        hint = QLabel("Blinded real-vs-synthetic reading: every image is shown at one size, normalised and quantised "
                      "alike, under an opaque id, in a random order per reader; the truth stays in this workspace.")
        hint.setProperty("role", "hint")
        hint.setWordWrap(True)
        lay.addWidget(hint)
        split = QSplitter(Qt.Horizontal)
        lay.addWidget(split, 1)

        left = QWidget()
        ll = QVBoxLayout(left)
        ll.setContentsMargins(0, 0, 0, 0)
        ll.addWidget(QLabel("Studies"))
        self.study_list = QListWidget()
        self.study_list.setObjectName("studyList")
        self.study_list.currentRowChanged.connect(lambda _r: self._on_study_selected())
        ll.addWidget(self.study_list, 1)
        row = QHBoxLayout()
        b_new = QPushButton("New study")
        b_new.clicked.connect(lambda: self.tabs.setCurrentWidget(self.design_tab))
        b_imp = QPushButton("Import…")
        b_imp.setToolTip("a study package to read here (.h5) or readers' answers coming back (.json)")
        b_imp.clicked.connect(self._import_dialog)
        row.addWidget(b_new)
        row.addWidget(b_imp)
        ll.addLayout(row)
        self.b_delete = QPushButton("Delete study")
        self.b_delete.clicked.connect(self._delete_selected)
        ll.addWidget(self.b_delete)
        split.addWidget(left)

        self.tabs = QTabWidget()
        self.design_tab = self._build_design()
        self.readers_tab = self._build_readers()
        self.results_tab = self._build_results()
        self.tabs.addTab(self.design_tab, "Design")
        self.tabs.addTab(self.readers_tab, "Readers")
        self.tabs.addTab(self.results_tab, "Results")
        split.addWidget(self.tabs)
        split.setSizes([240, 900])
        self.status = QLabel("")
        self.status.setWordWrap(True)
        lay.addWidget(self.status)

    def _build_design(self) -> QWidget:
        w = QWidget()
        lay = QHBoxLayout(w)
        sets = QVBoxLayout()
        # generated datasets are never real cases: the real picker does not offer them
        self.real_picker = SetPicker("Real sets", offer_synthetic=False)
        self.syn_picker = SetPicker("Synthetic sets")
        for p in (self.real_picker, self.syn_picker):
            p.changed.connect(self._sync_sets)
            sets.addWidget(p)
        sets.addWidget(QLabel("Readers (comma separated ids, e.g. initials)"))
        self.readers_edit = QLineEdit()
        self.readers_edit.setPlaceholderText("ab, cd")
        self.readers_edit.textChanged.connect(lambda _t: self._sync_sets())
        sets.addWidget(self.readers_edit)
        sets.addStretch(1)
        lay.addLayout(sets, 1)
        right = QVBoxLayout()
        self.form = SpecForm(S.StudyCreateSpec, only=("name", "real_split", "mode", "n_cases", "synthetic_fraction",
                                                      "size", "seed", "goal_accuracy", "goal_rule", "time_limit_s"),
                             messages=DESIGN_MESSAGES, quiet_until_edited=True)
        self.form.set_values({"real": [], "synthetic": [], "readers": []})
        right.addWidget(self.form)
        self.b_create = QPushButton("Create study")
        self.b_create.setObjectName("createStudy")
        self.b_create.clicked.connect(self.create_from_form)
        right.addWidget(self.b_create)
        self.design_error = QLabel("")
        self.design_error.setProperty("role", "error")
        self.design_error.setWordWrap(True)
        right.addWidget(self.design_error)
        right.addStretch(1)
        lay.addLayout(right, 1)
        return w

    def _build_readers(self) -> QWidget:
        w = QWidget()
        lay = QVBoxLayout(w)
        self.summary = QLabel("Select a study.")
        self.summary.setWordWrap(True)
        lay.addWidget(self.summary)
        self.reader_table = QTableWidget(0, 3)
        self.reader_table.setHorizontalHeaderLabels(["Reader", "Answered", "Status"])
        self.reader_table.horizontalHeader().setSectionResizeMode(QHeaderView.Stretch)
        self.reader_table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.reader_table.setSelectionMode(QAbstractItemView.SingleSelection)
        self.reader_table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.reader_table.verticalHeader().setVisible(False)
        lay.addWidget(self.reader_table, 1)
        row = QHBoxLayout()
        self.new_reader = QLineEdit()
        self.new_reader.setPlaceholderText("reader id")
        self.new_reader.returnPressed.connect(self._add_reader_clicked)
        b_add = QPushButton("Add reader")
        b_add.clicked.connect(self._add_reader_clicked)
        self.b_read = QPushButton("Start / resume reading")
        self.b_read.setObjectName("startReading")
        self.b_read.clicked.connect(lambda: self.start_reading())
        row.addWidget(self.new_reader)
        row.addWidget(b_add)
        row.addStretch(1)
        row.addWidget(self.b_read)
        lay.addLayout(row)
        row2 = QHBoxLayout()
        self.b_export_pkg = QPushButton("Export for reading elsewhere…")
        self.b_export_pkg.clicked.connect(self._export_package_dialog)
        self.b_export_answers = QPushButton("Export answers…")
        self.b_export_answers.clicked.connect(self._export_answers_dialog)
        b_import = QPushButton("Import answers…")
        b_import.clicked.connect(self._import_dialog)
        for b in (self.b_export_pkg, self.b_export_answers, b_import):
            row2.addWidget(b)
        row2.addStretch(1)
        lay.addLayout(row2)
        return w

    def _build_results(self) -> QWidget:
        w = QWidget()
        lay = QVBoxLayout(w)
        top = QHBoxLayout()
        self.verdict = QLabel("No study selected.")
        self.verdict.setObjectName("verdict")
        self.verdict.setWordWrap(True)
        top.addWidget(self.verdict, 1)
        b_refresh = QPushButton("Refresh")
        b_refresh.clicked.connect(self.refresh_results)
        b_export = QPushButton("Export CSV + JSON…")
        b_export.clicked.connect(self._export_results_dialog)
        top.addWidget(b_refresh)
        top.addWidget(b_export)
        lay.addLayout(top)
        self.stats_table = QTableWidget(0, 9)
        self.stats_table.setHorizontalHeaderLabels(
            ["Reader", "n", "Accuracy", "95 % CI (Wilson)", "p (vs 50 %)", "Sensitivity", "Specificity", "AUC",
             "Median s"])
        self.stats_table.horizontalHeader().setSectionResizeMode(QHeaderView.Stretch)
        self.stats_table.horizontalHeader().setSectionResizeMode(3, QHeaderView.ResizeToContents)  # its title whole
        self.stats_table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.stats_table.verticalHeader().setVisible(False)
        self.stats_table.setMaximumHeight(170)
        lay.addWidget(self.stats_table)
        self.kappa_label = QLabel("")
        lay.addWidget(self.kappa_label)
        plots = QGridLayout()
        self.roc_plot = pg.PlotWidget(title="ROC from the confidence ratings")
        self.roc_plot.setLabel("bottom", "false positive rate")
        self.roc_plot.setLabel("left", "true positive rate")
        self.roc_plot.setXRange(0, 1, padding=0.02)
        self.roc_plot.setYRange(0, 1, padding=0.02)
        self.roc_plot.setLimits(xMin=-0.05, xMax=1.05, yMin=-0.05, yMax=1.05)
        self.roc_legend = side_legend(self.roc_plot)  # beside the curves, never over them
        self.acc_plot = pg.PlotWidget(title="Accuracy per reader (95 % Wilson interval)")
        self.acc_plot.setYRange(0, 1, padding=0.02)
        self.acc_plot.setLabel("left", "accuracy")
        for p in (self.roc_plot, self.acc_plot):
            p.setMinimumHeight(170)  # readable axes: the tables give up rows first on a 1366x768 screen
        plots.addWidget(self.roc_plot, 0, 0)
        plots.addWidget(self.acc_plot, 0, 1)
        lay.addLayout(plots, 1)
        box = QGroupBox("Cases that fooled most readers")
        bl = QVBoxLayout(box)
        self.case_table = QTableWidget(0, 4)
        self.case_table.setHorizontalHeaderLabels(["Case", "Truth", "Readers", "Fooling rate"])
        self.case_table.horizontalHeader().setSectionResizeMode(QHeaderView.Stretch)
        self.case_table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.case_table.verticalHeader().setVisible(False)
        self.case_table.setMaximumHeight(140)
        bl.addWidget(self.case_table)
        lay.addWidget(box)
        return w

    # -- lists ----------------------------------------------------------------------------------
    def refresh_datasets(self) -> None:
        """Re-read the workspace's datasets into both pickers (ticks kept)."""
        datasets = self.ws.datasets()
        names = [d.name for d in datasets]
        synthetic = {d.name for d in datasets if d.synthetic}
        self.real_picker.set_datasets(names, synthetic)
        self.syn_picker.set_datasets(names, synthetic)

    def refresh(self) -> None:
        """Re-read datasets, studies and the selected study's readers from the workspace."""
        S.ensure_tables(self.ws)
        self.refresh_datasets()
        current = self.current_study_id()
        self.study_list.blockSignals(True)
        self.study_list.clear()
        for st in S.list_studies(self.ws):
            done = sum(r.answered for r in S.list_readers(self.ws, st.id))
            role = "  · reader copy" if st.is_reader_copy else ""
            it = QListWidgetItem(f"{st.name}\n{st.mode} · {st.n_cases} cases · {done} answers{role}")
            it.setData(Qt.UserRole, st.id)
            self.study_list.addItem(it)
            if st.id == current:
                self.study_list.setCurrentItem(it)
        if self.study_list.currentRow() < 0 and self.study_list.count():
            self.study_list.setCurrentRow(self.study_list.count() - 1)
        self.study_list.blockSignals(False)
        self._on_study_selected()

    def current_study_id(self) -> str | None:
        it = self.study_list.currentItem()
        return it.data(Qt.UserRole) if it else None

    def select_study(self, ref: str) -> None:
        st = S.get_study(self.ws, ref)
        for i in range(self.study_list.count()):
            if self.study_list.item(i).data(Qt.UserRole) == st.id:
                self.study_list.setCurrentRow(i)
                return

    def _on_study_selected(self) -> None:
        sid = self.current_study_id()
        has = sid is not None
        for b in (self.b_read, self.b_export_pkg, self.b_export_answers, self.b_delete):
            b.setEnabled(has)
        if not has:
            self.summary.setText("No study yet: design one in the Design tab.")
            self.reader_table.setRowCount(0)
            return
        st = S.get_study(self.ws, sid)
        limit = st.spec.get("time_limit_s") or 0
        lines = [f"<b>{st.name}</b> ({st.id}) · mode <b>{st.mode}</b> · {st.n_cases} cases · "
                 f"{st.spec.get('size')} px · seed {st.spec.get('seed')}" + (f" · {limit:g} s per case" if limit else "")]
        if st.is_reader_copy:
            lines.append("Reader copy: read here, then export the answers and send them to the study's owner.")
        else:
            lines.append(f"Real: {', '.join(st.meta.get('real_sets') or st.spec.get('real', []))} · Synthetic: {', '.join(st.spec.get('synthetic', []))}"
                         f" · goal: {'AUC' if st.mode == 'plausibility' else 'accuracy'} below "
                         f"{st.spec.get('goal_accuracy')} ({st.spec.get('goal_rule')})")
        for wmsg in st.meta.get("warnings", []):
            lines.append(f"<span style='color:#e0a050'>warning: {wmsg}</span>")
        self.summary.setText("<br>".join(lines))
        readers = S.list_readers(self.ws, st.id)
        self.reader_table.setRowCount(len(readers))
        for i, r in enumerate(readers):
            state = "complete" if r.complete else ("not started" if r.answered == 0 else "in progress")
            for j, v in enumerate([r.reader_id, f"{r.answered} / {r.n_cases}", state]):
                self.reader_table.setItem(i, j, QTableWidgetItem(v))
        if readers and not self.reader_table.selectedItems():
            self.reader_table.selectRow(0)
        self.tabs.setTabEnabled(2, not st.is_reader_copy)
        if not st.is_reader_copy:
            self.refresh_results()

    # -- jobs -----------------------------------------------------------------------------------
    def _run(self, spec: J.Spec, on_done, what: str) -> None:
        """Run a job through the job manager (inline when there is none) and call on_done(result)."""
        self.status.setText(f"{what}…")
        if self.ctx.jobs is None:
            ev = J.run(spec, lambda e: None, workspace=self.ws, record=False)
            self._finished(ev, on_done, what)
            return
        handle = self.ctx.jobs.submit(spec)
        self._handles[handle.job_id] = (handle, on_done, what)
        # a bound method: Qt drops the connection if the panel goes away before the job ends
        handle.finished.connect(self._job_finished)

    def _job_finished(self, ev) -> None:
        handle = self.sender()
        entry = self._handles.pop(getattr(handle, "job_id", ""), None)
        if entry is not None:
            self._finished(ev, entry[1], entry[2])

    def _finished(self, ev, on_done, what: str) -> None:
        self.b_create.setEnabled(True)
        if isinstance(ev, J.Done):
            self.status.setText("")
            on_done(ev.result)
        elif isinstance(ev, J.Failed):
            self.status.setText(f"<span style='color:#ff7070'>{what} failed: {ev.message}</span>")
        else:
            self.status.setText(f"{what} cancelled")

    # -- design ---------------------------------------------------------------------------------
    def _sync_sets(self) -> None:
        readers = [r.strip() for r in self.readers_edit.text().split(",") if r.strip()]
        self.form.set_values({"real": self.real_picker.refs(), "synthetic": self.syn_picker.refs(), "readers": readers})

    def design_spec(self) -> S.StudyCreateSpec | None:
        self._sync_sets()
        spec = self.form.spec()
        if spec is None:
            # the form says what is missing (plain words, DESIGN_MESSAGES) where it is; here only that it stops
            self.design_error.setText("Not created: complete what is marked above first.")
        else:
            self.design_error.setText("")
        return spec

    def create_from_form(self) -> None:
        spec = self.design_spec()
        if spec is None:
            return
        self.b_create.setEnabled(False)

        def done(result):
            self.refresh()
            self.select_study(result["study_id"])
            self.tabs.setCurrentWidget(self.readers_tab)
            self.studies_changed.emit()

        self._run(spec, done, f"creating study {spec.name}")

    # -- readers --------------------------------------------------------------------------------
    def _add_reader_clicked(self) -> None:
        rid = self.new_reader.text().strip()
        sid = self.current_study_id()
        if not rid or sid is None:
            return
        try:
            S.add_reader(self.ws, sid, rid)
        except J.UserError as exc:
            self.status.setText(f"<span style='color:#ff7070'>{exc}</span>")
            return
        self.new_reader.clear()
        self._on_study_selected()

    def selected_reader(self) -> str | None:
        rows = self.reader_table.selectionModel().selectedRows()
        if rows:
            return self.reader_table.item(rows[0].row(), 0).text()
        return None

    def start_reading(self, reader_id: str | None = None, full_screen: bool = True):
        """Open the reading view for a reader (the selected one by default) at their first unanswered case."""
        from app.views.reader_window import ReaderWindow

        sid = self.current_study_id()
        reader_id = reader_id or self.selected_reader()
        if sid is None or not reader_id:
            self.status.setText("Add or select a reader first.")
            return None
        win = ReaderWindow(self.ws, sid, reader_id)
        win.setAttribute(Qt.WA_DeleteOnClose, True)
        win.closed.connect(lambda w=win: (self.reader_windows.remove(w) if w in self.reader_windows else None,
                                          self.refresh()))
        self.reader_windows.append(win)
        win.start(full_screen=full_screen)
        return win

    # -- results --------------------------------------------------------------------------------
    def refresh_results(self) -> None:
        """Recompute the statistics off the GUI thread (a short read, so not a listed job)."""
        sid = self.current_study_id()
        if sid is None:
            return
        ws = self.ws
        if self.ctx.jobs is None:
            self.show_stats(S.study_stats(ws, sid))
            return
        from shiboken6 import Shiboken

        from app.workers.manager import run_in_thread

        def done(stats):
            if Shiboken.isValid(self) and self.current_study_id() == sid:
                self.show_stats(stats)

        def failed(msg, _tb):
            if Shiboken.isValid(self):
                self.status.setText(f"<span style='color:#ff7070'>statistics failed: {msg}</span>")

        run_in_thread(lambda: S.study_stats(ws, sid), done, failed)

    def showEvent(self, ev) -> None:
        super().showEvent(ev)
        if self._shown_once:
            self.refresh()  # datasets or answers may have changed while another panel was shown
        self._shown_once = True

    def show_stats(self, stats: dict) -> None:
        self.stats = stats
        v = stats["verdict"]
        colour = VERDICT_COLOURS.get(v.get("state"), VERDICT_COLOURS[None])
        real = ", ".join(stats.get("real_sets") or [])
        training = stats.get("real_training") or []
        note = (f"<br><span style='color:#e0a050'>The real cases include training images ({', '.join(training)}), "
                "chosen in the design: a model may reproduce them.</span>" if training else "")
        self.verdict.setText(f"<span style='font-size:15px; color:{colour}'><b>{v['text']}</b></span>"
                             f"<br><span style='color:#999'>{stats['n_answers']} answers from "
                             f"{len(stats['readers'])} reader(s) · {stats.get('n_cases', '?')} cases · mode {stats['mode']}"
                             + (f" · real cases from {real}" if real else "") + "</span>" + note)
        rows = [(r, stats["per_reader"][r]) for r in stats["readers"]] + [("pooled", stats["pooled"])]
        self.stats_table.setRowCount(len(rows))
        for i, (name, g) in enumerate(rows):
            ci = g.get("accuracy_ci")
            vals = [name, g.get("n"), g.get("accuracy"), f"{ci[0]:.3f} – {ci[1]:.3f}" if ci else None,
                    g.get("p_value"), g.get("sensitivity"), g.get("specificity"), g.get("auc"), g.get("median_seconds")]
            if stats["mode"] == "plausibility":
                mp = g.get("mean_plausibility") or {}
                vals[2] = f"real {_fmt(mp.get('real'), 2)} / syn {_fmt(mp.get('synthetic'), 2)}"
                vals[4] = g.get("mannwhitney_p")
            for j, x in enumerate(vals):
                self.stats_table.setItem(i, j, QTableWidgetItem(_fmt(x, 4 if j == 4 else 3)))
        if stats["mode"] == "plausibility":
            self.stats_table.horizontalHeaderItem(2).setText("Mean plausibility")
            self.stats_table.horizontalHeaderItem(4).setText("p (Mann-Whitney)")
        k = stats.get("fleiss_kappa")
        self.kappa_label.setText(
            f"Inter-reader agreement: Fleiss' κ = {_fmt(k)} over {stats['fleiss_kappa_cases']} cases read by all"
            if len(stats["readers"]) >= 2 else "Inter-reader agreement: needs two readers or more")
        self._plot_roc(stats)
        self._plot_accuracy(stats)
        cases = [c for c in stats["per_case"] if "fooling_rate" in c]
        cases.sort(key=lambda c: (-c["fooling_rate"], c["case_id"]))
        self.case_table.setRowCount(min(len(cases), 10))
        for i, c in enumerate(cases[:10]):
            for j, x in enumerate([c["case_id"], c["truth"], c["n_readers"], f"{c['fooling_rate']:.0%}"]):
                self.case_table.setItem(i, j, QTableWidgetItem(str(x)))
        self.stats_shown.emit(stats)

    def _plot_roc(self, stats: dict) -> None:
        p = self.roc_plot
        p.clear()
        self.roc_legend.clear()
        p.plot([0, 1], [0, 1], pen=pg.mkPen((120, 120, 120), style=Qt.DashLine))
        for i, r in enumerate(stats["readers"]):
            roc = stats["per_reader"][r].get("roc")
            if roc:
                auc = stats["per_reader"][r]["auc"]
                p.plot(roc["fpr"], roc["tpr"], pen=pg.mkPen(PALETTE[i % len(PALETTE)], width=1.5),
                       name=f"{r} (AUC {auc:.2f})")
        roc = stats["pooled"].get("roc")
        if roc:
            p.plot(roc["fpr"], roc["tpr"], pen=pg.mkPen((235, 235, 235), width=3),
                   name=f"pooled (AUC {stats['pooled']['auc']:.2f})")
            p.setTitle(f"ROC from the ratings (positive: {roc['positive']})")

    def _plot_accuracy(self, stats: dict) -> None:
        p = self.acc_plot
        p.clear()
        plaus = stats["mode"] == "plausibility"
        key, ci_key = ("auc", "auc_ci") if plaus else ("accuracy", "accuracy_ci")
        p.setTitle("AUC per reader (Hanley-McNeil 95 % interval)" if plaus else
                   "Accuracy per reader (95 % Wilson interval)")
        p.setLabel("left", key)
        names = stats["readers"] + ["pooled"]
        groups = [stats["per_reader"][r] for r in stats["readers"]] + [stats["pooled"]]
        xs, ys, lo, hi = [], [], [], []
        for i, g in enumerate(groups):
            if g.get(key) is None:
                continue
            xs.append(i)
            ys.append(g[key])
            ci = g.get(ci_key) or [g[key], g[key]]
            lo.append(g[key] - ci[0])
            hi.append(ci[1] - g[key])
        p.addItem(pg.InfiniteLine(pos=0.5, angle=0, pen=pg.mkPen((140, 140, 140), style=Qt.DashLine),
                                  label="chance", labelOpts={"position": 0.5, "color": (150, 150, 150)}))
        goal = stats["verdict"].get("threshold")
        if goal is not None:
            p.addItem(pg.InfiniteLine(pos=goal, angle=0, pen=pg.mkPen((230, 150, 60), width=1.5),
                                      label=f"goal < {goal:g}",
                                      labelOpts={"position": 0.26, "color": (230, 150, 60)}))
        if xs:
            x, y = np.array(xs, float), np.array(ys, float)
            p.addItem(pg.ErrorBarItem(x=x, y=y, top=np.array(hi), bottom=np.array(lo), beam=0.15,
                                      pen=pg.mkPen((200, 200, 200), width=1.5)))
            brushes = [pg.mkBrush(PALETTE[i % len(PALETTE)]) if i < len(stats["readers"]) else pg.mkBrush(235, 235, 235)
                       for i in xs]
            p.addItem(pg.ScatterPlotItem(x=x, y=y, size=11, brush=brushes, pen=None))
        p.getAxis("bottom").setTicks([[(i, n) for i, n in enumerate(names)]])
        p.setXRange(-0.6, len(names) - 0.4, padding=0)
        p.setYRange(0, 1, padding=0.02)

    # -- export / import ------------------------------------------------------------------------
    def export_package(self, path: str | Path, readers: list[str] | None = None) -> None:
        sid = self.current_study_id()
        self._run(S.StudyExportSpec(study=sid, out=str(path), what="package", readers=readers or []),
                  lambda r: self.status.setText(f"study package written: {r['path']}"), "exporting the study")

    def export_answers(self, path: str | Path) -> None:
        sid = self.current_study_id()
        self._run(S.StudyExportSpec(study=sid, out=str(path), what="answers"),
                  lambda r: self.status.setText(f"answers written: {r['path']}"), "exporting the answers")

    def import_file(self, path: str | Path) -> None:
        def done(r):
            self.refresh()
            if r.get("study_id"):
                self.select_study(r["study_id"])
            if r["what"] == "answers":
                self.status.setText(f"answers imported into {r['study']}: {r['added']} new, {r['replaced']} replaced, "
                                    f"{r['kept']} already there")
            else:
                self.status.setText(f"study {r['study']} imported for reading ({r['n_cases']} cases)")

        self._run(S.StudyImportSpec(file=str(path)), done, "importing")

    def export_results(self, folder: str | Path) -> None:
        sid = self.current_study_id()
        self._run(S.StudyStatsSpec(study=sid, out=str(folder)),
                  lambda r: self.status.setText(f"results written to {folder}"), "exporting the results")

    def _export_package_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export the study for reading elsewhere", "study-package.h5",
                                              "Study package (*.h5)")
        if path:
            self.export_package(path)

    def _export_answers_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export the answers", "answers.json", "Answers (*.json)")
        if path:
            self.export_answers(path)

    def _import_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Import a study package or answers", "",
                                              "Study files (*.h5 *.json)")
        if path:
            self.import_file(path)

    def _export_results_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder for stats.json and the CSV files")
        if folder:
            self.export_results(folder)

    def _delete_selected(self) -> None:
        from PySide6.QtWidgets import QMessageBox

        sid = self.current_study_id()
        if sid is None:
            return
        st = S.get_study(self.ws, sid)
        n = sum(r.answered for r in S.list_readers(self.ws, sid))
        if QMessageBox.question(self, "Delete study", f"Delete study {st.name} and its {n} answers?") != QMessageBox.Yes:
            return
        S.delete_study(self.ws, sid)
        self.refresh()
