"""Reconstruction panel: MRI comparison, acceleration sweep and CT tabs, each running its jobs through a
``JobController`` (``app/views/job_controller.py``).

- **MRI comparison** (``reconstruct/mri_tab.py``, its form ``reconstruct/mri_form.py``): a source file or a
  dataset image, a live mask designer, one "recon" job per checked method, linked comparison views.
- **Acceleration sweep** (``reconstruct/sweep_tab.py``): the "recon-sweep" job with the MRI tab's settings.
- **CT** (``reconstruct/ct_tab.py``): sparse-view reconstruction and denoising ("ct-recon" jobs).

Specs are built with the spec classes on the GUI thread (torch-free) and validated as the values change;
results come from the jobs' image events and Done results; file I/O runs on worker threads. The checkpoint
pickers offer only runs that can serve as the prior (``refresh_runs``: 2-channel complex checkpoints for MRI,
1-channel ones for CT). The tabs own
their widgets: ``panel.accel``, ``panel.run_sweep()``, ``panel.ct_grid`` ... reach the tab that has them.
"""

from __future__ import annotations

from PySide6.QtWidgets import QLabel, QTabWidget, QVBoxLayout, QWidget
from shiboken6 import Shiboken

from app.engine.recon.mri.warm import warm_default  # noqa: F401 (the form's defaults, for callers and tests)
from app.views.reconstruct.ct_tab import CTTab
from app.views.reconstruct.mri_form import SCORE_DEFAULT_STEPS  # noqa: F401
from app.views.reconstruct.mri_tab import MRITab
from app.views.reconstruct.sweep_tab import SweepTab
from app.workers.manager import run_in_thread


class ReconstructPanel(QWidget):
    """See the module docstring."""

    def __init__(self, ctx):
        super().__init__()
        self.ctx = ctx
        outer = QVBoxLayout(self)
        outer.setContentsMargins(6, 6, 6, 6)
        title = QLabel("Reconstruction")
        title.setProperty("role", "title")
        outer.addWidget(title)
        self.tabs = QTabWidget()
        self.tabs.setObjectName("reconTabs")
        outer.addWidget(self.tabs, 1)
        self.mri = MRITab(ctx)
        self.sweep = SweepTab(ctx, self.mri)
        self.ct = CTTab(ctx, self.mri)
        self.tabs.addTab(self.mri, "MRI comparison")
        self.tabs.addTab(self.sweep, "Acceleration sweep")
        self.tabs.addTab(self.ct, "CT")
        self.sweep.case_opened.connect(lambda: self.tabs.setCurrentWidget(self.mri))
        ctx.jobs.job_finished.connect(self._on_any_job_finished)
        self.refresh_runs()
        self.refresh_datasets()

    def __getattr__(self, name: str):
        """A public attribute of the form or a tab (the MRI form first, then the MRI, sweep and CT tabs)."""
        if name.startswith("_") or name in ("mri", "sweep", "ct"):
            raise AttributeError(name)
        for owner in ("mri", "sweep", "ct"):
            tab = self.__dict__.get(owner)
            if tab is None:
                continue
            for obj in ((tab.form, tab) if owner == "mri" else (tab,)):
                try:
                    return getattr(obj, name)
                except AttributeError:
                    continue
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def refresh_runs(self) -> None:
        """Offer each run only where it can serve as a prior: a 2-channel (complex) checkpoint for MRI's score
        methods, a 1-channel one for CT; a run without a checkpoint nowhere. Its checkpoint is read off the GUI
        thread (``checkpoints.prior_channels``)."""
        ws = self.ctx.workspace

        def load():
            from app.engine.training.checkpoints import prior_channels

            return [(r, prior_channels(r.path)) for r in ws.runs()]

        def show(runs):
            if Shiboken.isValid(self):
                self.set_priors(runs)

        run_in_thread(load, show, lambda msg, tb: None)

    def set_priors(self, runs) -> None:
        """``runs``: (run record, channels of its newest checkpoint or None)."""
        self.mri.form.set_runs([r for r, ch in runs if ch == 2])
        self.ct.set_runs([r for r, ch in runs if ch == 1])

    def refresh_datasets(self) -> None:
        try:
            names = [d.name for d in self.ctx.workspace.datasets()]
        except Exception:
            names = []
        self.mri.set_datasets(names)

    def _on_any_job_finished(self, handle) -> None:
        if handle.kind == "train":
            self.refresh_runs()
        elif handle.kind in ("ingest", "demo"):
            self.refresh_datasets()

    def stop(self) -> None:
        """Stop every job of the three tabs."""
        for tab in (self.mri, self.sweep, self.ct):
            tab.jobs.stop()
