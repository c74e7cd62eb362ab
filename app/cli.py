"""`radsynth <verb>`: every job kind as a headless command, with flags generated from its spec.

    radsynth ingest SOURCE --name NAME --size 128 --json
    radsynth train --config spec.json --epochs 3
    radsynth study stats STUDY --json        (two-word verbs map to kind "study-stats")

Each verb takes ``--config FILE.json`` (a spec; flags given as well override its fields) or the
spec's fields as flags (``--field-name VALUE``). A progress bar is drawn on stderr when it is a
terminal. With ``--json`` exactly one JSON object — the Done result, or ``{"error": ...}`` — is
the last line of stdout. Exit codes: 0 Done, 1 Failed, 2 bad arguments, 130 cancelled (Ctrl-C).
Under ``torchrun --nproc_per_node N -m app.cli -- VERB ...`` (train, sample) every rank runs the job and rank 0 alone prints its log
lines and result and records it; another rank prints only its warnings and errors, marked ``[rank N]``.

Non-job commands (``serve``, ``gui``, ``datasets``, ``runs``, ``jobs``) are listed in COMMANDS.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

from pydantic import ValidationError

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_CANCELLED = 0, 1, 2, 130

#: verbs that are not jobs: name -> "module:function(argv: list[str]) -> int"
COMMANDS: dict[str, str] = {
    "serve": "app.server.main:main",
    "gui": "app.__main__:main",
    "datasets": "app.cli:list_datasets",
    "runs": "app.cli:list_runs",
    "jobs": "app.cli:list_jobs",
}


class UsageError(Exception):
    pass


# ---------------------------------------------------------------------------------------------
# flags from a spec
# ---------------------------------------------------------------------------------------------


def build_parser(verb: str, spec_cls) -> argparse.ArgumentParser:
    """The verb's parser, one flag per field of ``app.engine.specs.fields.describe(spec_cls)``."""
    from app.engine.specs.fields import describe

    text = (spec_cls.cli_help or spec_cls.__doc__ or "").strip()
    p = argparse.ArgumentParser(prog=f"radsynth {verb}", description=text.splitlines()[0] if text else None)
    p.add_argument("--config", type=Path, help="spec as JSON (flags override its fields)")
    p.add_argument("--workspace", type=Path, help="workspace folder (default: $RADSYNTH_WORKSPACE or the user data dir)")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object on the last line")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar or log lines")
    fields = describe(spec_cls)
    for f in fields:
        if f.positional:
            p.add_argument(f.name, nargs="?", default=None, help=f.description)
    for f in fields:
        if f.positional:
            continue
        kw: dict = {"dest": f.name, "default": None, "help": f.help()}
        if f.shape == "bool":
            kw["action"] = argparse.BooleanOptionalAction
        elif f.shape == "list":
            kw["nargs"] = "*"  # an empty list too (e.g. --attention-resolutions with none); the spec checks lengths
            if f.choices:
                kw["choices"] = [str(c) for c in f.choices]
                kw["metavar"] = "{" + "|".join(map(str, f.choices)) + "}"
        elif f.shape == "choice":
            kw["choices"] = [str(c) for c in f.choices]
            kw["metavar"] = "{" + "|".join(map(str, f.choices)) + "}"
        elif f.role is not None and not f.role.prefix:
            kw["metavar"] = {"input": "PATH", "output": "OUT", "ref": "NAME", "name": "NAME"}[f.role.role]
        p.add_argument(*f.flags, **kw)
    return p


def spec_from_args(spec_cls, ns: argparse.Namespace):
    from app.engine.specs.fields import describe

    data: dict = {}
    if ns.config is not None:
        try:
            data = json.loads(Path(ns.config).read_text())
        except FileNotFoundError:
            raise UsageError(f"config file {ns.config} does not exist") from None
        except json.JSONDecodeError as exc:
            raise UsageError(f"config file {ns.config} is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise UsageError(f"config file {ns.config} must hold a JSON object")
    kind = spec_cls.model_fields["kind"].default
    if data.get("kind", kind) != kind:
        raise UsageError(f"config file {ns.config} is a {data.get('kind')!r} spec, not {kind!r}")
    data["kind"] = kind
    for f in describe(spec_cls):
        value = getattr(ns, f.name, None)
        if value is None:
            continue
        if f.shape == "json" and isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                raise UsageError(f"--{f.name.replace('_', '-')} expects JSON, got {value!r}") from None
        data[f.name] = value
    try:
        return spec_cls.model_validate(data)
    except ValidationError as exc:
        from app.engine.specs.base import format_validation_error

        raise UsageError(format_validation_error(exc)) from None


# ---------------------------------------------------------------------------------------------
# terminal reporting
# ---------------------------------------------------------------------------------------------


class TerminalReporter:
    """Prints log lines and a one-line progress bar to stderr (bar only on a terminal).

    ``rank`` (a torchrun rank other than 0, which reports for all): only its warnings and errors, marked
    ``[rank N]``, no bar."""

    def __init__(self, quiet: bool = False, stream=None, rank: int = 0):
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.rank = int(rank)
        self.tty = self.stream.isatty() and not self.rank
        self.t0 = time.monotonic()
        self._bar_shown = False
        self._last_draw = 0.0
        self.artifacts: list[tuple[str, str]] = []

    def _clear_bar(self):
        if self._bar_shown:
            self.stream.write("\r\033[K")
            self._bar_shown = False

    def __call__(self, ev) -> None:
        from app.engine import jobs as J

        if self.quiet:
            return
        if isinstance(ev, J.Progress):
            now = time.monotonic()
            if not self.tty or (now - self._last_draw < 0.1 and ev.step < ev.total):
                return
            self._last_draw = now
            frac = ev.step / ev.total if ev.total else 0.0
            width = 30
            filled = int(round(frac * width))
            elapsed = now - self.t0
            eta = elapsed * (1 - frac) / frac if frac > 0 else float("nan")
            eta_s = f"{eta:5.0f}s" if eta == eta else "    ?"
            label = f" {ev.label}" if ev.label else ""
            self.stream.write(
                f"\r\033[K[{'#' * filled}{'.' * (width - filled)}] {ev.step}/{ev.total} eta {eta_s}{label}"
            )
            self.stream.flush()
            self._bar_shown = True
        elif isinstance(ev, J.Log):
            if ev.level == "debug" and not os.environ.get("RADSYNTH_DEBUG"):
                return
            if self.rank and ev.level not in ("warning", "error"):
                return
            self._clear_bar()
            prefix = (f"[rank {self.rank}] " if self.rank else "") + ("" if ev.level == "info" else f"{ev.level}: ")
            self.stream.write(f"{prefix}{ev.text}\n")
        elif isinstance(ev, J.Scalar):
            pass
        elif isinstance(ev, J.Artifact):
            self.artifacts.append((ev.kind, ev.path))
        elif isinstance(ev, (J.Done, J.Failed, J.Cancelled)):
            self._clear_bar()
        self.stream.flush()


# ---------------------------------------------------------------------------------------------
# entry point
# ---------------------------------------------------------------------------------------------


def _resolve_verb(argv: list[str]) -> tuple[str, list[str]]:
    from app.engine.specs.base import SPEC_MODULES

    if len(argv) >= 2 and f"{argv[0]}-{argv[1]}" in SPEC_MODULES:
        return f"{argv[0]}-{argv[1]}", argv[2:]
    return argv[0], argv[1:]


def _usage() -> str:
    from app.engine.specs.base import SPEC_MODULES

    verbs = sorted(k.replace("-", " ", 1) if k.startswith("study-") else k for k in SPEC_MODULES)
    return (
        "usage: radsynth VERB [options]   (radsynth VERB --help for a verb's options)\n\n"
        f"job verbs: {', '.join(verbs)}\n"
        f"other commands: {', '.join(sorted(COMMANDS))}\n"
    )


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return EXIT_OK if argv else EXIT_USAGE
    if argv[0] == "--version":
        from app import __version__

        print(__version__)
        return EXIT_OK

    verb, rest = _resolve_verb(argv)
    if verb in COMMANDS:
        module, func = COMMANDS[verb].split(":")
        return int(getattr(importlib.import_module(module), func)(rest) or 0)

    # Ctrl-C is caught from here on, before the slow imports (torch), so an early interrupt still
    # cancels the job cleanly: the job sees the stop flag at its first check and ends Cancelled.
    stop = threading.Event()
    interrupts = {"n": 0}

    def on_sigint(signum, frame):
        interrupts["n"] += 1
        if interrupts["n"] > 1:  # second Ctrl-C: stop waiting for the job to notice
            raise KeyboardInterrupt
        stop.set()
        print("\ncancelling (Ctrl-C again to abort at once)...", file=sys.stderr)

    if threading.current_thread() is not threading.main_thread():  # signals only work there
        return _run_verb(verb, rest, stop)
    old = signal.signal(signal.SIGINT, on_sigint)
    try:
        return _run_verb(verb, rest, stop)
    finally:
        signal.signal(signal.SIGINT, old)


def _run_verb(verb: str, rest: list[str], stop: threading.Event) -> int:
    from app.engine import jobs as J

    try:
        spec_cls = J.spec_class(verb)
    except J.UserError as exc:
        print(f"radsynth: {exc}\n\n{_usage()}", file=sys.stderr)
        return EXIT_USAGE
    parser = build_parser(verb.replace("-", " ", 1) if verb.startswith("study-") else verb, spec_cls)
    try:
        ns = parser.parse_args(rest)
    except SystemExit as exc:  # argparse already printed the message
        return EXIT_OK if exc.code == 0 else EXIT_USAGE
    try:
        spec = spec_from_args(spec_cls, ns)
    except UsageError as exc:
        msg = f"radsynth {verb}: {exc}"
        print(msg, file=sys.stderr)
        if ns.json:
            print(json.dumps({"error": str(exc), "exit_code": EXIT_USAGE}))
        return EXIT_USAGE

    from app.engine.ranks import DistInfo

    J.cpu_threads_from_env()
    dist = DistInfo.from_env()  # under torchrun every rank runs the job; rank 0 alone reports and records it
    reporter = TerminalReporter(quiet=ns.quiet, rank=dist.rank)
    try:
        final = J.run(spec, reporter, stop.is_set, workspace=ns.workspace, transport="cli", record=dist.main)
    except KeyboardInterrupt:
        final = J.Cancelled()

    if not dist.main:
        if isinstance(final, J.Failed):
            print(f"[rank {dist.rank}] radsynth {verb} failed: {final.message}", file=sys.stderr)
        return EXIT_OK if isinstance(final, J.Done) else EXIT_CANCELLED if isinstance(final, J.Cancelled) \
            else EXIT_FAILED
    if isinstance(final, J.Done):
        if ns.json:
            print(json.dumps(final.result))
        else:
            print(json.dumps(final.result, indent=2))
        return EXIT_OK
    if isinstance(final, J.Cancelled):
        print("cancelled", file=sys.stderr)
        if ns.json:
            print(json.dumps({"cancelled": True, "exit_code": EXIT_CANCELLED}))
        return EXIT_CANCELLED
    print(f"radsynth {verb} failed: {final.message}", file=sys.stderr)
    if ns.json:
        print(json.dumps({"error": final.message, "exit_code": EXIT_FAILED}))
    return EXIT_FAILED


# ---------------------------------------------------------------------------------------------
# listing commands
# ---------------------------------------------------------------------------------------------


def _ws_from(argv: list[str], prog: str):
    p = argparse.ArgumentParser(prog=f"radsynth {prog}")
    p.add_argument("--workspace", type=Path)
    p.add_argument("--json", action="store_true")
    ns = p.parse_args(argv)
    from app.engine.store import Workspace

    return Workspace.open(ns.workspace), ns.json


def _fail(prog: str, exc, as_json: bool) -> int:
    print(f"radsynth {prog}: {exc}", file=sys.stderr)
    if as_json:
        print(json.dumps({"error": str(exc), "exit_code": EXIT_FAILED}))
    return EXIT_FAILED


def _delete(argv: list[str], what: str) -> int:
    """``radsynth datasets|runs delete NAME``: remove one from the workspace (a dataset a run trains on now, or a
    run still training, is refused). A dataset that others depend on (runs trained on it, synthetic sets of those
    runs, studies) is deleted only with ``--yes``, after they are named."""
    p = argparse.ArgumentParser(prog=f"radsynth {what} delete")
    p.add_argument("name", help="dataset name" if what == "datasets" else "run id")
    p.add_argument("--workspace", type=Path)
    p.add_argument("--json", action="store_true")
    if what == "datasets":
        p.add_argument("--yes", action="store_true", help="delete even though runs, synthetic sets or studies depend on it")
    ns = p.parse_args(argv)
    from app.engine.errors import UserError
    from app.engine.store import Workspace

    ws = Workspace.open(ns.workspace)
    dependents: list[str] = []
    try:
        if what == "datasets":
            busy = [r.id for r in ws.runs() if r.state == "running" and r.dataset == ns.name]
            if busy:
                raise UserError(f"dataset {ns.name!r} is being trained on by run {busy[0]}: stop it first")
            if not ws.has_dataset(ns.name):
                raise UserError(f"no dataset {ns.name!r} in workspace {ws.root}")
            dependents = ws.dataset_dependents(ns.name)
            if dependents and not ns.yes:
                raise UserError(f"dataset {ns.name!r} is used by: " + "; ".join(dependents)
                                + ". They keep what they made but can no longer read it; pass --yes to delete it anyway")
            ws.delete_dataset(ns.name)
        else:
            ws.delete_run(ns.name)
    except UserError as exc:
        return _fail(f"{what} delete", exc, ns.json)
    if ns.json:
        print(json.dumps({"deleted": ns.name, "dependents": dependents}))
    else:
        print(f"deleted {ns.name}" + (f" (it was used by: {'; '.join(dependents)})" if dependents else ""))
    return EXIT_OK


def _rename(argv: list[str]) -> int:
    """``radsynth datasets rename OLD NEW``: the runs trained on it follow the new name."""
    p = argparse.ArgumentParser(prog="radsynth datasets rename")
    p.add_argument("name", help="dataset name")
    p.add_argument("new_name", help="its new name")
    p.add_argument("--workspace", type=Path)
    p.add_argument("--json", action="store_true")
    ns = p.parse_args(argv)
    from app.engine.errors import UserError
    from app.engine.store import Workspace

    ws = Workspace.open(ns.workspace)
    try:
        ws.rename_dataset(ns.name, ns.new_name)
    except UserError as exc:
        return _fail("datasets rename", exc, ns.json)
    print(json.dumps({"renamed": ns.name, "name": ns.new_name}) if ns.json else f"renamed {ns.name} to {ns.new_name}")
    return EXIT_OK


def _classes(argv: list[str]) -> int:
    """``radsynth datasets classes NAME [NEW_NAME ...]``: list a dataset's classes, or name them in index order
    (``0=normal 1=pneumonia`` names some by index)."""
    p = argparse.ArgumentParser(prog="radsynth datasets classes")
    p.add_argument("name", help="dataset name")
    p.add_argument("names", nargs="*", help="new class names in index order, or INDEX=NAME pairs")
    p.add_argument("--workspace", type=Path)
    p.add_argument("--json", action="store_true")
    ns = p.parse_args(argv)
    from app.engine.errors import UserError
    from app.engine.store import Workspace

    ws = Workspace.open(ns.workspace)
    try:
        rec = ws.dataset(ns.name)
        if ns.names:
            rec = ws.set_class_names(ns.name, _class_names_from(ns.names, rec.classes))
    except UserError as exc:
        return _fail("datasets classes", exc, ns.json)
    counts = rec.meta.get("class_counts") or {}
    if ns.json:
        print(json.dumps({"name": rec.name, "classes": rec.classes}))
    else:
        for i, c in enumerate(rec.classes):
            print(f"{i:3d}  {c}" + (f"  ({counts[c]} images)" if c in counts else ""))
        if not rec.classes:
            print(f"{rec.name} has no classes (unlabelled)")
    return EXIT_OK


def _class_names_from(given: list[str], current: list[str]) -> list[str]:
    """New names from the command line: all of them in order, or INDEX=NAME pairs over the current names."""
    from app.engine.errors import UserError

    if not any("=" in g for g in given):
        return list(given)
    names = list(current)
    for g in given:
        key, sep, value = g.partition("=")
        if not sep or not key.strip().isdigit():
            raise UserError(f"{g!r} is not INDEX=NAME (mix no plain names with INDEX=NAME pairs)")
        k = int(key)
        if k >= len(names):
            raise UserError(f"class index {k} does not exist: the dataset has {len(names)} classes (0..{len(names) - 1})")
        names[k] = value
    return names


DATASET_COMMANDS = {"delete": lambda argv: _delete(argv, "datasets"), "rename": _rename, "classes": _classes}


def list_datasets(argv: list[str]) -> int:
    """``radsynth datasets [--json]`` lists them; ``radsynth datasets delete|rename|classes ...``."""
    if argv[:1] and argv[0] in DATASET_COMMANDS:
        return DATASET_COMMANDS[argv[0]](argv[1:])
    ws, as_json = _ws_from(argv, "datasets")
    rows = [
        {"name": d.name, "images": d.n_images, "size": [d.height, d.width], "classes": d.classes, "source": d.source,
         "splits": d.meta.get("splits") or {}, "modalities": d.meta.get("modalities") or {}, "synthetic": d.synthetic}
        for d in ws.datasets()
    ]
    if as_json:
        print(json.dumps(rows))
    else:
        for r in rows:
            splits = " ".join(f"{k} {v}" for k, v in r["splits"].items())
            print(f"{r['name']:24s} {r['images']:6d} images {r['size'][0]}x{r['size'][1]}  classes={r['classes']}"
                  + (f"  splits: {splits}" if splits else "") + ("  [synthetic]" if r["synthetic"] else ""))
    return EXIT_OK


def list_runs(argv: list[str]) -> int:
    if argv[:1] == ["delete"]:
        return _delete(argv[1:], "runs")
    ws, as_json = _ws_from(argv, "runs")
    rows = [{"id": r.id, "kind": r.kind, "dataset": r.dataset, "state": r.state, "meta": r.meta} for r in ws.runs()]
    if as_json:
        print(json.dumps(rows))
    else:
        for r in rows:
            print(f"{r['id']:36s} {r['kind']:8s} {r['state']:8s} dataset={r['dataset']}")
    return EXIT_OK


def list_jobs(argv: list[str]) -> int:
    ws, as_json = _ws_from(argv, "jobs")
    rows = [
        {"id": j.id, "kind": j.kind, "state": j.state, "transport": j.transport, "message": j.message}
        for j in ws.jobs()
    ]
    if as_json:
        print(json.dumps(rows))
    else:
        for r in rows:
            print(f"{r['id']:28s} {r['kind']:12s} {r['state']:10s} {r['message'] or ''}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
