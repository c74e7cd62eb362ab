"""The base class of every job spec and the registry of spec classes by kind (torch-free).

A spec module in this package declares one pydantic class per job kind; defining the class registers it
(``Spec.__pydantic_init_subclass__``), so ``spec_class(kind)`` needs to import only the small spec module
named in ``SPEC_MODULES``, never the engine module that runs the job.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

from app.engine.errors import UserError

#: kind -> the spec-layer module that defines its spec class (imports pydantic, numpy at most)
SPEC_MODULES: dict[str, str] = {
    "ingest": "app.engine.specs.data",
    "eda": "app.engine.specs.data",
    "demo": "app.engine.specs.data",
    "train": "app.engine.specs.train",
    "sample": "app.engine.specs.generate",
    "export-onnx": "app.engine.specs.generate",
    "recon": "app.engine.specs.recon",
    "recon-sweep": "app.engine.specs.recon",
    "ct-recon": "app.engine.specs.recon",
    "evaluate": "app.engine.specs.evaluate",
    "audit": "app.engine.specs.evaluate",
    "study-create": "app.engine.specs.study",
    "study-stats": "app.engine.specs.study",
    "study-export": "app.engine.specs.study",
    "study-import": "app.engine.specs.study",
    "selftest": "app.engine.specs.selftest",
}

_SPECS: dict[str, type[Spec]] = {}


class Spec(BaseModel):
    """Base class of every job spec: strict about unknown fields, JSON round-trippable.

    Subclasses declare ``kind: Literal["name"] = "name"`` as their first field. Path fields use the
    role types of ``app.engine.specs.paths`` (what is read, what is written, what names a workspace
    object): the role decides the field's checks, its CLI flag and its form widget. Optional class
    variables shape the generated command line (``app.engine.specs.fields``):

    - ``cli_positional``: field names taken as positional arguments, in order;
    - ``cli_aliases``: extra flag names, e.g. ``{"class": "class_label", "n": "n_images"}``;
    - ``cli_help``: one line shown by ``radsynth --help``.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())

    cli_positional: ClassVar[tuple[str, ...]] = ()
    cli_aliases: ClassVar[dict[str, str]] = {}
    cli_help: ClassVar[str] = ""
    #: True for jobs that use the heavy compute device (training, sampling, score-based recon).
    heavy: ClassVar[bool] = False

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        field = cls.model_fields.get("kind")
        kind = field.default if field is not None else None
        # a subclass of a registered spec (a test's variant, say) inherits its kind but does not replace it
        if isinstance(kind, str) and kind and not (kind in _SPECS and issubclass(cls, _SPECS[kind])):
            _SPECS[kind] = cls

    def to_json(self) -> str:
        return self.model_dump_json(indent=2)


def kinds() -> list[str]:
    return sorted(SPEC_MODULES)


def spec_class(kind: str) -> type[Spec]:
    """The spec class of a job kind, importing its (torch-free) spec module on first use."""
    if kind not in _SPECS:
        module = SPEC_MODULES.get(kind)
        if module is None:
            raise UserError(f"unknown job kind {kind!r}; known kinds: {', '.join(kinds())}")
        importlib.import_module(module)
        if kind not in _SPECS:
            raise RuntimeError(f"module {module} does not define a spec for job kind {kind!r}")
    return _SPECS[kind]


def parse_spec(data: dict | str | Path) -> Spec:
    """Validate a spec from a dict, a JSON string, or a JSON file; ``kind`` selects the class."""
    if isinstance(data, Path):
        try:
            data = json.loads(data.read_text())
        except FileNotFoundError:
            raise UserError(f"spec file {data} does not exist") from None
        except json.JSONDecodeError as exc:
            raise UserError(f"spec file {data} is not valid JSON: {exc}") from None
    elif isinstance(data, str):
        data = json.loads(data)
    if not isinstance(data, dict) or "kind" not in data:
        raise UserError("a spec is a JSON object with a 'kind' field")
    return spec_class(data["kind"]).model_validate(data)


def format_validation_error(exc: ValidationError) -> str:
    """One line per bad field: ``field: message``."""
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        lines.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(lines)
