"""Request latency of `radsynth serve` over loopback, side by side with a bare uvicorn hello-world (the anchor).

    .venv/bin/python benchmarks/bench_server_requests.py [--requests 1000] [--concurrency 20]

Both servers are separate processes started the same way (a socket bound by
``app.server.main.listening_socket``, handed to ``uvicorn.Server.run``, log level warning, the same
WebSocket implementation), on the same machine, in the same run. The client is this process:
``concurrency`` threads, each with its own ``httpx.Client``, share ``requests`` GET requests:

- reused: each thread keeps one connection open (keep-alive), as the GUI's remote client does;
- new: every request opens and closes its own TCP connection (keep-alive off).

radsynth answers ``GET /api/jobs`` (the bearer-token gate, the body limit and a JSON reply from the job
table); the anchor answers ``GET /`` with a constant JSON object. p50 / p99 are per-request wall times
seen by the client, so with 20 requests in flight on a small machine they include queueing; the
sequential line (one connection, one request at a time) shows the bare per-request time.
"""

from __future__ import annotations

import argparse
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]

ANCHOR = """
import sys
import uvicorn
from app.server.main import listening_socket

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = b'{"hello":"world"}'
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})

sock = listening_socket("127.0.0.1", int(sys.argv[1]))
sock.bind(("127.0.0.1", int(sys.argv[1])))
sock.listen(128)
config = uvicorn.Config(app, log_level="warning", ws="websockets-sansio", lifespan="off")
uvicorn.Server(config).run(sockets=[sock])
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, headers: dict, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with code {proc.returncode}")
        try:
            if httpx.get(url, headers=headers, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")


def measure(url: str, headers: dict, n: int, concurrency: int, reuse: bool) -> tuple[list[float], float]:
    """Per-request seconds of ``n`` GETs spread over ``concurrency`` threads, and the wall time of all."""
    per_thread = [n // concurrency + (1 if i < n % concurrency else 0) for i in range(concurrency)]
    times: list[list[float]] = [[] for _ in range(concurrency)]
    errors: list[str] = []
    start = threading.Barrier(concurrency + 1)

    def work(i: int) -> None:
        limits = httpx.Limits(max_keepalive_connections=1 if reuse else 0)
        with httpx.Client(headers=headers, limits=limits, timeout=30) as client:
            start.wait()
            for _ in range(per_thread[i]):
                t0 = time.perf_counter()
                r = client.get(url)
                times[i].append(time.perf_counter() - t0)
                if r.status_code != 200:
                    errors.append(f"HTTP {r.status_code}")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(concurrency)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    if errors:
        raise RuntimeError(f"{len(errors)} requests failed, e.g. {errors[0]}")
    return sorted(x for ts in times for x in ts), wall


def percentile(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, round(q / 100 * (len(sorted_values) - 1)))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--concurrency", type=int, default=20)
    ns = ap.parse_args()

    env = dict(os.environ, PYTHONPATH=str(ROOT), RADSYNTH_THREADS="1", OMP_NUM_THREADS="1")
    tmp = Path(tempfile.mkdtemp(prefix="bench-server-"))
    token_file = tmp / "token"
    fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    token = secrets.token_urlsafe(32)
    os.write(fd, token.encode())
    os.close(fd)
    ports = {"radsynth": free_port(), "anchor": free_port()}
    procs = {
        "radsynth": subprocess.Popen([sys.executable, "-m", "app.cli", "serve", "--port", str(ports["radsynth"]),
                                      "--workspace", str(tmp / "ws"), "--token-file", str(token_file)],
                                     cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
        "anchor": subprocess.Popen([sys.executable, "-c", ANCHOR, str(ports["anchor"])], cwd=ROOT, env=env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
    }
    targets = {
        "radsynth": (f"http://127.0.0.1:{ports['radsynth']}/api/jobs", {"Authorization": f"Bearer {token}"}),
        "anchor": (f"http://127.0.0.1:{ports['anchor']}/", {}),
    }
    labels = {"radsynth": "radsynth serve  GET /api/jobs", "anchor": "uvicorn hello-world (anchor)"}
    try:
        for name, (url, headers) in targets.items():
            wait_ready(url, headers, procs[name])
        for url, headers in targets.values():  # warm both (imports, first-request paths)
            measure(url, headers, 100, 4, True)
        print(f"{ns.requests} GET requests at {ns.concurrency} concurrent over loopback; "
              f"{os.cpu_count()} CPU cores, client and servers on the same machine")
        print(f"{'':32s} {'connections':>11s} {'p50 ms':>8s} {'p99 ms':>8s} {'req/s':>8s}")
        for reuse in (True, False):
            for name, (url, headers) in targets.items():
                times, wall = measure(url, headers, ns.requests, ns.concurrency, reuse)
                print(f"{labels[name]:32s} {'reused' if reuse else 'new':>11s} {percentile(times, 50) * 1e3:8.2f} "
                      f"{percentile(times, 99) * 1e3:8.2f} {len(times) / wall:8.0f}")
        for name, (url, headers) in targets.items():
            times, wall = measure(url, headers, min(ns.requests, 500), 1, True)
            print(f"{labels[name]:32s} {'1, in turn':>11s} {percentile(times, 50) * 1e3:8.2f} "
                  f"{percentile(times, 99) * 1e3:8.2f} {len(times) / wall:8.0f}")
    finally:
        for p in procs.values():
            p.terminate()
        for p in procs.values():
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
