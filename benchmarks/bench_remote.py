"""Remote transport over loopback: event throughput and latency, 128x128 image events, and the
overhead of a tiny job run remotely against the same job run locally (the anchor: engine.run in
process, events handed to a Python callback).

    .venv/bin/python benchmarks/bench_remote.py [--events 20000] [--images 500] [--repeats 10]

A real `radsynth serve` process is started on a free port (with one extra job kind, "bench-events",
registered in that process only: it emits N scalars or N 128x128 images as fast as it can, each
carrying its emit time) and the client is this process (RemoteClient: httpx + websockets). So the
figures include the whole path: engine.run -> numbering + JSONL append -> WebSocket -> JSON decode
-> .npy decode of images.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Literal

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from pydantic import Field  # noqa: E402

from app.engine import jobs as J  # noqa: E402


class BenchEventsSpec(J.Spec):
    """Emit N events as fast as possible (benchmark only; never registered in the product)."""

    kind: Literal["bench-events"] = "bench-events"
    n: int = Field(1000, ge=1, description="number of events")
    image: int = Field(0, ge=0, description="0: scalar events; S: SxS float32 image events")
    pace: float = Field(0.0, ge=0, description="seconds between events (0: as fast as possible)")


@J.register(BenchEventsSpec)
def run_bench_events(spec: BenchEventsSpec, ctx: J.JobContext) -> dict:
    rng = np.random.default_rng(0)
    img = rng.standard_normal((spec.image, spec.image)).astype(np.float32) if spec.image else None
    for i in range(spec.n):
        ctx.check()
        ctx.scalar("t", i, time.time())  # the emit time: the client computes the latency from it
        if img is not None:
            ctx.image("preview", img, "image")
        if spec.pace:
            time.sleep(spec.pace)
    return {"n": spec.n}


J.KIND_MODULES["bench-events"] = __name__


def start_server(tmp: Path) -> tuple[subprocess.Popen, str, str]:
    import socket

    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, RADSYNTH_THREADS="1", PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "serve", "--port", str(port),
                             "--workspace", str(tmp / "ws"), "--token-file", str(tmp / "token")],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        if (tmp / "token").exists():
            token = (tmp / "token").read_text().strip()
            try:
                if httpx.get(url + "/api/info", headers={"Authorization": f"Bearer {token}"}).status_code == 200:
                    return proc, url, token
            except httpx.TransportError:
                pass
        time.sleep(0.2)
    proc.kill()
    raise SystemExit("the server did not start")


def remote_stream(client, spec: dict) -> tuple[float, int, list[float]]:
    """(seconds from submit to Done, events received, latencies of the scalar events)."""
    t0 = time.perf_counter()
    job_id = client.submit(spec)
    n = 0
    lat = []
    for _, ev in client.events(job_id):
        n += 1
        if isinstance(ev, J.Scalar) and ev.name == "t":
            lat.append(time.time() - ev.value)
    return time.perf_counter() - t0, n, lat


LOCAL_WS = Path(tempfile.mkdtemp(prefix="bench-remote-ws-"))


def local_stream(spec: dict, record: bool = True) -> tuple[float, int]:
    count = [0]

    def emit(ev):
        count[0] += 1

    t0 = time.perf_counter()
    J.run(J.parse_spec(spec), emit, workspace=LOCAL_WS, record=record)  # recorded, as the server does
    return time.perf_counter() - t0, count[0]


def pct(values, q):
    return float(np.percentile(np.asarray(values) * 1000, q)) if values else float("nan")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        from app.server.main import main as serve

        raise SystemExit(serve(sys.argv[2:]))
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=20000)
    ap.add_argument("--images", type=int, default=500)
    ap.add_argument("--repeats", type=int, default=10)
    args = ap.parse_args()
    J.cpu_threads_from_env()
    from app.workers.remote import RemoteClient

    with tempfile.TemporaryDirectory() as d:
        proc, url, token = start_server(Path(d))
        try:
            with RemoteClient(url, token) as c:
                remote_stream(c, {"kind": "selftest", "steps": 2, "size": 8})  # warm both sides
                local_stream({"kind": "selftest", "steps": 2, "size": 8})
                rows = []
                scalars = {"kind": "bench-events", "n": args.events}
                tr, nr, lat = remote_stream(c, scalars)
                tl, nl = local_stream(scalars)
                rows.append(("scalar events / s", nl / tl, nr / tr))
                images = {"kind": "bench-events", "n": args.images, "image": 128}
                tri, nri, lat_img = remote_stream(c, images)
                tli, nli = local_stream(images)
                rows.append(("128x128 image events / s", args.images / tli, args.images / tri))
                paced = {"kind": "bench-events", "n": 200, "pace": 0.005}
                _, _, lat_paced = remote_stream(c, paced)
                tiny = {"kind": "selftest", "steps": 5, "size": 8}
                remote_t = [remote_stream(c, tiny)[0] for _ in range(args.repeats)]
                local_t = [local_stream(tiny)[0] for _ in range(args.repeats)]
                bare_t = [local_stream(tiny, record=False)[0] for _ in range(args.repeats)]
        finally:
            proc.terminate()
            proc.wait(20)

    print(f"remote transport over loopback ({url}); anchor: engine.run in process with a Python callback")
    print(f"{'measure':34s} {'local (anchor)':>16s} {'remote':>14s} {'remote/local':>13s}")
    for name, loc, rem in rows:
        print(f"{name:34s} {loc:16.0f} {rem:14.0f} {rem / loc:13.3f}")
    ml, mr = statistics.median(local_t) * 1000, statistics.median(remote_t) * 1000
    print(f"{'tiny selftest job, median ms':34s} {ml:16.1f} {mr:14.1f} {mr / ml:13.1f}   "
          f"(overhead {mr - ml:.1f} ms over {args.repeats} runs; both record the job in a workspace)")
    mb = statistics.median(bare_t) * 1000
    print(f"{'  same, local without job record':34s} {mb:16.1f} {mr:14.1f} {mr / mb:13.1f}")
    print(f"latency emit->client, paced 200/s : median {pct(lat_paced, 50):.2f} ms, p95 {pct(lat_paced, 95):.2f} ms")
    print(f"latency at full speed, scalars    : median {pct(lat, 50):.1f} ms, p95 {pct(lat, 95):.1f} ms")
    print(f"latency at full speed, images     : median {pct(lat_img, 50):.1f} ms, p95 {pct(lat_img, 95):.1f} ms")


if __name__ == "__main__":
    main()
