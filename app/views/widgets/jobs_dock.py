"""JobsDock: every job of the session (and the workspace's history) with progress, ETA and actions.

One row per job: kind and a one-line summary, a progress bar, ETA, state, a Cancel button and a
Results menu (open the job's folder, its artifacts, its result JSON and log). Rows update from the
JobHandle signals; a one-second timer refreshes the ETAs. Jobs from earlier sessions are read from
the workspace's jobs table (``JobManager.history``) and shown below, greyed.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from PySide6.QtCore import Qt, QTimer, QUrl, Signal
from PySide6.QtGui import QColor, QDesktopServices
from PySide6.QtWidgets import (
    QDialog,
    QDockWidget,
    QHBoxLayout,
    QHeaderView,
    QMenu,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QToolButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

COLS = ["Job", "Progress", "ETA", "State", ""]
STATE_COLOURS = {"done": QColor(120, 200, 120), "failed": QColor(255, 112, 112), "cancelled": QColor(200, 170, 90),
                 "running": QColor(120, 170, 240), "queued": QColor(170, 170, 170), "reconnecting": QColor(230, 200, 90)}


def format_eta(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {(seconds % 3600) // 60:02d} min"


def _short(value: str) -> str:
    """A path as a person names it: a checkpoint folder by its run and checkpoint, any other path by its name."""
    parts = Path(value).parts
    if "runs" in parts and "checkpoints" in parts and parts.index("checkpoints") == parts.index("runs") + 2:
        i = parts.index("runs")
        return " ".join(parts[i + 1:i + 2] + parts[i + 3:i + 4])
    return Path(value).name if "/" in value or "\\" in value else value


#: the spec fields that name a job, in order (two are shown); training names its preset first
SUMMARY_KEYS = ("name", "dataset", "preset", "process", "sampler", "run", "checkpoint", "source", "method")
TRAIN_SUMMARY_KEYS = ("preset", "dataset", "process")


def job_summary(kind: str, spec: dict) -> str:
    """A short human description of a job from its spec (paths shortened: no workspace path in the dock).
    A training job: ``train: PRESET · DATASET`` (the process without a preset), a resumed one
    ``train: resume RUN · PRESET · DATASET``."""
    bits = [f"resume {spec['resume']}"] if kind == "train" and spec.get("resume") else []
    limit = len(bits) + 2
    # a preset before the process: the spec as submitted holds the process default that the preset replaces
    for key in TRAIN_SUMMARY_KEYS if kind == "train" else SUMMARY_KEYS:
        v = spec.get(key)
        if v:
            bits.append(_short(str(v)))
        if len(bits) >= limit:
            break
    return f"{kind}: {' · '.join(bits)}" if bits else kind


class TextDialog(QDialog):
    """A read-only text window (result JSON, log, spec)."""

    def __init__(self, title: str, text: str, parent=None):
        super().__init__(parent)
        self.setWindowTitle(title)
        self.resize(720, 480)
        lay = QVBoxLayout(self)
        self.text = QPlainTextEdit(text)
        self.text.setReadOnly(True)
        self.text.setLineWrapMode(QPlainTextEdit.NoWrap)
        lay.addWidget(self.text)
        close = QPushButton("Close")
        close.clicked.connect(self.close)
        lay.addWidget(close, 0, Qt.AlignRight)


class JobsWidget(QWidget):
    """The table of jobs; lives in the JobsDock."""

    open_requested = Signal(str)  # a path to open (folder or file)
    status_message = Signal(str)  # a short note for the window's status bar (downloads)

    def __init__(self, manager, parent=None):
        super().__init__(parent)
        self.manager = manager
        self.rows: dict[str, QTreeWidgetItem] = {}
        self.bars: dict[str, QProgressBar] = {}
        self.cancel_buttons: dict[str, QPushButton] = {}
        self._handles: dict[str, object] = {}
        self._dialogs: list[QDialog] = []
        lay = QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        self.tree = QTreeWidget()
        self.tree.setObjectName("jobsTable")
        self.tree.setColumnCount(len(COLS))
        self.tree.setHeaderLabels(COLS)
        self.tree.setRootIsDecorated(False)
        self.tree.setUniformRowHeights(True)
        self.tree.setAlternatingRowColors(True)
        hdr = self.tree.header()
        hdr.setSectionResizeMode(0, QHeaderView.Stretch)
        fm = self.tree.fontMetrics()
        state_w = fm.horizontalAdvance("reconnecting") + 24  # the longest state, in full
        for c, wdt in ((1, 150), (2, 80), (3, state_w), (4, 150)):
            hdr.setSectionResizeMode(c, QHeaderView.Fixed)
            hdr.resizeSection(c, wdt)
        hdr.setStretchLastSection(False)
        self.tree.itemDoubleClicked.connect(lambda item, _c: self.show_details(item.data(0, Qt.UserRole)))
        lay.addWidget(self.tree)
        manager.job_added.connect(self.add_handle)
        for h in manager.handles():
            self.add_handle(h)
        self.load_history()
        self._eta_timer = QTimer(self)
        self._eta_timer.setInterval(1000)
        self._eta_timer.timeout.connect(self._refresh_etas)
        self._eta_timer.start()

    # -- rows ---------------------------------------------------------------------------------
    def add_handle(self, handle) -> None:
        jid = handle.job_id
        if jid in self.rows:  # a history row of the same id (resubmitted): replace it
            idx = self.tree.indexOfTopLevelItem(self.rows[jid])
            self.tree.takeTopLevelItem(idx)
        item = QTreeWidgetItem([job_summary(handle.kind, handle.spec.model_dump(mode="json")), "", "", handle.state, ""])
        item.setData(0, Qt.UserRole, jid)
        item.setToolTip(0, f"{handle.kind} job {jid} ({handle.transport})")
        self.tree.insertTopLevelItem(0, item)
        self.rows[jid] = item
        self._handles[jid] = handle
        bar = QProgressBar()
        bar.setRange(0, 0 if handle.state == "running" else 1)
        bar.setValue(0)
        bar.setTextVisible(True)
        bar.setMaximumHeight(16)
        self.tree.setItemWidget(item, 1, bar)
        self.bars[jid] = bar
        self.tree.setItemWidget(item, 4, self._actions(jid, handle))
        handle.progress.connect(lambda s, t, label, j=jid: self._on_progress(j, s, t, label))
        handle.state_changed.connect(lambda st, j=jid: self._on_state(j, st))
        self._on_state(jid, handle.state)

    def _actions(self, jid: str, handle=None) -> QWidget:
        box = QWidget()
        lay = QHBoxLayout(box)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(2)
        if handle is not None:
            cancel = QPushButton("Cancel")
            cancel.setObjectName(f"cancel_{jid}")
            cancel.setToolTip("Ask the job to stop at its next step")
            cancel.clicked.connect(handle.cancel)
            lay.addWidget(cancel)
            self.cancel_buttons[jid] = cancel
        res = QToolButton()
        res.setText("Results")
        res.setPopupMode(QToolButton.InstantPopup)
        menu = QMenu(res)
        menu.aboutToShow.connect(lambda m=menu, j=jid: self._fill_results_menu(m, j))
        res.setMenu(menu)
        lay.addWidget(res)
        return box

    def _fill_results_menu(self, menu: QMenu, jid: str) -> None:
        menu.clear()
        folder = self.job_folder(jid)
        a = menu.addAction("Open job folder")
        a.setEnabled(folder is not None)
        if folder is not None:
            a.triggered.connect(lambda: self.open_path(folder))
        arts = self.artifacts(jid)
        fetch = getattr(self._handles.get(jid), "fetch_artifact", None)
        for kind, path in arts[:20]:
            if fetch is None:
                act = menu.addAction(f"{kind}: {Path(path).name}")
                act.triggered.connect(lambda _=False, p=path: self.open_path(Path(p)))
            else:  # on the server: download first (off the GUI thread), then open the local copy
                act = menu.addAction(f"{kind}: {Path(path).name} (download from the server)")
                act.triggered.connect(lambda _=False, p=path, f=fetch: self.fetch_and_open(f, p))
        menu.addSeparator()
        menu.addAction("Details (spec, result, log)…").triggered.connect(lambda: self.show_details(jid))

    def fetch_and_open(self, fetch, server_path: str) -> None:
        from app.workers.manager import run_in_thread

        self.status_message.emit(f"Downloading {Path(server_path).name} from the server…")

        def done(local) -> None:
            self.status_message.emit(f"Downloaded to {local}")
            self.open_path(Path(local))

        def failed(msg: str, _tb: str) -> None:
            self.status_message.emit(f"Could not download {server_path}: {msg}")

        run_in_thread(lambda: fetch(server_path), done, failed)

    def job_folder(self, jid: str) -> Path | None:
        root = Path(self.manager.workspace.root)
        for cand in (root / "jobs" / jid,):
            if cand.exists():
                return cand
        h = self._handles.get(jid)
        if getattr(h, "fetch_artifact", None) is not None:  # a remote job: only its downloaded files
            local = (h.result or {}).get("local_dir")
            return Path(local) if local and Path(local).exists() else None
        arts = self.artifacts(jid)
        if arts:
            p = Path(arts[0][1])
            return p if p.is_dir() else p.parent
        return None

    def artifacts(self, jid: str) -> list[tuple[str, str]]:
        h = self._handles.get(jid)
        if h is not None:
            return list(h.artifacts)
        return []

    def open_path(self, path: Path) -> None:
        self.open_requested.emit(str(path))
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(path)))

    def details_text(self, jid: str) -> str:
        h = self._handles.get(jid)
        if h is not None:
            spec, state, result, message = h.spec.model_dump(mode="json"), h.state, h.result, h.message
            logs = "\n".join(f"[{lvl}] {text}" for lvl, text in h.logs)
        else:
            rec = next((r for r in self.manager.history() if r.id == jid), None)
            if rec is None:
                return f"job {jid}: no record"
            spec, state, result, message, logs = rec.spec, rec.state, rec.result, rec.message, "(log not kept across sessions)"
        parts = [f"Job {jid} — {state}"]
        if message:
            parts.append(f"Message: {message}")
        parts.append("Spec:\n" + json.dumps(spec, indent=2))
        if result is not None:
            parts.append("Result:\n" + json.dumps(result, indent=2))
        parts.append("Log:\n" + (logs or "(empty)"))
        return "\n\n".join(parts)

    def show_details(self, jid: str | None) -> QDialog | None:
        if not jid:
            return None
        dlg = TextDialog(f"Job {jid}", self.details_text(jid), self)
        dlg.setAttribute(Qt.WA_DeleteOnClose)
        dlg.show()
        return dlg

    def load_history(self) -> None:
        """Rows for the workspace's earlier jobs (newest first), below this session's."""
        for rec in self.manager.history(100):
            if rec.id in self.rows:
                continue
            item = QTreeWidgetItem([job_summary(rec.kind, rec.spec or {}), "", "", rec.state, ""])
            item.setData(0, Qt.UserRole, rec.id)
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(rec.created))
            item.setToolTip(0, f"{rec.kind} job {rec.id}, {when}" + (f"\n{rec.message}" if rec.message else ""))
            for c in range(4):
                item.setForeground(c, QColor(140, 140, 140))
            item.setForeground(3, STATE_COLOURS.get(rec.state, QColor(140, 140, 140)).darker(120))
            self.tree.addTopLevelItem(item)
            self.rows[rec.id] = item
            self.tree.setItemWidget(item, 4, self._actions(rec.id))

    # -- updates -------------------------------------------------------------------------------
    def _on_progress(self, jid: str, step: int, total: int, label: str) -> None:
        bar = self.bars.get(jid)
        if bar is None:
            return
        if total > 0:
            bar.setRange(0, total)
            bar.setValue(min(step, total))
            if label:  # elided to the bar's width (a long stage name wrapped and was cut), whole in the tooltip
                fm = bar.fontMetrics()
                room = max(20, bar.width() - fm.horizontalAdvance(" 100%") - 12)
                bar.setToolTip(label)
                label = fm.elidedText(label, Qt.ElideRight, room)
            bar.setFormat(f"{label + ' ' if label else ''}%p%")
        else:
            bar.setRange(0, 0)

    def _on_state(self, jid: str, state: str) -> None:
        item = self.rows.get(jid)
        if item is None:
            return
        item.setText(3, state)
        item.setForeground(3, STATE_COLOURS.get(state, QColor(200, 200, 200)))
        h = self._handles.get(jid)
        if h is not None and h.message:
            item.setToolTip(3, h.message)
        bar = self.bars.get(jid)
        if bar is not None:
            if state == "running" and h is not None and h.total <= 0:
                bar.setRange(0, 0)
            if state in ("done", "failed", "cancelled"):
                if bar.maximum() == 0:
                    bar.setRange(0, 1)
                if state == "done":
                    bar.setValue(bar.maximum())
                elif bar.value() >= bar.maximum():  # a job that failed at its last step is not shown complete
                    bar.setValue(max(bar.maximum() - 1, 0))
                if state != "done":  # the bar says how far it got and that it did not finish
                    bar.setFormat(f"{state} at %p%")
                item.setText(2, "")
        btn = self.cancel_buttons.get(jid)
        if btn is not None:
            btn.setEnabled(state in ("queued", "running", "reconnecting"))

    def _refresh_etas(self) -> None:
        for jid, h in self._handles.items():
            if h.state == "running":
                self.rows[jid].setText(2, format_eta(h.eta_seconds()))


class JobsDock(QDockWidget):
    def __init__(self, manager, parent=None):
        super().__init__("Jobs", parent)
        self.setObjectName("jobsDock")
        self.jobs = JobsWidget(manager)
        self.setWidget(self.jobs)
        self.setAllowedAreas(Qt.BottomDockWidgetArea | Qt.RightDockWidgetArea | Qt.LeftDockWidgetArea)
