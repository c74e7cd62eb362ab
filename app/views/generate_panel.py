"""Generation panel: pick a checkpoint, set the sampler, watch the estimate sharpen, browse, compare, export.

The sampler settings are a SpecForm of ``app.engine.specs.generate.SampleSpec`` (the checkpoint
fields are set by the run / checkpoint / EMA pickers above it). While the job runs, the current
denoising estimate (``pred_x0`` image events, thinned by the JobHandle) is shown live; when it
ends, its images are read off the GUI thread into the results grid, with images per second.
Select images; two selected are compared side by side in linked views (same zoom and window);
export writes PNG / DICOM / NPZ through ``app.engine.export.export_images`` on a worker thread,
with the sample job's provenance, so every file is marked synthetic. A class-conditional model's
thumbnails say each image's class under it (``class_captions``: the name from the generated dataset's
class names, else the checkpoint's, else the number). When a training job ends, its run is selected
(the newest run, the one just trained).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSplitter,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from app.views.widgets.image_view import ImageView
from app.views.widgets.scroll import scrolled
from app.views.widgets.spec_form import SpecForm
from app.views.widgets.thumbnails import ThumbnailGrid
from app.workers.manager import run_in_thread

CHECKPOINT_FIELDS = ("checkpoint", "run", "run_id", "epoch", "ema", "use_ema")
ALL_CLASSES = "all"  # class combo: one image of each class in turn
EXPORT_CHOICES = [("PNG (8 bit)", "png"), ("PNG (16 bit)", "png16"), ("DICOM (Secondary Capture)", "dicom"),
                  ("NPZ", "npz")]


def checkpoint_classes(path) -> dict:
    """{"num_classes", "class_names"} from a checkpoint folder's metadata ({} when unreadable).

    A model is class-conditional when ``num_classes`` > 0; ``class_names`` (saved for every model)
    are the run's dataset labels."""
    if not path:
        return {}
    from app.engine.training.checkpoints import META_FILE

    try:
        meta = json.loads((Path(path) / META_FILE).read_text())
        return {"num_classes": int(meta.get("num_classes") or 0), "class_names": list(meta.get("class_names") or [])}
    except (OSError, ValueError, TypeError, AttributeError):
        return {}


def load_samples(path: str) -> np.ndarray:
    """Images (N, 1, H, W) from a sample job's output (.npz / .npy / HDF5)."""
    p = Path(path)
    if p.suffix == ".npy":
        arr = np.load(p)
    elif p.suffix in (".h5", ".hdf5"):
        import h5py

        with h5py.File(p, "r") as f:
            arr = f["images"][:]
    else:
        with np.load(p) as z:
            key = "images" if "images" in z.files else z.files[0]
            arr = z[key]
    arr = np.asarray(arr, np.float32)
    if arr.ndim == 3:
        arr = arr[:, None]
    return arr


def class_captions(labels, names: list[str], n: int) -> list[str]:
    """One caption per image: its class's name when ``names`` has one, else its number; "" without a class.

    ``labels``: one class per image (the generated dataset's, -1 for none), one class for all, or None."""
    if labels is None or len(labels) == 0:
        return [""] * n
    labels = list(labels) * n if len(labels) == 1 else list(labels)
    out = []
    for c in labels[:n]:
        if isinstance(c, str) and not c.lstrip("-").isdigit():
            out.append(c)  # given by name
            continue
        k = int(c)
        out.append("" if k < 0 else (names[k] if k < len(names) and names[k] else str(k)))
    return out + [""] * (n - len(out))


def load_generated(path: str, workspace, dataset: str | None):
    """(images, per-image class labels or None, class names) of a sample job's output: the labels and names
    from the dataset it registered when this workspace has it (a job run on a server: (images, None, []))."""
    images = load_samples(path)
    if dataset and workspace is not None and workspace.has_dataset(dataset):
        from app.engine.data.cache import ImageDataset

        ds = ImageDataset.from_workspace(workspace, dataset)
        labels = ds.labels()
        if len(labels) == len(images) and (labels >= 0).any():
            return images, [int(v) for v in labels], list(ds.class_names)
    return images, None, []


class GeneratePanel(QWidget):
    def __init__(self, ctx):
        super().__init__()
        self.ctx = ctx
        self.handle = None
        self.images: np.ndarray | None = None
        self.classes: list[str] = []  # the class caption of every result image ("" without a class)
        self.result: dict = {}
        self.live_updates = 0
        self.last_export: list[Path] = []
        self.export_error: str | None = None
        self._t_start = 0.0
        self.error = None
        try:
            from app.engine.specs.generate import SampleSpec

            self.spec_cls = SampleSpec
        except Exception as exc:
            self.spec_cls = None
            self.error = f"{type(exc).__name__}: {exc}"

        outer = QHBoxLayout(self)
        outer.setContentsMargins(6, 6, 6, 6)
        split = QSplitter(Qt.Horizontal)
        outer.addWidget(split)

        left = QWidget()
        ll = QVBoxLayout(left)
        ll.setContentsMargins(0, 0, 0, 0)
        t = QLabel("Generation")
        t.setProperty("role", "title")
        ll.addWidget(t)
        pick = QFormLayout()
        self.runs = QComboBox()
        self.runs.setObjectName("runCombo")
        self.runs.currentIndexChanged.connect(self._on_run)
        self.ckpts = QComboBox()
        self.ckpts.setObjectName("checkpointCombo")
        self.ckpts.currentIndexChanged.connect(self._on_checkpoint)
        for combo in (self.runs, self.ckpts):  # long run / checkpoint names: full text in the popup and tooltip
            combo.currentTextChanged.connect(combo.setToolTip)
            combo.model().rowsInserted.connect(lambda *_a, c=combo: c.view().setMinimumWidth(
                max(c.fontMetrics().horizontalAdvance(c.itemText(i)) for i in range(c.count())) + 32))
        self.ema = QCheckBox("use EMA weights")
        self.ema.setChecked(True)
        self.ema.setToolTip("Sample with the exponential moving average of the weights (usually better)")
        self.ema.toggled.connect(self._sync_checkpoint_fields)
        self.class_combo = QComboBox()
        self.class_combo.setObjectName("classCombo")
        self.class_combo.setToolTip("The class to generate (names from the run's dataset labels); a model "
                                    "trained without classes is unconditional")
        self.class_combo.currentIndexChanged.connect(self._on_class)
        for combo in (self.runs, self.ckpts):  # long run names elide instead of widening the form
            combo.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
            combo.setMinimumContentsLength(16)
        picker_rows = [("Run", self.runs), ("Checkpoint", self.ckpts), ("", self.ema), ("Class", self.class_combo)]
        self.class_names: list[str] = []  # the selected checkpoint's classes; empty: unconditional
        self.conditional = False
        self.form = None
        if self.spec_cls is not None:
            # the pickers set the checkpoint; the job writes NPZ into its folder, export is on demand
            excl = tuple(n for n in CHECKPOINT_FIELDS + ("format", "out", "class_label")
                         if n in self.spec_cls.model_fields)
            self.form = SpecForm(self.spec_cls, exclude=excl)
            # the pickers are the first rows of the form: one label column, aligned
            for row, (label, widget) in enumerate(picker_rows):
                self.form.form.insertRow(row, label, widget)
            self.form.validity_changed.connect(lambda _v: self._update_buttons())
            self.form.changed.connect(self._update_buttons)
            sc = scrolled(self.form, horizontal=False, name="formScroll", least_width=320)  # never cut at the right
            ll.addWidget(sc, 1)
        else:
            for label, widget in picker_rows:
                pick.addRow(label, widget)
            ll.addLayout(pick)
            msg = QLabel(f"The sampling engine is not available: {self.error}")
            msg.setWordWrap(True)
            msg.setProperty("role", "error")
            ll.addWidget(msg)
            ll.addStretch(1)
        brow = QHBoxLayout()
        self.generate_button = QPushButton("Generate")
        self.generate_button.setObjectName("generateButton")
        self.generate_button.clicked.connect(self.generate)
        self.stop_button = QPushButton("Stop")
        self.stop_button.clicked.connect(lambda: self.handle and self.handle.cancel())
        brow.addWidget(self.generate_button, 1)
        brow.addWidget(self.stop_button)
        ll.addLayout(brow)
        split.addWidget(left)

        right = QWidget()
        rl = QVBoxLayout(right)
        rl.setContentsMargins(0, 0, 0, 0)
        self.status = QLabel("Pick a checkpoint and press Generate.")
        self.status.setObjectName("generateStatus")
        rl.addWidget(self.status)
        vsplit = QSplitter(Qt.Vertical)
        self.view_stack = QStackedWidget()
        self.live = ImageView(title="Current estimate")
        self.live.setObjectName("liveView")
        self.view_stack.addWidget(self.live)
        cmp = QWidget()
        cl = QHBoxLayout(cmp)
        cl.setContentsMargins(0, 0, 0, 0)
        self.compare_a = ImageView(title="A")
        self.compare_b = ImageView(title="B")
        self.compare_a.link(self.compare_b)
        cl.addWidget(self.compare_a)
        cl.addWidget(self.compare_b)
        self.view_stack.addWidget(cmp)
        vsplit.addWidget(self.view_stack)
        grid_box = QWidget()
        gl = QVBoxLayout(grid_box)
        gl.setContentsMargins(0, 0, 0, 0)
        self.results = ThumbnailGrid(icon_size=96)
        self.results.setObjectName("resultsGrid")
        self.results.selection.connect(self._on_selection)
        gl.addWidget(self.results, 1)
        erow = QHBoxLayout()
        self.selection_label = QLabel("Select images: one to view, two to compare.")
        self.selection_label.setProperty("role", "hint")
        erow.addWidget(self.selection_label, 1)
        self.export_format = QComboBox()
        self.export_format.setObjectName("exportFormat")
        for label, fmt in EXPORT_CHOICES:
            self.export_format.addItem(label, fmt)
        erow.addWidget(self.export_format)
        self.export_button = QPushButton("Export…")
        self.export_button.setObjectName("exportButton")
        self.export_button.setToolTip("Write the selected images (all if none is selected), marked synthetic")
        self.export_button.clicked.connect(lambda: self.export())
        erow.addWidget(self.export_button)
        gl.addLayout(erow)
        vsplit.addWidget(grid_box)
        vsplit.setSizes([480, 300])
        rl.addWidget(vsplit, 1)
        split.addWidget(right)
        split.setSizes([360, 1000])

        ctx.jobs.job_finished.connect(self._on_any_job_finished)
        ctx.jobs.runner_changed.connect(lambda _t: self.refresh_runs())  # local <-> remote server
        if self.form is not None:
            self.form.set_values(self.checkpoint_values())
        self.refresh_runs()
        self._update_buttons()

    # -- checkpoint picker -----------------------------------------------------------------------
    def refresh_runs(self, select: str | None = None) -> None:
        if self._list_server_runs(select):
            return
        keep = select or self.runs.currentData()
        self.runs.blockSignals(True)
        self.runs.clear()
        try:
            runs = list(self.ctx.workspace.runs())
        except Exception:
            runs = []
        for r in reversed(runs):
            self.runs.addItem(f"{r.id} · {r.kind} · {r.dataset or ''} ({r.state})", r.id)
        self.runs.blockSignals(False)
        idx = self.runs.findData(keep) if keep else 0
        self.runs.setCurrentIndex(max(idx, 0) if self.runs.count() else -1)
        self._on_run()

    def _on_run(self, *_):
        run_id = self.runs.currentData()
        self.ckpts.clear()
        if not run_id:
            self._update_buttons()
            return
        if run_id in self._server_checkpoints:
            self._show_ckpts(run_id, self._server_checkpoints[run_id])
            return
        ws = self.ctx.workspace

        def load():
            from app.engine.training.checkpoints import list_checkpoints

            return [{**ck, **checkpoint_classes(ck.get("path"))} for ck in list_checkpoints(run_id, ws)]

        run_in_thread(load, lambda cks, r=run_id: self._show_ckpts(r, cks),
                      lambda msg, tb: self.status.setText(f"Checkpoints unreadable: {msg}"))

    def _show_ckpts(self, run_id: str, cks) -> None:
        if run_id != self.runs.currentData():
            return
        self.ckpts.clear()
        for ck in cks:
            path = ck.get("path") if isinstance(ck, dict) else getattr(ck, "path", ck)
            bits = [Path(str(path)).name]
            for attr in ("epoch", "step"):
                v = ck.get(attr) if isinstance(ck, dict) else getattr(ck, attr, None)
                if v is not None:
                    bits.append(f"{attr} {v}")
            self.ckpts.addItem(" · ".join(bits), str(path))
            if isinstance(ck, dict) and "num_classes" in ck:
                self.ckpts.setItemData(self.ckpts.count() - 1,
                                       {"num_classes": ck["num_classes"], "class_names": ck.get("class_names") or []},
                                       Qt.UserRole + 1)
        self.ckpts.blockSignals(True)
        if self.ckpts.count():
            self.ckpts.setCurrentIndex(self.ckpts.count() - 1)
        self.ckpts.blockSignals(False)
        self._on_checkpoint()

    # -- class -----------------------------------------------------------------------------------
    def _on_checkpoint(self, *_):
        """Fill the class combo from the selected checkpoint's classes, then sync the spec fields."""
        info = self.ckpts.currentData(Qt.UserRole + 1) if self.ckpts.count() else None
        keep = self.class_combo.currentData()
        n = int(info.get("num_classes") or 0) if isinstance(info, dict) else 0
        names = [str(c) for c in (info.get("class_names") or [])] if isinstance(info, dict) else []
        self.conditional = n > 0
        self.class_names = (names + [str(i) for i in range(len(names), n)])[:n] if n else []
        self.class_combo.blockSignals(True)
        self.class_combo.clear()
        if not self.conditional:
            self.class_combo.addItem("unconditional", None)
            why = ("the server did not report this model's classes" if info is None and self.ckpts.count()
                   else "this model was trained without classes")
            self.class_combo.setToolTip(f"Unconditional: {why}; guidance needs a class-conditional model")
        else:
            self.class_combo.addItem("all classes in turn", ALL_CLASSES)
            for i, name in enumerate(self.class_names):
                self.class_combo.addItem(name, i)
            self.class_combo.addItem("no class (null label)", None)
            self.class_combo.setToolTip("Class-conditional model: the class of every image (names from the "
                                        "run's dataset labels)")
            idx = self.class_combo.findData(keep) if keep is not None else -1
            self.class_combo.setCurrentIndex(max(idx, 0))
        self.class_combo.setEnabled(self.conditional)
        self.class_combo.blockSignals(False)
        self._on_class()

    def class_label_value(self):
        """The spec's ``class_label`` for the combo's choice: None, [k], or k cycling per image."""
        data = self.class_combo.currentData()
        if not self.conditional or data is None:
            return None
        if data == ALL_CLASSES:
            n = self.form.values().get("n_images", 1) if self.form is not None else 1
            return [i % len(self.class_names) for i in range(max(int(n or 1), 1))]
        return [int(data)]

    def _on_class(self, *_):
        """Guidance only means something with a class on a conditional model: enable it only then."""
        if self.form is not None and "guidance" in self.form.editors:
            ed = self.form.editors["guidance"]
            usable = self.conditional and self.class_combo.currentData() is not None
            ed.widget.setEnabled(usable)
            if not usable and self.form.values().get("guidance"):
                self.form.set_values({"guidance": 0.0})
            ed.widget.setToolTip(ed.widget.toolTip().split("\n")[0] + (
                "" if usable else "\n(needs a class-conditional model and a class)"))
        self._sync_checkpoint_fields()

    # -- runs on a remote server (issue 9) --------------------------------------------------------
    _server_checkpoints: dict = {}  # run id -> checkpoints listed by the server; empty when local

    def _list_server_runs(self, select: str | None = None) -> bool:
        """With a remote runner, fill the run picker from the server (off the GUI thread; the
        checkpoint paths are server paths, which the spec sent there names). False when jobs run
        locally: the caller lists the workspace's runs."""
        if self.ctx.jobs.transport == "local":
            self._server_checkpoints = {}
            return False
        keep = select or self.runs.currentData()
        where = self.ctx.jobs.transport
        self.status.setText(f"Listing the runs on the server ({where})…")

        def show(runs: list) -> None:
            if self.ctx.jobs.transport != where:
                return  # the connection changed meanwhile
            self._server_checkpoints = {r["id"]: r.get("checkpoints") or [] for r in runs}
            self.runs.blockSignals(True)
            self.runs.clear()
            for r in reversed(runs):
                self.runs.addItem(f"{r['id']} · {r.get('kind')} · {r.get('dataset') or ''} ({r.get('state')}) · server",
                                  r["id"])
            self.runs.blockSignals(False)
            idx = self.runs.findData(keep) if keep else 0
            self.runs.setCurrentIndex(max(idx, 0) if self.runs.count() else -1)
            self.status.setText(f"{len(runs)} run(s) on the server ({where})" if runs
                                else f"No training runs on the server ({where}) yet.")
            self._on_run()

        run_in_thread(self.ctx.jobs.list_runs, show,
                      lambda msg, tb: self.status.setText(f"Could not list the runs on the server: {msg}"))
        return True

    # -- running ---------------------------------------------------------------------------------
    def checkpoint_values(self) -> dict:
        """The spec fields the pickers set (run / checkpoint folder, EMA), plus the fixed output."""
        fields = self.spec_cls.model_fields if self.spec_cls is not None else {}
        ck = self.ckpts.currentData()
        values: dict = {}
        if "checkpoint" in fields:
            values["checkpoint"] = ck
        for name in ("run", "run_id"):
            if name in fields:  # a checkpoint folder is a valid "run" reference: it picks the epoch
                values[name] = ck if (ck and "checkpoint" not in fields) else (self.runs.currentData() or "")
        for name in ("ema", "use_ema"):
            if name in fields:
                values[name] = self.ema.isChecked()
        if "format" in fields:
            values["format"] = "npz"
        if "out" in fields:
            values["out"] = None
        if "class_label" in fields:
            values["class_label"] = self.class_label_value()
        return values

    def _sync_checkpoint_fields(self, *_):
        if self.form is not None:
            self.form.set_values(self.checkpoint_values())
        self._update_buttons()

    def build_spec(self):
        if self.form is None:
            return None
        values = self.form.values()
        values.update(self.checkpoint_values())
        try:
            return self.spec_cls.model_validate(values)
        except Exception as exc:
            self.status.setText(f"Not valid: {exc}")
            return None

    def generate(self):
        spec = self.build_spec()
        if spec is None:
            return None
        self.live.clear()
        self.results.clear()
        self.images = None
        self.view_stack.setCurrentIndex(0)
        self._t_start = time.monotonic()
        h = self.ctx.jobs.submit(spec)
        self.handle = h
        h.image.connect(self._on_image)
        h.progress.connect(self._on_progress)
        h.finished.connect(self._on_finished)
        h.state_changed.connect(lambda _s: self._update_buttons())
        self.status.setText("Queued…" if h.state == "queued" else "Sampling…")
        self._update_buttons()
        return h

    def _on_image(self, name: str, array, kind: str) -> None:
        if name == "samples" and self.images is None and self.handle is not None and self.handle.is_final:
            return
        self.live_updates += 1
        self.live._title = name
        self.live.set_image(array)

    def _on_progress(self, step: int, total: int, label: str) -> None:
        self.status.setText(f"{label + ' · ' if label else ''}step {step} / {total}")

    def _on_finished(self, _ev) -> None:
        h = self.handle
        self._update_buttons()
        if h.state != "done":
            self.status.setText("Stopped." if h.state == "cancelled" else f"Sampling failed: {h.message}")
            return
        self.result = h.result or {}
        path = self.samples_path(h)
        if path is None:
            self.status.setText("The job finished but wrote no images.")
            return
        ws, dataset = self.ctx.workspace, self.result.get("dataset")
        spec_labels = getattr(h.spec, "class_label", None)
        names = list(self.class_names)

        def show(res):
            images, labels, ds_names = res
            if labels is None:  # not in this workspace: the classes as the job was given them
                labels, ds_names = spec_labels, names
            self._show_results(images, class_captions(labels, ds_names or names, len(images)))

        run_in_thread(lambda: load_generated(path, ws, dataset), show,
                      lambda msg, tb: self.status.setText(f"Could not read the images: {msg}"))

    @staticmethod
    def samples_path(h) -> str | None:
        res = h.result or {}
        for v in res.get("files") or []:
            if isinstance(v, str) and Path(v).suffix in (".npz", ".npy", ".h5", ".hdf5"):
                return v
        for key in ("samples", "path", "images", "output"):
            v = res.get(key)
            if isinstance(v, str) and Path(v).suffix in (".npz", ".npy", ".h5", ".hdf5"):
                return v
        for kind, path in h.artifacts:
            if Path(path).suffix in (".npz", ".npy", ".h5", ".hdf5") and kind in ("samples", "array", "images"):
                return path
        for _kind, path in h.artifacts:
            if Path(path).suffix in (".npz", ".npy"):
                return path
        return None

    def _show_results(self, images: np.ndarray, classes: list[str] | None = None) -> None:
        self.images = images
        self._update_buttons()  # export is possible from now on
        n = len(images)
        self.classes = list(classes) if classes else [""] * n
        self.results.set_images(images, labels=[f"#{i} · {c}" if c else f"#{i}" for i, c in enumerate(self.classes)])
        seconds = self.result.get("seconds") or (time.monotonic() - self._t_start)
        ips = self.result.get("images_per_second") or (n / seconds if seconds else 0.0)
        self.status.setText(f"{n} images in {seconds:.1f} s · {ips:.2f} images/s")
        if n:
            self.live._title = "#0"
            self.live.set_image(images[0, 0], autolevel=True)

    def _on_selection(self, keys: list) -> None:
        if self.images is None:
            return
        if len(keys) == 2:
            a, b = keys
            self.compare_a._title, self.compare_b._title = f"#{a}", f"#{b}"
            self.compare_a.set_image(self.images[a, 0], levels=(-1.0, 1.0))
            self.compare_b.set_image(self.images[b, 0], levels=(-1.0, 1.0))
            self.view_stack.setCurrentIndex(1)
            self.selection_label.setText(f"Comparing #{a} and #{b} (linked zoom and window)")
        elif keys:
            i = keys[-1]
            self.view_stack.setCurrentIndex(0)
            self.live._title = f"#{i}"
            self.live.set_image(self.images[i, 0])
            self.selection_label.setText(f"{len(keys)} selected")

    # -- export ----------------------------------------------------------------------------------
    def export(self, out_dir: str | Path | None = None, fmt: str | None = None):
        """Export the selected images (all if none is selected) on a worker thread."""
        if self.images is None:
            self.status.setText("Nothing to export yet.")
            return None
        fmt = fmt or self.export_format.currentData()
        if out_dir is None:
            out_dir = QFileDialog.getExistingDirectory(self, "Export to folder")
            if not out_dir:
                return None
        sel = sorted(self.results.selected()) or list(range(len(self.images)))
        images = self.images[sel]
        prov = self._provenance()
        per = [{"index": int(i)} for i in sel]
        names = [f"synthetic_{i:05d}" for i in sel]
        self.export_button.setEnabled(False)
        self.status.setText(f"Exporting {len(sel)} images as {fmt}…")
        self.last_export = []
        self.export_error = None

        def work():
            from app.engine.export import export_images

            return export_images(images, out_dir, format=fmt, provenance=prov, names=names, per_image=per)

        def done(files):
            self.last_export = [Path(f) for f in files]
            self.export_button.setEnabled(True)
            self.status.setText(f"Exported {len(files)} file(s) to {out_dir}")

        def failed(msg, tb):
            self.export_error = msg
            self.export_button.setEnabled(True)
            main = self.ctx.main_window
            if main is not None and hasattr(main, "show_error"):
                main.show_error("Export failed", msg, tb)
            self.status.setText(f"Export failed: {msg}")

        return run_in_thread(work, done, failed)

    def _provenance(self) -> dict:
        res = dict(self.result)
        prov = res.get("provenance") if isinstance(res.get("provenance"), dict) else {}
        if not prov:
            prov = {k: v for k, v in res.items() if isinstance(v, (str, int, float, bool)) or v is None}
        if self.handle is not None:
            prov.setdefault("spec", json.loads(self.handle.spec.model_dump_json()))
        return prov

    # -- misc ------------------------------------------------------------------------------------
    def _on_any_job_finished(self, handle) -> None:
        if handle.kind == "train":  # the run just trained (or resumed) is the one to sample from now
            run = (handle.result or {}).get("run")
            self.refresh_runs(select=run if handle.state == "done" and run else None)

    def _update_buttons(self, *_):
        running = self.handle is not None and not self.handle.is_final
        self.generate_button.setEnabled(self.form is not None and self.form.is_valid and not running
                                        and self.ckpts.count() > 0)
        self.stop_button.setEnabled(running)
        self.export_button.setEnabled(self.images is not None)
