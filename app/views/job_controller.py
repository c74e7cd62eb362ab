"""JobController: submit jobs from validated specs, follow them, report how they ended (GUI thread, no torch).

A panel section that runs jobs (the MRI comparison, the sweep, CT, the audit, the evaluation) owns one
controller. The pattern it replaces was written out in every panel: submit -> connect the handle's signals ->
on ``finished`` read ``handle.result`` or ``handle.message`` -> update the status line and the buttons.

    ctl = JobController(ctx.jobs, status_label, what="Sweep")
    spec, errors = build_spec(ReconSweepSpec, values)      # on the GUI thread: pydantic, no torch
    group = ctl.start()                                    # a new run; late events of the last one are dropped
    ctl.submit(spec, name="cs-tv", on_image=grid.on_image)
    ctl.finished.connect(lambda name, handle: ...)         # each job's end; handle.result when it is done
    ctl.group_done.connect(...)                            # every job of the run has ended
    ctl.busy, ctl.stop(), ctl.run_io(write, on_done)       # file I/O off the GUI thread, errors to the status

A failed job's message and a stopped job go to the status line by themselves (the main window opens the
error dialog of a failed job); a failed file read or write (``run_io``) opens it through
``dialogs.report_error``, the traceback behind its Details button and in the log. ``FieldErrors`` shows a
spec's validation errors next to the fields they name.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from pydantic import ValidationError
from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QLabel

from app.views.dialogs import report_error
from app.workers.manager import run_in_thread


def field_errors(exc: ValidationError) -> dict[str, str]:
    """{field: message} of a ValidationError; errors of the spec as a whole (cross-field) under ``""``."""
    out: dict[str, str] = {}
    for err in exc.errors():
        loc = err["loc"]
        name = str(loc[0]) if loc else ""
        msg = err["msg"].removeprefix("Value error, ")
        if name in out:
            continue
        out[name] = msg
    return out


def build_spec(spec_cls, values: dict):
    """(spec, {}) when ``values`` are valid for ``spec_cls``, else (None, {field: message}). Only the keys
    given are set (``model_fields_set``): a job can tell a value the user chose from its default."""
    try:
        return spec_cls(**values), {}
    except ValidationError as exc:
        return None, field_errors(exc)


class FieldErrors:
    """Shows validation errors next to their fields: each field name maps to the error label placed under
    the widget (or the group of widgets) that sets it; other errors go to ``fallback``."""

    def __init__(self, labels: dict[str, QLabel], fallback: QLabel):
        self.labels = labels
        self.fallback = fallback
        self.errors: dict[str, str] = {}

    def show(self, errors: dict[str, str]) -> None:
        self.errors = dict(errors)
        per_label: dict[int, list[str]] = {}
        targets = {id(lab): lab for lab in [*self.labels.values(), self.fallback]}
        for name, msg in errors.items():
            lab = self.labels.get(name, self.fallback)
            per_label.setdefault(id(lab), []).append(f"{name}: {msg}" if name else msg)
        for key, lab in targets.items():
            lines = per_label.get(key, [])
            lab.setText("\n".join(lines))
            lab.setVisible(bool(lines))


class JobGroup:
    """The jobs of one run of a section (one per method, or just one) and what came back from them."""

    def __init__(self):
        self.handles: list = []
        self.names: dict[str, str] = {}  # job id -> the name the section gave the job
        self.results: dict[str, dict] = {}  # name -> whatever the section keeps of the job's Done result
        self.started = time.monotonic()

    def all_final(self) -> bool:
        return all(h.is_final for h in self.handles)

    def seconds(self) -> float:
        return time.monotonic() - self.started


class JobController(QObject):
    """See the module docstring."""

    changed = Signal()  # a job was submitted, changed state or ended: buttons may change
    finished = Signal(str, object)  # name, JobHandle: one job ended (done, failed or cancelled)
    group_done = Signal()  # every job of the current group has ended

    def __init__(self, jobs, status: QLabel, what: str = "Job", parent=None):
        super().__init__(parent)
        self.jobs = jobs
        self.status = status
        self.what = what
        self.group: JobGroup | None = None

    # -- state ----------------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        return self.group is not None and not self.group.all_final()

    @property
    def handle(self):
        """The last job submitted (sections that run one job at a time)."""
        return self.group.handles[-1] if self.group is not None and self.group.handles else None

    def say(self, text: str) -> None:
        self.status.setText(text)

    # -- running --------------------------------------------------------------------------------
    def start(self) -> JobGroup:
        """A new group: events and ends of the previous group's jobs are ignored from now on."""
        self.group = JobGroup()
        return self.group

    def submit(self, spec, name: str = "", on_image: Callable[[str, object, str], None] | None = None):
        """Submit a validated spec into the current group (one is started if none); returns its handle."""
        group = self.group or self.start()
        h = self.jobs.submit(spec)
        name = name or h.kind
        group.handles.append(h)
        group.names[h.job_id] = name
        if on_image is not None:
            h.image.connect(lambda n, arr, kind, g=group: g is self.group and on_image(n, arr, kind))
        h.progress.connect(lambda s, t, label, g=group: g is self.group and self._on_progress(s, t, label))
        h.state_changed.connect(lambda _s: self.changed.emit())
        h.finished.connect(lambda _ev, h=h, g=group: self._on_finished(g, h))
        self.changed.emit()
        return h

    def stop(self) -> None:
        if self.group is not None:
            for h in self.group.handles:
                h.cancel()

    def run_io(self, fn: Callable[[], object], on_done: Callable[[object], None], what: str = "") -> None:
        """Run a file read / write off the GUI thread; a failure is said on the status line and in the error
        dialog (``report_error``: the message, the traceback behind Details)."""

        def failed(msg: str, tb: str) -> None:
            self.say(f"{what or 'Reading'} failed: {msg}")
            report_error(self.status, f"{what or 'Reading'} failed", msg, tb)

        run_in_thread(fn, on_done, failed)

    @staticmethod
    def outcome(handle) -> str:
        """'stopped' / 'failed: <message>' / 'done'."""
        if handle.state == "cancelled":
            return "stopped"
        if handle.state == "failed":
            return f"failed: {handle.message}"
        return handle.state

    # -- events ---------------------------------------------------------------------------------
    def _on_progress(self, step: int, total: int, label: str) -> None:
        if total:
            self.say(f"{label or self.what}: {100 * step / total:.0f} %")

    def _on_finished(self, group: JobGroup, h) -> None:
        if group is not self.group:
            return
        name = group.names.get(h.job_id, h.kind)
        if h.state != "done":
            self.say(f"{name if len(group.handles) > 1 else self.what} {self.outcome(h)}")
        self.finished.emit(name, h)
        self.changed.emit()
        if group.all_final():
            self.group_done.emit()
