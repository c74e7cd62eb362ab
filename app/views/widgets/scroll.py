"""Room for a widget on any screen: a scroll area that holds it, and a label that wraps.

``scrolled(widget)`` puts ``widget`` in a frameless, resizable QScrollArea: the widget fills the
viewport when there is room and scrolls (instead of forcing a larger window or being squeezed
until its children overlap) when there is not. The main window holds every panel this way, so
the window's minimum size is the navigation and the Jobs dock, not the largest panel, and fits a
1366x768 screen; panels use it for their forms.

``wrapping_label(text)`` is a QLabel that word-wraps, for hints and banners whose text must be
read whole on a narrow panel. ``ElidedLabel`` is a one-line label that never asks for width: its
text ends in "…" where it does not fit (``text()`` and the tooltip hold all of it), instead of being
cut off mid-word.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QPainter
from PySide6.QtWidgets import QFrame, QLabel, QScrollArea, QSizePolicy, QWidget


class VerticalScrollArea(QScrollArea):
    """Scrolls only vertically, and is never narrower than its widget's minimum width beside the
    vertical scroll bar: a form in it is never cut off at the right (a splitter or layout cannot
    squeeze it below that)."""

    def __init__(self, parent=None, least_width: int = 0):
        super().__init__(parent)
        self.least_width = least_width  # a floor for its width (not setMinimumWidth: that would win)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)

    def minimumSizeHint(self):
        s = super().minimumSizeHint()
        w = self.widget()
        if w is not None:
            need = w.minimumSizeHint().width() + self.verticalScrollBar().sizeHint().width() + 2 * self.frameWidth()
            s.setWidth(max(s.width(), need, self.least_width))
        return s


def scrolled(widget: QWidget, horizontal: bool = True, name: str | None = None,
             least_width: int = 0) -> QScrollArea:
    """``widget`` inside a scroll area (``horizontal=False``: a ``VerticalScrollArea``, which only
    scrolls vertically and is as wide as the widget needs, and at least ``least_width``)."""
    sc = QScrollArea() if horizontal else VerticalScrollArea(least_width=least_width)
    sc.setObjectName(name or f"{widget.objectName() or 'widget'}Scroll")
    sc.setWidgetResizable(True)
    sc.setFrameShape(QFrame.NoFrame)
    sc.setWidget(widget)
    return sc


def wrapping_label(text: str = "", role: str | None = None, selectable: bool = False) -> QLabel:
    """A label whose text wraps at word boundaries; ``role`` is the style role (hint, error, title)."""
    lab = QLabel(text)
    lab.setWordWrap(True)
    if role:
        lab.setProperty("role", role)
    if selectable:
        lab.setTextInteractionFlags(Qt.TextSelectableByMouse)
    return lab


class ElidedLabel(QLabel):
    """One line, elided at the right to the label's width; ``text()`` is the whole text."""

    def __init__(self, text: str = "", parent=None):
        super().__init__(text, parent)
        self.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Fixed)

    def shown_text(self) -> str:
        """The text as painted: whole, or cut with "…" to the width."""
        return self.fontMetrics().elidedText(self.text(), Qt.ElideRight, max(0, self.contentsRect().width()))

    def paintEvent(self, _ev) -> None:
        shown = self.shown_text()
        self.setToolTip(self.text() if shown != self.text() else "")
        p = QPainter(self)
        self.style().drawItemText(p, self.contentsRect(), int(self.alignment().value), self.palette(),
                                  self.isEnabled(), shown, self.foregroundRole())
        p.end()
