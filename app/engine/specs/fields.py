"""The one description of a spec's fields: the CLI builds its flags from it, ``SpecForm`` its widgets,
the server its path checks. A field declared once in a spec class appears in all three.

    for f in describe(TrainSpec): f.name, f.shape, f.choices, f.bounds, f.role, f.flags ...
"""

from __future__ import annotations

import dataclasses
import enum
import math
import types
import typing
from functools import cache
from typing import Any

from app.engine.specs.paths import PathRole, field_role


class Bounds(typing.NamedTuple):
    """A number field's ``ge/gt/le/lt`` bounds, as pydantic checks them."""

    lo: float | None
    hi: float | None
    lo_strict: bool = False
    hi_strict: bool = False

    def text(self) -> str:
        """``0 < x ≤ 10`` style."""
        parts = []
        if self.lo is not None:
            parts.append(f"{self.lo:g} {'<' if self.lo_strict else '≤'}")
        parts.append("x")
        if self.hi is not None:
            parts.append(f"{'<' if self.hi_strict else '≤'} {self.hi:g}")
        return " ".join(parts) if len(parts) > 1 else ""


@dataclasses.dataclass(frozen=True)
class FieldDesc:
    """One spec field, as every consumer needs it.

    ``shape``: "bool", "int", "float", "str", "choice" (``choices`` holds the allowed values; ``enum`` the
    Enum class when there is one), "list" (``item`` is the element shape, ``choices`` its allowed values) or
    "json" (dicts, nested models). ``optional``: None is allowed (an empty widget means None). ``role``:
    the path role (``app.engine.specs.paths``) and ``many``: whether the field holds a list of such values.
    """

    name: str
    shape: str
    description: str
    required: bool
    default: Any
    optional: bool = False
    choices: tuple | None = None
    enum: type | None = None
    item: str = ""
    scalar: type | None = None
    bounds: Bounds = Bounds(None, None)
    role: PathRole | None = None
    many: bool = False
    positional: bool = False
    flags: tuple[str, ...] = ()
    #: for a ``X | Literal[...] | None`` field such as ``warm_start``: number and named values at once
    mixed: bool = False

    @property
    def label(self) -> str:
        return self.name.replace("_", " ")

    def help(self) -> str:
        """The description, the path role in words, and the default."""
        text = self.description or ""
        if self.role is not None and self.role.describe() not in text:
            text = f"{text} [{self.role.describe()}]" if text else f"[{self.role.describe()}]"
        if not self.required:
            text += f" (default: {_plain(self.default)})"
        return text


def _plain(value) -> str:
    """A default as a user types it: enum values, lists space-separated."""
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, (list, tuple)):
        return " ".join(_plain(v) for v in value) if value else "none"
    return str(value)


def _unwrap(ann) -> tuple[Any, bool]:
    """(annotation without ``None``, whether None was allowed); Annotated wrappers removed."""
    optional = False
    origin = typing.get_origin(ann)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(ann)
        rest = [a for a in args if a is not type(None)]
        optional = len(rest) < len(args)
        ann = rest[0] if len(rest) == 1 else typing.Union[tuple(rest)]  # noqa: UP007
    while typing.get_origin(ann) is typing.Annotated:
        ann = typing.get_args(ann)[0]
    return ann, optional


def _bounds_of(metadata, integer: bool) -> Bounds:
    """The ``ge/gt/le/lt`` bounds in field metadata. For an integer field the strict ones become
    inclusive (``gt=0`` -> lowest 1); for a float field they stay strict."""
    lo = hi = None
    lo_strict = hi_strict = False
    for m in metadata:
        for attr, is_lo, strict in (("ge", True, False), ("gt", True, True), ("le", False, False), ("lt", False, True)):
            v = getattr(m, attr, None)
            if v is None:
                continue
            if integer:
                v = int(math.floor(v)) + 1 if (strict and is_lo) else (
                    int(math.ceil(v)) - 1 if strict else (int(math.ceil(v)) if is_lo else int(math.floor(v))))
                strict = False
            else:
                v = float(v)
            if is_lo:
                lo, lo_strict = v, strict
            else:
                hi, hi_strict = v, strict
    return Bounds(lo, hi, lo_strict, hi_strict)


def _scalar_shape(ann) -> tuple[str, tuple | None, type | None]:
    """(shape, choices, enum class) of a scalar annotation."""
    if ann is bool:
        return "bool", None, None
    if typing.get_origin(ann) is typing.Literal:
        return "choice", tuple(typing.get_args(ann)), None
    if isinstance(ann, type) and issubclass(ann, enum.Enum):
        return "choice", tuple(m.value for m in ann), ann
    if ann is int:
        return "int", None, None
    if ann is float:
        return "float", None, None
    return "str", None, None


def _mixed(ann) -> bool:
    """A union of a number and named values (``float | Literal["auto"]``)."""
    if typing.get_origin(ann) not in (typing.Union, types.UnionType):
        return False
    return True


@cache
def describe(spec_cls) -> tuple[FieldDesc, ...]:
    """Every field of a spec class but ``kind``, in declaration order."""
    aliases: dict[str, list[str]] = {}
    for alias, target in getattr(spec_cls, "cli_aliases", {}).items():
        aliases.setdefault(target, []).append(alias)
    positional = tuple(getattr(spec_cls, "cli_positional", ()))
    out = []
    for name, field in spec_cls.model_fields.items():
        if name == "kind":
            continue
        role, many = field_role(field)
        ann, optional = _unwrap(field.annotation)
        origin = typing.get_origin(ann)
        required = field.is_required()
        default = None if required else field.get_default(call_default_factory=True)
        kw: dict[str, Any] = {}
        if origin in (list, tuple, set) or ann in (list, tuple, set):
            args = typing.get_args(ann)
            item_ann, _ = _unwrap(args[0]) if args else (str, False)
            if typing.get_origin(item_ann) in (typing.Union, types.UnionType):
                item, choices, enum_cls = "str", None, None  # list[int | str]: each value as typed
            else:
                item, choices, enum_cls = _scalar_shape(item_ann)
            shape = "list"
            kw.update(item=item, choices=choices, enum=enum_cls)
        elif origin is dict or ann is dict or (isinstance(ann, type) and hasattr(ann, "model_fields")):
            shape = "json"
        elif _mixed(ann):
            shape, kw["mixed"] = "str", True
        else:
            shape, choices, enum_cls = _scalar_shape(ann)
            kw.update(choices=choices, enum=enum_cls)
            if shape in ("int", "float"):
                kw["scalar"] = int if shape == "int" else float
        if shape in ("int", "float") or kw.get("item") in ("int", "float"):
            kw["bounds"] = _bounds_of(field.metadata, integer=(shape == "int" or kw.get("item") == "int"))
        flags = () if name in positional else (f"--{name.replace('_', '-')}", *(f"--{a}" for a in aliases.get(name, [])))
        out.append(FieldDesc(name=name, shape=shape, description=field.description or "", required=required,
                             default=default, optional=optional, role=role, many=many, positional=name in positional,
                             flags=flags, **kw))
    return tuple(out)


def role_fields(spec_cls) -> tuple[FieldDesc, ...]:
    """The fields that carry a path role (what the server confines)."""
    return tuple(f for f in describe(spec_cls) if f.role is not None)
