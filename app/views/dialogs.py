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

# Keys handled inside widgets (not menu actions); the menu shortcuts are read from the window's
# actions when the dialog opens, so the list cannot drift from what the menus really do.
VIEW_SHORTCUTS = [
    ("Images", "Right or middle drag", "Window (left / right) and level (up / down); the values are shown"),
    ("Images", "Wheel / left drag", "Zoom / pan"),
    ("Images", "R or double click", "Reset zoom and window"),
    ("Reconstruction", "F", "Flicker between the two chosen methods"),
    ("Reader window", "1 … 5", "Rate the case"),
    ("Reader window", "R / S", "Real / synthetic (single-image design)"),
    ("Reader window", "Left / Right", "Choose the left / right image (two-alternative design)"),
    ("Reader window", "N / P", "Next / previous case"),
    ("Reader window", "Space", "Pause"),
    ("Reader window", "W", "Reset zoom and window"),
    ("Reader window", "C", "Comment (plausibility design)"),
    ("Reader window", "F11 / Esc", "Full screen / close"),
]


def _plain(text: str) -> str:
    """An action's text without its mnemonic marks ("&Open…" -> "Open"; "&&" is a literal &)."""
    import re

    return re.sub(r"&(?=\w)", "", text).replace("&&", "&").rstrip("…").strip()


def menu_shortcuts(window) -> list[tuple[str, str, str]]:
    """(menu, keys, action) for every action of ``window``'s menus that has a shortcut."""
    from PySide6.QtGui import QKeySequence

    out = []
    if window is None or not hasattr(window, "menuBar"):
        return out

    def walk(menu, path):
        for a in menu.actions():
            if a.menu() is not None:
                walk(a.menu(), path)
            elif not a.isSeparator() and not a.shortcut().isEmpty():
                keys = a.shortcut().toString(QKeySequence.NativeText)
                out.append((path, keys, _plain(a.text())))

    for top in window.menuBar().actions():
        if top.menu() is not None:
            walk(top.menu(), top.text().replace("&", ""))
    return out


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
    """Every keyboard shortcut: the window's menu actions (read live) and the keys of the views."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("shortcutsDialog")
        self.setWindowTitle("Keyboard shortcuts")
        self.resize(700, 640)
        self.rows = menu_shortcuts(parent) + VIEW_SHORTCUTS
        lay = QVBoxLayout(self)
        t = QTableWidget(len(self.rows), 3)
        t.setObjectName("shortcutsTable")
        t.setHorizontalHeaderLabels(["Where", "Keys", "Action"])
        for r, (where, keys, action) in enumerate(self.rows):
            for c, text in enumerate((where, keys, action)):
                t.setItem(r, c, QTableWidgetItem(text))
        t.resizeColumnsToContents()
        t.horizontalHeader().setStretchLastSection(True)
        t.verticalHeader().setVisible(False)
        t.verticalHeader().setDefaultSectionSize(t.fontMetrics().height() + 8)
        t.setEditTriggers(QTableWidget.NoEditTriggers)
        t.setAlternatingRowColors(True)
        self.table = t
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
