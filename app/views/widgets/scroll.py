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


def scrolled(widget: QWidget, horizontal: bool = True, name: str | None = None) -> QScrollArea:
    """``widget`` inside a scroll area (``horizontal=False``: it only scrolls vertically and is
    never wider than the area)."""
    sc = QScrollArea()
    sc.setObjectName(name or f"{widget.objectName() or 'widget'}Scroll")
    sc.setWidgetResizable(True)
    sc.setFrameShape(QFrame.NoFrame)
    if not horizontal:
        sc.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
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
