"""The import wizard: choose a source, set the ingest options (a SpecForm of IngestSpec), run the ingest job
and show its summary. Opened from the Datasets panel and from File > Import dataset."""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWizard,
    QWizardPage,
)

from app.views.widgets.spec_form import SpecForm
from app.workers.manager import run_in_thread

log = logging.getLogger(__name__)


def spec_class_or_reason(kind: str):
    """The engine's spec class of a job kind, or None (with the reason) while it is not available."""
    from app.engine.specs import spec_class

    try:
        return spec_class(kind), None
    except Exception as exc:  # the engine module may not exist yet in this build
        return None, f"{type(exc).__name__}: {exc}"


def field_named(spec_cls, *names: str) -> str | None:
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
        else:  # the bar stays where the job stopped, never at 100 %, and says so
            if self.bar.maximum() == 0:
                self.bar.setRange(0, 1)
            if self.bar.value() >= self.bar.maximum():
                self.bar.setValue(max(self.bar.maximum() - 1, 0))
            self.bar.setFormat(("failed" if h.state == "failed" else "cancelled") + " at %p%")
            self.status.setText(f"Import failed: {h.message}" if h.state == "failed"
                                else "Import cancelled; nothing was registered.")
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
        self.spec_cls, self.spec_error = spec_class_or_reason("ingest")
        self.source_field = self.name_field = None
        if self.spec_cls is not None:
            pos = getattr(self.spec_cls, "cli_positional", ())
            self.source_field = pos[0] if pos else field_named(self.spec_cls, "source", "path", "src")
            self.name_field = field_named(self.spec_cls, "name", "dataset", "dataset_name")
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
