"""EDA results kept across sessions, so that opening a dataset does not run the ``eda`` job again.

The result dict of an ``eda`` job (whatever keys it has) is stored next to the dataset::

    datasets/<name>/eda/stored.json     {"format", "fingerprint", "spec", "stored", "result"}
    datasets/<name>/eda/<files>         copies of the job's files (class_means.npz, PNGs, eda.json)

with ``result["files"]`` pointing at the copies, so the stored result stays whole when the job
folder is removed. It is valid only for the dataset content it was computed from
(:func:`fingerprint`: name, registration time, image count and the cache file's size and
modification time) and for the same spec (defaults of the ``eda`` job included): a re-imported or
changed dataset, or other statistics options, get fresh statistics. Re-importing replaces the
whole dataset folder, so the stored result also goes with it.

:func:`load` returns ``(result, note)``: the result when a valid one is stored (its arrays file is
read completely, so a truncated or damaged copy is caught here), else ``None`` with the reason (a
corrupt file is logged and reported, never raised) — the caller runs the job again. Both functions
do file I/O: call them off the GUI thread. No torch, no Qt.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import uuid
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

FORMAT = "radsynth-eda/1"
FOLDER = "eda"
INDEX = "stored.json"
ARRAYS_KEY = "arrays"  # result["files"][ARRAYS_KEY]: the npz of mean / std images per class


def fingerprint(workspace, name: str) -> dict:
    """What identifies the content of dataset ``name`` (raises UserError when it is not registered)."""
    rec = workspace.dataset(name)
    try:
        st = rec.cache_path.stat()
        size, mtime = int(st.st_size), int(st.st_mtime_ns)
    except OSError:  # a missing cache never matches a stored one (the job reports the real error)
        size, mtime = -1, -1
    return {"name": rec.name, "created": float(rec.created), "n_images": int(rec.n_images),
            "cache_size": size, "cache_mtime_ns": mtime, "classes": list(rec.classes)}  # named later: again


def folder(workspace, name: str) -> Path:
    return workspace.dataset(name).path / FOLDER


def load(workspace, name: str, spec: dict) -> tuple[dict | None, str | None]:
    """The stored result for dataset ``name`` and ``spec`` (a JSON dump of the EdaSpec), or None
    with the reason it cannot be used (None, None: nothing stored yet)."""
    try:
        fp = fingerprint(workspace, name)
        index = folder(workspace, name) / INDEX
    except Exception as exc:  # the dataset went away: nothing to show, the job says why
        return None, f"dataset {name!r} is not readable: {exc}"
    if not index.exists():
        return None, None
    try:
        doc = json.loads(index.read_text(encoding="utf-8"))
        if not isinstance(doc, dict) or doc.get("format") != FORMAT or not isinstance(doc.get("result"), dict):
            raise ValueError(f"not a stored EDA result of format {FORMAT}")
        if doc.get("fingerprint") != fp:
            return None, f"dataset {name!r} changed since its statistics were stored"
        if doc.get("spec") != spec:
            return None, "the statistics options differ from the stored ones"
        result = doc["result"]
        files = result.get("files")
        arrays = files.get(ARRAYS_KEY) if isinstance(files, dict) else None
        if arrays is not None:
            with np.load(str(arrays), allow_pickle=False) as z:  # read every array: CRC / truncation
                for k in z.files:
                    z[k]
        return result, None
    except Exception as exc:
        msg = f"stored statistics of {name!r} in {index.parent} are unreadable ({type(exc).__name__}: {exc})"
        log.warning("%s; they are computed again", msg)
        return None, msg


def save(workspace, name: str, spec: dict, fp: dict, result: dict) -> Path:
    """Store ``result`` (an eda job's result) for dataset ``name`` under the fingerprint ``fp`` taken
    when the job was submitted; copies the job's files. Returns the index file's path."""
    d = folder(workspace, name)
    # not parents=True: while a re-import swaps the dataset folder, recreating it here would make
    # the swap fail; this save fails instead (the caller logs it, the next start computes again)
    d.mkdir(exist_ok=True)
    index = d / INDEX
    # the index goes first and comes back last: a crash in between leaves no index (computed again)
    index.unlink(missing_ok=True)
    stored = json.loads(json.dumps(result))  # a deep copy, and a check that it is JSON
    files = stored.get("files")
    if isinstance(files, dict):
        for key, path in list(files.items()):
            if not isinstance(path, str) or not Path(path).is_file() or Path(path).parent == d:
                continue
            dest = d / Path(path).name
            tmp = d / f".{dest.name}.{uuid.uuid4().hex[:6]}.tmp"
            shutil.copyfile(path, tmp)
            os.replace(tmp, dest)
            files[key] = str(dest)
    doc = {"format": FORMAT, "fingerprint": fp, "spec": spec, "stored": time.time(), "result": stored}
    tmp = d / f".{INDEX}.{uuid.uuid4().hex[:6]}.tmp"
    tmp.write_text(json.dumps(doc, indent=1), encoding="utf-8")
    os.replace(tmp, index)
    return index
