"""A training run's scalar history (loss, learning rate, validation losses) kept beside its checkpoints.

``runs/<run id>/scalars.jsonl`` holds one JSON object per line: ``{"name", "step", "value"}``, appended as
training goes. The Training panel draws a run's curves from it when the run is selected — a finished run,
or one training in another process (``radsynth train`` in a terminal), whose file it follows while the run
is running. Lines are appended and flushed one by one, so a reader sees whole lines only, except perhaps
a last one still being written, which it leaves for the next read.

Torch-free: the panel reads it. JSON lines by hand rather than SQLite: one writer appending a line every
``log_every`` steps, readers that follow the file's end by offset, and no lock held across a long run.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

FILE_NAME = "scalars.jsonl"


class ScalarLog:
    """Appends a run's scalars to its ``scalars.jsonl``. A write that fails (full disk, folder gone) is
    reported once through ``warn`` and the rest are skipped: the history must never stop a training."""

    def __init__(self, run_dir: Path, warn=None):
        self.path = Path(run_dir) / FILE_NAME
        self.warn = warn
        self.failed = False
        self._file = None

    def write(self, name: str, step: int, value: float) -> None:
        if self.failed:
            return
        try:
            if self._file is None:
                self._file = open(self.path, "a", encoding="utf-8")
            v = float(value)
            self._file.write(json.dumps({"name": name, "step": int(step), "value": v if math.isfinite(v) else None})
                             + "\n")
            self._file.flush()
        except OSError as exc:
            self.failed = True
            if self.warn is not None:
                self.warn(f"the loss history {self.path} is no longer written ({exc.strerror or exc}); "
                          "training goes on")

    def close(self) -> None:
        if self._file is not None:
            try:
                self._file.close()
            except OSError:
                pass
            self._file = None


def read_history(run_dir: Path, offset: int = 0) -> tuple[list[tuple[str, int, float]], int]:
    """(points, next offset): the (name, step, value) lines of ``run_dir``'s history from byte ``offset``
    on, and where the next read starts (before a last line not yet complete). No file: ([], offset).

    Read from the start (offset 0), a step logged twice (a run resumed from a checkpoint before its last
    logged step logs those steps again) keeps its last value, and the points come sorted by step."""
    path = Path(run_dir) / FILE_NAME
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return [], offset
    end = data.rfind(b"\n") + 1  # only whole lines; a partial last line is read next time
    points: dict[tuple[str, int], float] = {}
    ordered: list[tuple[str, int, float]] = []
    for line in data[:end].splitlines():
        try:
            d = json.loads(line)
            name, step, value = str(d["name"]), int(d["step"]), d["value"]
        except (ValueError, KeyError, TypeError):
            continue  # a damaged line (e.g. the disk filled mid-write) costs that point only
        value = float("nan") if value is None else float(value)
        if offset == 0:
            points[(name, step)] = value
        else:
            ordered.append((name, step, value))
    if offset == 0:
        ordered = sorted(((n, s, v) for (n, s), v in points.items()), key=lambda p: p[1])
    return ordered, offset + end


def history_age(run_dir: Path) -> float | None:
    """Seconds since the run's history was last written, or None without one."""
    try:
        return max(0.0, time.time() - (Path(run_dir) / FILE_NAME).stat().st_mtime)
    except OSError:
        return None
