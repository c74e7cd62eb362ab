"""The job spine: validated specs, the events a job emits, and run(spec, emit, should_stop).

Every long-running thing RadSynth does is a job. A job kind is a pydantic ``Spec`` subclass with
``kind: Literal["name"] = "name"`` and one runner function registered with ``@register``. The
runner receives the spec and a ``JobContext`` and returns a JSON-serialisable result dict; it
reports only through the context (which emits events) and checks ``ctx.check()`` at every step of
its loops so that cancellation is cooperative. ``run`` turns the outcome into exactly one of
``Done`` / ``Failed`` / ``Cancelled`` and never raises into its caller.

The same spec is what a GUI form fills in, what ``radsynth <verb> --config x.json`` reads, what the
remote server accepts, and what is stored next to every run.
"""

from __future__ import annotations

import base64
import dataclasses
import errno
import importlib
import io
import os
import re
import shutil
import time
import traceback
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from app.engine.errors import JobCancelled, UserError, disk_full_text
from app.engine.specs.base import SPEC_MODULES, Spec, format_validation_error, parse_spec, spec_class

__all__ = ["Spec", "UserError", "JobCancelled", "spec_class", "parse_spec", "format_validation_error", "register",
           "runner", "run", "run_collect", "JobContext", "KIND_MODULES", "SPEC_MODULES", "Progress", "Log", "Scalar",
           "Image", "Artifact", "Done", "Failed", "Cancelled", "Event", "TERMINAL"]

# --------------------------------------------------------------------------------------------
# Specs
# --------------------------------------------------------------------------------------------


# Spec, UserError and JobCancelled live in leaf modules (``app.engine.specs``, ``app.engine.errors``) so that
# specs import no engine code; they are re-exported here, the job spine's one import for runners.


# --------------------------------------------------------------------------------------------
# Events
# --------------------------------------------------------------------------------------------

IMAGE_KINDS = ("image", "kspace", "uncertainty", "grid", "mask", "difference")


@dataclasses.dataclass(frozen=True)
class Progress:
    step: int
    total: int
    label: str = ""


@dataclasses.dataclass(frozen=True)
class Log:
    level: str  # "debug" | "info" | "warning" | "error"
    text: str


@dataclasses.dataclass(frozen=True)
class Scalar:
    name: str
    step: int
    value: float


@dataclasses.dataclass(frozen=True, eq=False)
class Image:
    name: str
    array: np.ndarray  # (H, W) or (H, W, 3); float (any range) or uint8
    kind: str = "image"  # one of IMAGE_KINDS


@dataclasses.dataclass(frozen=True)
class Artifact:
    kind: str  # "checkpoint", "dataset", "samples", "report", "figure", "array", ...
    path: str


@dataclasses.dataclass(frozen=True)
class Done:
    result: dict


@dataclasses.dataclass(frozen=True)
class Failed:
    message: str


@dataclasses.dataclass(frozen=True)
class Cancelled:
    pass


Event = Progress | Log | Scalar | Image | Artifact | Done | Failed | Cancelled
TERMINAL = (Done, Failed, Cancelled)
_EVENT_TYPES = {c.__name__: c for c in (Progress, Log, Scalar, Image, Artifact, Done, Failed, Cancelled)}


def event_to_dict(event: Event) -> dict:
    """A JSON-serialisable dict for an event (images as base64 .npy bytes) for the wire."""
    d: dict[str, Any] = {"type": type(event).__name__}
    for f in dataclasses.fields(event):
        value = getattr(event, f.name)
        if isinstance(value, np.ndarray):
            buf = io.BytesIO()
            np.save(buf, value, allow_pickle=False)
            value = {"npy": base64.b64encode(buf.getvalue()).decode("ascii")}
        d[f.name] = value
    return d


def event_from_dict(d: dict) -> Event:
    cls = _EVENT_TYPES.get(d.get("type", ""))
    if cls is None:
        raise ValueError(f"unknown event type {d.get('type')!r}")
    kwargs = {}
    for f in dataclasses.fields(cls):
        value = d.get(f.name)
        if isinstance(value, dict) and set(value) == {"npy"}:
            value = np.load(io.BytesIO(base64.b64decode(value["npy"])), allow_pickle=False)
        kwargs[f.name] = value
    return cls(**kwargs)


def to_jsonable(obj: Any) -> Any:
    """Convert numpy scalars/arrays and paths inside a result so json.dumps accepts it."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, float) and not np.isfinite(obj):
        return None if np.isnan(obj) else (1e308 if obj > 0 else -1e308)
    return obj


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------

#: kind -> module that defines its spec and registers its runner. Modules are imported lazily so
#: that the CLI starts fast and a broken optional module only breaks its own verbs.
KIND_MODULES: dict[str, str] = {
    "ingest": "app.engine.data.ingest",
    "eda": "app.engine.data.eda",
    "demo": "app.engine.data.demo",
    "train": "app.engine.training.loop",
    "sample": "app.engine.sampling.job",
    "export-onnx": "app.engine.export",
    "recon": "app.engine.recon.job",
    "recon-sweep": "app.engine.recon.sweep",
    "ct-recon": "app.engine.recon.ct.job",
    "evaluate": "app.engine.evaluation.job",
    "audit": "app.engine.audit.memorization",
    "study-create": "app.engine.study.jobs",
    "study-stats": "app.engine.study.jobs",
    "study-export": "app.engine.study.jobs",
    "study-import": "app.engine.study.jobs",
    "selftest": "app.engine.selftest",
}

_RUNNERS: dict[str, Callable[[Spec, JobContext], dict | None]] = {}


def register(spec_cls: type[Spec]):
    """Decorator registering ``fn(spec, ctx) -> result dict`` as the runner of ``spec_cls``."""
    kind = spec_cls.model_fields["kind"].default
    if not isinstance(kind, str) or not kind:
        raise TypeError(f"{spec_cls.__name__} needs a field kind: Literal['name'] = 'name'")

    def deco(fn):
        _RUNNERS[kind] = fn
        return fn

    return deco


def runner(kind: str) -> Callable[[Spec, JobContext], dict | None]:
    """The runner of a job kind, importing the engine module that registers it on first use."""
    if kind not in _RUNNERS:
        spec_class(kind)  # an unknown kind: UserError naming the known ones
        module = KIND_MODULES.get(kind)
        if module is None:
            raise RuntimeError(f"job kind {kind!r} has a spec but no runner module in KIND_MODULES")
        importlib.import_module(module)
        if kind not in _RUNNERS:
            raise RuntimeError(f"module {module} does not register a runner for job kind {kind!r}")
    return _RUNNERS[kind]


# --------------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------------

Emit = Callable[[Event], None]


class JobContext:
    """What a runner sees: event helpers, the stop check, the workspace and the job id."""

    def __init__(self, emit: Emit, should_stop: Callable[[], bool], workspace=None, job_id: str = ""):
        self._emit = emit
        self._should_stop = should_stop
        self._workspace = workspace
        self.job_id = job_id or new_job_id()

    # -- events --------------------------------------------------------------------------
    def emit(self, event: Event) -> None:
        self._emit(event)

    def progress(self, step: int, total: int, label: str = "") -> None:
        self._emit(Progress(int(step), int(total), label))

    def log(self, text: str, level: str = "info") -> None:
        self._emit(Log(level, text))

    def scalar(self, name: str, step: int, value: float) -> None:
        self._emit(Scalar(name, int(step), float(value)))

    def image(self, name: str, array: np.ndarray, kind: str = "image") -> None:
        if kind not in IMAGE_KINDS:
            raise ValueError(f"image kind {kind!r} is not one of {IMAGE_KINDS}")
        self._emit(Image(name, np.asarray(array), kind))

    def artifact(self, kind: str, path: str | Path) -> None:
        self._emit(Artifact(kind, str(path)))

    # -- cancellation ----------------------------------------------------------------------
    def should_stop(self) -> bool:
        return bool(self._should_stop())

    def check(self) -> None:
        """Raise JobCancelled if the caller asked us to stop. Call at every loop step."""
        if self._should_stop():
            raise JobCancelled()

    # -- workspace -------------------------------------------------------------------------
    @property
    def workspace(self):
        if self._workspace is None or isinstance(self._workspace, (str, Path)):
            from app.engine.store import Workspace

            self._workspace = Workspace.open(self._workspace)
        return self._workspace

    def job_dir(self) -> Path:
        """A folder for this job's outputs inside the workspace (created on first use)."""
        d = self.workspace.root / "jobs" / self.job_id
        d.mkdir(parents=True, exist_ok=True)
        return d


def new_job_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]


def run(
    spec: Spec,
    emit: Emit,
    should_stop: Callable[[], bool] = lambda: False,
    *,
    workspace=None,
    job_id: str = "",
    transport: str = "local",
    record: bool = True,
) -> Event:
    """Run a job to its end and return its terminal event (also emitted). Never raises.

    ``workspace`` is a ``Workspace``, a folder, or None for the default workspace. When ``record``
    is true the job and its outcome are written to the workspace's job table.
    """
    ctx = JobContext(emit, should_stop, workspace, job_id)
    kind = getattr(spec, "kind", "?")
    store = None
    if record:
        try:
            store = ctx.workspace
            store.record_job_start(ctx.job_id, kind, spec.model_dump(mode="json"), transport)
        except Exception as exc:  # a broken workspace must not hide the job's own error
            emit(Log("warning", f"could not record the job in the workspace: {exc}"))
            store = None

    def finish(event: Event) -> Event:
        if store is not None:
            try:
                if isinstance(event, Done):
                    store.record_job_end(ctx.job_id, "done", result=event.result)
                elif isinstance(event, Failed):
                    store.record_job_end(ctx.job_id, "failed", message=event.message)
                else:
                    store.record_job_end(ctx.job_id, "cancelled")
            except Exception as exc:
                emit(Log("warning", f"could not record the job's end in the workspace: {exc}"))
        emit(event)
        return event

    try:
        result = runner(kind)(spec, ctx)
        return finish(Done(to_jsonable(result or {})))
    except JobCancelled:
        return finish(Cancelled())
    except KeyboardInterrupt:
        return finish(Cancelled())
    except UserError as exc:
        emit(Log("debug", traceback.format_exc()))
        return finish(Failed(str(exc)))
    except ValidationError as exc:
        emit(Log("debug", traceback.format_exc()))
        return finish(Failed(format_validation_error(exc)))
    except MemoryError:
        emit(Log("error", traceback.format_exc()))
        return finish(Failed("out of memory: try a smaller batch size, image size or model"))
    except OSError as exc:
        emit(Log("error", traceback.format_exc()))
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        return finish(Failed(disk_full_message(exc, ctx) or f"{exc.strerror or exc}{where}"))
    except Exception as exc:
        emit(Log("error", traceback.format_exc()))
        return finish(Failed(disk_full_message(exc, ctx) or f"{type(exc).__name__}: {exc}"))


_H5_FILENAME = re.compile(r"filename = '([^']+)'")


def disk_full_message(exc: BaseException, ctx: JobContext | None = None) -> str | None:
    """A clear message when a job failed because its disk filled up, else None.

    Python reports ENOSPC as an OSError; HDF5 often reports only a later symptom ("unable to flush
    file") because the write errors themselves were raised inside destructors. So the exception
    chain is searched first, then the free space of the workspace's disk is looked at.
    """
    seen: list[BaseException] = []
    e: BaseException | None = exc
    while e is not None and e not in seen:
        seen.append(e)
        e = e.__cause__ or e.__context__
    full_file = None
    for e in seen:
        text = str(e)
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
            full_file = e.filename or ""
            break
        if "No space left on device" in text or "errno = 28" in text:
            m = _H5_FILENAME.search(text)
            full_file = m.group(1) if m else ""
            break
    if full_file is None and ctx is not None and ctx._workspace is not None:
        try:
            root = ctx.workspace.root
            if shutil.disk_usage(root).free < 1 << 20:
                full_file = str(root)
        except Exception:
            pass
    if full_file is None:
        return None
    return disk_full_text(f" while writing {full_file}" if full_file else "")


def run_collect(spec: Spec, should_stop: Callable[[], bool] = lambda: False, **kw) -> list[Event]:
    """Run a job and return all its events (handy for tests and scripts)."""
    events: list[Event] = []
    run(spec, events.append, should_stop, **kw)
    return events


def cpu_threads_from_env() -> None:
    """Honour RADSYNTH_THREADS for torch's intra-op pool (tests set it to keep runs predictable)."""
    n = os.environ.get("RADSYNTH_THREADS")
    if n:
        import torch

        torch.set_num_threads(int(n))
