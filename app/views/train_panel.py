"""Training panel: the TrainSpec form with presets, live loss curves and previews, stop / resume, checkpoints.

The form is generated from ``app.engine.specs.train.TrainSpec`` (SpecForm), so every field the
engine has is here with its bounds and description, and pydantic's messages show next to the
field. Live: the training loss (log-scale toggle), validation losses per noise level where the
process reports them (scalar names starting with ``val``), the preview grid as previews arrive
(thinned by the JobHandle), epoch / step / ETA. The run's checkpoints are listed; "Resume" starts
the job again from the selected one, and its curves go on from the run's history (one curve across
resumes). The run list says what each run is doing (``RUN_STATE_LABELS``: training, queued, stopped and
resumable...), the job is named by its preset (``train: resume RUN · PRESET``), a job's outcome stays in
the status line until another run is picked, and a preset that needs a kind of dataset (``needs`` in its
file: complex, class labels) picks a dataset of that kind or says that the workspace has none.
"""

from __future__ import annotations

import re
from pathlib import Path

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from app.engine.run_history import history_age, read_history
from app.views.widgets.image_view import ImageView
from app.views.widgets.jobs_dock import format_eta
from app.views.widgets.plots import CurvePlot
from app.views.widgets.scroll import scrolled
from app.views.widgets.set_picker import SYNTHETIC_BADGE
from app.views.widgets.spec_form import SpecForm
from app.workers.manager import run_in_thread

_RUN_IN_PATH = re.compile(r"[\\/]runs[\\/]([^\\/]+)")


def run_id_from(handle) -> str | None:
    """The run a training job writes to: from its result, else from an artifact's path."""
    res = handle.result or {}
    for key in ("run_id", "run"):
        if res.get(key):
            return str(res[key])
    for _kind, path in handle.artifacts:
        m = _RUN_IN_PATH.search(path)
        if m:
            return m.group(1)
    return None


def is_validation(name: str) -> bool:
    return name.startswith("val")


def noise_level_label(name: str) -> str:
    """Legend text of a validation series: ``val_loss/sigma=0.5`` -> ``σ = 0.5``, ``val_loss`` -> ``mean``."""
    if "sigma=" in name:
        return "σ = " + name.split("sigma=", 1)[1]
    return "mean" if name == "val_loss" else name


def is_training_loss(name: str) -> bool:
    return "loss" in name and not is_validation(name)


#: how often the panel reads a run's history file while that run trains in another process
FOLLOW_MS = 2000
#: a "running" run whose history has not grown for this long may have lost its process (a crash)
STALE_S = 600.0


def _latest_preview(run_dir: Path, known: str | None = None):
    """(name, array) of the newest preview grid of a run (``previews/epoch-NNNN.png``); the array is None
    when there is none, or when it is still ``known`` (already shown: not decoded again)."""
    import numpy as np
    from PIL import Image

    files = sorted((Path(run_dir) / "previews").glob("epoch-*.png"))
    if not files or files[-1].name == known:
        return known, None
    try:
        with Image.open(files[-1]) as im:
            return files[-1].name, np.asarray(im.convert("L"), np.float32) / 255.0
    except OSError:
        return known, None


#: how the run list names a run's registry state
RUN_STATE_LABELS = {"running": "training", "stopped": "stopped · resumable", "done": "finished", "failed": "failed",
                    "created": "starting"}
#: ... and the state of the job this panel runs for it
LIVE_STATE_LABELS = {"queued": "queued", "running": "training", "reconnecting": "training · reconnecting"}


def _resumed_history(ws, run_id: str):
    """A run's curves up to the checkpoint it resumes from (the steps after it are logged again) and its
    latest preview: (points, (preview name, array or None)). Read off the UI thread."""
    rec = ws.run(run_id)
    points, _offset = read_history(rec.path, 0)
    step = (rec.meta or {}).get("step")
    if step is not None:
        points = [p for p in points if p[1] <= int(step)]
    return points, _latest_preview(rec.path)


def _read_run(ws, run_id: str, offset: int, known_preview: str | None):
    """What the panel shows of a run it does not train itself, read off the UI thread: (state, history points
    from ``offset``, next offset, (preview name, preview array or None), seconds since the history grew)."""
    rec = ws.run(run_id)
    points, next_offset = read_history(rec.path, offset)
    return rec.state, points, next_offset, _latest_preview(rec.path, known_preview), history_age(rec.path)


class TrainPanel(QWidget):
    def __init__(self, ctx):
        super().__init__()
        self.ctx = ctx
        self.handle = None
        self.run_id: str | None = None
        self.preview_updates = 0
        self.error: str | None = None
        try:
            from app.engine.specs import train as training  # the spec, its presets and resume rules (no torch)

            self.training = training
            self.spec_cls = training.TrainSpec
        except Exception as exc:  # the engine may not be in this build yet
            self.training = None
            self.spec_cls = None
            self.error = f"{type(exc).__name__}: {exc}"

        outer = QHBoxLayout(self)
        outer.setContentsMargins(6, 6, 6, 6)
        split = QSplitter(Qt.Horizontal)
        outer.addWidget(split)

        # -- left: preset + form + buttons ---------------------------------------------------
        left = QWidget()
        ll = QVBoxLayout(left)
        ll.setContentsMargins(0, 0, 0, 0)
        title = QLabel("Training")
        title.setProperty("role", "title")
        ll.addWidget(title)
        prow = QHBoxLayout()
        prow.addWidget(QLabel("Preset"))
        self.preset = QComboBox()
        self.preset.setObjectName("presetCombo")
        prow.addWidget(self.preset, 1)
        ll.addLayout(prow)
        self.preset_note = QLabel("")
        self.preset_note.setObjectName("presetNote")
        self.preset_note.setWordWrap(True)
        self.preset_note.setProperty("role", "error")
        self.preset_note.hide()
        ll.addWidget(self.preset_note)
        self.form = None
        if self.spec_cls is not None:
            exclude = tuple(n for n in ("resume", "resume_from", "preset") if n in self.spec_cls.model_fields)
            self.form = SpecForm(self.spec_cls, exclude=exclude, choices={"dataset": self._dataset_names()})
            self.form.validity_changed.connect(self._update_buttons)
            sc = scrolled(self.form, horizontal=False, name="formScroll", least_width=330)  # never cut at the right
            ll.addWidget(sc, 1)
            self.synthetic_note = QLabel("")
            self.synthetic_note.setObjectName("syntheticDatasetNote")
            self.synthetic_note.setWordWrap(True)
            self.synthetic_note.setStyleSheet("color: #e0a040")
            self.synthetic_note.hide()
            ll.addWidget(self.synthetic_note)
            self.form.editors["dataset"].widget.currentTextChanged.connect(self._on_dataset_chosen)
            self._mark_synthetic()
        else:
            msg = QLabel(f"The training engine is not available: {self.error}")
            msg.setWordWrap(True)
            msg.setProperty("role", "error")
            ll.addWidget(msg)
            ll.addStretch(1)
        brow = QHBoxLayout()
        self.start_button = QPushButton("Start training")
        self.start_button.setObjectName("startTraining")
        self.start_button.clicked.connect(self.start)
        self.stop_button = QPushButton("Stop")
        self.stop_button.setObjectName("stopTraining")
        self.stop_button.setToolTip("Stop at the next step; the last checkpoint stays usable and resumable")
        self.stop_button.clicked.connect(self.stop)
        brow.addWidget(self.start_button, 1)
        brow.addWidget(self.stop_button)
        ll.addLayout(brow)
        split.addWidget(left)

        # -- right: live ----------------------------------------------------------------------
        right = QSplitter(Qt.Vertical)
        plots = QSplitter(Qt.Horizontal)
        self.loss_plot = CurvePlot("Training loss", "loss", log_y=True, accept=is_training_loss)
        self.loss_plot.setObjectName("lossPlot")
        self.val_plot = CurvePlot("Validation loss per noise level (EMA weights)", "loss", log_y=True,
                                  accept=is_validation, symbols=True, label=noise_level_label)
        self.val_plot.setObjectName("valPlot")
        plots.addWidget(self.loss_plot)
        plots.addWidget(self.val_plot)
        right.addWidget(plots)
        bottom = QSplitter(Qt.Horizontal)
        pv = QWidget()
        pl = QVBoxLayout(pv)
        pl.setContentsMargins(0, 0, 0, 0)
        self.status = QLabel("No training running.")
        self.status.setObjectName("trainStatus")
        self.status.setWordWrap(True)
        pl.addWidget(self.status)
        self.preview = ImageView(title="Previews")
        self.preview.setObjectName("previewView")
        pl.addWidget(self.preview, 1)
        bottom.addWidget(pv)
        ck = QWidget()
        cl = QVBoxLayout(ck)
        cl.setContentsMargins(0, 0, 0, 0)
        rrow = QHBoxLayout()
        rrow.addWidget(QLabel("Run"))
        self.runs = QComboBox()
        self.runs.setObjectName("runCombo")
        self.runs.currentIndexChanged.connect(self._on_run_selected)
        self.runs.activated.connect(self._on_run_picked)  # the user's choice (not a refresh)
        rrow.addWidget(self.runs, 1)
        cl.addLayout(rrow)
        self.checkpoints = QListWidget()
        self.checkpoints.setObjectName("checkpointList")
        cl.addWidget(self.checkpoints, 1)
        self.resume_button = QPushButton("Resume run")
        self.resume_button.setToolTip("Continue the selected run from its latest checkpoint (same settings; "
                                      "epochs and max steps from the form)")
        self.resume_button.setObjectName("resumeTraining")
        self.resume_button.clicked.connect(self.resume)
        cl.addWidget(self.resume_button)
        bottom.addWidget(ck)
        bottom.setSizes([620, 300])
        right.addWidget(bottom)
        right.setSizes([330, 420])
        split.addWidget(right)
        split.setSizes([380, 980])

        # a selected run's curves come from its history file; one training in another process (radsynth
        # train in a terminal) is followed by reading the file's new lines every FOLLOW_MS
        self._plotted_run: str | None = None  # the run whose curves the plots hold (live or from its history)
        self._history_offset = 0  # where the next read of its history file starts
        self._last_step = 0
        self._preview_file: str | None = None  # its preview shown last (not decoded again)
        self._history_reading = False
        self._elsewhere = False  # the selected run trains in another process now: not to be resumed here too
        self._held: list | None = None  # a resume's live points, held until the run's earlier curve is drawn
        self._outcome: str | None = None  # how the last job ended: kept in the status line until a run is picked
        self._run_states: dict[str, str] = {}
        self._follow = QTimer(self)
        self._follow.setInterval(FOLLOW_MS)
        self._follow.timeout.connect(self._follow_history)

        self._fill_presets()
        self.refresh_runs()
        ctx.jobs.job_finished.connect(self._on_any_job_finished)
        self._update_buttons()

    # -- presets and lists ------------------------------------------------------------------------
    def _dataset_names(self) -> list[str]:
        """Real datasets first, generated (synthetic) ones last: the default choice is never synthetic."""
        try:
            datasets = self.ctx.workspace.datasets()
        except Exception:
            return []
        self._synthetic = {d.name for d in datasets if d.synthetic}
        return [d.name for d in datasets if not d.synthetic] + [d.name for d in datasets if d.synthetic]

    def _refresh_dataset_choices(self) -> None:
        if self.form is not None:
            self.form.set_choices("dataset", self._dataset_names())
            self._mark_synthetic()

    def _mark_synthetic(self) -> None:
        """Generated datasets in the dataset list: the badge as tooltip, in amber; chosen, a note says so."""
        combo = self.form.editors["dataset"].widget
        for i in range(combo.count()):
            if combo.itemText(i) in getattr(self, "_synthetic", set()):
                combo.setItemData(i, f"{SYNTHETIC_BADGE}: images generated by a model", Qt.ToolTipRole)
                combo.setItemData(i, QColor("#e0a040"), Qt.ForegroundRole)
        self._on_dataset_chosen(combo.currentText())

    def _on_dataset_chosen(self, name: str) -> None:
        synthetic = name in getattr(self, "_synthetic", set())
        self.synthetic_note.setText(f"{SYNTHETIC_BADGE}: {name} holds images a model generated; training on them "
                                    "is your explicit choice (their provenance is in the dataset's record)."
                                    if synthetic else "")
        self.synthetic_note.setVisible(synthetic)

    def _fill_presets(self) -> None:
        self.preset.blockSignals(True)
        self.preset.clear()
        self.preset.addItem("(defaults)", None)
        names = []
        if self.training is not None and hasattr(self.training, "list_presets"):
            try:
                names = list(self.training.list_presets())
            except Exception:
                names = []
        names = [n["name"] if isinstance(n, dict) else str(n) for n in names]
        for n, info in zip(names, self.training.list_presets() if names else []):
            self.preset.addItem(n, n)
            if isinstance(info, dict) and info.get("description"):
                self.preset.setItemData(self.preset.count() - 1, info["description"], Qt.ToolTipRole)
        self.preset.blockSignals(False)
        self.preset.currentIndexChanged.connect(self._on_preset)
        if "cpu-quickstart" in names:
            self.preset.setCurrentIndex(names.index("cpu-quickstart") + 1)

    def _on_preset(self, _i: int) -> None:
        name = self.preset.currentData()
        if self.form is None or name is None:
            self.preset_note.hide()  # "(defaults)": no preset, nothing it needs
            return
        try:
            loaded = self.training.load_preset(name)
        except Exception as exc:
            self.status.setText(f"Preset {name}: {exc}")
            return
        values = loaded.model_dump(mode="json") if hasattr(loaded, "model_dump") else dict(loaded)
        # every field not in the preset goes back to the spec default, then the preset's own values
        values = {**{k: f.get_default(call_default_factory=True) for k, f in self.spec_cls.model_fields.items()
                     if k != "kind" and not f.is_required()}, **values, "preset": name}
        current = self.form.values().get("dataset")
        fitting, why = self._fitting_datasets(name)
        if why and not fitting:  # nothing to train it on yet: say so (the engine refuses a dataset that misfits)
            values["dataset"] = current
            self.preset_note.setText(f"Preset {name} needs {why}; this workspace has none yet.")
        else:
            if fitting and values.get("dataset") not in fitting:
                values["dataset"] = current if current in fitting else fitting[0]
            self.preset_note.setText("")
        self.preset_note.setVisible(bool(self.preset_note.text()))
        self.form.set_values(values)

    def _fitting_datasets(self, preset: str) -> tuple[list[str], str]:
        """(the datasets that give what ``preset`` needs, real ones first; what it needs in words, "" for anything)."""
        needs = self.training.preset_needs(preset)
        names = self._dataset_names()
        if not needs:
            return names, ""
        recs = {d.name: d for d in self.ctx.workspace.datasets()}
        fit = [n for n in names if n in recs and self.training.dataset_misfit(needs, recs[n]) is None]
        return fit, " and ".join(self.training.PRESET_NEEDS[k] for k in needs if needs[k])

    def apply_preset(self, name: str) -> None:
        idx = self.preset.findData(name)
        if idx < 0:
            raise KeyError(f"no preset {name!r}")
        if self.preset.currentIndex() == idx:
            self._on_preset(idx)
        else:
            self.preset.setCurrentIndex(idx)

    def refresh_runs(self, select: str | None = None) -> None:
        keep = select or self.runs.currentData()
        self.runs.blockSignals(True)
        self.runs.clear()
        try:
            runs = [r for r in self.ctx.workspace.runs()]
        except Exception:
            runs = []
        self._run_states = {r.id: r.state for r in runs}
        for r in reversed(runs):
            self.runs.addItem(self.run_label(r.id), r.id)
        self.runs.blockSignals(False)
        idx = self.runs.findData(keep) if keep else (0 if self.runs.count() else -1)
        if idx >= 0:
            self.runs.setCurrentIndex(idx)
        self._on_run_selected()
        if self.form is not None:
            self._refresh_dataset_choices()

    def run_label(self, run_id: str) -> str:
        """``RUN-ID (what it is doing)``: this panel's own job's state for the run it trains, else the registry's."""
        h = self.handle
        if h is not None and not h.is_final and run_id == self.run_id:
            state = LIVE_STATE_LABELS.get(h.state, h.state)
        else:
            raw = self._run_states.get(run_id, "")
            state = RUN_STATE_LABELS.get(raw, raw)
        return f"{run_id} ({state})"

    def _relabel_runs(self) -> None:
        for i in range(self.runs.count()):
            self.runs.setItemText(i, self.run_label(self.runs.itemData(i)))

    def _on_run_picked(self, *_):
        """The user picked a run (the one shown, perhaps): the status line is that run's again."""
        self._outcome = None
        run_id = self.runs.currentData()
        if run_id and not self._live():
            self._plotted_run = None  # drawn again from its history, with its status
            self._show_history(run_id)

    def _say(self, text: str) -> None:
        """A run's status, unless the last job's outcome is still to be read (``_outcome``)."""
        self.status.setText(self._outcome or text)

    def _on_run_selected(self, *_):
        run_id = self.runs.currentData()
        self.checkpoints.clear()
        if not run_id or self.training is None:
            self._update_buttons()
            return
        ws = self.ctx.workspace
        self._show_history(run_id)

        def load():
            from app.engine.training.checkpoints import list_checkpoints

            return list_checkpoints(run_id, ws)

        run_in_thread(load, lambda cks, r=run_id: self._show_checkpoints(r, cks),
                      lambda msg, tb: self.checkpoints.addItem(f"(checkpoints unreadable: {msg})"))

    # -- a selected run's history ------------------------------------------------------------------
    def _live(self) -> bool:
        """This panel's own training runs: the curves are its live events', whatever run is selected."""
        return self.handle is not None and not self.handle.is_final

    def _show_history(self, run_id: str) -> None:
        """Draw the selected run's logged curves and its latest preview (``run_history``); follow the file
        while the run is training in another process."""
        if self._live() or run_id == self._plotted_run:  # its curves are there already (e.g. just trained)
            return
        self._follow.stop()
        self._elsewhere = False
        self._plotted_run, self._history_offset, self._last_step, self._preview_file = run_id, 0, 0, None
        self.loss_plot.clear()
        self.val_plot.clear()
        self.preview.clear()
        ws = self.ctx.workspace
        run_in_thread(lambda: _read_run(ws, run_id, 0, None), lambda res, r=run_id: self._on_history(r, *res),
                      lambda msg, tb: self.status.setText(f"Run {run_id}: its history is unreadable: {msg}"))

    def _add_history(self, offset: int, points, preview) -> None:
        """Points and the preview read from the run's files: drawn now (a few at a time, not at the next tick)."""
        self._history_offset = offset
        if points:
            self._last_step = max(self._last_step, max(p[1] for p in points))
            self.loss_plot.add_points(points)
            self.val_plot.add_points(points)
            self.loss_plot.flush()
            self.val_plot.flush()
        self._preview_file, image = preview
        if image is not None:
            self.preview.set_image(image)

    def _say_training_elsewhere(self, run_id: str) -> None:
        self._elsewhere = True
        self.status.setText(f"Run {run_id} is training in another process (e.g. radsynth train): its curves "
                            + (f"follow its history, step {self._last_step} so far." if self._last_step else
                               "appear here as it logs them."))

    def _on_history(self, run_id: str, state: str, points, offset: int, preview, age: float | None) -> None:
        if run_id != self.runs.currentData() or self._live():
            return
        self._add_history(offset, points, preview)
        if state == "running" and age is not None and age > STALE_S:
            # a run whose process crashed stays "running" in the registry; its history tells
            self._say(f"Run {run_id} is marked running but has logged nothing for {age / 60:.0f} min: "
                      f"its process may have stopped (up to step {self._last_step}; resume it to go on).")
            self._follow.start()
        elif state == "running":
            self._say_training_elsewhere(run_id)
            self._follow.start()
        elif points:
            self._say(f"Run {run_id} ({RUN_STATE_LABELS.get(state, state)}): its curves up to step {self._last_step}.")
        else:
            self._say(f"Run {run_id} ({RUN_STATE_LABELS.get(state, state)}) has no loss history to show (trained "
                      "before runs kept one).")
        self._update_buttons()

    def _follow_history(self) -> None:
        run_id = self._plotted_run
        if self._history_reading:  # the last read is still on its way
            return
        if run_id is None or run_id != self.runs.currentData() or self._live():
            self._follow.stop()
            return
        self._history_reading = True
        ws, offset, known = self.ctx.workspace, self._history_offset, self._preview_file

        def show(res, r=run_id):
            self._history_reading = False
            state, points, new_offset, preview, _age = res
            if r != self.runs.currentData() or self._live():
                return
            self._add_history(new_offset, points, preview)
            if points:
                self._say_training_elsewhere(r)
            if state != "running":  # finished there: this was the last read
                self._follow.stop()
                self._elsewhere = False
                self._say(f"Run {r} ({RUN_STATE_LABELS.get(state, state)}): its curves up to step {self._last_step}.")
                self.refresh_runs(select=r)
            self._update_buttons()

        def failed(msg, tb):
            self._history_reading = False

        run_in_thread(lambda: _read_run(ws, run_id, offset, known), show, failed)

    def _show_checkpoints(self, run_id: str, cks) -> None:
        if run_id != self.runs.currentData():
            return
        self.checkpoints.clear()
        for ck in cks:
            path = getattr(ck, "path", ck if isinstance(ck, (str, Path)) else None)
            if isinstance(ck, dict):
                path = ck.get("path")
            label = Path(str(path)).name if path else str(ck)
            extra = []
            for attr in ("epoch", "step"):
                v = ck.get(attr) if isinstance(ck, dict) else getattr(ck, attr, None)
                if v is not None:
                    extra.append(f"{attr} {v}")
            item = QListWidgetItem(f"{label}  {' · '.join(extra)}")
            item.setData(Qt.UserRole, str(path) if path else None)
            self.checkpoints.addItem(item)
        if self.checkpoints.count():
            self.checkpoints.setCurrentRow(self.checkpoints.count() - 1)
        self._update_buttons()

    # -- running ----------------------------------------------------------------------------------
    def start(self, resume_run: str | None = None):
        """Start training from the form, or continue ``resume_run`` from its latest checkpoint."""
        if self.form is None:
            return None
        if resume_run:
            # a resumed run keeps its saved settings; only the resumable ones come from the form
            values = self.form.values()
            overridable = getattr(self.training, "RESUME_OVERRIDABLE", ("epochs", "max_steps"))
            try:
                saved = self.spec_cls.model_validate(self.ctx.workspace.run(resume_run).spec)
            except Exception:
                saved = None
            updates = {k: values[k] for k in overridable if k in values
                       and (saved is None or values[k] != getattr(saved, k, None))}
            if saved is not None:  # the same values as the run's (no clash): they name the job (train: resume RUN · PRESET)
                updates.update({k: getattr(saved, k) for k in ("preset", "dataset", "process")
                                if getattr(saved, k) is not None})
            try:
                spec = self.spec_cls(resume=resume_run, **updates)
            except Exception as exc:
                self.status.setText(f"Cannot resume: {exc}")
                return None
        else:
            spec = self.form.spec()
            if spec is None:
                self.status.setText("Fix the fields marked in red first.")
                return None
        self.loss_plot.clear()
        self.val_plot.clear()
        self.preview.clear()
        self._follow.stop()
        self._outcome = None
        self.run_id = self._plotted_run = resume_run
        self._held = None
        if resume_run:  # one curve across resumes: the run's history first, the new points after it
            self._held = []
            ws = self.ctx.workspace
            run_in_thread(lambda: _resumed_history(ws, resume_run), self._on_resumed_history,
                          lambda msg, tb: self._on_resumed_history(([], (None, None))))
        h = self.ctx.jobs.submit(spec)
        self.handle = h
        h.scalars.connect(self._on_scalars)
        h.image.connect(self._on_image)
        h.progress.connect(self._on_progress)
        h.artifact.connect(self._on_artifact)
        h.state_changed.connect(lambda _s: (self._update_buttons(), self._relabel_runs()))
        h.finished.connect(self._on_finished)
        self._relabel_runs()
        self.status.setText("Queued…" if h.state == "queued" else "Starting…")
        self._update_buttons()
        return h

    def resume(self):
        run_id = self.runs.currentData()
        if not run_id:
            self.status.setText("Select a run to resume.")
            return None
        return self.start(resume_run=run_id)

    def stop(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
            self.status.setText("Stopping at the next step…")

    def _on_resumed_history(self, res) -> None:
        points, preview = res
        held, self._held = self._held or [], None
        if points:
            self.loss_plot.add_points(points)
            self.val_plot.add_points(points)
            self._last_step = max(p[1] for p in points)
        if held:
            self.loss_plot.add_points(held)
            self.val_plot.add_points(held)
        self.loss_plot.flush()
        self.val_plot.flush()
        if preview[1] is not None and self.preview_updates == 0:
            self.preview.set_image(preview[1])

    def _on_scalars(self, batch) -> None:
        if self._held is not None:  # the run's earlier curve is still being read
            self._held.extend(batch)
            return
        self.loss_plot.add_points(batch)
        self.val_plot.add_points(batch)

    def _on_image(self, name: str, array, kind: str) -> None:
        if kind in ("grid", "image"):
            self.preview_updates += 1
            self.preview.set_image(array)

    def _on_progress(self, step: int, total: int, label: str) -> None:
        h = self.handle
        eta = format_eta(h.eta_seconds()) if h is not None else ""
        text = f"step {step} / {total}" if total else f"step {step}"
        if label:
            text = f"{label} · {text}"
        if eta:
            text += f" · ETA {eta}"
        self.status.setText(text)

    def _on_artifact(self, kind: str, path: str) -> None:
        m = _RUN_IN_PATH.search(path)
        if m and m.group(1) != self.run_id:
            self.run_id = self._plotted_run = m.group(1)
            self.refresh_runs(select=self.run_id)  # labelled "training": this panel's job trains it
        elif kind == "checkpoint" and self.run_id and self.runs.currentData() == self.run_id:
            self._on_run_selected()

    def _on_finished(self, _ev) -> None:
        h = self.handle
        self.loss_plot.flush()  # the last points now, not at the next redraw tick
        self.val_plot.flush()
        self.run_id = run_id_from(h) or self.run_id
        run = f"Run {self.run_id}: " if self.run_id else ""
        msg = {"done": f"{run}training finished.", "cancelled": f"{run}training stopped; resume it from its last checkpoint.",
               "failed": f"Training failed: {h.message}" + (f" (run {self.run_id})" if self.run_id else
                                                            " (no run was started)")}.get(h.state, h.state)
        self._outcome = msg  # stays until another run is picked: the selected run's history does not replace it
        self.status.setText(msg)
        self.refresh_runs(select=self.run_id)
        self._update_buttons()

    def _on_any_job_finished(self, handle) -> None:
        if handle.kind in ("ingest", "demo", "sample") and self.form is not None:
            self._refresh_dataset_choices()

    def _update_buttons(self, *_):
        running = self.handle is not None and not self.handle.is_final
        self.start_button.setEnabled(self.form is not None and self.form.is_valid and not running)
        self.stop_button.setEnabled(running)
        has_ckpt = any(self.checkpoints.item(i).data(Qt.UserRole) for i in range(self.checkpoints.count()))
        self.resume_button.setEnabled(not running and has_ckpt and not self._elsewhere)
