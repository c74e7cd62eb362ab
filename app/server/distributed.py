"""Multi-GPU jobs: a spec asking for ``num_gpus > 1`` runs under torchrun and its events are relayed.

How it works: the server writes the spec to ``<job folder>/spec.json`` and starts

    python -m torch.distributed.run --standalone --nproc_per_node N \\
        -m app.server.ddp_worker --spec spec.json --job-id ID --workspace WS \\
        --events <job folder>/torchrun-events.jsonl --stop-file <job folder>/STOP

Each rank runs the job through ``engine.run`` (the training loop itself sets up DDP from the
environment torchrun provides: RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT). Rank 0 appends its
events to the events file, one JSON object a line, and only rank 0 records the job in the
workspace. The server tails that file and re-emits each event into the job's own numbered
sequence, so a remote client sees the same stream as for a single-process job. Cancelling creates
the STOP file, which every rank's ``should_stop`` checks (cooperative, as for local jobs); if the
ranks have not ended ``GRACE_S`` seconds later, the process group is terminated. A torchrun that
exits without a terminal event becomes ``Failed`` with the tail of its log.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from app.engine import jobs as J

GRACE_S = 60.0


def wants_torchrun(spec: J.Spec) -> bool:
    try:
        return int(getattr(spec, "num_gpus", 1) or 1) > 1
    except (TypeError, ValueError):
        return False


def torchrun_command(spec_path: Path, job_id: str, workspace_root: Path, events: Path, stop_file: Path,
                     nproc: int) -> list[str]:
    return [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={int(nproc)}",
        "-m", "app.server.ddp_worker", "--spec", str(spec_path), "--job-id", job_id,
        "--workspace", str(workspace_root), "--events", str(events), "--stop-file", str(stop_file),
    ]


def run_under_torchrun(spec: J.Spec, emit, should_stop, *, workspace, job_id: str, folder: Path,
                       nproc: int | None = None, poll_s: float = 0.1) -> None:
    """Run ``spec`` on ``nproc`` (default ``spec.num_gpus``) processes; relay rank 0's events."""
    nproc = int(nproc or getattr(spec, "num_gpus", 1))
    folder = Path(folder)
    spec_path, events, stop_file = folder / "spec.json", folder / "torchrun-events.jsonl", folder / "STOP"
    log_path = folder / "torchrun.log"
    spec_path.write_text(spec.model_dump_json())
    events.write_text("")
    stop_file.unlink(missing_ok=True)
    cmd = torchrun_command(spec_path, job_id, workspace.root, events, stop_file, nproc)
    emit(J.Log("info", f"starting {nproc} processes under torchrun"))
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
                                cwd=str(Path(__file__).resolve().parents[2]))
    stop_sent_at = None
    terminal = None
    offset = 0
    buffer = b""
    while True:
        if should_stop() and stop_sent_at is None:
            stop_file.touch()
            stop_sent_at = time.monotonic()
        if stop_sent_at is not None and time.monotonic() - stop_sent_at > GRACE_S and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        exited = proc.poll() is not None
        with open(events, "rb") as f:  # tail: read what rank 0 appended since last time
            f.seek(offset)
            chunk = f.read()
        offset += len(chunk)
        buffer += chunk
        *complete, buffer = buffer.split(b"\n")
        for raw in complete:
            if not raw.strip():
                continue
            ev = J.event_from_dict(json.loads(raw))
            if isinstance(ev, J.TERMINAL):
                terminal = ev
            else:
                emit(ev)
        if exited:
            break
        time.sleep(poll_s)
    if terminal is None:
        tail = log_path.read_text(errors="replace").strip().splitlines()[-15:]
        emit(J.Log("error", "\n".join(tail)))
        terminal = J.Cancelled() if stop_sent_at is not None else J.Failed(
            f"torchrun exited with code {proc.returncode} before the job reported its outcome (see {log_path})")
    emit(terminal)
