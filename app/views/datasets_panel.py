"""Datasets panel: the workspace's datasets, the import wizard over the ingest job, and the EDA view.

For the selected dataset: a thumbnail grid (read off the GUI thread), the selected image in the
shared ImageView with its provenance (``ImageDataset.provenance(i)``), and the statistics of the
``eda`` job (intensity histogram, class distribution, mean image per class). EDA results are kept
per dataset for the session, and stored in the workspace next to the dataset
(``app.engine.data.eda_cache``, keyed by the dataset's content fingerprint and the spec), so that
neither browsing nor the next start of the app runs the job again for an unchanged dataset; a
changed or re-imported dataset, or a stored result that cannot be read, gets a fresh job.
"Statistics" always runs the job again (and stores its result).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
    QWizard,
    QWizardPage,
)

from app.views.widgets.image_view import ImageView
from app.views.widgets.plots import BarChart
from app.views.widgets.spec_form import SpecForm
from app.views.widgets.thumbnails import ThumbnailGrid
from app.workers.manager import run_in_thread

MAX_THUMBS = 96
log = logging.getLogger(__name__)


def _spec_class(kind: str):
    """The engine's spec class of a job kind, or None (with the reason) while it is not available."""
    from app.engine.specs import spec_class

    try:
        return spec_class(kind), None
    except Exception as exc:  # the engine module may not exist yet in this build
        return None, f"{type(exc).__name__}: {exc}"


def _field_named(spec_cls, *names: str) -> str | None:
    for n in names:
        if n in spec_cls.model_fields:
            return n
    return None


# ------------------------------------------------------------------------------------------------
# Import wizard
# ------------------------------------------------------------------------------------------------


class _SourcePage(QWizardPage):
    def __init__(self, wizard: ImportWizard):
        super().__init__()
        self.wiz = wizard
        self.setTitle("Source")
        self.setSubTitle("A folder of DICOM / PNG / TIFF / NIfTI files, or one HDF5 (fastMRI), NPZ or NIfTI file.")
        lay = QVBoxLayout(self)
        row = QHBoxLayout()
        self.path = QLineEdit()
        self.path.setObjectName("sourcePath")
        self.path.setPlaceholderText("path to a folder or file")
        self.path.textChanged.connect(self._on_path)
        row.addWidget(self.path, 1)
        b1 = QPushButton("Folder…")
        b1.clicked.connect(self._pick_folder)
        b2 = QPushButton("File…")
        b2.clicked.connect(self._pick_file)
        row.addWidget(b1)
        row.addWidget(b2)
        lay.addLayout(row)
        self.detected = QLabel("Detected format: —")
        self.detected.setObjectName("detectedFormat")
        lay.addWidget(self.detected)
        name_row = QHBoxLayout()
        name_row.addWidget(QLabel("Dataset name"))
        self.name = QLineEdit()
        self.name.setObjectName("datasetName")
        self.name.textChanged.connect(self.completeChanged)
        name_row.addWidget(self.name, 1)
        lay.addLayout(name_row)
        lay.addStretch(1)
        self._token = 0

    def _pick_folder(self):
        d = QFileDialog.getExistingDirectory(self, "Source folder")
        if d:
            self.path.setText(d)

    def _pick_file(self):
        f, _ = QFileDialog.getOpenFileName(self, "Source file")
        if f:
            self.path.setText(f)

    def _on_path(self, text: str):
        p = Path(text.strip()).expanduser()
        if not self.name.text() or self.name.property("auto"):
            stem = "".join(c if c.isalnum() or c in "._-" else "-" for c in p.stem)[:60].strip("-.") or "dataset"
            self.name.setText(stem)
            self.name.setProperty("auto", True)
        self._token += 1
        token = self._token
        self.detected.setText("Detected format: …")

        def detect():
            if not p.exists():
                return "— (path does not exist)"
            try:
                from app.engine.data.readers import detect_format, list_files
            except ImportError:
                return "(format detection not available in this build)"
            if p.is_file():
                return str(detect_format(p))
            from collections import Counter

            files = list_files(p)
            counts = Counter(str(detect_format(f)) for f in files[:500])
            more = f" (first 500 of {len(files)} files)" if len(files) > 500 else ""
            return ", ".join(f"{fmt}: {n} file{'s' if n != 1 else ''}" for fmt, n in counts.most_common()) + more \
                if counts else "— (empty folder)"

        run_in_thread(detect, lambda fmt: token == self._token and self._show_format(fmt),
                      lambda msg, tb: token == self._token and self._show_format(f"not readable: {msg}"))
        self.completeChanged.emit()

    def _show_format(self, fmt: str):
        self.wiz.detected_format = fmt
        self.detected.setText(f"Detected format: {fmt}")

    def isComplete(self) -> bool:
        return bool(self.path.text().strip()) and Path(self.path.text().strip()).expanduser().exists() and bool(
            self.name.text().strip())


class _OptionsPage(QWizardPage):
    def __init__(self, wizard: ImportWizard):
        super().__init__()
        self.wiz = wizard
        self.setTitle("Options")
        self.setSubTitle("Labels, image size, normalisation and the train / val / test split.")
        lay = QVBoxLayout(self)
        self.form = None
        if wizard.spec_cls is None:
            lay.addWidget(QLabel(f"The ingest job is not available: {wizard.spec_error}"))
            return
        exclude = tuple(n for n in (wizard.source_field, wizard.name_field) if n)
        self.form = SpecForm(wizard.spec_cls, exclude=exclude)
        self.form.validity_changed.connect(lambda _v: self.completeChanged.emit())
        from PySide6.QtWidgets import QScrollArea

        sc = QScrollArea()
        sc.setWidgetResizable(True)
        sc.setWidget(self.form)
        lay.addWidget(sc)

    def initializePage(self):
        if self.form is not None:
            self.form.set_values(self.wiz.base_values())

    def isComplete(self) -> bool:
        return self.form is not None and self.form.is_valid


class _RunPage(QWizardPage):
    def __init__(self, wizard: ImportWizard):
        super().__init__()
        self.wiz = wizard
        self.setTitle("Import")
        lay = QVBoxLayout(self)
        self.bar = QProgressBar()
        lay.addWidget(self.bar)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.status.setObjectName("ingestStatus")
        lay.addWidget(self.status)
        self.summary = QTableWidget(0, 2)
        self.summary.setObjectName("ingestSummary")
        self.summary.setHorizontalHeaderLabels(["", "count / reason"])
        self.summary.horizontalHeader().setSectionResizeMode(1, QHeaderView.Stretch)
        self.summary.verticalHeader().setVisible(False)
        lay.addWidget(self.summary, 1)
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setMaximumHeight(110)
        lay.addWidget(self.log)
        self.handle = None

    def initializePage(self):
        spec = self.wiz.build_spec()
        if spec is None:
            self.status.setText("The options are not valid.")
            return
        self.handle = self.wiz.jobs.submit(spec)
        self.wiz.handle = self.handle
        h = self.handle
        h.progress.connect(lambda s, t, label: (self.bar.setRange(0, max(t, 1)), self.bar.setValue(s),
                                                self.status.setText(label or f"{s} / {t}")))
        h.log.connect(lambda lvl, text: self.log.appendPlainText(text if lvl != "debug" else text.splitlines()[-1]))
        h.finished.connect(self._on_finished)
        self.status.setText("Importing…")

    def _on_finished(self, _ev):
        h = self.handle
        if h.state == "done":
            self.bar.setRange(0, 1)
            self.bar.setValue(1)
            self.show_summary(h.result or {})
        elif h.state == "failed":
            self.status.setText(f"Import failed: {h.message}")
        else:
            self.status.setText("Import cancelled; nothing was registered.")
        self.completeChanged.emit()

    def show_summary(self, result: dict):
        rows = summary_rows(result)
        self.summary.setRowCount(len(rows))
        for r, (k, v) in enumerate(rows):
            self.summary.setItem(r, 0, QTableWidgetItem(k))
            self.summary.setItem(r, 1, QTableWidgetItem(v))
        self.summary.resizeColumnToContents(0)
        kept = result.get("kept", result.get("n_images", "?"))
        skipped = result.get("skipped", result.get("n_skipped", 0))
        if isinstance(skipped, list):
            skipped = len(skipped)
        name = result.get("dataset") or result.get("name") or self.wiz.dataset_name()
        self.status.setText(f"Dataset {name}: kept {kept} images, skipped {skipped} file(s).")

    def isComplete(self) -> bool:
        return self.handle is not None and self.handle.is_final


def summary_rows(result: dict) -> list[tuple[str, str]]:
    """Rows of the kept / skipped summary of an ingest result: what was skipped and why first."""
    rows = _summary_rows(result)
    skipped = [r for r in rows if r[0].startswith("skipped")]
    return skipped + [r for r in rows if not r[0].startswith("skipped") and r[1]]


def _summary_rows(result: dict) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    for key, v in result.items():
        if key in ("skipped_reasons", "reasons", "skipped_files", "frames_skipped") or key.endswith("path"):
            continue
        if isinstance(v, dict):
            if all(not isinstance(x, (dict, list)) for x in v.values()):
                rows.append((key.replace("_", " "), ", ".join(f"{a}: {b}" for a, b in v.items())))
        elif isinstance(v, list):
            if all(not isinstance(x, (dict, list)) for x in v) and len(v) <= 50:
                rows.append((key.replace("_", " "), ", ".join(map(str, v))))
        else:
            rows.append((key.replace("_", " "), str(v)))
    reasons = result.get("skipped_reasons") or result.get("reasons") or {}
    if isinstance(reasons, dict):
        for reason, n in reasons.items():
            rows.append(("skipped", f"{n} × {reason}" if not isinstance(n, list) else f"{len(n)} × {reason}"))
    skipped = result.get("skipped_files") or (result.get("skipped") if isinstance(result.get("skipped"), list) else [])
    for entry in skipped[:200]:
        if isinstance(entry, dict):
            rows.append(("skipped file", f"{entry.get('path', entry.get('file', '?'))}: {entry.get('reason', '')}"))
        elif isinstance(entry, (list, tuple)) and len(entry) == 2:
            rows.append(("skipped file", f"{entry[0]}: {entry[1]}"))
    for entry in (result.get("frames_skipped") or [])[:200]:
        if isinstance(entry, dict):
            rows.append(("skipped frames", f"{entry.get('file', '?')}: {entry.get('frames', '')} × {entry.get('reason', '')}"))
    return rows


class ImportWizard(QWizard):
    """Source -> options (the ingest spec's form) -> the running job and its kept / skipped summary."""

    def __init__(self, ctx, parent=None):
        super().__init__(parent)
        self.setObjectName("importWizard")
        self.setWindowTitle("Import dataset")
        self.resize(760, 600)
        self.jobs = ctx.jobs
        self.handle = None
        self.detected_format = ""
        self.spec_cls, self.spec_error = _spec_class("ingest")
        self.source_field = self.name_field = None
        if self.spec_cls is not None:
            pos = getattr(self.spec_cls, "cli_positional", ())
            self.source_field = pos[0] if pos else _field_named(self.spec_cls, "source", "path", "src")
            self.name_field = _field_named(self.spec_cls, "name", "dataset", "dataset_name")
        self.source_page = _SourcePage(self)
        self.options_page = _OptionsPage(self)
        self.run_page = _RunPage(self)
        for p in (self.source_page, self.options_page, self.run_page):
            self.addPage(p)
        self.setOption(QWizard.NoBackButtonOnLastPage, True)

    def dataset_name(self) -> str:
        return self.source_page.name.text().strip()

    def base_values(self) -> dict:
        v = {}
        if self.source_field:
            v[self.source_field] = self.source_page.path.text().strip()
        if self.name_field:
            v[self.name_field] = self.dataset_name()
        return v

    def build_spec(self):
        if self.options_page.form is None:
            return None
        values = self.options_page.form.values()
        values.update(self.base_values())
        try:
            return self.spec_cls.model_validate(values)
        except Exception as exc:
            self.run_page.status.setText(str(exc))
            return None

    def reject(self):
        if self.handle is not None and not self.handle.is_final:
            self.handle.cancel()
        super().reject()


# ------------------------------------------------------------------------------------------------
# The panel
# ------------------------------------------------------------------------------------------------


def subgroup_summary(attributes, most: int = 6) -> str:
    """One line per subgroup attribute of an EDA result ({name: {value: count}}), most frequent
    values first ("sex: F 12 · M 10 · unknown 2"); "" when the dataset carries none."""
    if not isinstance(attributes, dict) or not attributes:
        return ""
    lines = []
    for name, counts in sorted(attributes.items()):
        if not isinstance(counts, dict) or not counts:
            continue
        items = sorted(counts.items(), key=lambda kv: (-int(kv[1]), str(kv[0])))
        text = " · ".join(f"{v} {int(c)}" for v, c in items[:most])
        if len(items) > most:
            text += f" · {len(items) - most} more"
        lines.append(f"{name}: {text}")
    return ("Subgroups — " + "\n".join(lines)) if lines else ""


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
            item = QListWidgetItem(f"{rec.name}\n{rec.n_images} images · {rec.height}×{rec.width}"
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
        self.current = name
        rec = self.ctx.workspace.dataset(name)
        meta = rec.meta or {}
        bits = [f"<b>{rec.name}</b>", f"{rec.n_images} images, {rec.height}×{rec.width}",
                f"source: {rec.source}"]
        for k in ("modality", "normalize", "format", "skipped"):
            if k in meta and not isinstance(meta[k], (dict, list)):
                bits.append(f"{k}: {meta[k]}")
        if meta.get("complex"):
            bits.append("complex: real and imaginary parts kept, for reconstruction priors (shown: magnitude)")
        if rec.classes:
            bits.append("classes: " + ", ".join(rec.classes))
        self.info.setText("<br>".join(bits))
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

    def _show_thumbs(self, ds, idx: list[int], imgs: np.ndarray) -> None:
        self.dataset = ds
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
        run_in_thread(lambda: (ds.images(indices=[i])[0, 0], ds.provenance(i)),
                      lambda v: self._show_image(i, *v),
                      lambda msg, tb: self._report("Could not read the image", msg, tb))

    def _show_image(self, i: int, img: np.ndarray, prov: dict) -> None:
        self.view._title = f"{self.current} #{i}"
        self.view.set_image(img, autolevel=True)
        self.provenance.setRowCount(len(prov))
        for r, (k, v) in enumerate(prov.items()):
            self.provenance.setItem(r, 0, QTableWidgetItem(str(k)))
            item = QTableWidgetItem(str(v))
            item.setToolTip(str(v))
            self.provenance.setItem(r, 1, item)
        self.provenance.resizeColumnToContents(0)

    # -- EDA ------------------------------------------------------------------------------------
    def _eda_spec(self, name: str):
        """The eda spec the panel runs for ``name`` (the job's defaults), or None (label says why)."""
        spec_cls, err = _spec_class("eda")
        if spec_cls is None:
            self.means_label.setText(f"Statistics not available: {err}")
            return None
        field = _field_named(spec_cls, "dataset", "name")
        try:
            return spec_cls.model_validate({field: name})
        except Exception as exc:
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
        main = self.ctx.main_window
        if main is not None and hasattr(main, "show_error"):
            main.show_error(title, message, details)
        else:
            self.info.setText(f"{title}: {message}")
