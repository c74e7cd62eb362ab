"""Dialogs of the main window: errors (what went wrong, with which file, what to do; the traceback behind
a Details button), about, keyboard shortcuts, a dataset's class names.

``report_error(where, title, message, details)`` is the one way a view reports a failure: the main
window's ``show_error`` (recorded, status bar, one non-modal ErrorDialog) when ``where`` belongs to
one, else an ErrorDialog of its own; either way the details (a traceback) go to the log.
"""

from __future__ import annotations

import logging

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
)

log = logging.getLogger(__name__)

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
    """An error in plain words: what failed (the title) and the message (which file, why, what to do).
    The details (traceback, the job's log) are behind the Details button, shut at first. Non-modal."""

    def __init__(self, title: str, message: str, details: str = "", parent=None):
        super().__init__(parent)
        self.setObjectName("errorDialog")
        self.setWindowTitle(title)
        self.setModal(False)
        lay = QVBoxLayout(self)
        head = QLabel(title)
        head.setProperty("role", "title")
        head.setWordWrap(True)
        lay.addWidget(head)
        self.message = QLabel(message)
        self.message.setObjectName("errorMessage")
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(Qt.TextSelectableByMouse)
        lay.addWidget(self.message)
        self.details = QPlainTextEdit(details or "(no details)")
        self.details.setObjectName("errorDetails")
        self.details.setReadOnly(True)
        self.details.setLineWrapMode(QPlainTextEdit.NoWrap)
        self.details.setVisible(False)
        lay.addWidget(self.details, 1)
        buttons = QDialogButtonBox(QDialogButtonBox.Close)
        self.details_button = QPushButton("Details")
        self.details_button.setObjectName("errorDetailsButton")
        self.details_button.setCheckable(True)
        self.details_button.setEnabled(bool(details))
        self.details_button.setToolTip("The technical details (traceback), also written to the log")
        self.details_button.toggled.connect(self._show_details)
        buttons.addButton(self.details_button, QDialogButtonBox.ActionRole)
        buttons.rejected.connect(self.close)
        buttons.accepted.connect(self.close)
        lay.addWidget(buttons)
        self._fit_collapsed()

    def _fit_collapsed(self) -> None:
        """As high as the title, the message and the buttons need (no gap above the buttons)."""
        self.resize(620, self.layout().heightForWidth(620) if self.layout().hasHeightForWidth()
                    else self.sizeHint().height())

    def _show_details(self, shown: bool) -> None:
        self.details.setVisible(shown)
        self.details_button.setText("Hide details" if shown else "Details")
        if shown:
            self.resize(max(self.width(), 620), max(self.height(), 440))
        else:
            self._fit_collapsed()


def report_error(where, title: str, message: str, details: str = ""):
    """Report a failure from a view: ``where`` is a widget or an AppContext. Shown by the main window when
    there is one (it records it and puts it in the status bar), else in an ErrorDialog of its own; the
    details are logged either way. Returns what the main window recorded, or the dialog."""
    main = getattr(where, "main_window", None)
    if main is None and hasattr(where, "window"):
        main = where.window()
    if main is not None and hasattr(main, "show_error"):
        return main.show_error(title, message, details)
    log.error("%s: %s%s", title, message, f"\n{details}" if details else "")
    parent = where if hasattr(where, "window") else None
    dlg = ErrorDialog(title, message, details, parent)
    dlg.setAttribute(Qt.WA_DeleteOnClose)
    _open_dialogs.append(dlg)
    dlg.destroyed.connect(lambda _=None, d=dlg: d in _open_dialogs and _open_dialogs.remove(d))
    dlg.show()
    return dlg


_open_dialogs: list[ErrorDialog] = []  # held while shown (a parentless dialog would be collected)


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


class ClassNamesDialog(QDialog):
    """One line edit per class index: the names of a dataset's classes."""

    def __init__(self, name: str, classes: list[str], counts: dict, parent=None):
        super().__init__(parent)
        self.setObjectName("classNamesDialog")
        self.setWindowTitle(f"Class names of {name}")
        lay = QVBoxLayout(self)
        hint = QLabel("Name the classes in the order of their labels; the labels themselves do not change.")
        hint.setWordWrap(True)
        hint.setProperty("role", "hint")
        lay.addWidget(hint)
        form = QFormLayout()
        self.edits: list[QLineEdit] = []
        for i, c in enumerate(classes):
            e = QLineEdit(c)
            e.setObjectName(f"className{i}")
            n = counts.get(c)
            form.addRow(f"label {i}" + (f" ({n} images)" if n is not None else ""), e)
            self.edits.append(e)
        lay.addLayout(form)
        buttons = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        lay.addWidget(buttons)

    def names(self) -> list[str]:
        return [e.text().strip() for e in self.edits]
