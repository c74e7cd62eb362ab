"""SpecForm: a form generated from a job's pydantic Spec class, so forms never drift from the engine.

The fields come from ``app.engine.specs.fields.describe``, the description the CLI and the server use too.
Field shape -> widget: ``bool`` -> check box; ``Literal[...]`` / Enum -> combo box; ``int`` ->
spin box over the field's ``ge/gt/le/lt`` bounds; ``float`` -> spin box when bounded to a
moderate range, else a text box that accepts ``2e-4``; ``str`` -> text box (a combo when the
panel supplies ``choices``), with a Browse button when its role is an input or output path;
``X | None`` -> text box where empty means None; lists, tuples and dicts -> JSON text. The field's description is the tooltip; the pydantic validation
error of a field is shown in red under it, on every edit.

    form = SpecForm(TrainSpec, exclude=("resume",), choices={"dataset": ["demo-phantoms"]})
    SpecForm(StudyCreateSpec, only=(...), messages={"real": "Tick at least one real set."})  # plain words
    form.set_values({...}) / form.set_spec(spec)
    form.values() -> dict            # raw values as typed (only the fields shown + hidden defaults)
    form.spec() -> Spec | None       # validated spec, None while any field is invalid
    form.errors -> {field: message}
    signals: changed(), validity_changed(bool)
"""

from __future__ import annotations

import json
import math

from pydantic import ValidationError
from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.engine.specs.fields import Bounds, FieldDesc, describe  # noqa: F401 (Bounds: the forms' bound type)

INT_LIMIT = 2**31 - 1
FLOAT_DECIMALS = 5


def _nice_step(span: float) -> float:
    """About a hundredth of the range, rounded to 1, 2 or 5 times a power of ten."""
    raw = max(span / 100.0, 10.0 ** -FLOAT_DECIMALS)
    p = 10.0 ** math.floor(math.log10(raw))
    return next(m * p for m in (1, 2, 5, 10) if m * p >= raw)


def _pretty(name: str) -> str:
    return name.replace("_", " ")


class _PathEdit(QWidget):
    """A text box with a Browse button, for a field whose role is an input or output path."""

    def __init__(self, line: QLineEdit, role):
        super().__init__()
        self.line, self.role = line, role
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(4)
        lay.addWidget(line, 1)
        self.browse = QToolButton()
        self.browse.setText("Browse…")
        self.browse.setObjectName(f"browse_{line.objectName().removeprefix('field_')}")
        self.browse.setToolTip(f"choose the {role.describe()}")
        self.browse.clicked.connect(self._choose)
        lay.addWidget(self.browse)

    def _choose(self) -> None:
        start = self.line.text().removeprefix(self.role.prefix) or ""
        if self.role.role == "output" and self.role.target == "file":
            path, _ = QFileDialog.getSaveFileName(self, "Save as", start)
        elif self.role.target == "folder" or (self.role.role == "output"):
            path = QFileDialog.getExistingDirectory(self, "Choose a folder", start)
        else:
            path, _ = QFileDialog.getOpenFileName(self, "Choose a file", start)
        if path:
            self.line.setText(self.role.prefix + path)


class _FieldEditor:
    """One field's widget with typed get / set, built from its ``FieldDesc`` (``app.engine.specs.fields``)."""

    def __init__(self, desc: FieldDesc, choices: list[str] | None, on_change):
        self.name = name = desc.name
        self.desc = desc
        self.optional = desc.optional
        self.kind = "text"
        self.bounds = b = desc.bounds
        lo, hi = b.lo, b.hi
        default = desc.default
        container = None
        if desc.shape == "choice" and desc.enum is not None:
            self.kind = "enum"
            self.options = list(desc.enum)
            w = QComboBox()
            w.addItems([str(o.value) for o in self.options])
            w.currentIndexChanged.connect(on_change)
        elif desc.shape == "choice":
            self.kind = "choice"
            self.options = ([None] if self.optional else []) + list(desc.choices)
            w = QComboBox()
            w.addItems(["(default)" if o is None else str(o) for o in self.options])
            w.currentIndexChanged.connect(on_change)
        elif desc.shape == "bool" and not self.optional:
            self.kind = "bool"
            w = QCheckBox()
            w.toggled.connect(on_change)
        elif desc.shape == "bool":  # bool | None: the field's own default, on or off
            self.kind = "choice"
            self.options = [None, True, False]
            w = QComboBox()
            w.addItems(["(default)", "on", "off"])
            w.currentIndexChanged.connect(on_change)
        elif (desc.shape == "int" and not self.optional and (lo is None or lo >= -INT_LIMIT)
              and (hi is None or hi <= INT_LIMIT)):
            # QSpinBox is 32-bit: a field whose range goes beyond it (a 64-bit seed) falls through
            # to a text box, so a large value is never silently clamped
            self.kind = "int"
            w = QSpinBox()
            w.setRange(int(lo) if lo is not None else -INT_LIMIT, int(min(hi, INT_LIMIT)) if hi is not None else INT_LIMIT)
            w.setAccelerated(True)
            w.valueChanged.connect(on_change)
        elif (desc.shape == "float" and not self.optional and lo is not None and hi is not None and hi - lo <= 1e6
              and (default is None or default == 0 or abs(default) >= 1e-2)):
            self.kind = "float"
            w = QDoubleSpinBox()
            w.setDecimals(FLOAT_DECIMALS)
            # a strict bound is kept strict: the spin box stops one display step inside it
            eps = 10.0 ** -FLOAT_DECIMALS
            w.setRange(lo + eps if b.lo_strict else lo, hi - eps if b.hi_strict else hi)
            w.setSingleStep(_nice_step(hi - lo))
            w.valueChanged.connect(on_change)
        elif choices is not None and desc.shape == "str":
            self.kind = "str-choice"
            w = QComboBox()
            w.setEditable(True)
            w.addItems([str(c) for c in choices])
            w.currentTextChanged.connect(on_change)
        else:
            self.kind = "json" if desc.shape in ("list", "json") else "text"
            self.scalar = {"int": int, "float": float}.get(desc.shape, str) if not desc.mixed else None
            w = QLineEdit()
            if self.optional:
                w.setPlaceholderText("(none)")
            w.textChanged.connect(on_change)
        self.widget = w
        tip = desc.description
        if b.text():
            tip += f"  ({b.text()})"
        if desc.role is not None:
            tip += f"  [{desc.role.describe()}]"
        w.setToolTip(tip.strip())
        w.setObjectName(f"field_{name}")
        if self.kind == "text" and desc.role is not None and desc.role.is_path and not desc.many:
            container = _PathEdit(w, desc.role)
        #: what the form lays out: the widget, or the widget with its Browse button
        self.container = container or w
        self.error = QLabel("")
        self.error.setProperty("role", "error")
        self.error.setWordWrap(True)
        self.error.setVisible(False)
        self.error.setObjectName(f"error_{name}")
        self.parse_error: str | None = None

    def set(self, value) -> None:
        w = self.widget
        if self.kind == "choice":
            idx = next((i for i, o in enumerate(self.options) if o == value or (o is not None and str(o) == str(value))), -1)
            if idx >= 0:
                w.setCurrentIndex(idx)
        elif self.kind == "enum":
            idx = next((i for i, o in enumerate(self.options) if o == value or o.value == value), -1)
            if idx >= 0:
                w.setCurrentIndex(idx)
        elif self.kind == "bool":
            w.setChecked(bool(value))
        elif self.kind == "int":
            w.setValue(int(value))
        elif self.kind == "float":
            w.setValue(float(value))
        elif self.kind == "str-choice":
            w.setCurrentText("" if value is None else str(value))
        elif self.kind == "json":
            w.setText("" if value is None else json.dumps(list(value) if isinstance(value, (tuple, set)) else value))
        else:
            w.setText("" if value is None else (repr(value) if isinstance(value, float) and abs(value) < 1e-3 and value else str(value)))

    def get(self):
        """The typed value, or raises ValueError with a message for text that cannot be parsed."""
        w = self.widget
        if self.kind == "choice":
            return self.options[w.currentIndex()] if w.currentIndex() >= 0 else None
        if self.kind == "enum":
            return self.options[w.currentIndex()].value if w.currentIndex() >= 0 else None
        if self.kind == "bool":
            return w.isChecked()
        if self.kind in ("int", "float"):
            return w.value()
        if self.kind == "str-choice":
            text = w.currentText().strip()
            return None if (self.optional and not text) else text
        text = w.text().strip()
        if self.optional and text == "":
            return None
        if self.kind == "json":
            try:
                return json.loads(text) if text else []
            except json.JSONDecodeError:
                raise ValueError("not valid JSON (e.g. [1, 2, 3])") from None
        if self.scalar is int:
            try:
                return int(text)
            except ValueError:
                raise ValueError("enter a whole number") from None
        if self.scalar is float:
            try:
                return float(text)
            except ValueError:
                raise ValueError("enter a number (e.g. 0.0002 or 2e-4)") from None
        return text


class SpecForm(QWidget):
    """A form for one Spec class (see the module docstring)."""

    changed = Signal()
    validity_changed = Signal(bool)

    def __init__(self, spec_cls, exclude: tuple[str, ...] = (), choices: dict[str, list] | None = None,
                 only: tuple[str, ...] | None = None, messages: dict[str, str] | None = None,
                 quiet_until_edited: bool = False, parent=None):
        super().__init__(parent)
        self.spec_cls = spec_cls
        #: a new, empty form does not greet the user with errors: they show once a field is edited by hand
        #: or the spec is asked for (spec(), reveal_errors()); validity is tracked all along
        self._revealed = not quiet_until_edited
        #: plain words shown instead of pydantic's message when a field (a hidden one set by the panel) is invalid
        self.messages = dict(messages or {})
        self.errors: dict[str, str] = {}
        self._valid = True
        self._loading = False
        self._hidden: dict[str, object] = {}
        self.editors: dict[str, _FieldEditor] = {}
        choices = choices or {}
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        self.form = QFormLayout()
        self.form.setFieldGrowthPolicy(QFormLayout.AllNonFixedFieldsGrow)
        self.form.setRowWrapPolicy(QFormLayout.DontWrapRows)
        lay.addLayout(self.form)
        self.spec_error = QLabel("")
        self.spec_error.setProperty("role", "error")
        self.spec_error.setWordWrap(True)
        self.spec_error.setVisible(False)
        lay.addWidget(self.spec_error)
        for desc in describe(spec_cls):
            name = desc.name
            if name in exclude or (only is not None and name not in only):
                if not desc.required:
                    self._hidden[name] = desc.default
                continue
            ed = _FieldEditor(desc, choices.get(name), self._on_edit)
            self.editors[name] = ed
            label = QLabel(_pretty(name))
            label.setToolTip(desc.description)
            label.setObjectName(f"label_{name}")
            box = QWidget()
            bl = QVBoxLayout(box)
            bl.setContentsMargins(0, 0, 0, 0)
            bl.setSpacing(1)
            bl.addWidget(ed.container)
            bl.addWidget(ed.error)
            self.form.addRow(label, box)
            if not desc.required:
                self._loading = True
                ed.set(desc.default)
                self._loading = False
        self.validate()

    # -- values -------------------------------------------------------------------------------
    def set_choices(self, name: str, options: list) -> None:
        """Replace the options of a ``str-choice`` field (e.g. the datasets of the workspace)."""
        ed = self.editors.get(name)
        if ed is None or ed.kind != "str-choice":
            return
        current = ed.widget.currentText()
        self._loading = True
        ed.widget.clear()
        ed.widget.addItems([str(o) for o in options])
        ed.widget.setCurrentText(current if current or not options else str(options[0]))
        self._loading = False
        self.validate()

    def set_values(self, values: dict) -> None:
        self._loading = True
        try:
            for k, v in values.items():
                if k in self.editors:
                    self.editors[k].set(v)
                elif k != "kind":
                    self._hidden[k] = v
        finally:
            self._loading = False
        self.validate()
        self.changed.emit()

    def set_spec(self, spec) -> None:
        self.set_values(spec.model_dump(mode="json"))

    def values(self) -> dict:
        """The form's raw values (parse errors are left out; see ``errors``)."""
        out = dict(self._hidden)
        for name, ed in self.editors.items():
            try:
                out[name] = ed.get()
                ed.parse_error = None
            except ValueError as exc:
                ed.parse_error = str(exc)
        return out

    def spec(self):
        """The validated spec, or None (errors are shown next to their fields)."""
        return self.reveal_errors()

    def reveal_errors(self):
        """Show every error from now on (a quiet form's first attempt to use it); the validated spec or None."""
        self._revealed = True
        return self.validate()

    @property
    def is_valid(self) -> bool:
        return self._valid

    # -- validation ------------------------------------------------------------------------------
    def _on_edit(self, *_):
        if self._loading:
            return
        self._revealed = True
        self.validate()
        self.changed.emit()

    def validate(self):
        values = self.values()
        errors: dict[str, str] = {n: ed.parse_error for n, ed in self.editors.items() if ed.parse_error}
        spec = None
        general = []
        try:
            spec = self.spec_cls.model_validate(values)
        except ValidationError as exc:
            for err in exc.errors():
                loc = err["loc"]
                name = str(loc[0]) if loc else ""
                msg = err["msg"].removeprefix("Value error, ")
                if name in self.messages:
                    msg = self.messages[name]
                if name in self.editors:
                    errors.setdefault(name, msg)
                elif name in self.messages:
                    if msg not in general:
                        general.append(msg)
                else:
                    general.append(f"{name or 'spec'}: {msg}" if name else msg)
        if errors:
            spec = None
        self.errors = errors
        shown = errors if self._revealed else {}
        for name, ed in self.editors.items():
            msg = shown.get(name)
            ed.error.setText(msg or "")
            ed.error.setVisible(bool(msg))
            ed.widget.setProperty("invalid", bool(msg))
            ed.widget.style().unpolish(ed.widget)
            ed.widget.style().polish(ed.widget)
        general = general if self._revealed else []
        self.spec_error.setText("\n".join(general))
        self.spec_error.setVisible(bool(general))
        valid = spec is not None
        if valid != self._valid:
            self._valid = valid
            self.validity_changed.emit(valid)
        return spec
