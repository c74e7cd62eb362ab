"""Path roles: what a spec field that names a file, a folder or a workspace object is for.

A path in a spec is never a bare ``str``: its type says its role, and the role decides its checks, its
command-line flag and its form widget (``app.engine.specs.fields``), and how the server confines it
(``app.server.paths``):

- ``InputFile`` / ``InputFolder`` / ``InputPath``: read (a file, a folder, either);
- ``OutputFile`` / ``OutputFolder``: written;
- ``DatasetRef`` / ``RunRef`` / ``StudyRef``: a workspace object by name (``name[:split]`` for datasets);
- ``ImageSetRef``: a workspace dataset ``name[:split]`` or an input file / folder of images;
- ``CheckpointRef``: a run id or an input checkpoint folder;
- ``NewDatasetName`` / ``NewStudyName``: the name of a workspace object the job creates.

Locally (GUI, CLI) a path means what the user typed, with ``~`` expanded; an empty path is an error
everywhere (an optional field uses ``None`` for "the default"). A field whose value holds a path after a
prefix (``labels: "csv:FILE"``) declares the prefix in its role.
"""

from __future__ import annotations

import dataclasses
import os
import re
import types
import typing
from typing import Annotated

from pydantic import AfterValidator

#: a workspace object's name: 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
SPLITS = ("train", "val", "test", "all")


@dataclasses.dataclass(frozen=True)
class PathRole:
    """The role of a spec field (see the module docstring).

    ``role``: "input" (read), "output" (written), "ref" (an existing workspace object) or "name" (a new
    one). ``target``: "file", "folder" or "any" for paths. ``refs``: the workspace objects a value may
    name instead of a path ("dataset", "run", "study"). ``prefix``: the value holds a path only after it.
    """

    role: typing.Literal["input", "output", "ref", "name"]
    target: typing.Literal["file", "folder", "any"] = "any"
    refs: tuple[str, ...] = ()
    prefix: str = ""

    @property
    def is_path(self) -> bool:
        return self.role in ("input", "output")

    def describe(self) -> str:
        """Plain words for help texts: "input file", "output folder", "dataset or input file/folder"."""
        refs = " or ".join(_REF_WORDS.get(r, r) for r in self.refs)
        if self.role == "name":
            return f"name of a new {' / '.join(self.refs) or 'object'}"
        if self.role == "ref":
            return f"{refs} in the workspace"
        what = {"file": "file", "folder": "folder", "any": "file or folder"}[self.target]
        words = f"{self.role} {what}" + (f" after '{self.prefix}'" if self.prefix else "")
        return f"{refs} in the workspace, or {words}" if refs else words


_REF_WORDS = {"dataset": "dataset name[:split]", "run": "run id", "study": "study name or id"}


def check_name(name: str, what: str = "name") -> str:
    """``name`` if it is a valid workspace object name, else ValueError naming the rule."""
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ValueError(f"{what} {name!r} is not valid: use 1-64 letters, digits, '.', '_' or '-', "
                         "starting with a letter or digit")
    return name


def split_ref(ref: str) -> tuple[str, str | None]:
    """("name", "split" | None) of a dataset reference ``name[:split]``."""
    name, sep, split = ref.rpartition(":")
    if sep and split in SPLITS and name:
        return name, split
    return ref, None


def _local_path(prefix: str):
    def check(value: str) -> str:
        if prefix and not value.startswith(prefix):
            return value  # e.g. labels "auto": no path in this value
        path = value[len(prefix):]
        if not path.strip():
            raise ValueError("an empty path: give a file or folder (leave the field unset for its default)")
        if "\x00" in path:
            raise ValueError("a NUL byte in the path")
        return prefix + (os.path.expanduser(path) if path.startswith("~") else path)

    return check


def _ref(value: str) -> str:
    if not value.strip():
        raise ValueError("an empty name")
    if "\x00" in value:
        raise ValueError("a NUL byte in the name")
    return value


def _new_name(what: str, allow_empty: bool):
    def check(value: str) -> str:
        if allow_empty and value == "":
            return value
        return check_name(value, what)

    return check


def _path(role: str, target: str, refs: tuple[str, ...] = (), prefix: str = ""):
    return Annotated[str, PathRole(role, target, refs, prefix), AfterValidator(_local_path(prefix))]


InputFile = _path("input", "file")
InputFolder = _path("input", "folder")
InputPath = _path("input", "any")
OutputFile = _path("output", "file")
OutputFolder = _path("output", "folder")
ImageSetRef = _path("input", "any", ("dataset",))
CheckpointRef = _path("input", "folder", ("run",))
DatasetRef = Annotated[str, PathRole("ref", refs=("dataset",)), AfterValidator(_ref)]
RunRef = Annotated[str, PathRole("ref", refs=("run",)), AfterValidator(_ref)]
StudyRef = Annotated[str, PathRole("ref", refs=("study",)), AfterValidator(_ref)]
#: a dataset name the job creates; empty: derived by the job (ingest)
NewDatasetName = Annotated[str, PathRole("name", refs=("dataset",)), AfterValidator(_new_name("dataset name", True))]
NewStudyName = Annotated[str, PathRole("name", refs=("study",)), AfterValidator(_new_name("study name", False))]


LabelsSpec = Annotated[str, PathRole("input", "file", prefix="csv:"), AfterValidator(_local_path("csv:"))]


# -- reading roles back from a field -----------------------------------------------------------


def role_of_annotation(ann) -> tuple[PathRole | None, bool]:
    """(role, many) found in a type: ``Annotated[str, PathRole]``, optional or in a list."""
    origin = typing.get_origin(ann)
    if origin is Annotated:
        for m in ann.__metadata__:
            if isinstance(m, PathRole):
                return m, False
        return role_of_annotation(typing.get_args(ann)[0])
    if origin in (list, tuple, set):
        role, _ = role_of_annotation(typing.get_args(ann)[0]) if typing.get_args(ann) else (None, False)
        return role, role is not None
    if origin in (typing.Union, types.UnionType):
        for a in typing.get_args(ann):
            role, many = role_of_annotation(a)
            if role is not None:
                return role, many
    return None, False


def field_role(field) -> tuple[PathRole | None, bool]:
    """(role, many) of a pydantic FieldInfo: pydantic moves a top-level Annotated's metadata to it."""
    for m in field.metadata:
        if isinstance(m, PathRole):
            return m, False
    return role_of_annotation(field.annotation)


def path_fields(spec_cls) -> dict[str, tuple[PathRole, bool]]:
    """{field name: (role, many)} of every field of a spec class that has a role."""
    out = {}
    for name, field in spec_cls.model_fields.items():
        role, many = field_role(field)
        if role is not None:
            out[name] = (role, many)
    return out
