"""Room for a widget on any screen: a scroll area that holds it, and a label that wraps.

``scrolled(widget)`` puts ``widget`` in a frameless, resizable QScrollArea: the widget fills the
viewport when there is room and scrolls (instead of forcing a larger window or being squeezed
until its children overlap) when there is not. The main window holds every panel this way, so
the window's minimum size is the navigation and the Jobs dock, not the largest panel, and fits a
1366x768 screen; panels use it for their forms.

``wrapping_label(text)`` is a QLabel that word-wraps, for hints and banners whose text must be
read whole on a narrow panel.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFrame, QLabel, QScrollArea, QWidget


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
