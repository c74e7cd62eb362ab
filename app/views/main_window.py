"""The main window: panel navigation, the Jobs dock, menus, status bar, settings, error reporting.

    win = MainWindow(workspace=None, settings=None, runner=None, error_mode=None, demo_at_first_start=True)

- Panels are built as ``Panel(ctx)`` (``app.views.context.AppContext``) from the modules in
  ``PANEL_MODULES``; each gets the objectName of its key. A module that does not exist yet shows
  a placeholder saying what it will hold; a module that exists but fails to import or build
  shows its error in the placeholder.
- ``win.jobs`` is the JobManager, ``win.jobs_dock`` the Jobs dock, ``win.panels[key]`` the panels.
- Errors of failed jobs (and ``win.show_error(title, message, details)`` from panels) open a
  non-modal error dialog, or with ``error_mode="record"`` (or ``RADSYNTH_ERROR_DIALOGS=record``,
  used by tests) are only recorded; either way ``win.errors`` / ``win.last_error`` hold them.
- Closing while local jobs run asks whether to cancel them, then waits for them to end (jobs
  write through staging folders and transactions, so nothing half-written is left). Jobs running
  on a remote server are not asked about: they outlive the client, the window stops following
  them (``RemoteRunner.detach_all``) and the next start reattaches to them.
- Remote connection (File > Connection…, settings ``connection/*``): without an explicit
  ``runner``, start-up builds the saved runner (``runner_from_settings``), checks the server off
  the GUI thread, then uses it and adopts the jobs still running there into the Jobs dock; an
  unreachable server leaves a status-bar message and jobs run locally. The status bar says where
  jobs run ("Compute: remote host:port · GPU <name> · <memory>").
- QSettings keep the last workspace, window geometry and dock layout.
"""

from __future__ import annotations

import importlib
import logging
import os
import traceback
from pathlib import Path

from PySide6.QtCore import QSettings, QSize, Qt, QTimer
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QMessageBox,
    QPlainTextEdit,
    QScrollArea,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from app.views import first_steps
from app.views.context import AppContext
from app.views.dialogs import ErrorDialog, ShortcutsDialog, about_text
from app.views.widgets.jobs_dock import JobsDock
from app.views.widgets.next_step import NextStepBar
from app.views.widgets.scroll import scrolled

PANELS = [
    ("datasets", "Datasets", "Import DICOM, PNG/TIFF, NIfTI, fastMRI HDF5 and NPZ; labels, splits and statistics."),
    ("train", "Training", "Train NCSN, DDPM, VP-SDE and flow-matching models with live loss curves and previews."),
    ("generate", "Generation", "Sample synthetic images with Langevin, ancestral, DDIM, PC and ODE samplers."),
    ("reconstruct", "Reconstruction",
     "Undersampled MRI and sparse-view CT: zero-filled, CS-TV and score-based posterior sampling, "
     "with linked comparison grids and per-pixel uncertainty."),
    ("audit", "Evaluation & Audit",
     "FID/KID, precision/recall, diversity and the nearest-neighbour memorization audit of a synthetic set."),
    ("study", "Reader Study", "Blinded real-vs-synthetic reading by radiologists, answers saved as given, with statistics."),
]

PANEL_MODULES = {
    "datasets": ("app.views.datasets_panel", "DatasetsPanel"),
    "train": ("app.views.train_panel", "TrainPanel"),
    "generate": ("app.views.generate_panel", "GeneratePanel"),
    "reconstruct": ("app.views.reconstruct_panel", "ReconstructPanel"),
    "audit": ("app.views.audit_panel", "AuditPanel"),
    "study": ("app.views.study_panel", "StudyPanel"),
}

log = logging.getLogger(__name__)


class PlaceholderPanel(QWidget):
    """Says what a panel will hold until its module provides it, or why its module failed."""

    def __init__(self, key: str, title: str, text: str, error: str | None = None):
        super().__init__()
        self.setObjectName(key)
        self.error = error
        lay = QVBoxLayout(self)
        lay.setContentsMargins(24, 20, 24, 20)
        t = QLabel(title)
        t.setProperty("role", "title")
        lay.addWidget(t)
        d = QLabel(text)
        d.setWordWrap(True)
        d.setProperty("role", "hint")
        lay.addWidget(d)
        if error:
            e = QLabel("This panel could not be loaded:")
            e.setProperty("role", "error")
            lay.addWidget(e)
            box = QPlainTextEdit(error)
            box.setReadOnly(True)
            box.setObjectName("panelError")
            lay.addWidget(box, 1)
        else:
            note = QLabel("This panel arrives in a coming version.")
            note.setProperty("role", "hint")
            lay.addWidget(note)
            lay.addStretch(1)


class _PanelPage(QWidget):
    """A panel under its next-step strip. A scroll area asks a widget whose layout wraps text for
    its height at the viewport's width, and Qt answers with the preferred height, which would
    scroll a panel that fits; here the answer is the least height: the strip's wrapped text and
    the panel's minimum."""

    strip: QWidget | None = None
    panel: QWidget | None = None

    def heightForWidth(self, width: int) -> int:
        strip = self.strip.heightForWidth(width) if self.strip is not None and not self.strip.isHidden() else 0
        return max(0, strip) + (self.panel.minimumSizeHint().height() if self.panel is not None else 0)


def _error_mode_default() -> str:
    return os.environ.get("RADSYNTH_ERROR_DIALOGS", "dialog")


#: jobs that are cheap to run again and lose nothing when cancelled (closing does not ask about them)
QUIET_KINDS = frozenset({"eda", "demo"})


def _demo_still_due(workspace) -> bool:
    """An empty workspace whose only jobs, if any, are demo jobs that never finished (the window
    was closed while the first start made the demo): the demo is made (again). A workspace where
    anything else ran, or where a demo was made and later removed, is left as it is."""
    if workspace.datasets():
        return False
    return all(j.kind == "demo" and j.state != "done" for j in workspace.jobs(50))


class MainWindow(QMainWindow):
    def __init__(self, workspace: Path | str | None = None, settings: QSettings | None = None, runner=None,
                 error_mode: str | None = None, demo_at_first_start: bool = True):
        super().__init__()
        self.setObjectName("mainWindow")
        self.settings = settings if settings is not None else QSettings()
        self.error_mode = error_mode or _error_mode_default()
        if self.error_mode not in ("dialog", "record"):
            raise ValueError(f"error_mode {self.error_mode!r} is not one of dialog, record")
        self.errors: list[dict] = []
        self.last_error: dict | None = None
        self.error_dialogs: list[ErrorDialog] = []
        self.compute_text = "Compute: …"
        self.demo_handle = None
        self._runner = runner  # None: a LocalRunner per workspace; else the runner jobs go to
        self._owned_runners: list = []  # remote runners this window made (closed when it closes)
        self.connection_state = "local"  # local | connecting | remote | unreachable
        self.connection_message = ""
        self._closing = False
        self.setMinimumSize(900, 560)
        self.resize(self._first_size())
        self._build_menus()
        self._build_status_bar()
        self._open(workspace, demo_at_first_start)
        geo = self.settings.value("window/geometry")
        if geo is not None:
            self.restoreGeometry(geo)
        state = self.settings.value("window/state")
        if state is not None:
            self.restoreState(state)
        if not (runner is None and self._connect_saved()):
            self._query_compute()

    # -- building --------------------------------------------------------------------------------
    def _open(self, workspace, demo_at_first_start: bool = True) -> None:
        from app.engine.store import Workspace
        from app.workers.manager import JobManager

        self.workspace = Workspace.open(workspace)
        try:
            self.workspace.mark_interrupted_jobs()
        except Exception:
            pass
        self.settings.setValue("workspace/last", str(self.workspace.root))
        self.setWindowTitle(f"RadSynth Studio — {self.workspace.root}")
        if self._runner is not None and hasattr(self._runner, "local_dir"):
            self._runner.local_dir = self.workspace.root / "remote-results"
        self.jobs = JobManager(self.workspace, runner=self._runner, parent=self)
        self.jobs.job_failed.connect(self._on_job_failed)
        self.jobs.job_added.connect(lambda _h: self._update_jobs_label())
        # queued -> running (and reconnecting) changes the count too, adopted remote jobs included
        self.jobs.job_added.connect(lambda h: h.state_changed.connect(lambda _s: self._update_jobs_label()))
        self.jobs.job_finished.connect(lambda _h: self._update_jobs_label())
        self.jobs.job_finished.connect(lambda _h: self._update_workspace_label())
        self.jobs.runner_changed.connect(lambda _t: self._query_compute())
        self.ctx = AppContext(workspace=self.workspace, jobs=self.jobs, settings=self.settings, main_window=self)

        first_start = demo_at_first_start and _demo_still_due(self.workspace)

        central = QWidget()
        lay = QHBoxLayout(central)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(0)
        self.nav = QListWidget()
        self.nav.setObjectName("navigation")
        self.nav.setFixedWidth(190)
        self.stack = QStackedWidget()
        self.panels: dict[str, QWidget] = {}
        self.next_steps: dict[str, NextStepBar] = {}
        for key, title, text in PANELS:
            panel = self._make_panel(key, title, text)
            self.panels[key] = panel
            self.stack.addWidget(self._panel_page(key, panel))
            item = QListWidgetItem(title)
            item.setToolTip(text)
            self.nav.addItem(item)
        self.nav.currentRowChanged.connect(self.stack.setCurrentIndex)
        self.nav.currentRowChanged.connect(lambda _r: self._on_panel_shown())
        self._demo_slice_offered = not demo_at_first_start  # tests open windows without the first-start demo
        mri = getattr(self.panels.get("reconstruct"), "mri", None)
        if mri is not None and hasattr(mri, "preview_updated"):
            mri.preview_updated.connect(self.refresh_next_steps)
        self.jobs.job_added.connect(lambda h: h.state_changed.connect(lambda _s: self.refresh_next_steps()))
        self.jobs.job_finished.connect(lambda _h: self.refresh_next_steps())
        last = int(self.settings.value("window/panel", 0) or 0)
        self.nav.setCurrentRow(last if 0 <= last < len(PANELS) else 0)
        lay.addWidget(self.nav)
        lay.addWidget(self.stack, 1)
        old = self.centralWidget()
        self.setCentralWidget(central)
        if old is not None:
            old.deleteLater()

        old_dock = getattr(self, "jobs_dock", None)
        self.jobs_dock = JobsDock(self.jobs, self)
        self.jobs_dock.jobs.status_message.connect(lambda text: self.statusBar().showMessage(text, 10000))
        if old_dock is not None:
            self.removeDockWidget(old_dock)
            old_dock.deleteLater()
        self.addDockWidget(Qt.BottomDockWidgetArea, self.jobs_dock)
        # four job rows: the panels keep the height of a 1366x768 screen
        self.resizeDocks([self.jobs_dock], [130], Qt.Vertical)
        self._jobs_toggle.setEnabled(True)
        try:
            self._jobs_toggle.triggered.disconnect()
        except (RuntimeError, TypeError):
            pass
        self._jobs_toggle.triggered.connect(lambda: self.jobs_dock.setVisible(not self.jobs_dock.isVisible()))
        self._update_workspace_label()
        self._update_jobs_label()
        self.refresh_next_steps()
        if first_start:
            QTimer.singleShot(0, self.create_demo)

    def _panel_page(self, key: str, panel: QWidget) -> QScrollArea:
        """The panel under its next-step strip, in a scroll area: a panel larger than the window
        scrolls instead of making the window's minimum size larger than a laptop screen
        (widgets/scroll.py). ``page.panel`` is the panel."""
        page = _PanelPage()
        lay = QVBoxLayout(page)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(0)
        bar = NextStepBar(key)
        bar.triggered.connect(self.run_next_step)
        self.next_steps[key] = bar
        holder = QWidget()
        hl = QVBoxLayout(holder)
        hl.setContentsMargins(6, 6, 6, 0)
        hl.addWidget(bar)
        lay.addWidget(holder)
        lay.addWidget(panel, 1)
        page.strip, page.panel = holder, panel
        sc = scrolled(page, name=f"{key}Page")
        sc.panel = panel
        sc.next_step = bar
        return sc

    def _make_panel(self, key: str, title: str, text: str) -> QWidget:
        module_name, cls_name = PANEL_MODULES[key]
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                return PlaceholderPanel(key, title, text)
            return PlaceholderPanel(key, title, text, error=traceback.format_exc())
        except Exception:
            return PlaceholderPanel(key, title, text, error=traceback.format_exc())
        try:
            panel = getattr(module, cls_name)(self.ctx)
        except Exception:
            return PlaceholderPanel(key, title, text, error=traceback.format_exc())
        panel.setObjectName(key)
        return panel

    def _first_size(self) -> QSize:
        """1400x880, or the screen's work area where that is smaller (a 1366x768 laptop; no window manager
        is trusted to shrink it), never below the minimum size."""
        size = QSize(1400, 880)
        screen = self.screen()
        if screen is not None:
            size = size.boundedTo(screen.availableGeometry().size())
        return size.expandedTo(self.minimumSize())

    def _build_menus(self) -> None:
        mb = self.menuBar()
        f = mb.addMenu("&File")
        self._action(f, "&Open workspace…", QKeySequence.Open, self.choose_workspace)
        self._action(f, "&New workspace…", "Ctrl+Shift+N", lambda: self.choose_workspace(new=True))
        f.addSeparator()
        self._action(f, "&Import dataset…", "Ctrl+I", self.import_dataset)
        self._action(f, "&Connection…", "Ctrl+Shift+K", self.open_connection_dialog)  # local / remote server
        f.addSeparator()
        quit_action = self._action(f, "&Quit", None, self.close)
        # the platform's Quit keys are empty on some platforms (Windows, offscreen): Ctrl+Q there
        quit_action.setShortcuts(QKeySequence.keyBindings(QKeySequence.Quit) or [QKeySequence("Ctrl+Q")])
        v = mb.addMenu("&View")
        for i, (key, title, _) in enumerate(PANELS):
            self._action(v, title, f"Ctrl+{i + 1}", lambda _=False, k=key: self.show_panel(k))
        v.addSeparator()
        self._jobs_toggle = self._action(v, "&Jobs dock", "Ctrl+J", lambda: None)
        h = mb.addMenu("&Help")
        self._action(h, "&User guide", "F1", lambda: self.show_guide())
        self._action(h, "&Keyboard shortcuts", "Ctrl+F1", self.show_shortcuts)
        self._action(h, "&About RadSynth Studio", None, self.show_about)

    def _action(self, menu, text, shortcut, slot) -> QAction:
        a = QAction(text, self)
        if shortcut is not None:
            a.setShortcut(QKeySequence(shortcut))
        a.triggered.connect(slot)
        menu.addAction(a)
        return a

    def _build_status_bar(self) -> None:
        sb = self.statusBar()
        self.workspace_label = QLabel("")
        self.workspace_label.setObjectName("workspaceLabel")
        self.jobs_label = QLabel("")
        self.compute_label = QLabel(self.compute_text)
        self.compute_label.setObjectName("computeLabel")
        sb.addWidget(self.workspace_label, 1)
        # permanent labels keep room for their longest usual text: a temporary message on the left
        # must not clip them
        fm = self.jobs_label.fontMetrics()
        self.jobs_label.setMinimumWidth(fm.horizontalAdvance("99 running · 99 queued"))
        self.compute_label.setMinimumWidth(fm.horizontalAdvance("Compute: CPU · 16 cores · torch 2.13.0+cpu"))
        sb.addPermanentWidget(self.jobs_label)
        sb.addPermanentWidget(self.compute_label)

    # -- status ----------------------------------------------------------------------------------
    def _update_workspace_label(self) -> None:
        try:
            n = len(self.workspace.datasets())
        except Exception:
            n = 0
        self.workspace_label.setText(f"Workspace: {self.workspace.root}  ·  {n} dataset{'s' if n != 1 else ''}")

    def _update_jobs_label(self) -> None:
        active = self.jobs.active()
        running = sum(1 for h in active if h.state == "running")
        reconnecting = sum(1 for h in active if h.state == "reconnecting")
        queued = len(active) - running - reconnecting
        extra = f" · {reconnecting} reconnecting" if reconnecting else ""
        self.jobs_label.setText(f"{running} running · {queued} queued{extra}" if active else "no jobs running")

    def _query_compute(self) -> None:
        """The compute in use, found off the GUI thread (importing torch, asking a server)."""
        runner = self.jobs.runner
        transport = getattr(runner, "transport", "local")
        if transport != "local":
            where = self.remote_where(transport)
            self._set_compute(f"Compute: {where}")
            self.compute_label.setToolTip(f"Jobs run on the server {getattr(runner, 'url', where)} "
                                          "(File > Connection… to change)")
            fn = getattr(runner, "compute_info", None)
            if fn is None:
                return
        else:
            from app.engine.devices import compute_info as fn

            self.compute_label.setToolTip("Jobs run on this computer (File > Connection… for a remote GPU server)")

        from app.workers.manager import run_in_thread

        def show(text: str, r=runner) -> None:
            if r is self.jobs.runner:  # an answer for a runner no longer in use is dropped
                self._set_compute(text)

        fail = (f"Compute: {self.remote_where(transport)} · not answering ({{}})" if transport != "local"
                else "Compute: unknown ({})")
        run_in_thread(fn, lambda info, t=transport: show(self.describe_compute(info, t)),
                      lambda msg, tb: show(fail.format(msg)))

    @staticmethod
    def remote_where(transport: str) -> str:
        """"remote 127.0.0.1:8765" for the runner transport "remote: 127.0.0.1:8765"."""
        return "remote " + transport.removeprefix("remote: ").removeprefix("remote ")

    @classmethod
    def describe_compute(cls, info: dict, transport: str = "local") -> str:
        where = "" if transport == "local" else f"{cls.remote_where(transport)} · "
        if info.get("device") == "cuda":
            gpus = info.get("gpus", [])
            extra = f" (+{len(gpus) - 1} more)" if len(gpus) > 1 else ""
            return f"Compute: {where}GPU {info.get('name')} · {info.get('memory_gb')} GB{extra}"
        cores = info.get("cores")
        return f"Compute: {where}CPU{f' · {cores} cores' if cores else ''} · torch {info.get('torch', '?')}"

    def _set_compute(self, text: str) -> None:
        self.compute_text = text
        self.compute_label.setText(text)

    # -- first start -----------------------------------------------------------------------------
    def create_demo(self) -> None:
        """The demo dataset, made by a job (never on the GUI thread) on an empty workspace."""
        try:
            from app.engine.specs import spec_class

            spec = spec_class("demo")()
        except Exception as exc:
            self.statusBar().showMessage(f"Demo dataset not available: {exc}", 8000)
            return
        self.demo_handle = self.jobs.submit(spec)
        self.statusBar().showMessage("First start: creating the demo dataset…", 5000)

    # -- next steps (first_steps.py) -------------------------------------------------------------
    def refresh_next_steps(self) -> None:
        """Each panel's next-step strip, from the workspace as it is now."""
        if self._closing or not getattr(self, "next_steps", None):
            return
        mri = getattr(self.panels.get("reconstruct"), "mri", None)
        state = first_steps.WorkspaceState.read(self.workspace, self.jobs,
                                    recon_source=getattr(mri, "source", None) is not None)
        for key, bar in self.next_steps.items():
            bar.show_step(first_steps.next_step(key, state))
            holder = bar.parentWidget()
            if holder is not None:
                holder.setVisible(bar.step is not None)

    def run_next_step(self, action: str):
        """What a next-step button does (first_steps.run_action); the job handle or panel it started or showed."""
        return first_steps.run_action(self, action)

    def train_quick_demo(self):
        return first_steps.train_quick_demo(self)

    def load_demo_slice(self):
        return first_steps.load_demo_slice(self)

    def _on_panel_shown(self) -> None:
        """Reconstruction opened on the demo workspace with nothing loaded: a demo slice is loaded
        (once per window; not in windows opened with ``demo_at_first_start=False``), so the first
        visit has something to reconstruct."""
        self.refresh_next_steps()
        key = PANELS[self.nav.currentRow()][0] if 0 <= self.nav.currentRow() < len(PANELS) else None
        if key != "reconstruct" or self._demo_slice_offered:
            return
        from app.engine.specs.data import DEMO_NAME

        mri = getattr(self.panels.get("reconstruct"), "mri", None)
        if mri is None or mri.source is not None or mri.form.input_path:
            return
        if self.workspace.has_dataset(DEMO_NAME):
            self._demo_slice_offered = True
            self.load_demo_slice()

    # -- navigation and menus --------------------------------------------------------------------
    def show_panel(self, key: str) -> QWidget:
        keys = [k for k, _, _ in PANELS]
        self.nav.setCurrentRow(keys.index(key))
        return self.panels[key]

    def import_dataset(self) -> None:
        panel = self.show_panel("datasets")
        fn = getattr(panel, "open_import_wizard", None)
        if fn is not None:
            fn()

    def choose_workspace(self, new: bool = False) -> None:
        title = "New workspace folder" if new else "Open workspace folder"
        path = QFileDialog.getExistingDirectory(self, title, str(self.workspace.root.parent))
        if path:
            self.switch_workspace(Path(path))

    def switch_workspace(self, path: Path) -> bool:
        """Open another workspace (asks first when local jobs run; remote jobs stay listed and
        followed). Returns False if the user declined."""
        remote = [(h, self.jobs.runner_of(h)) for h in self.remote_jobs()]
        if not self._stop_jobs_for("switching workspace"):
            return False
        self._open(path, demo_at_first_start=True)
        for h, r in remote:
            if not h.is_final:
                self.jobs.adopt(h, r)
        self._query_compute()
        return True

    def show_guide(self, panel: str | None = None):
        """The user guide at the page of ``panel`` (default: the panel in view); None, with a
        status-bar message, when this installation has no guide (app/views/guide.py)."""
        from app.views.guide import GuideWindow, guide_dir, guide_page

        row = self.nav.currentRow()
        page = guide_page(panel or (PANELS[row][0] if 0 <= row < len(PANELS) else None))
        if page is None:
            self.statusBar().showMessage(f"The user guide is not installed (looked in {guide_dir()})", 10000)
            return None
        win = GuideWindow(page, self)
        win.setAttribute(Qt.WA_DeleteOnClose)
        win.show()
        self.guide_window = win
        return win

    def show_shortcuts(self) -> ShortcutsDialog:
        dlg = ShortcutsDialog(self)
        dlg.setAttribute(Qt.WA_DeleteOnClose)
        dlg.show()
        return dlg

    def show_about(self) -> None:
        from app import __version__

        box = QMessageBox(QMessageBox.Information, "About RadSynth Studio", about_text(__version__),
                          QMessageBox.Close, self)
        box.setAttribute(Qt.WA_DeleteOnClose)
        box.setModal(False)
        box.show()

    # -- errors ----------------------------------------------------------------------------------
    def show_error(self, title: str, message: str, details: str = "") -> dict:
        """Report an error: recorded always, shown in a non-modal dialog unless error_mode is record."""
        err = {"title": title, "message": message, "details": details}
        log.error("%s: %s%s", title, message, f"\n{details}" if details else "")  # the traceback in the log
        self.errors.append(err)
        self.last_error = err
        self.statusBar().showMessage(f"{title}: {message}", 10000)
        if self.error_mode == "dialog" and not self._closing:
            dlg = ErrorDialog(title, message, details, self)
            dlg.setAttribute(Qt.WA_DeleteOnClose)
            dlg.destroyed.connect(lambda _=None, d=dlg: self.error_dialogs.remove(d) if d in self.error_dialogs else None)
            self.error_dialogs.append(dlg)
            dlg.show()
        return err

    def _on_job_failed(self, handle) -> None:
        details = "\n".join(text for level, text in handle.logs if level in ("error", "debug", "warning"))
        self.show_error(f"The {handle.kind} job failed", handle.message or "unknown error",
                        details or "\n".join(text for _, text in handle.logs))

    # -- closing ---------------------------------------------------------------------------------
    def confirm(self, question: str) -> bool:
        """Ask yes/no; in record mode (tests) the answer is yes and the question is recorded."""
        if self.error_mode == "record":
            self.errors.append({"title": "question", "message": question, "details": ""})
            return True
        ans = QMessageBox.question(self, "RadSynth Studio", question, QMessageBox.Yes | QMessageBox.No, QMessageBox.No)
        return ans == QMessageBox.Yes

    def remote_jobs(self) -> list:
        """Active jobs handed to a remote server (they run there whether or not this window follows)."""
        return [h for h in self.jobs.active() if hasattr(self.jobs.runner_of(h), "detach_all")]

    def _stop_jobs_for(self, why: str) -> bool:
        """Cancel this computer's jobs (after asking); jobs on a remote server are left running."""
        remote = self.remote_jobs()
        local = [h for h in self.jobs.active() if h not in remote]
        # statistics and the demo set are quick to make again: they are cancelled without a question
        asked = [h for h in local if h.kind not in QUIET_KINDS]
        if asked:
            kinds = ", ".join(sorted({h.kind for h in asked}))
            on = " on this computer" if remote else ""
            if not self.confirm(f"{len(asked)} job(s) are still running or queued{on} ({kinds}).\n"
                                f"Cancel them before {why}?"):
                return False
        if local:
            self.statusBar().showMessage("Cancelling jobs…")
            for h in local:
                h.cancel()
            self.jobs.wait_all(60000, handles=local)
        if remote:
            servers = sorted({self.remote_where(h.transport) for h in remote})
            self.connection_message = (f"{len(remote)} job(s) keep running on the server ({', '.join(servers)}); "
                                       "they are followed again when the app reconnects")
            self.statusBar().showMessage(self.connection_message, 10000)
        return True

    def _detach_remote(self) -> None:
        """Stop following remote jobs without cancelling them; close the runners this window made."""
        runners = {id(r): r for r in [self.jobs.runner] + [self.jobs.runner_of(h) for h in self.jobs.handles()]
                   if hasattr(r, "detach_all")}
        for r in runners.values():
            r.detach_all()
        for r in self._owned_runners:
            try:
                r.close()
            except Exception:
                pass
        self._owned_runners.clear()

    def closeEvent(self, ev) -> None:
        if not self._stop_jobs_for("quitting"):
            ev.ignore()
            return
        self._detach_remote()
        self._closing = True
        self.jobs.close()  # nothing starts after the cancel-all above (late background callbacks)
        self.settings.setValue("window/geometry", self.saveGeometry())
        self.settings.setValue("window/state", self.saveState())
        self.settings.setValue("window/panel", self.nav.currentRow())
        self.settings.sync()
        from app.workers.manager import wait_for_calls

        wait_for_calls(5.0)
        for dlg in list(self.error_dialogs):
            dlg.close()
        ev.accept()

    # -- remote connection (issue 9; the dialog lives in app/views/connection_dialog.py) --------
    def open_connection_dialog(self):
        """Local or remote server; on OK, jobs submitted from now on use the chosen runner."""
        from app.views.connection_dialog import ConnectionDialog

        dlg = ConnectionDialog(self.settings, self)
        if dlg.exec() == ConnectionDialog.Accepted:
            runner = dlg.make_runner(self.workspace)
            self._use_runner(runner)
            self.connection_message = ""
        return dlg

    def _use_runner(self, runner) -> None:
        """Jobs submitted from now on go to ``runner`` (running jobs keep theirs)."""
        remote = getattr(runner, "transport", "local") != "local"
        self._runner = runner if remote else None  # a local runner is made per workspace
        if remote:
            if runner not in self._owned_runners:
                self._owned_runners.append(runner)
            self.connection_state = "remote"
        else:
            self.connection_state = "local"
        self.jobs.set_runner(runner)  # runner_changed re-queries the compute

    def _connect_saved(self) -> bool:
        """At start: the saved remote connection, checked off the GUI thread (see the module doc).
        False when the saved choice is Local (nothing done)."""
        from app.views.connection_dialog import runner_from_settings, saved_remote_url

        url = saved_remote_url(self.settings)
        if not url:
            return False
        try:
            runner = runner_from_settings(self.settings, self.workspace)
        except Exception as exc:  # e.g. a saved URL that is not http(s)://host:port
            self._remote_unreachable(url, str(exc))
            return True
        self.connection_state = "connecting"
        self._owned_runners.append(runner)
        self.statusBar().showMessage(f"Connecting to the server {runner.url}…")
        self._set_compute(f"Compute: {self.remote_where(runner.transport)} · connecting…")
        from app.workers.manager import run_in_thread

        run_in_thread(runner.server_jobs, lambda jobs: self._on_server_jobs(runner, jobs),
                      lambda msg, tb: self._on_server_unreachable(runner, msg))
        return True

    def _on_server_jobs(self, runner, summaries: list) -> None:
        if self._closing:
            return
        self._use_runner(runner)
        handles = runner.reattach_from(runner.unfinished(summaries), parent=self.jobs)
        for h in handles:
            self.jobs.adopt(h, runner)
        n = len(handles)
        self.connection_message = (f"Connected to {runner.url}"
                                   + (f" · following {n} job{'s' if n != 1 else ''} still on the server" if n else ""))
        self.statusBar().showMessage(self.connection_message, 10000)
        self._update_jobs_label()

    def _on_server_unreachable(self, runner, message: str) -> None:
        if runner in self._owned_runners:
            self._owned_runners.remove(runner)
        try:
            runner.close()
        except Exception:
            pass
        self._remote_unreachable(runner.url, message)

    def _remote_unreachable(self, url: str, message: str) -> None:
        self.connection_state = "unreachable"
        self.connection_message = (f"The remote server {url} is not reachable ({message}). Jobs run on this "
                                   "computer; File > Connection… to retry.")
        self.statusBar().showMessage(self.connection_message)  # stays until the next message
        if not self._closing:
            self._query_compute()
