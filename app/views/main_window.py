"""The main window: navigation list of panels, a status bar with the workspace and compute in use."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QListWidget,
    QMainWindow,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

PANELS = [
    ("datasets", "Datasets", "Import DICOM, PNG/TIFF, NIfTI, fastMRI HDF5 and NPZ; labels, splits and statistics."),
    ("train", "Training", "Train NCSN, DDPM, VP-SDE and flow-matching models with live loss curves and previews."),
    ("generate", "Generation", "Sample synthetic images with Langevin, ancestral, DDIM, PC and ODE samplers."),
    ("reconstruct", "Reconstruction", "Undersampled MRI and sparse-view CT: zero-filled, CS-TV, score-based posterior."),
    ("audit", "Evaluation & Audit", "FID/KID, precision/recall, diversity, utility, and the memorization audit."),
    ("study", "Reader Study", "Blinded real-vs-synthetic reading by radiologists, with statistics."),
]


class PlaceholderPanel(QWidget):
    """Says what a panel will hold until its own module provides it."""

    def __init__(self, key: str, title: str, text: str):
        super().__init__()
        self.setObjectName(key)
        lay = QVBoxLayout(self)
        t = QLabel(title)
        t.setProperty("role", "title")
        lay.addWidget(t)
        d = QLabel(text)
        d.setWordWrap(True)
        d.setProperty("role", "hint")
        lay.addWidget(d)
        lay.addStretch(1)


class MainWindow(QMainWindow):
    def __init__(self, workspace: Path | None = None):
        super().__init__()
        from app.engine.store import Workspace

        self.workspace = Workspace.open(workspace)
        self.setWindowTitle(f"RadSynth Studio — {self.workspace.root}")
        self.resize(1280, 800)
        central = QWidget()
        lay = QHBoxLayout(central)
        lay.setContentsMargins(0, 0, 0, 0)
        self.nav = QListWidget()
        self.nav.setObjectName("navigation")
        self.nav.setFixedWidth(190)
        self.stack = QStackedWidget()
        self.panels: dict[str, QWidget] = {}
        for key, title, text in PANELS:
            panel = PlaceholderPanel(key, title, text)
            self.panels[key] = panel
            self.stack.addWidget(panel)
            self.nav.addItem(title)
        self.nav.currentRowChanged.connect(self.stack.setCurrentIndex)
        self.nav.setCurrentRow(0)
        lay.addWidget(self.nav)
        lay.addWidget(self.stack, 1)
        self.setCentralWidget(central)
        n = len(self.workspace.datasets())
        self.statusBar().addWidget(QLabel(f"Workspace: {self.workspace.root}  ·  {n} dataset(s)"))
        self.statusBar().addPermanentWidget(QLabel("Compute: local CPU"))
        self.nav.setFocus(Qt.OtherFocusReason)
