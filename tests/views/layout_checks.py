"""Geometry checks of a shown widget tree: what a user would see as clipped or overlapping.

``layout_problems(root)`` walks the visible widgets under ``root`` and returns one line per problem:

- outside: a widget that reaches past its parent's rectangle (it is cut off), unless the parent is
  the viewport of a scroll area (the contents scroll on purpose: forms, tables, thumbnail grids);
- overlap: two visible widgets placed by the same layout whose rectangles intersect;
- squeezed: a button, input or label smaller than its minimum size hint (its text or frame is cut);
- cut: a scroll area that does not scroll horizontally holding contents wider than its viewport
  (a form cut off at the right);
- plot: a pyqtgraph plot whose data area is under ``PLOT_MIN`` pixels high or wide (its axes'
  ticks and labels run into each other);
- header: a table's column title wider than its column (while the table is wide enough to give
  every title its width);
- text: a label whose text is wider than the label (or, word-wrapped, taller), unless the text is
  elided on purpose (it holds "…") or the label ignores its size (QSizePolicy.Ignored).
"""

from __future__ import annotations

import pyqtgraph as pg
from PySide6 import QtGui
from PySide6.QtCore import QRect, Qt
from PySide6.QtGui import QFontMetrics
from PySide6.QtWidgets import (
    QAbstractButton,
    QAbstractScrollArea,
    QAbstractSpinBox,
    QComboBox,
    QHeaderView,
    QLabel,
    QLineEdit,
    QScrollArea,
    QSizePolicy,
    QWidget,
)

TOL = 1  # pixels of rounding
PLOT_MIN = 80  # the least data area of a plot, in pixels, for readable ticks


def _name(w: QWidget) -> str:
    text = ""
    if isinstance(w, (QLabel, QAbstractButton)) and w.text():
        text = f" {w.text()[:40]!r}"
    chain, p = [], w
    while p is not None and len(chain) < 4:
        chain.append(p.objectName() or type(p).__name__)
        p = p.parentWidget()
    return f"{type(w).__name__}{text} [{' < '.join(chain)}]"


def _in_scrolled_viewport(w: QWidget) -> bool:
    """True when ``w``'s parent is the viewport of a scroll area (its place there scrolls)."""
    p = w.parentWidget()
    gp = p.parentWidget() if p is not None else None
    return isinstance(gp, QAbstractScrollArea) and gp.viewport() is p


def _layout_widgets(layout) -> list[QWidget]:
    out = []
    for i in range(layout.count()):
        item = layout.itemAt(i)
        if item.widget() is not None:
            out.append(item.widget())
        elif item.layout() is not None:
            out.extend(_layout_widgets(item.layout()))
    return out


def _ignores_size(w: QWidget) -> bool:
    sp = w.sizePolicy()
    return sp.horizontalPolicy() == QSizePolicy.Ignored


def _label_text_problem(lab: QLabel) -> str | None:
    text = lab.text()
    if not text or lab.pixmap() is not None and not lab.pixmap().isNull():
        return None
    if "…" in text or _ignores_size(lab):
        return None
    rect = lab.contentsRect()
    margin = lab.margin() * 2 + lab.indent() if lab.indent() > 0 else lab.margin() * 2
    fmt = lab.textFormat()
    if fmt == Qt.RichText or (fmt == Qt.AutoText and QtGui.Qt.mightBeRichText(text)):  # rich text: the label's own hint
        if lab.wordWrap():
            need_h = lab.heightForWidth(lab.width())
            return f"wrapped rich text needs {need_h} px, has {lab.height()}" if need_h > lab.height() + TOL else None
        hint = lab.minimumSizeHint()
        if hint.width() > lab.width() + TOL:
            return f"rich text needs {hint.width()} px, has {lab.width()}"
        return None
    fm = QFontMetrics(lab.font())
    if lab.wordWrap():
        flags = int(lab.alignment().value) | int(Qt.TextWordWrap.value)
        need = fm.boundingRect(QRect(0, 0, max(1, rect.width() - margin), 100000), flags, text)
        if need.height() > rect.height() + TOL:
            return f"wrapped text needs {need.height()} px height, has {rect.height()}"
        return None
    lines = text.split("\n")
    width = max(fm.horizontalAdvance(line) for line in lines)
    if width > rect.width() - margin + TOL:
        return f"text needs {width} px, has {rect.width() - margin}"
    if fm.height() * len(lines) > rect.height() + 2 * TOL:
        return f"text needs {fm.height() * len(lines)} px height, has {rect.height()}"
    return None


def layout_problems(root: QWidget) -> list[str]:
    problems: list[str] = []
    widgets = [root] + [w for w in root.findChildren(QWidget) if w.isVisible() and not w.isWindow()]
    for w in widgets:
        if not w.isVisible():
            continue
        p = w.parentWidget()
        if w is not root and p is not None and not _in_scrolled_viewport(w):
            g = w.geometry()
            pr = p.rect()
            if (g.left() < pr.left() - TOL or g.top() < pr.top() - TOL or g.right() > pr.right() + TOL
                    or g.bottom() > pr.bottom() + TOL) and g.width() > 0 and g.height() > 0:
                problems.append(f"outside: {_name(w)} at {g.x()},{g.y()} {g.width()}x{g.height()} "
                                f"in a parent of {pr.width()}x{pr.height()}")
        inner = isinstance(p, (QAbstractSpinBox, QComboBox))  # a spin box's / combo's own frameless editor
        if (isinstance(w, (QAbstractButton, QLineEdit, QAbstractSpinBox, QComboBox, QLabel)) and not inner
                and not _ignores_size(w)):
            hint = w.minimumSizeHint()
            mn = w.minimumSize()
            need_w = mn.width() or hint.width()
            need_h = mn.height() or hint.height()
            if isinstance(w, QLabel):
                need_w = 0 if (w.wordWrap() or "…" in w.text()) else need_w
                if w.wordWrap():
                    need_h = 0  # checked against its wrapped height below
            if w.width() + TOL < need_w or w.height() + TOL < need_h:
                problems.append(f"squeezed: {_name(w)} is {w.width()}x{w.height()}, needs {need_w}x{need_h}")
        if isinstance(w, QLabel):
            why = _label_text_problem(w)
            if why:
                problems.append(f"text: {_name(w)}: {why}")
        if (isinstance(w, QScrollArea) and w.widget() is not None and w.widget().isVisible()
                and w.horizontalScrollBarPolicy() == Qt.ScrollBarAlwaysOff
                and w.widget().width() > w.viewport().width() + TOL):
            problems.append(f"cut: {_name(w)} shows {w.viewport().width()} px of contents {w.widget().width()} px wide")
        if isinstance(w, QHeaderView) and w.orientation() == Qt.Horizontal and w.count():
            model = w.model()
            titles = [str(model.headerData(i, Qt.Horizontal) or "") for i in range(w.count())]
            need = [w.sectionSizeHint(i) for i in range(w.count())]  # the title's width with the style's margins
            if sum(need) <= w.viewport().width():
                for i, t in enumerate(titles):
                    if not w.isSectionHidden(i) and need[i] > w.sectionSize(i) + TOL:
                        problems.append(f"header: {t!r} needs {need[i]} px, its column has {w.sectionSize(i)} "
                                        f"[{_name(w.parentWidget())}]")
        if isinstance(w, pg.PlotWidget):
            vb = w.getPlotItem().vb.size()
            if vb.height() < PLOT_MIN or vb.width() < PLOT_MIN:
                problems.append(f"plot: {_name(w)} has a data area of {vb.width():.0f}x{vb.height():.0f} px")
        lay = w.layout()
        if lay is not None:
            kids = [k for k in _layout_widgets(lay) if k.isVisible() and k.width() > 0 and k.height() > 0]
            for i, a in enumerate(kids):
                ga = a.geometry().adjusted(TOL, TOL, -TOL, -TOL)
                for b in kids[i + 1:]:
                    if ga.intersects(b.geometry().adjusted(TOL, TOL, -TOL, -TOL)):
                        problems.append(f"overlap: {_name(a)} and {_name(b)}")
    return problems
