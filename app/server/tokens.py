"""Tokens of `radsynth serve`: the primary admin token, issued tokens (admin or reader), rotation and revocation.

The primary token lives in the token file (``--token-file``, see app/server/auth.py). Issued tokens live in
the *token store*, a JSON file next to it (``<token file>.tokens.json``), created readable and writable by
its owner only, written atomically (a temporary file renamed over it). The store holds each token's id,
role, study and reader and creation time, and the SHA-256 of the token: never the token itself, which is
printed once by ``radsynth serve token new`` and cannot be read back.

    radsynth serve token new [--reader READER --study STUDY] [--out FILE]   issue a token (admin by default)
    radsynth serve token list [--json]                                      ids, roles, creation times
    radsynth serve token revoke ID                                          void a token at once
    radsynth serve token revoke primary                                     rotate the token file's token

The running server re-reads the token file and the store whenever their modification time, size or inode
changes (one ``stat`` of each per request), so a new token works, and a revoked one is refused, at once,
without a restart.

Roles: ``admin`` may do everything. ``reader`` is issued for one study and one reader: it may only list
that study's blinded cases in that reader's order, fetch their pixels and post that reader's answers
(the ``/api/reading/{study}/...`` routes); every other request gets 403.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import secrets
import stat
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

STORE_FORMAT = "radsynth-tokens/1"
STORE_SUFFIX = ".tokens.json"
PRIMARY_ID = "primary"
ROLES = ("admin", "reader")
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class TokenStoreError(Exception):
    """A token store that cannot be used, with the reason in plain words."""


@dataclass(frozen=True)
class Principal:
    """Who a request's token belongs to."""

    id: str
    role: str
    study: str | None = None  # reader tokens: the study id
    study_name: str | None = None
    reader: str | None = None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def store_path(token_file: Path) -> Path:
    token_file = Path(token_file).expanduser()
    return token_file.with_name(token_file.name + STORE_SUFFIX)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


def _check_private(path: Path) -> None:
    mode = stat.S_IMODE(path.stat().st_mode)
    if os.name == "posix" and mode & 0o077:
        raise TokenStoreError(f"token store {path} is readable by others (mode {mode:o}); run 'chmod 600 {path}'")


def read_store(path: Path) -> list[dict]:
    """The entries of a token store ([] when it does not exist yet)."""
    if not path.exists():
        return []
    _check_private(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise TokenStoreError(f"token store {path} is not readable: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != STORE_FORMAT or not isinstance(data.get("tokens"), list):
        raise TokenStoreError(f"token store {path} is not a {STORE_FORMAT} file")
    return [t for t in data["tokens"] if isinstance(t, dict) and isinstance(t.get("hash"), str)]


def write_store(path: Path, entries: list[dict]) -> None:
    """Write the store atomically, owner read/write only from creation."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump({"format": STORE_FORMAT, "tokens": entries}, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _write_private(path: Path, text: str, replace: bool) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp if replace else path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    if replace:
        os.replace(tmp, path)


def _file_key(path: Path):
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


class TokenRegistry:
    """What the server checks a presented token against: the primary token and the store, each re-read
    when its file changes (a ``stat`` per request, cached by inode, mtime and size)."""

    def __init__(self, primary: str, token_file: Path | None = None):
        self.token_file = Path(token_file).expanduser() if token_file else None
        self.store_file = store_path(self.token_file) if self.token_file else None
        self._primary = primary
        self._primary_key = _file_key(self.token_file) if self.token_file else None
        self._entries: list[dict] = []
        self._store_key = None
        self._lock = threading.Lock()
        self.error: str | None = None  # why the store is not in use (its tokens are then refused)
        self._refresh()

    def _refresh(self) -> None:
        if self.token_file is not None:
            key = _file_key(self.token_file)
            if key != self._primary_key:
                self._primary_key = key
                try:
                    text = self.token_file.read_text().strip() if key else ""
                except OSError:
                    text = ""
                self._primary = text if len(text) >= 16 else ""  # a removed or emptied file voids the token
        if self.store_file is not None:
            key = _file_key(self.store_file)
            if key != self._store_key:
                self._store_key = key
                try:
                    self._entries, self.error = (read_store(self.store_file) if key else []), None
                except TokenStoreError as exc:
                    self._entries, self.error = [], str(exc)
                    print(f"radsynth serve: {exc}; issued tokens are refused until it is fixed", file=sys.stderr,
                          flush=True)

    def principal(self, presented: str | None) -> Principal | None:
        """The holder of ``presented``, or None (no such token, or revoked)."""
        if not presented:
            return None
        with self._lock:
            self._refresh()
            primary, entries = self._primary, self._entries
        if primary and hmac.compare_digest(presented.encode("utf-8", "replace"), primary.encode("utf-8")):
            return Principal(PRIMARY_ID, "admin")
        digest = token_hash(presented)
        found = None
        for e in entries:  # compare every entry: the time taken says nothing about which one matched
            if hmac.compare_digest(digest, e["hash"]) and found is None:
                found = e
        if found is None or found.get("role") not in ROLES:
            return None
        return Principal(str(found.get("id")), found["role"], found.get("study"), found.get("study_name"),
                         found.get("reader"))


# ----------------------------------------------------------------------------------------------
# radsynth serve token new|list|revoke
# ----------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="radsynth serve token",
                                description="Issue, list and revoke the server's tokens (no restart needed).")
    sub = p.add_subparsers(dest="action", required=True)

    def common(q):
        q.add_argument("--token-file", type=Path,
                       help="the server's token file (default: the user config dir); the store lies next to it")
        q.add_argument("--workspace", type=Path,
                       help="the server's workspace (default: $RADSYNTH_WORKSPACE or the user data dir)")

    new = sub.add_parser("new", help="issue a token: admin by default, a reader token with --reader and --study")
    common(new)
    new.add_argument("--reader", help="reader id: the token may only read --study as this reader")
    new.add_argument("--study", help="study name or id of a reader token")
    new.add_argument("--out", type=Path, help="write the token to this new file (mode 600) instead of printing it")
    new.add_argument("--json", action="store_true", help="print one JSON object")
    lst = sub.add_parser("list", help="ids, roles, studies, readers and creation times (never token values)")
    common(lst)
    lst.add_argument("--json", action="store_true", help="print one JSON object")
    rev = sub.add_parser("revoke", help="void a token at once ('primary': give the token file a new token)")
    common(rev)
    rev.add_argument("id", help="the token's id (see 'radsynth serve token list')")
    return p


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def _primary_row(token_file: Path) -> dict | None:
    if not token_file.exists():
        return None
    return {"id": PRIMARY_ID, "role": "admin", "study": None, "reader": None,
            "created": token_file.stat().st_mtime, "file": str(token_file)}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        ns = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as exc:
        return EXIT_OK if exc.code == 0 else EXIT_USAGE
    from app.server.auth import default_token_file

    token_file = (ns.token_file or default_token_file()).expanduser()
    path = store_path(token_file)
    try:
        if ns.action == "new":
            return _new(ns, token_file, path)
        if ns.action == "list":
            return _list(ns, token_file, path)
        return _revoke(ns, token_file, path)
    except TokenStoreError as exc:
        print(f"radsynth serve token: {exc}", file=sys.stderr)
        return EXIT_FAILED


def _new(ns, token_file: Path, path: Path) -> int:
    from app.engine import jobs as J

    if (ns.reader is None) != (ns.study is None):
        print("radsynth serve token new: --reader and --study go together (a reader token is for one reader of one "
              "study); give neither for an admin token", file=sys.stderr)
        return EXIT_USAGE
    if ns.out is not None and ns.out.exists():
        print(f"radsynth serve token new: --out {ns.out} already exists; name a new file", file=sys.stderr)
        return EXIT_USAGE
    entries = read_store(path)
    entry = {"id": "tok-" + secrets.token_hex(4), "role": "admin", "study": None, "study_name": None, "reader": None,
             "created": time.time()}
    if ns.reader is not None:
        from app.engine.store import Workspace, check_name
        from app.engine.study import add_reader, get_study

        try:
            check_name(ns.reader, "reader id")
            ws = Workspace.open(ns.workspace)
            st = get_study(ws, ns.study)
            if st.is_reader_copy:
                raise J.UserError(f"study {st.name!r} is a reader copy on this workspace; issue reader tokens "
                                  "where the study was created")
            add_reader(ws, st.id, ns.reader)  # registered now: the owner sees the reader before the first answer
        except (J.UserError, OSError) as exc:
            print(f"radsynth serve token new: {exc}", file=sys.stderr)
            return EXIT_USAGE
        entry.update(role="reader", study=st.id, study_name=st.name, reader=ns.reader)
    while any(e.get("id") == entry["id"] for e in entries):
        entry["id"] = "tok-" + secrets.token_hex(4)
    token = secrets.token_urlsafe(32)
    entry["hash"] = token_hash(token)
    if ns.out is not None:
        ns.out.parent.mkdir(parents=True, exist_ok=True)
        _write_private(ns.out, token + "\n", replace=False)
    write_store(path, entries + [entry])
    shown = {k: entry[k] for k in ("id", "role", "study", "reader", "created")}
    if ns.reader is not None:
        shown["study"] = entry["study_name"]
    if ns.json:
        print(json.dumps({**shown, **({"token_file": str(ns.out)} if ns.out else {"token": token})}))
    else:
        what = f"reader token for reader {ns.reader!r} of study {entry['study_name']!r}" if ns.reader else "admin token"
        print(f"{entry['id']}: new {what}")
        print(f"written to {ns.out}" if ns.out else f"token (shown once, not stored): {token}")
    return EXIT_OK


def _list(ns, token_file: Path, path: Path) -> int:
    rows = []
    primary = _primary_row(token_file)
    if primary:
        rows.append(primary)
    for e in read_store(path):
        rows.append({"id": e.get("id"), "role": e.get("role"), "study": e.get("study_name") or e.get("study"),
                     "reader": e.get("reader"), "created": e.get("created")})
    if ns.json:
        print(json.dumps({"store": str(path), "tokens": rows}))
        return EXIT_OK
    print(f"{'ID':<14} {'ROLE':<7} {'CREATED':<20} STUDY / READER")
    for r in rows:
        scope = f"{r['study']} / {r['reader']}" if r["role"] == "reader" else "-"
        print(f"{r['id']:<14} {r['role']:<7} {_when(r['created'] or 0):<20} {scope}")
    return EXIT_OK


def _revoke(ns, token_file: Path, path: Path) -> int:
    if ns.id == PRIMARY_ID:
        if not token_file.exists():
            print(f"radsynth serve token revoke: no token file {token_file}", file=sys.stderr)
            return EXIT_USAGE
        _write_private(token_file, secrets.token_urlsafe(32) + "\n", replace=True)
        print(f"primary: revoked; {token_file} now holds a new token (the old one is refused at once)")
        return EXIT_OK
    entries = read_store(path)
    left = [e for e in entries if e.get("id") != ns.id]
    if len(left) == len(entries):
        print(f"radsynth serve token revoke: no token with id {ns.id!r} (radsynth serve token list shows the ids)",
              file=sys.stderr)
        return EXIT_USAGE
    write_store(path, left)
    print(f"{ns.id}: revoked")
    return EXIT_OK
