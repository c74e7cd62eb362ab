"""Dataset uploads: an archive streamed to disk under a size limit, then extracted safely.

The limit is enforced while reading (the body is counted chunk by chunk and the partial file is
deleted as soon as it passes the limit), so an oversized upload cannot fill the disk whatever
Content-Length claims. Extraction is written out by hand rather than with ``extractall`` because
the rules are stricter than tarfile's "data" filter: only regular files and folders are taken,
names with ``..`` or absolute names are refused, links of any kind are refused, and the total
extracted size is capped (a zip bomb stops at the cap, not at the disk's end).
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


async def save_stream(chunks: AsyncIterator[bytes], dest: Path, limit: int) -> int:
    """Write the chunks to ``dest``; raise UploadTooLarge (and delete dest) past ``limit`` bytes."""
    written = 0
    try:
        with open(dest, "wb") as f:
            async for chunk in chunks:
                if written + len(chunk) > limit:
                    raise UploadTooLarge(f"the upload is larger than the server's limit of {limit} bytes")
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


def _copy_limited(src, dst: Path, budget: list[int], name: str) -> None:
    with open(dst, "wb") as out:
        while True:
            block = src.read(1 << 20)
            if not block:
                return
            budget[0] -= len(block)
            if budget[0] < 0:
                raise UploadTooLarge(f"the archive expands past the server's limit (at member {name!r})")
            out.write(block)


def extract_archive(archive: Path, dest: Path, max_total: int) -> list[Path]:
    """Extract a .zip or .tar[.gz|.bz2|.xz] into ``dest`` (created); returns the files written.

    On any refusal the partly extracted folder is removed and UnsafeArchive / UploadTooLarge
    raised with the member named.
    """
    dest.mkdir(parents=True, exist_ok=False)
    root = dest.resolve()
    written: list[Path] = []
    budget = [int(max_total)]

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
