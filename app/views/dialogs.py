"""Dialogs of the main window: job errors (message + details), about, keyboard shortcuts."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QLabel,
    QPlainTextEdit,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
)

SHORTCUTS = [
    ("Ctrl+1 … Ctrl+6", "Datasets, Training, Generation, Reconstruction, Audit, Reader Study"),
    ("Ctrl+O", "Open a workspace"),
    ("Ctrl+Shift+N", "New workspace"),
    ("Ctrl+I", "Import a dataset"),
    ("Ctrl+J", "Show / hide the Jobs dock"),
    ("F1", "This list"),
    ("Ctrl+Q", "Quit (asks before cancelling running jobs)"),
    ("Right or middle drag on an image", "Window (left / right) and level (up / down)"),
    ("Wheel / left drag on an image", "Zoom / pan"),
    ("R or double click on an image", "Reset zoom and window"),
]


class ErrorDialog(QDialog):
    """A failed job: the message in plain words, the details (traceback, log) below. Non-modal."""

    def __init__(self, title: str, message: str, details: str = "", parent=None):
        super().__init__(parent)
        self.setObjectName("errorDialog")
        self.setWindowTitle(title)
        self.setModal(False)
        self.resize(680, 420)
        lay = QVBoxLayout(self)
        head = QLabel(title)
        head.setProperty("role", "title")
        lay.addWidget(head)
        self.message = QLabel(message)
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(Qt.TextSelectableByMouse)
        lay.addWidget(self.message)
        self.details = QPlainTextEdit(details or "(no details)")
        self.details.setReadOnly(True)
        self.details.setLineWrapMode(QPlainTextEdit.NoWrap)
        lay.addWidget(QLabel("Details"))
        lay.addWidget(self.details, 1)
        buttons = QDialogButtonBox(QDialogButtonBox.Close)
        buttons.rejected.connect(self.close)
        buttons.accepted.connect(self.close)
        lay.addWidget(buttons)


class ShortcutsDialog(QDialog):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Keyboard shortcuts")
        self.resize(620, 380)
        lay = QVBoxLayout(self)
        t = QTableWidget(len(SHORTCUTS), 2)
        t.setHorizontalHeaderLabels(["Keys", "Action"])
        for r, (k, a) in enumerate(SHORTCUTS):
            t.setItem(r, 0, QTableWidgetItem(k))
            t.setItem(r, 1, QTableWidgetItem(a))
        t.resizeColumnsToContents()
        t.horizontalHeader().setStretchLastSection(True)
        t.verticalHeader().setVisible(False)
        t.setEditTriggers(QTableWidget.NoEditTriggers)
        lay.addWidget(t)
        b = QDialogButtonBox(QDialogButtonBox.Close)
        b.rejected.connect(self.close)
        lay.addWidget(b)


def about_text(version: str) -> str:
    return (
        f"<h3>RadSynth Studio {version}</h3>"
        "<p>Train score-based and diffusion models on your own radiology images, generate synthetic "
        "images marked as synthetic, reconstruct undersampled MRI and sparse-view CT with learned "
        "priors, audit synthetic sets for memorization, and run blinded reader studies.</p>"
        "<p>Research software: not for clinical use.</p>"
    )
