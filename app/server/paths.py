"""Data roots and spec confinement: every path a remote client names is resolved inside the server's folders.

A client names files either relative to a root (``"mri/case1.dcm"`` or ``"<root name>/mri/..."``)
or as an absolute path that must lie inside a root (or the server's workspace for checkpoints and
job outputs). Resolution follows symlinks (``Path.resolve``) before the containment check
(``Path.is_relative_to``), so a link pointing out of a root is refused like ``..`` is.
"""

from __future__ import annotations

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


# ----------------------------------------------------------------------------------------------
# confinement of job specs by their fields' path roles
# ----------------------------------------------------------------------------------------------

#: where outputs that a client names may go: these folders of the server's workspace
OUTPUT_AREAS = ("outputs", "jobs")


def _refused(field: str, value, reason: str) -> PathRefused:
    exc = PathRefused(f"{field} {value!r}: {reason}")
    exc.field = field
    return exc


class SpecConfiner:
    """Confines every path of a job spec to the server's folders, by the path roles of its fields.

    - an **input** (``InputFile``, ``ImageSetRef``...) resolves, symlinks followed, to an existing file or
      folder inside a data root or the workspace; a relative path is taken inside a data root
      (``"<root name>/rest"``, else the first root), never against the server's working folder; a plain
      name that the workspace registers (a dataset ``name[:split]``, a run id) stays that name;
    - an **output** resolves inside the workspace's ``outputs/`` or ``jobs/`` folder (a relative path is
      taken inside ``outputs/``), never inside a data root, and never names an existing file or a folder
      that already holds files (it would overwrite what the job did not create);
    - a **workspace reference** (``DatasetRef``, ``RunRef``, ``StudyRef``) is a plain name the workspace has;
    - everywhere: an empty value, a NUL byte, ``~`` / ``~user`` and ``..`` are refused.

    Each refusal is a PathRefused whose ``field`` names the field, which the server answers with 422.
    """

    def __init__(self, roots: DataRoots, workspace):
        self.roots = roots
        self.workspace = workspace
        self.ws_root = Path(workspace.root).resolve()

    # -- before validation ---------------------------------------------------------------------
    def check_raw(self, spec_cls, data: dict) -> None:
        """Refuse ``~`` in the request itself: validation would expand it to the server user's home."""
        from app.engine.specs.fields import role_fields

        for f in role_fields(spec_cls):
            value = data.get(f.name)
            for v in (value if isinstance(value, list) else [value]):
                if not isinstance(v, str):
                    continue
                if f.role.prefix:
                    if not v.startswith(f.role.prefix):
                        continue
                    v = v[len(f.role.prefix):]
                if v.strip().startswith("~"):
                    raise _refused(f.name, v, "home folders ('~') are not used on a server: name a file under a "
                                   "data root, relative to it")

    # -- after validation ----------------------------------------------------------------------
    def confine(self, spec: Spec) -> Spec:
        """The spec with every path resolved and checked; PathRefused naming the field otherwise."""
        from app.engine.specs.fields import role_fields

        updates: dict = {}
        for f in role_fields(type(spec)):
            value = getattr(spec, f.name)
            if value is None:
                continue
            values = list(value) if f.many else [value]
            new = [self._one(f, str(getattr(v, "value", v))) for v in values]
            if new != [str(v) for v in values]:
                updates[f.name] = new if f.many else new[0]
        if not updates:
            return spec
        data = spec.model_dump()
        data.update(updates)
        return type(spec).model_validate(data)

    def _one(self, f, value: str) -> str:
        role = f.role
        if role.prefix:
            if not value.startswith(role.prefix):
                return value
            return role.prefix + self._path(f, value[len(role.prefix):], "input" if role.role == "input" else role.role)
        if role.role == "name":
            return value  # checked by the spec's own validator (a plain workspace name, or empty: derived)
        self._common(f.name, value)
        if role.role == "ref":
            self._plain(f.name, value, role.refs)
            if not self._registered(role.refs, value, splits=False):
                raise _refused(f.name, value, f"no {' or '.join(role.refs)} of that name in the server's workspace")
            return value
        if role.refs and self._is_plain(value) and self._registered(role.refs, value):
            return value
        try:
            return self._path(f, value, role.role)
        except PathRefused as exc:
            if role.refs and self._is_plain(value) and "no such file" in str(exc):
                words = " or ".join(role.refs)
                raise _refused(f.name, value, f"neither a {words} in the server's workspace nor a file or folder "
                               "under its data roots") from None
            raise

    def _path(self, f, value: str, role: str) -> str:
        self._common(f.name, value)
        return str(self._input(f.name, value, f.role.target) if role == "input" else self._output(f.name, value, f.role.target))

    # -- checks ----------------------------------------------------------------------------------
    @staticmethod
    def _common(field: str, value: str) -> None:
        if not value.strip():
            raise _refused(field, value, "an empty path")
        if "\x00" in value:
            raise _refused(field, value, "a NUL byte in the path")
        if value.strip().startswith("~"):
            raise _refused(field, value, "home folders ('~') are not used on a server")
        if ".." in PurePosixPath(value.replace("\\", "/")).parts:
            raise _refused(field, value, "'..' is not allowed in paths sent to the server")

    @staticmethod
    def _is_plain(value: str) -> bool:
        return "/" not in value and "\\" not in value

    def _plain(self, field: str, value: str, refs) -> None:
        if not self._is_plain(value):
            raise _refused(field, value, f"a {' or '.join(refs)} is named, not given as a path")

    def _registered(self, refs, value: str, splits: bool = True) -> bool:
        """Whether the workspace has the object ``value`` names; ``splits``: a dataset as ``name[:split]``."""
        from app.engine.specs.paths import split_ref

        ws = self.workspace
        for ref in refs:
            try:
                if ref == "dataset" and ws.has_dataset(split_ref(value)[0] if splits else value):
                    return True
                if ref == "run" and ws.query("SELECT id FROM runs WHERE id = ?", (value,)):
                    return True
                if ref == "study" and ws.query("SELECT id FROM studies WHERE id = ? OR name = ?", (value, value)):
                    return True
            except Exception:  # a table that does not exist yet (no study ever made): not registered
                continue
        return False

    def _input(self, field: str, value: str, target: str) -> Path:
        raw = Path(value)
        if raw.is_absolute():
            candidate = raw.resolve()
        elif not self.roots.roots:
            raise _refused(field, value, "the server has no data roots (--data-root) to find a relative path in")
        else:
            parts = PurePosixPath(value.replace("\\", "/")).parts
            if parts and parts[0] in self.roots.by_name and len(parts) > 1:
                base, rest = self.roots.by_name[parts[0]], parts[1:]
            else:
                base, rest = self.roots.roots[0], parts
            candidate = base.joinpath(*rest).resolve()
        if not self.roots._inside(candidate, allow_workspace=True):
            allowed = ", ".join(str(r) for r in self.roots.roots) or "none"
            raise _refused(field, value, f"outside the server's data roots ({allowed}) and its workspace")
        if not candidate.exists():
            raise _refused(field, value, "no such file or folder under the server's data roots")
        if target == "file" and not candidate.is_file():
            raise _refused(field, value, "a folder where a file is expected")
        if target == "folder" and not candidate.is_dir():
            raise _refused(field, value, "a file where a folder is expected")
        return candidate

    def _output(self, field: str, value: str, target: str) -> Path:
        raw = Path(value)
        candidate = (raw if raw.is_absolute() else self.ws_root / OUTPUT_AREAS[0] / raw).resolve()
        areas = [self.ws_root / a for a in OUTPUT_AREAS]
        if not any(candidate.is_relative_to(a) and candidate != a for a in areas):
            raise _refused(field, value, f"outputs go inside the server's workspace, under {', '.join(map(str, areas))} "
                           "(a relative path is taken under outputs/)")
        if any(candidate == r or candidate.is_relative_to(r) for r in self.roots.roots):
            raise _refused(field, value, "inside a data root: the server never writes where its source data lie")
        if candidate.is_file() or candidate.is_symlink():
            raise _refused(field, value, "the file exists: the job would replace what it did not create")
        if candidate.is_dir() and any(candidate.iterdir()):
            raise _refused(field, value, "the folder already holds files: name a new or empty folder")
        if candidate.exists() and not candidate.is_dir():
            raise _refused(field, value, "exists and is not a folder")
        return candidate
