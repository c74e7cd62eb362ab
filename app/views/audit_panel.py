"""Evaluation & Audit panel: run the audit / evaluate jobs on chosen sets and read their results.

The controls column (``audit/controls.py``) chooses the image sets and options; "Run audit" and "Run
evaluation" build an ``AuditSpec`` / ``EvaluateSpec`` on the GUI thread (validated as the values change, an
error named under its field) and submit it through the tab's ``JobController``:

- the verdict banner, big and coloured: PASSED / FAILED (flagged count against the allowed rate);
- **Memorization audit** (``audit/audit_tab.py``): distance histograms with a threshold to drag, the flagged
  pairs, the gate that writes the set without them;
- **Evaluation metrics** (``audit/evaluation_tab.py``): the table of every row of the evaluation, real vs
  generated per class, the radial power spectra, downstream AUC.

"Export HTML report" copies the shown tab's self-contained report (the job's ``html``), off the GUI thread.
The tabs own their widgets: ``panel.measure``, ``panel.run_evaluate()`` ... reach the part that has them.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QFileDialog, QHBoxLayout, QSplitter, QTabWidget, QVBoxLayout, QWidget

from app.views.audit.audit_tab import AuditTab, VerdictBanner
from app.views.audit.controls import AuditControls
from app.views.audit.evaluation_tab import EvaluationTab


class AuditPanel(QWidget):
    """See the module docstring."""

    results_shown = Signal(str)  # "audit" / "evaluate"

    def __init__(self, ctx):
        super().__init__()
        self.ctx = ctx
        self.last_export: Path | None = None
        outer = QHBoxLayout(self)
        outer.setContentsMargins(6, 6, 6, 6)
        split = QSplitter(Qt.Horizontal)
        outer.addWidget(split)
        self.controls = c = AuditControls()
        split.addWidget(c)
        right = QWidget()
        lay = QVBoxLayout(right)
        lay.setContentsMargins(0, 0, 0, 0)
        self.verdict = VerdictBanner()
        lay.addWidget(self.verdict)
        self.tabs = QTabWidget()
        self.tabs.setObjectName("auditTabs")
        lay.addWidget(self.tabs, 1)
        self.audit = AuditTab(ctx, c, self.verdict)
        self.evaluation = EvaluationTab(ctx, c)
        self.tabs.addTab(self.audit, "Memorization audit")
        self.tabs.addTab(self.evaluation, "Evaluation metrics")
        split.addWidget(right)
        split.setSizes([390, 1100])

        c.audit_button.clicked.connect(self.run_audit)
        c.eval_button.clicked.connect(self.run_evaluate)
        c.stop_button.clicked.connect(self.stop)
        c.export_button.clicked.connect(lambda: self.export_html())
        c.gate_button.clicked.connect(lambda: self.audit.apply_gate())
        c.changed.connect(self.update_buttons)
        for tab in (self.audit, self.evaluation):
            tab.jobs.changed.connect(self.update_buttons)
        self.tabs.currentChanged.connect(self.update_buttons)
        self.audit.shown.connect(lambda: self._on_shown("audit", 0))
        self.evaluation.shown.connect(lambda: self._on_shown("evaluate", 1))
        ctx.jobs.job_finished.connect(self._on_any_job_finished)
        self.refresh_datasets()
        self.update_buttons()

    def __getattr__(self, name: str):
        """A public attribute of the controls or a tab (controls, then the audit and evaluation tabs)."""
        if name.startswith("_") or name in ("controls", "audit", "evaluation"):
            raise AttributeError(name)
        for owner in ("controls", "audit", "evaluation"):
            part = self.__dict__.get(owner)
            if part is not None:
                try:
                    return getattr(part, name)
                except AttributeError:
                    continue
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    @property
    def eval_options(self) -> dict:
        """Further EvaluateSpec fields merged into every evaluation (see ``EvaluationTab.options``)."""
        return self.evaluation.options

    @eval_options.setter
    def eval_options(self, options: dict) -> None:
        self.evaluation.options = dict(options)
        self.update_buttons()

    # -- running ----------------------------------------------------------------------------------
    def run_audit(self):
        return self.audit.run_audit()

    def run_evaluate(self):
        return self.evaluation.run_evaluate()

    def stop(self) -> None:
        self.audit.jobs.stop()
        self.evaluation.jobs.stop()

    def update_buttons(self, *_) -> None:
        """Run buttons while their spec is valid and no such job runs; errors named under their fields."""
        c = self.controls
        gen, train, _ = c.sets()
        audit_spec, audit_errors = self.audit.audit_check()
        eval_spec, eval_errors = self.evaluation.eval_check()
        errors = {**audit_errors, **eval_errors}
        if not gen:
            errors.pop("generated", None)  # not chosen yet: the buttons wait for it
        if not train:
            errors.pop("train", None)
            errors.pop("real", None)
        c.field_errors.show(errors)
        c.audit_button.setEnabled(audit_spec is not None and not self.audit.jobs.busy)
        c.eval_button.setEnabled(eval_spec is not None and not self.evaluation.jobs.busy)
        c.stop_button.setEnabled(self.audit.jobs.busy or self.evaluation.jobs.busy)
        c.export_button.setEnabled(self._report_kind() is not None)
        c.gate_button.setEnabled(self.audit.bundle is not None)

    def _on_shown(self, kind: str, index: int) -> None:
        if kind == "evaluate" and self.verdict.text().startswith("No audit yet"):  # the banner is the audit's
            self.verdict.set(None, "Evaluation done · no privacy audit yet: press Run audit for pass / fail.")
        self.tabs.setCurrentIndex(index)
        self.update_buttons()
        self.results_shown.emit(kind)

    def refresh_datasets(self) -> None:
        try:
            datasets = self.ctx.workspace.datasets()
        except Exception:
            datasets = []
        self.controls.set_datasets([d.name for d in datasets], {d.name for d in datasets if d.synthetic})
        self.update_buttons()

    def _on_any_job_finished(self, handle) -> None:
        if handle.kind in ("ingest", "demo", "sample"):
            self.refresh_datasets()
        self.update_buttons()

    # -- report -----------------------------------------------------------------------------------
    def _report_kind(self) -> str | None:
        """Which report the export button writes: the shown tab's, else whichever exists."""
        has = {"audit": bool(self.audit.html), "evaluate": bool(self.evaluation.html)}
        shown = "evaluate" if self.tabs.currentIndex() == 1 else "audit"
        return shown if has[shown] else next((k for k, v in has.items() if v), None)

    def export_html(self, path: str | Path | None = None, kind: str | None = None):
        """Copy the self-contained HTML report (audit.html or evaluation.html) to ``path``, off the GUI thread."""
        kind = kind or self._report_kind()
        if kind is None:
            return None
        src = self.audit.html if kind == "audit" else self.evaluation.html
        if path is None:
            name = "audit.html" if kind == "audit" else "evaluation.html"
            path, _ = QFileDialog.getSaveFileName(self, f"Save the {'audit' if kind == 'audit' else 'evaluation'} report",
                                                  name, "HTML (*.html)")
            if not path:
                return None
        dst = Path(path)
        jobs = self.audit.jobs if kind == "audit" else self.evaluation.jobs

        def done(_):
            self.last_export = dst
            jobs.say(f"Report written to {dst}")

        return jobs.run_io(lambda: shutil.copyfile(src, dst), done, "Export")
