"""Dataset uploads: an archive streamed to disk under a size limit, then extracted safely.

The limit is enforced while reading (the body is counted chunk by chunk and the partial file is
deleted as soon as it passes the limit), so an oversized upload cannot fill the disk whatever
Content-Length claims. Extraction is written out by hand rather than with ``extractall`` because
the rules are stricter than tarfile's "data" filter: only regular files and folders are taken,
names with ``..`` or absolute names are refused, links of any kind are refused, and three limits
hold, each checked before the bytes or the file that would pass it are written:

- the total extracted size (``max_total``: the per-upload cap and what the workspace quota leaves);
- the expansion ratio: an archive whose contents reach ``max_ratio`` (100) times its own size is a
  bomb whatever its size (a zip's declared sizes are checked before anything is written, and the
  bytes actually inflated are counted while copying, since declared sizes can lie);
- the number of files (``max_files``; a zip's count is known from its directory before writing).

A zip bomb therefore stops at the first of these, not at the disk's end.
"""

from __future__ import annotations

import shutil
import stat
import tarfile
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path, PurePosixPath

from app.engine.jobs import UserError


class UploadTooLarge(UserError):
    pass


class UnsafeArchive(UserError):
    pass


async def save_stream(chunks: AsyncIterator[bytes], dest: Path, limit: int, limit_name: str | None = None) -> int:
    """Write the chunks to ``dest``; raise UploadTooLarge (and delete dest) past ``limit`` bytes
    (``limit_name``: what the limit is, for the message; default the server's upload limit)."""
    written = 0
    limit_name = limit_name or f"the server's limit of {limit} bytes"
    try:
        with open(dest, "wb") as f:
            async for chunk in chunks:
                if written + len(chunk) > limit:
                    raise UploadTooLarge(f"the upload is larger than {limit_name}")
                f.write(chunk)
                written += len(chunk)
    except BaseException:
        dest.unlink(missing_ok=True)
        raise
    return written


def _safe_member_name(name: str) -> PurePosixPath:
    p = PurePosixPath(name.replace("\\", "/"))
    if p.is_absolute() or name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise UnsafeArchive(f"archive member {name!r} has an absolute path")
    if ".." in p.parts:
        raise UnsafeArchive(f"archive member {name!r} contains '..'")
    if "\x00" in name:
        raise UnsafeArchive(f"archive member {name!r} contains a NUL byte")
    return p


#: contents this many times the archive's size make it a bomb (whatever its size)
MAX_EXPANSION_RATIO = 100


def _mib(n: float) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{int(n)} bytes"


class _Budget:
    """What an extraction may still write: bytes (the size cap, the expansion ratio) and files."""

    def __init__(self, archive_bytes: int, max_total: int, max_files: int | None, max_ratio: float,
                 total_name: str | None = None):
        self.archive_bytes, self.max_total, self.max_files, self.max_ratio = archive_bytes, max_total, max_files, max_ratio
        self.total_name = total_name
        self.ratio_cap = max_ratio * max(1, archive_bytes)
        self.bytes = 0
        self.files = 0

    def check_declared(self, total: int, files: int) -> None:
        """A zip's directory, before anything is written."""
        if self.max_files is not None and files > self.max_files:
            raise UploadTooLarge(f"the archive holds {files} files; the server takes at most {self.max_files} files "
                                 "per upload (--max-upload-files)")
        self._check_bytes(total, None, declared=True)

    def add_file(self, name: str) -> None:
        self.files += 1
        if self.max_files is not None and self.files > self.max_files:
            raise UploadTooLarge(f"the archive holds more than {self.max_files} files, the server's limit of files per "
                                 f"upload (--max-upload-files), at member {name!r}")

    def add_bytes(self, n: int, name: str) -> None:
        self._check_bytes(self.bytes + n, name)
        self.bytes += n

    def _check_bytes(self, total: int, name: str | None, declared: bool = False) -> None:
        at = f" (at member {name!r})" if name else ""
        says = "declares contents of" if declared else "expands to more than"
        if total >= self.ratio_cap:
            raise UploadTooLarge(
                f"the archive {says} {_mib(total)} from {_mib(self.archive_bytes)}: an expansion ratio of "
                f"{self.max_ratio:g}x or more is refused as a zip bomb{at}")
        if total > self.max_total:
            limit = self.total_name or f"the server's limit of {_mib(self.max_total)} extracted per upload"
            raise UploadTooLarge(f"the archive {says} {_mib(total)}, past {limit}{at}")


def _copy_limited(src, dst: Path, budget: _Budget, name: str) -> None:
    with open(dst, "wb") as out:
        while True:
            block = src.read(1 << 20)
            if not block:
                return
            budget.add_bytes(len(block), name)  # raises before the block that would pass a limit is written
            out.write(block)


def extract_archive(archive: Path, dest: Path, max_total: int, *, max_files: int | None = None,
                    max_ratio: float = MAX_EXPANSION_RATIO, total_name: str | None = None) -> list[Path]:
    """Extract a .zip or .tar[.gz|.bz2|.xz] into ``dest`` (created); returns the files written.

    On any refusal the partly extracted folder is removed and UnsafeArchive / UploadTooLarge
    raised with the member or the limit named (``total_name``: what ``max_total`` is, for the message).
    """
    dest.mkdir(parents=True, exist_ok=False)
    root = dest.resolve()
    written: list[Path] = []
    budget = _Budget(archive.stat().st_size, int(max_total), max_files, max_ratio, total_name)

    def target(name: str) -> Path | None:
        rel = _safe_member_name(name)
        if not rel.parts or rel.parts == (".",):
            return None
        out = (root / Path(*rel.parts)).resolve()
        if not out.is_relative_to(root):
            raise UnsafeArchive(f"archive member {name!r} would land outside the upload folder")
        return out

    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                members = [i for i in zf.infolist() if not i.is_dir()]
                budget.check_declared(sum(i.file_size for i in members), len(members))
                for info in zf.infolist():
                    out = target(info.filename)
                    if out is None:
                        continue
                    mode = info.external_attr >> 16
                    if stat.S_ISLNK(mode):
                        raise UnsafeArchive(f"archive member {info.filename!r} is a symbolic link")
                    if info.is_dir():
                        out.mkdir(parents=True, exist_ok=True)
                        continue
                    budget.add_file(info.filename)
                    out.parent.mkdir(parents=True, exist_ok=True)
                    with zf.open(info) as src:
                        _copy_limited(src, out, budget, info.filename)
                    written.append(out)
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive, "r:*") as tf:
                for m in tf:
                    out = target(m.name)
                    if out is None:
                        continue
                    if m.issym() or m.islnk():
                        raise UnsafeArchive(f"archive member {m.name!r} is a link")
                    if m.isdir():
                        out.mkdir(parents=True, exist_ok=True)
                        continue
                    if not m.isfile():
                        raise UnsafeArchive(f"archive member {m.name!r} is not a regular file")
                    budget.add_file(m.name)
                    budget._check_bytes(budget.bytes + m.size, m.name, declared=True)
                    out.parent.mkdir(parents=True, exist_ok=True)
                    src = tf.extractfile(m)
                    _copy_limited(src, out, budget, m.name)
                    written.append(out)
        else:
            raise UnsafeArchive("the upload is not a zip or tar archive")
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    return written
