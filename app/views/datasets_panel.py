"""Datasets panel: the workspace's datasets, the import wizard over the ingest job (``import_wizard.py``),
and the EDA view.

For the selected dataset: a thumbnail grid (read off the GUI thread), the selected image in the
shared ImageView with its provenance (``ImageDataset.provenance(i)``), and the statistics of the
``eda`` job (intensity histogram, class distribution, mean image per class). EDA results are kept
per dataset for the session, and stored in the workspace next to the dataset
(``app.engine.data.eda_cache``, keyed by the dataset's content fingerprint and the spec), so that
neither browsing nor the next start of the app runs the job again for an unchanged dataset; a
changed or re-imported dataset, or a stored result that cannot be read, gets a fresh job.
"Statistics" always runs the job again (and stores its result).

Managing a dataset: Rename… (the runs trained on it follow), Classes… (name the classes that an
NPZ gave as 0 / 1; the names then show in the thumbnails, the provenance, the statistics and every
job that reads the dataset), Delete… (what depends on it named in the question first; refused
while a job of this window uses it). The summary gives the split counts and the images of each
modality. CT images ingested in Hounsfield units (cache ``unit`` "HU") are shown in HU, with the
HU under the cursor and the usual window presets (brain, subdural, bone, lung, soft tissue).
"""

from __future__ import annotations

import logging

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QButtonGroup,
    QDialog,
    QHBoxLayout,
    QHeaderView,
    QInputDialog,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.engine.errors import UserError
from app.engine.specs.options import CT_WINDOWS
from app.views.dataset_summary import count_summary, split_summary, subgroup_summary
from app.views.dialogs import ClassNamesDialog, report_error
from app.views.import_wizard import ImportWizard, field_named, spec_class_or_reason, summary_rows  # noqa: F401
from app.views.widgets.image_view import ImageView
from app.views.widgets.plots import BarChart
from app.views.widgets.set_picker import dataset_label
from app.views.widgets.thumbnails import ThumbnailGrid
from app.workers.manager import run_in_thread

MAX_THUMBS = 96
log = logging.getLogger(__name__)

#: the CT window presets of the viewer: (button text, name in ``CT_WINDOWS`` (centre, width) in HU)
CT_PRESETS = [("Brain", "brain"), ("Subdural", "subdural"), ("Bone", "bone"), ("Lung", "lung"),
              ("Soft tissue", "soft")]


class DatasetsPanel(QWidget):
    def __init__(self, ctx):
        super().__init__()
        self.ctx = ctx
        self.current: str | None = None
        self.dataset = None  # ImageDataset of the current one
        self.eda_results: dict[str, dict] = {}
        self.eda_handles: dict[str, object] = {}
        self.eda_sources: dict[str, str] = {}  # dataset -> "job" (run now) or "stored" (earlier session)
        self.eda_note = ""  # why a stored result was not used (changed dataset, unreadable file), if any
        self._eda_token = 0
        self.wizard: ImportWizard | None = None
        self._load_token = 0

        outer = QHBoxLayout(self)
        outer.setContentsMargins(6, 6, 6, 6)
        split = QSplitter(Qt.Horizontal)
        outer.addWidget(split)

        left = QWidget()
        ll = QVBoxLayout(left)
        ll.setContentsMargins(0, 0, 0, 0)
        title = QLabel("Datasets")
        title.setProperty("role", "title")
        ll.addWidget(title)
        self.list = QListWidget()
        self.list.setObjectName("datasetList")
        self.list.currentItemChanged.connect(lambda cur, _prev: self.select(cur.data(Qt.UserRole) if cur else None))
        ll.addWidget(self.list, 1)
        row = QHBoxLayout()
        self.import_button = QPushButton("Import…")
        self.import_button.setObjectName("importButton")
        self.import_button.clicked.connect(self.open_import_wizard)
        row.addWidget(self.import_button)
        self.eda_button = QPushButton("Statistics")
        self.eda_button.setToolTip("Run the EDA job again for this dataset")
        self.eda_button.clicked.connect(lambda: self.current and self.run_eda(self.current, force=True))
        row.addWidget(self.eda_button)
        ll.addLayout(row)
        manage = QHBoxLayout()
        self.rename_button = QPushButton("Rename…")
        self.rename_button.setObjectName("renameButton")
        self.rename_button.clicked.connect(self._ask_rename)
        self.classes_button = QPushButton("Classes…")
        self.classes_button.setObjectName("classesButton")
        self.classes_button.setToolTip("Name the dataset's classes (e.g. 0 / 1 of an NPZ)")
        self.classes_button.clicked.connect(self._ask_class_names)
        self.delete_button = QPushButton("Delete…")
        self.delete_button.setObjectName("deleteButton")
        self.delete_button.setToolTip("Delete the dataset (what depends on it is named first)")
        self.delete_button.clicked.connect(lambda: self.delete_dataset())
        for b in (self.rename_button, self.classes_button, self.delete_button):
            manage.addWidget(b)
        ll.addLayout(manage)
        self.info = QLabel("")
        self.info.setObjectName("datasetInfo")
        self.info.setWordWrap(True)
        self.info.setProperty("role", "hint")
        ll.addWidget(self.info)
        split.addWidget(left)

        right = QSplitter(Qt.Vertical)
        top = QSplitter(Qt.Horizontal)
        self.thumbs = ThumbnailGrid(icon_size=76)
        self.thumbs.setObjectName("datasetThumbnails")
        self.thumbs.selection.connect(self._on_thumb_selected)
        top.addWidget(self.thumbs)
        viewer = QWidget()
        vl = QVBoxLayout(viewer)
        vl.setContentsMargins(0, 0, 0, 0)
        self.view = ImageView(title="")
        vl.addWidget(self.view, 3)
        # CT in Hounsfield units: the usual window presets (shown only for such images)
        self.ct_bar = QWidget()
        self.ct_bar.setObjectName("ctWindows")
        # the chosen preset is seen at a glance (the navigation's selection colour)
        self.ct_bar.setStyleSheet("QPushButton { padding: 3px 6px; }"
                                  "QPushButton:checked { background: #2f4f75; color: white; border: 1px solid #6e9fe6; }")
        cb = QHBoxLayout(self.ct_bar)
        cb.setContentsMargins(0, 0, 0, 0)
        cb.setSpacing(4)
        cb.addWidget(QLabel("Window:"))
        self.ct_group = QButtonGroup(self)
        self.ct_group.setExclusive(True)
        self.ct_buttons: dict[str, QPushButton] = {}
        for text, key in [("Auto", "auto"), *CT_PRESETS]:
            b = QPushButton(text)
            b.setObjectName(f"ctWindow_{key}")
            b.setCheckable(True)
            b.setMinimumWidth(b.fontMetrics().horizontalAdvance(text) + 16)  # never cut ("Soft tissue")
            if key != "auto":
                c, w = CT_WINDOWS[key]
                b.setToolTip(f"{text}: centre {c:g} HU, width {w:g} HU")
            else:
                b.setToolTip("The 1st..99th percentile of the image")
            b.clicked.connect(lambda _=False, k=key: self.set_ct_window(k))
            self.ct_group.addButton(b)
            self.ct_buttons[key] = b
            cb.addWidget(b)
        cb.addStretch(1)
        self.ct_buttons["auto"].setChecked(True)
        self.ct_window = "auto"
        self.ct_bar.setVisible(False)
        vl.addWidget(self.ct_bar)
        self.provenance = QTableWidget(0, 2)
        self.provenance.setObjectName("provenance")
        self.provenance.setHorizontalHeaderLabels(["source", "value"])
        self.provenance.horizontalHeader().setSectionResizeMode(1, QHeaderView.Stretch)
        self.provenance.verticalHeader().setVisible(False)
        self.provenance.setEditTriggers(QTableWidget.NoEditTriggers)
        vl.addWidget(self.provenance, 1)
        top.addWidget(viewer)
        top.setSizes([520, 420])
        right.addWidget(top)

        stats = QWidget()
        sl = QHBoxLayout(stats)
        sl.setContentsMargins(0, 0, 0, 0)
        self.histogram = BarChart("Intensity histogram")
        self.classes = BarChart("Class distribution")
        means_box = QWidget()
        ml = QVBoxLayout(means_box)
        ml.setContentsMargins(0, 0, 0, 0)
        self.means_label = QLabel("Mean image per class")
        self.means_label.setWordWrap(True)
        self.means_label.setProperty("role", "hint")
        ml.addWidget(self.means_label)
        self.means = ThumbnailGrid(icon_size=84)
        self.means.setObjectName("classMeans")
        ml.addWidget(self.means, 1)
        classes_box = QWidget()
        cl = QVBoxLayout(classes_box)
        cl.setContentsMargins(0, 0, 0, 0)
        cl.addWidget(self.classes, 1)
        # subgroup attributes the dataset carries (sex, age group, scanner ...: what evaluation and
        # error analysis break their results down by), counted in the statistics' split
        self.subgroups = QLabel("")
        self.subgroups.setObjectName("subgroups")
        self.subgroups.setWordWrap(True)
        self.subgroups.setProperty("role", "hint")
        self.subgroups.setTextInteractionFlags(Qt.TextSelectableByMouse)
        cl.addWidget(self.subgroups)
        for w in (self.histogram, classes_box, means_box):
            sl.addWidget(w, 1)
        right.addWidget(stats)
        right.setSizes([520, 240])
        split.addWidget(right)
        split.setSizes([230, 1000])

        ctx.jobs.job_finished.connect(self._on_job_finished)
        self.refresh()

    # -- list ---------------------------------------------------------------------------------
    def refresh(self, select: str | None = None) -> None:
        keep = select or self.current
        self.list.blockSignals(True)
        self.list.clear()
        for rec in self.ctx.workspace.datasets():
            item = QListWidgetItem(f"{dataset_label(rec.name, rec.synthetic)}\n{rec.n_images} images · "
                                   f"{rec.height}×{rec.width}"
                                   f"{' · ' + str(len(rec.classes)) + ' classes' if rec.classes else ''}")
            item.setData(Qt.UserRole, rec.name)
            item.setToolTip(rec.source)
            self.list.addItem(item)
        self.list.blockSignals(False)
        names = self.dataset_names()
        if names:
            target = keep if keep in names else names[0]
            self.list.setCurrentRow(names.index(target))
            if target != self.current:
                self.select(target)
        else:
            self.current = None
            self.info.setText("No dataset yet: import one (File ▸ Import dataset).")

    def dataset_names(self) -> list[str]:
        return [self.list.item(i).data(Qt.UserRole) for i in range(self.list.count())]

    def _on_job_finished(self, handle) -> None:
        if handle.kind == "sample" and handle.state == "done":
            self.refresh()  # its images are a new (synthetic) dataset; the selection stays
            return
        if handle.kind in ("ingest", "demo") and handle.state == "done":
            name = (handle.result or {}).get("name") or (handle.result or {}).get("dataset")
            if name:  # a re-import under the same name: the statistics of the old content go
                self.eda_results.pop(name, None)
                self.eda_sources.pop(name, None)
            shown = self.current
            self.refresh(select=name)
            if name and name == shown == self.current:
                self.select(name)  # refresh keeps the selection as it is: show the new content
            main = self.ctx.main_window
            if main is not None and hasattr(main, "_update_workspace_label"):
                main._update_workspace_label()

    # -- selection -----------------------------------------------------------------------------
    def select(self, name: str | None) -> None:
        if not name:
            return
        try:
            rec = self.ctx.workspace.dataset(name)
        except (UserError, OSError) as exc:  # deleted by another process (the command line) meanwhile
            self.info.setText(str(exc))
            return
        self.current = name
        self.dataset = None
        self.view.clear()  # no image, and no readout, of the dataset shown before
        self.view._title = ""
        self.ct_bar.setVisible(False)
        self.provenance.setRowCount(0)
        self._show_info(rec)
        self._load_token += 1
        token = self._load_token
        path = rec.cache_path

        def load():
            from app.engine.data.cache import ImageDataset

            ds = ImageDataset(path, name)
            idx = np.unique(np.linspace(0, len(ds) - 1, min(len(ds), MAX_THUMBS)).round().astype(int)) if len(ds) else []
            imgs = ds.images(indices=idx) if len(idx) else np.zeros((0, 1, 8, 8), np.float32)
            return ds, list(map(int, idx)), imgs

        run_in_thread(load, lambda v: token == self._load_token and self._show_thumbs(*v),
                      lambda msg, tb: self._report("Could not read the dataset", msg, tb))
        self._eda_token += 1
        if name in self.eda_results:
            self.show_eda(self.eda_results[name])
        elif name in self.eda_handles and not self.eda_handles[name].is_final:
            self._clear_eda("Computing statistics…")
        else:
            self._clear_eda("Looking for stored statistics…")
            self._load_stored_eda(name, self._eda_token)

    def _show_info(self, rec, ds=None) -> None:
        """The summary of a dataset: from its record, then (``ds`` read) its split and modality counts
        as the cache holds them."""
        meta = rec.meta or {}
        bits = [f"<b>{rec.name}</b>" + (" (synthetic: generated by a model)" if rec.synthetic else ""),
                f"{rec.n_images} images, {rec.height}×{rec.width}", f"source: {rec.source}"]
        splits = ds.split_counts() if ds is not None else meta.get("splits")
        modalities = (ds.count_of("modality") if ds is not None else None) or meta.get("modalities") \
            or ({meta["modality"]: rec.n_images} if meta.get("modality") else {})
        for line in (split_summary(splits or {}), count_summary(modalities, "modality")):
            if line:
                bits.append(line)
        for k in ("normalize", "format", "skipped"):
            if k in meta and not isinstance(meta[k], (dict, list)):
                bits.append(f"{k}: {meta[k]}")
        if ds is not None and ds.count_of("unit").get("HU"):
            bits.append("CT in Hounsfield units: shown in HU, with window presets")
        if meta.get("complex"):
            bits.append("complex: real and imaginary parts kept, for reconstruction priors (shown: magnitude)")
        if rec.classes:
            counts = meta.get("class_counts") or {}
            bits.append("classes: " + ", ".join(f"{c} ({counts[c]})" if c in counts else c for c in rec.classes))
        self.info.setText("<br>".join(bits))

    def _show_thumbs(self, ds, idx: list[int], imgs: np.ndarray) -> None:
        self.dataset = ds
        try:
            self._show_info(self.ctx.workspace.dataset(ds.name), ds)
        except (UserError, OSError) as exc:  # the summary from the record stays; the counts could not be read
            log.warning("dataset summary of %r: %s", ds.name, exc)
        labels = ds.labels()
        names = [f"#{i}" + (f" {ds.class_names[labels[i]]}" if 0 <= labels[i] < len(ds.class_names) else "")
                 for i in idx]
        self.thumbs.set_images(imgs, labels=names, keys=idx)
        if idx:
            self.thumbs.setCurrentRow(0)
            self.thumbs.item(0).setSelected(True)

    def _on_thumb_selected(self, keys: list) -> None:
        if not keys or self.dataset is None:
            return
        i = int(keys[-1])
        ds = self.dataset
        token = self._load_token

        def load():
            from app.engine.data.preprocess import stored_to_units

            img = ds.images(indices=[i])[0, 0]
            (span,), (unit,) = ds.units([i])
            if unit and np.all(np.isfinite(span)):
                img = stored_to_units(img, *span)  # HU for CT
            else:
                unit = ""
            return img, unit, ds.provenance(i)

        run_in_thread(load, lambda v: token == self._load_token and self._show_image(i, *v),
                      lambda msg, tb: self._report("Could not read the image", msg, tb))

    def _show_image(self, i: int, img: np.ndarray, unit: str, prov: dict) -> None:
        self.view._title = f"{self.current} #{i}"
        self.view.set_unit(unit)
        self.ct_bar.setVisible(unit == "HU")
        if unit == "HU" and self.ct_window != "auto":
            c, w = CT_WINDOWS[self.ct_window]
            self.view.set_image(img, levels=(c - w / 2, c + w / 2))
        else:
            self.view.set_image(img, autolevel=True)
        self.provenance.setRowCount(len(prov))
        for r, (k, v) in enumerate(prov.items()):
            self.provenance.setItem(r, 0, QTableWidgetItem(str(k)))
            item = QTableWidgetItem(str(v))
            item.setToolTip(str(v))
            self.provenance.setItem(r, 1, item)
        self.provenance.resizeColumnToContents(0)

    def set_ct_window(self, key: str) -> None:
        """A CT window preset ("brain", "subdural", "bone", "lung", "soft") or "auto", kept for the next images."""
        self.ct_window = key
        self.ct_buttons[key].setChecked(True)
        if key == "auto":
            self.view.auto_levels()
        else:
            c, w = CT_WINDOWS[key]
            self.view.set_levels(c - w / 2, c + w / 2)

    # -- managing ---------------------------------------------------------------------------------
    def _jobs_using(self, name: str) -> list[str]:
        """Kinds of this window's active jobs whose spec names dataset ``name``."""
        out = []
        for h in self.ctx.jobs.active():
            values = [v for v in h.spec.model_dump(mode="json").values() if isinstance(v, str)]
            if any(v == name or v.startswith(name + ":") for v in values):
                out.append(h.kind)
        return out

    def _confirm(self, question: str) -> bool:
        main = self.ctx.main_window
        if main is not None and hasattr(main, "confirm"):
            return bool(main.confirm(question))
        from PySide6.QtWidgets import QMessageBox

        return QMessageBox.question(self, "Delete dataset", question) == QMessageBox.Yes

    def delete_dataset(self, name: str | None = None) -> bool:
        """Delete a dataset after a question that names what depends on it; True when it was deleted."""
        name = name or self.current
        if not name:
            return False
        ws = self.ctx.workspace
        busy = self._jobs_using(name)
        if busy:
            self._report("The dataset cannot be deleted", f"dataset {name!r} is used by a running {busy[0]} job: "
                         "wait for it to end or cancel it in the Jobs dock, then delete the dataset")
            return False
        try:
            deps = ws.dataset_dependents(name)
        except (UserError, OSError) as exc:
            self._report("The dataset cannot be deleted", str(exc))
            return False
        question = f"Delete dataset {name!r} and its files?"
        if deps:
            question += ("\n\nThese depend on it; they keep what they made, but cannot read the dataset again:\n• "
                         + "\n• ".join(deps))
        if not self._confirm(question):
            return False
        try:
            busy_runs = [r.id for r in ws.runs() if r.state == "running" and r.dataset == name]
            if busy_runs:
                raise UserError(f"dataset {name!r} is being trained on by run {busy_runs[0]}: stop it first")
            ws.delete_dataset(name)
        except (UserError, OSError) as exc:
            self._report("The dataset could not be deleted", str(exc))
            return False
        self._forget(name)
        self.current = None if self.current == name else self.current
        self.refresh()
        if not self.dataset_names():
            self.thumbs.clear()
            self.view.clear()
            self.provenance.setRowCount(0)
            self.ct_bar.setVisible(False)
        return True

    def _forget(self, name: str) -> None:
        self.eda_results.pop(name, None)
        self.eda_sources.pop(name, None)
        self.eda_handles.pop(name, None)

    def _ask_rename(self) -> None:
        if not self.current:
            return
        new, ok = QInputDialog.getText(self, "Rename dataset", f"New name of {self.current!r}:", text=self.current)
        if ok and new.strip():
            self.rename_dataset(new.strip())

    def rename_dataset(self, new: str, name: str | None = None) -> bool:
        name = name or self.current
        if not name:
            return False
        busy = self._jobs_using(name)
        if busy:
            self._report("The dataset cannot be renamed", f"dataset {name!r} is used by a running {busy[0]} job: "
                         "wait for it to end, then rename it")
            return False
        try:
            self.ctx.workspace.rename_dataset(name, new)
        except (UserError, OSError) as exc:
            self._report("The dataset could not be renamed", str(exc))
            return False
        self._forget(name)
        self.current = new if self.current == name else self.current
        self.refresh(select=new)
        self.select(new)
        return True

    def _ask_class_names(self) -> None:
        if not self.current:
            return
        rec = self.ctx.workspace.dataset(self.current)
        if not rec.classes:
            self._report("No classes to name", f"dataset {rec.name!r} is unlabelled; import it with labels "
                         "(class subfolders, a labels CSV or NPZ labels) to give it classes")
            return
        dlg = ClassNamesDialog(rec.name, rec.classes, rec.meta.get("class_counts") or {}, self)
        if dlg.exec() == QDialog.Accepted:
            self.set_class_names(dlg.names())

    def set_class_names(self, names: list[str], name: str | None = None) -> bool:
        name = name or self.current
        if not name:
            return False
        try:
            self.ctx.workspace.set_class_names(name, names)
        except (UserError, OSError) as exc:
            self._report("The class names were not changed", str(exc))
            return False
        self._forget(name)  # the statistics name the classes: computed again
        self.refresh(select=name)
        if name == self.current:
            self.select(name)
        return True

    # -- EDA ------------------------------------------------------------------------------------
    def _eda_spec(self, name: str):
        """The eda spec the panel runs for ``name`` (the job's defaults), or None (label says why)."""
        spec_cls, err = spec_class_or_reason("eda")
        if spec_cls is None:
            self.means_label.setText(f"Statistics not available: {err}")
            return None
        field = field_named(spec_cls, "dataset", "name")
        try:
            return spec_cls.model_validate({field: name})
        except (UserError, OSError) as exc:
            self.means_label.setText(f"Statistics: {exc}")
            return None

    def _load_stored_eda(self, name: str, token: int) -> None:
        """Show the result stored by an earlier session if it still matches the dataset (read off
        the GUI thread); else run the job."""
        spec = self._eda_spec(name)
        if spec is None:
            return
        from app.engine.data import eda_cache

        ws, want = self.ctx.workspace, spec.model_dump(mode="json")
        run_in_thread(lambda: eda_cache.load(ws, name, want),
                      lambda v: self._on_stored_eda(name, token, *v),
                      lambda msg, tb: self._on_stored_eda(name, token, None, f"stored statistics: {msg}"))

    def _on_stored_eda(self, name: str, token: int, res: dict | None, note: str | None) -> None:
        if name in self.eda_results or (name in self.eda_handles and not self.eda_handles[name].is_final):
            return  # a job was started (Statistics) or finished meanwhile: its result wins
        if token != self._eda_token or name != self.current:
            return  # another dataset was selected meanwhile; it is looked up again when selected
        self.eda_note = note or ""
        if res is not None:
            self.eda_results[name] = res
            self.eda_sources[name] = "stored"
            if self.show_eda(res):
                return
            # shown as far as it went; a stored result the panel cannot draw is computed again
            self.eda_results.pop(name, None)
            self.eda_note = f"stored statistics of {name!r} could not be shown"
            log.warning("%s; they are computed again", self.eda_note)
        self.run_eda(name)

    def run_eda(self, name: str, force: bool = False):
        if not force and name in self.eda_handles and not self.eda_handles[name].is_final:
            return self.eda_handles[name]
        spec = self._eda_spec(name)
        if spec is None:
            return None
        from app.engine.data import eda_cache

        try:  # the content it is computed from: one registry row and one stat, cheap on this thread
            fp = eda_cache.fingerprint(self.ctx.workspace, name)
        except Exception:
            fp = None  # not registered here: the job reports it; nothing is stored
        if force:
            self.eda_results.pop(name, None)  # the new job's result replaces it (shown and stored)
        h = self.ctx.jobs.submit(spec)
        self.eda_handles[name] = h
        if name == self.current:
            self._clear_eda("Computing statistics…" + (f" ({self.eda_note})" if self.eda_note else ""))
        h.finished.connect(lambda _ev, n=name, hh=h, f=fp: self._on_eda_done(n, hh, f))
        return h

    def _on_eda_done(self, name: str, h, fp: dict | None = None) -> None:
        if h.state != "done":
            if name == self.current and self.eda_handles.get(name) is h:
                self.means_label.setText(f"Statistics {h.state}" + (f": {h.message}" if h.message else ""))
            return
        res = h.result or {}
        self.eda_results[name] = res
        self.eda_sources[name] = "job"
        if name == self.current:
            self.eda_note = ""
            self.show_eda(res)
        # only a job that ran on this computer read this workspace's dataset (a remote server has
        # its own dataset of that name, and its file paths are not here)
        if fp is not None and h.transport == "local":
            from app.engine.data import eda_cache

            ws, spec = self.ctx.workspace, h.spec.model_dump(mode="json")
            run_in_thread(lambda: eda_cache.save(ws, name, spec, fp, res), None,
                          lambda msg, tb: log.warning("statistics of %r not stored: %s\n%s", name, msg, tb))

    def _clear_eda(self, text: str) -> None:
        """Empty charts while the current dataset's statistics are not there (no stale ones)."""
        self.histogram.bars.setOpts(x=[0], height=[0], width=0.8)
        self.classes.bars.setOpts(x=[0], height=[0], width=0.8)
        self.classes.getAxis("bottom").setTicks(None)
        self.means.clear()
        self.means_label.setText(text)
        self.subgroups.setText("")

    def show_eda(self, res: dict) -> bool:
        """Draw a result; False (logged) when it does not have the expected shape."""
        try:
            self._show_eda(res)
        except Exception as exc:  # e.g. a stored result edited by hand: never a crash of the view
            log.warning("statistics could not be shown: %s: %s", type(exc).__name__, exc)
            self.means_label.setText(f"Statistics could not be shown: {exc}")
            return False
        return True

    def _show_eda(self, res: dict) -> None:
        hist = res.get("histogram") or res.get("intensity_histogram") or {}
        edges = hist.get("bins") or hist.get("edges") or hist.get("bin_edges")
        counts = hist.get("counts")
        if edges is not None and counts is not None:
            self.histogram.set_histogram(edges, counts)
        cd = res.get("class_counts") or res.get("class_distribution") or {}
        if isinstance(cd, dict) and cd:
            self.classes.set_categories(list(cd.keys()), list(cd.values()))
        elif isinstance(cd, list) and cd:
            names = res.get("class_names") or [str(i) for i in range(len(cd))]
            self.classes.set_categories(names, cd)
        self.subgroups.setText(subgroup_summary(res.get("attributes")))
        self._show_means(res)

    def _show_means(self, res: dict) -> None:
        means = res.get("class_means") or res.get("mean_images") or (res.get("files") or {}).get("arrays")
        if isinstance(means, str):  # a path to an .npy / .npz written by the job
            path = means

            def load():
                arr = np.load(path)
                if hasattr(arr, "files"):
                    keys = [k for k in arr.files if not k.startswith("std_")]
                    return [k.removeprefix("mean_") for k in keys], np.stack([arr[k] for k in keys])
                return None, arr

            run_in_thread(load, lambda v: self._is_shown(res) and self._set_means(res, *v),
                          lambda msg, tb: self._is_shown(res)
                          and self.means_label.setText(f"Mean images unreadable: {msg}"))
        elif isinstance(means, dict) and means:
            self._set_means(res, list(means.keys()), np.stack([np.asarray(v, np.float32) for v in means.values()]))
        elif isinstance(means, list) and means:
            self._set_means(res, None, np.asarray(means, np.float32))

    def _is_shown(self, res: dict) -> bool:
        """Whether ``res`` is still the current dataset's result (a late file read must not draw
        another dataset's mean images)."""
        return self.current is not None and self.eda_results.get(self.current) is res

    def _set_means(self, res: dict, keys, arr) -> None:
        arr = np.asarray(arr, np.float32)
        if arr.ndim == 2:
            arr = arr[None]
        names = keys or res.get("class_names") or [f"class {i}" for i in range(len(arr))]
        self.means.set_images(arr, labels=[str(n) for n in names], lo=None, hi=None)
        self.means_label.setText(f"Mean image per class ({len(arr)})")

    # -- import ----------------------------------------------------------------------------------
    def open_import_wizard(self, source: str | None = None) -> ImportWizard:
        self.wizard = ImportWizard(self.ctx, self)
        if source:
            self.wizard.source_page.path.setText(str(source))
        self.wizard.setAttribute(Qt.WA_DeleteOnClose, False)
        self.wizard.show()
        return self.wizard

    def _report(self, title: str, message: str, details: str = "") -> None:
        report_error(self.ctx if self.ctx.main_window is not None else self, title, message, details)
