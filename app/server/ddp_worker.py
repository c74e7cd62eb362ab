"""One rank of a multi-GPU job started by torchrun (see app/server/distributed.py)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from app.engine import jobs as J


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m app.server.ddp_worker")
    p.add_argument("--spec", type=Path, required=True)
    p.add_argument("--job-id", required=True)
    p.add_argument("--workspace", type=Path, required=True)
    p.add_argument("--events", type=Path, required=True, help="rank 0 appends its events here (JSON lines)")
    p.add_argument("--stop-file", type=Path, required=True, help="its existence asks every rank to stop")
    ns = p.parse_args(argv)
    J.cpu_threads_from_env()
    rank = int(os.environ.get("RANK", "0"))
    spec = J.parse_spec(ns.spec)
    out = open(ns.events, "a", encoding="utf-8") if rank == 0 else None

    def emit(ev: J.Event) -> None:
        if out is not None:
            out.write(json.dumps(J.event_to_dict(ev), separators=(",", ":")) + "\n")
            out.flush()
        elif isinstance(ev, (J.Failed, J.Log)) and getattr(ev, "level", "error") in ("error", "warning"):
            print(f"[rank {rank}] {getattr(ev, 'message', None) or ev.text}", file=sys.stderr)

    final = J.run(spec, emit, ns.stop_file.exists, workspace=ns.workspace, job_id=ns.job_id,
                  transport="remote-torchrun", record=rank == 0)
    if out is not None:
        out.close()
    return 0 if isinstance(final, J.Done) else 1


if __name__ == "__main__":
    sys.exit(main())
