"""A real `radsynth serve` process on 127.0.0.1 (random free port), its token, and a TCP proxy
that can drop every connection to simulate a lost network."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import SHARED_DATA, shared_file

ROOT = Path(__file__).resolve().parents[2]
UPLOAD_LIMIT_MB = 1.0


def shared_file_or_skip(server, name: str) -> str:
    """A real data file, which the test servers also serve as a data root (skips when absent)."""
    return str(shared_file(name))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    def __init__(self, workspace: Path, token_file: Path, data_root: Path, extra: list[str] | None = None,
                 env: dict | None = None, cwd: Path | None = None, log_dir: Path | None = None):
        self.workspace, self.token_file, self.data_root = workspace, token_file, data_root
        self.extra = extra or []
        self.env, self.cwd, self.log_dir = env or {}, cwd or ROOT, log_dir or workspace.parent
        self.proc: subprocess.Popen | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def token(self) -> str:
        return self.token_file.read_text().strip()

    def start(self) -> LiveServer:
        self.port = free_port()
        env = dict(os.environ, RADSYNTH_THREADS="1", PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1",
                   PYTHONPATH=str(ROOT), **self.env)
        self.log = open(self.log_dir / f"server-{self.port}.log", "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", "--port", str(self.port), "--workspace", str(self.workspace),
             "--token-file", str(self.token_file), "--data-root", str(self.data_root),
             *(["--data-root", str(SHARED_DATA)] if SHARED_DATA.is_dir() else []),
             "--max-upload-mb", str(UPLOAD_LIMIT_MB), *self.extra],
            cwd=self.cwd, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # wait until /api/info answers (not a timed assertion)
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {Path(self.log.name).read_text()}")
            try:
                if self.token_file.exists():
                    r = httpx.get(self.url + "/api/info", headers={"Authorization": f"Bearer {self.token}"}, timeout=2)
                    if r.status_code == 200:
                        return self
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError("the server did not answer /api/info within 60 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


@pytest.fixture(scope="session")
def server_dirs(tmp_path_factory):
    base = tmp_path_factory.mktemp("radsynth-server")
    data_root = base / "data"
    data_root.mkdir()
    (data_root / "scans").mkdir()
    (data_root / "scans" / "note.txt").write_text("a file inside the data root")
    outside = base / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("must never be served")
    (data_root / "link-out").symlink_to(outside, target_is_directory=True)
    return base, data_root, outside


@pytest.fixture(scope="session")
def server(server_dirs):
    base, data_root, _ = server_dirs
    srv = LiveServer(base / "workspace", base / "config" / "token", data_root).start()
    yield srv
    srv.stop()


@pytest.fixture
def client(server):
    from app.workers.remote import RemoteClient

    with RemoteClient(server.url, server.token) as c:
        yield c


class DroppingProxy:
    """A loopback TCP forwarder; ``drop()`` closes every open connection (a network cut);
    while ``refusing`` is set, new connections are closed at once (the network stays down)."""

    def __init__(self, upstream_port: int):
        self.upstream_port = upstream_port
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        self.lock = threading.Lock()
        self.closed = False
        self.refusing = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.closed:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            if self.refusing:
                client.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            with self.lock:
                self.conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a, b):
        try:
            while True:
                data = a.recv(65536)
                if not data:
                    break
                b.sendall(data)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def drop(self) -> int:
        with self.lock:
            conns, self.conns = self.conns, []
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
                s.close()
            except OSError:
                pass
        return len(conns)

    def close(self):
        self.closed = True
        self.sock.close()
        self.drop()


@pytest.fixture
def proxy(server):
    p = DroppingProxy(server.port)
    yield p
    p.close()
