"""Small helpers for hand-built forms that follow a spec: spin boxes bounded by a field, error labels."""

from __future__ import annotations

from PySide6.QtWidgets import QDoubleSpinBox, QLabel, QSpinBox

from app.engine.specs.fields import describe

INT_LIMIT = 2**31 - 1


def field_desc(spec_cls, name: str):
    """The ``FieldDesc`` of one field of a spec class (``app.engine.specs.fields``)."""
    return next(d for d in describe(spec_cls) if d.name == name)


def bounded(spin: QSpinBox | QDoubleSpinBox, spec_cls, name: str, hi: float | None = None,
            default: float | None = None, object_name: str = "") -> QSpinBox | QDoubleSpinBox:
    """Give ``spin`` the range, default and description of a spec field. A strict bound (``gt=0``) is kept
    in the range, so the value can be typed and the spec says why it is not allowed; ``hi`` caps a field
    without an upper bound."""
    d = field_desc(spec_cls, name)
    integer = isinstance(spin, QSpinBox)
    lo = d.bounds.lo if d.bounds.lo is not None else (-INT_LIMIT if integer else -1e9)
    top = d.bounds.hi if d.bounds.hi is not None else (hi if hi is not None else INT_LIMIT)
    if integer:
        spin.setRange(int(max(lo, -INT_LIMIT)), int(min(top, INT_LIMIT)))
    else:
        spin.setRange(float(lo), float(top))
    value = default if default is not None else d.default
    if value is not None:
        spin.setValue(value)
    if object_name:
        spin.setObjectName(object_name)
    spin.setToolTip(d.description + (f"  ({d.bounds.text()})" if d.bounds.text() else ""))
    return spin


def error_label(object_name: str = "") -> QLabel:
    """A red, word-wrapped line for validation errors, hidden while empty (``FieldErrors`` fills it)."""
    lab = QLabel("")
    lab.setProperty("role", "error")
    lab.setWordWrap(True)
    lab.setVisible(False)
    if object_name:
        lab.setObjectName(object_name)
    return lab
