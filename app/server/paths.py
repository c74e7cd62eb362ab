"""Data roots: every file path a remote client names is resolved inside the configured roots.

A client names files either relative to a root (``"mri/case1.dcm"`` or ``"<root name>/mri/..."``)
or as an absolute path that must lie inside a root (or the server's workspace for checkpoints and
job outputs). Resolution follows symlinks (``Path.resolve``) before the containment check
(``Path.is_relative_to``), so a link pointing out of a root is refused like ``..`` is.
"""

from __future__ import annotations

import typing
from pathlib import Path, PurePosixPath

from app.engine.jobs import Spec, UserError


class PathRefused(UserError):
    """A client-supplied path that is not inside the server's data roots."""


class DataRoots:
    def __init__(self, roots: list[Path], workspace_root: Path):
        self.roots = [Path(r).expanduser().resolve() for r in roots]
        self.workspace_root = Path(workspace_root).resolve()
        names: dict[str, Path] = {}
        for r in self.roots:
            name = r.name or "root"
            while name in names:
                name += "_"
            names[name] = r
        self.by_name = names

    def describe(self) -> list[dict]:
        return [{"name": n, "path": str(p)} for n, p in self.by_name.items()]

    def _inside(self, p: Path, allow_workspace: bool) -> bool:
        bases = list(self.roots) + ([self.workspace_root] if allow_workspace else [])
        return any(p == b or p.is_relative_to(b) for b in bases)

    def resolve(self, text: str, *, allow_workspace: bool = False, what: str = "path") -> Path:
        """The absolute path a client means, or PathRefused naming the reason."""
        if not isinstance(text, str) or not text.strip():
            raise PathRefused(f"{what}: an empty path")
        if "\x00" in text:
            raise PathRefused(f"{what}: a NUL byte in the path")
        raw = Path(text)
        parts = PurePosixPath(text.replace("\\", "/")).parts
        if ".." in parts:
            raise PathRefused(f"{what} {text!r}: '..' is not allowed in paths sent to the server")
        if raw.is_absolute():
            candidate = raw.resolve()
        elif not self.roots:
            raise PathRefused(f"{what} {text!r}: the server has no data roots configured (--data-root)")
        else:  # "<root name>/rest" names a root; otherwise relative to the first root
            if parts and parts[0] in self.by_name:
                base, rest = self.by_name[parts[0]], parts[1:]
            else:
                base, rest = self.roots[0], parts
            candidate = base.joinpath(*rest).resolve()
        if not self._inside(candidate, allow_workspace):
            allowed = ", ".join(str(r) for r in self.roots) or "none"
            raise PathRefused(f"{what} {text!r} is outside the server's data roots ({allowed})")
        return candidate


#: spec field names taken as file paths by their name when the annotation does not say so
_PATHY_NAMES = ("path", "source", "input", "out", "output", "file", "dir", "folder", "checkpoint", "run",
                "reference", "root", "archive")


def _is_path_annotation(ann) -> bool:
    if ann is Path:
        return True
    return any(_is_path_annotation(a) for a in typing.get_args(ann))


def _is_pathy_field(name: str, ann) -> bool:
    if _is_path_annotation(ann):
        return True
    lowered = name.lower()
    return any(lowered == n or lowered.endswith("_" + n) or lowered.startswith(n + "_") for n in _PATHY_NAMES)


def confine_spec_paths(spec: Spec, roots: DataRoots) -> tuple[Spec, list[str]]:
    """Resolve every path-like field of a spec inside the data roots (or the workspace).

    Returns the spec with absolute, resolved paths and the list of fields changed. Raises
    PathRefused with the field named when a path is outside. Values that are not strings (numbers,
    None) and names of registered datasets (no '/' and not an existing file) are left alone.
    """
    updates: dict = {}
    for name, info in type(spec).model_fields.items():
        if name == "kind" or not _is_pathy_field(name, info.annotation):
            continue
        value = getattr(spec, name)
        values = value if isinstance(value, (list, tuple)) else [value]
        out = []
        changed = False
        for v in values:
            if isinstance(v, Path):
                v = str(v)
            if not isinstance(v, str) or not v:
                out.append(v)
                continue
            looks_like_path = "/" in v or "\\" in v or v.startswith(".") or Path(v).suffix != ""
            if not looks_like_path:
                out.append(v)  # a bare name (a dataset, a run id): resolved by the job in the workspace
                continue
            resolved = roots.resolve(v, allow_workspace=True, what=name)
            out.append(str(resolved))
            changed = True
        if changed:
            new = out if isinstance(value, (list, tuple)) else out[0]
            if isinstance(value, Path) or _is_path_annotation(info.annotation) and not isinstance(value, (list, tuple)):
                new = Path(new)
            updates[name] = new
    if not updates:
        return spec, []
    data = spec.model_dump()
    data.update(updates)
    return type(spec).model_validate(data), list(updates)
