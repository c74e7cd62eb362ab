"""Security of `radsynth serve`: the token on every route and the WebSocket, data-root confinement,
upload limits and safe extraction, and refusing a public address without TLS."""

from __future__ import annotations

import io
import os
import re
import socket
import stat
import tarfile
import time
import zipfile

import httpx
import pytest
from fastapi.routing import APIRoute, APIWebSocketRoute

from app.server.app import ServerConfig, create_app
from app.workers.remote import AuthError, RemoteClient, RemoteError

from .conftest import UPLOAD_LIMIT_MB

LIMIT = int(UPLOAD_LIMIT_MB * 2**20)


def all_routes(tmp_path):
    app = create_app(ServerConfig(workspace=tmp_path / "enum-ws", token="t" * 32))
    routes = []
    for r in app.routes:
        path = re.sub(r"\{[^}]+\}", "x", r.path)
        if isinstance(r, APIWebSocketRoute):
            routes.append(("WS", path))
        elif isinstance(r, APIRoute):
            routes += [(m, path) for m in sorted(r.methods)]
    return routes


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong-token-of-some-length"},
                                     {"Authorization": "Basic dXNlcjpwYXNz"}], ids=["missing", "wrong", "not-bearer"])
def test_every_route_and_unknown_paths_answer_401_and_nothing_else_without_the_right_token(server, tmp_path, headers):
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    routes = all_routes(tmp_path)
    assert ("POST", "/api/jobs") in routes and ("WS", "/api/jobs/x/events") in routes
    routes += [("GET", "/api/no-such-endpoint"), ("DELETE", "/api/jobs"), ("GET", "/")]
    for method, path in routes:
        if method == "WS":
            with pytest.raises(InvalidStatus) as exc:
                with connect(f"ws://127.0.0.1:{server.port}{path}", additional_headers=headers, open_timeout=10):
                    pass
            assert exc.value.response.status_code == 401, path
            continue
        r = httpx.request(method, server.url + path, headers=headers, json={"kind": "selftest"}, timeout=10)
        assert r.status_code == 401, (method, path, r.status_code)
        assert r.json() == {"detail": "unauthorized: send 'Authorization: Bearer <token>'"}, (method, path)


def test_the_websocket_accepts_the_token_in_the_header_or_the_query_and_refuses_a_wrong_one(server, client):
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    job_id = client.submit({"kind": "selftest", "steps": 2, "size": 8})
    with connect(f"ws://127.0.0.1:{server.port}/api/jobs/{job_id}/events?token={server.token}") as ws:
        assert ws.recv(30)
    with pytest.raises(InvalidStatus) as exc:
        with connect(f"ws://127.0.0.1:{server.port}/api/jobs/{job_id}/events?token=nope-nope-nope-nope"):
            pass
    assert exc.value.response.status_code == 401


def test_the_token_file_is_created_readable_by_its_owner_only(server):
    assert stat.S_IMODE(os.stat(server.token_file).st_mode) == 0o600
    assert len(server.token) >= 32


def test_a_token_file_readable_by_others_is_refused(tmp_path, capsys):
    from app.server.main import main

    tok = tmp_path / "token"
    tok.write_text("x" * 40)
    tok.chmod(0o644)
    assert main(["--token-file", str(tok), "--workspace", str(tmp_path / "ws"), "--port", "0"]) == 2
    assert "chmod 600" in capsys.readouterr().err


def test_a_public_address_without_tls_or_insecure_is_refused(tmp_path, capsys):
    from app.server.main import main

    args = ["--token-file", str(tmp_path / "t"), "--workspace", str(tmp_path / "ws"), "--port", "0"]
    assert main(["--host", "0.0.0.0", *args]) == 2
    assert "without TLS" in capsys.readouterr().err
    assert main(["--host", "0.0.0.0", "--tls-cert", str(tmp_path / "cert.pem"), *args]) == 2  # key missing
    assert not (tmp_path / "t").exists()  # refused before creating anything


def test_a_client_with_a_wrong_token_gets_an_auth_error(server):
    with RemoteClient(server.url, "not-the-token-at-all-0000") as c, pytest.raises(AuthError):
        c.info()


def test_dataset_paths_with_dotdot_absolute_outside_or_through_a_symlink_out_are_refused(server, client, server_dirs):
    _, data_root, outside = server_dirs
    assert [f["path"] for f in client.datasets("scans")["files"]] == ["note.txt"]
    for bad in ["../outside", "scans/../../outside", str(outside), "/etc", "link-out"]:
        with pytest.raises(RemoteError) as exc:
            client.datasets(bad)
        assert exc.value.status == 403, bad
    listed = client.datasets()["files"]
    assert not any("secret" in f["path"] for files in listed.values() for f in files)


def test_job_specs_naming_files_outside_the_data_roots_get_422_naming_the_field(client, server_dirs):
    _, _, outside = server_dirs
    for bad in ["../outside/x.npz", str(outside / "x.npz"), "/etc/passwd.npz", "link-out/x.npz"]:
        with pytest.raises(RemoteError) as exc:
            client.submit({"kind": "recon", "input": bad})
        assert exc.value.status == 422 and exc.value.detail[0]["loc"] == ["input"], bad


def test_artifact_downloads_outside_the_workspace_are_refused(client, server, tmp_path):
    for bad in ["/etc/passwd", str(server.token_file), "../config/token", "jobs/../../config/token"]:
        with pytest.raises(RemoteError) as exc:
            client.download(bad, tmp_path / "x")
        assert exc.value.status == 403, bad
    assert not (tmp_path / "x").exists()


def test_an_upload_declaring_a_size_over_the_limit_is_refused_before_its_body_is_read(server):
    with socket.create_connection(("127.0.0.1", server.port)) as s:
        s.sendall((f"POST /api/datasets/upload?name=big HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {server.token}\r\n"
                   f"Content-Length: {LIMIT * 50}\r\n\r\n").encode())
        reply = s.recv(4096).decode()  # answered with no body byte sent
    assert reply.startswith("HTTP/1.1 413")
    assert not (server.workspace / "uploads" / "big").exists()


def test_an_oversized_streamed_upload_is_cut_at_the_limit_without_filling_the_disk(server):
    import threading

    incoming = server.workspace / "uploads" / ".incoming"
    peak = {"bytes": 0, "samples": 0}
    sending = threading.Event()
    sending.set()

    def watch():  # the partial file's size, sampled all along the request
        while sending.is_set():
            for p in incoming.glob("*"):
                try:
                    peak["bytes"] = max(peak["bytes"], p.stat().st_size)
                    peak["samples"] += 1
                except FileNotFoundError:
                    pass
            time.sleep(0.001)

    def body():  # no Content-Length: the server must count while reading
        for _ in range(3 * LIMIT // 65536):
            yield b"\0" * 65536

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        r = httpx.post(server.url + "/api/datasets/upload", params={"name": "huge"}, content=body(),
                       headers={"Authorization": f"Bearer {server.token}"}, timeout=30)
        assert r.status_code == 413 and "limit" in r.json()["detail"]
    except httpx.TransportError:
        pass  # the server may close the connection while the client still sends; the disk is what matters
    finally:
        sending.clear()
        watcher.join()
    assert peak["bytes"] <= LIMIT
    assert list(incoming.glob("*")) == [] and not (server.workspace / "uploads" / "huge").exists()
    assert httpx.get(server.url + "/api/info", headers={"Authorization": f"Bearer {server.token}"}).status_code == 200


def _zip(members: dict[str, bytes], symlink: str | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        if symlink:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, "/etc/passwd")
    return buf.getvalue()


def _tar_with_symlink() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        info = tarfile.TarInfo("images/escape")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc"
        tf.addfile(info)
    return buf.getvalue()


def _upload(server, name, payload):
    return httpx.post(server.url + "/api/datasets/upload", params={"name": name}, content=payload,
                      headers={"Authorization": f"Bearer {server.token}"}, timeout=30)


@pytest.mark.parametrize("payload,why", [
    (_zip({"ok.txt": b"1", "../escape.txt": b"2"}), "'..'"),
    (_zip({"/abs.txt": b"2"}), "absolute"),
    (_zip({"ok.txt": b"1"}, symlink="link"), "symbolic link"),
    (_tar_with_symlink(), "link"),
    (b"not an archive at all", "not a zip or tar"),
], ids=["dotdot", "absolute", "zip-symlink", "tar-symlink", "garbage"])
def test_unsafe_archives_are_refused_and_leave_nothing_behind(server, payload, why):
    r = _upload(server, "unsafe", payload)
    assert r.status_code == 422 and why in r.json()["message"]
    assert not (server.workspace / "uploads" / "unsafe").exists()
    assert not (server.workspace / "uploads" / "escape.txt").exists()


def test_an_archive_expanding_past_the_limit_is_stopped_at_the_limit(server):
    r = _upload(server, "bomb", _zip({"zeros.bin": b"\0" * (5 * LIMIT)}))  # a few KiB compressed
    assert r.status_code == 413
    assert not (server.workspace / "uploads" / "bomb").exists()


def test_a_safe_archive_is_extracted_under_the_uploads_root_and_listed(server, client, tmp_path):
    archive = tmp_path / "scans.zip"
    archive.write_bytes(_zip({"a/one.txt": b"1", "a/two.txt": b"22"}))
    reply = client.upload(archive, "scans-1")
    assert reply["files"] == 2 and reply["job_id"] is None
    assert (server.workspace / "uploads" / "scans-1" / "a" / "two.txt").read_bytes() == b"22"
    files = {f["path"] for f in client.datasets()["files"]["uploads"]}
    assert {"scans-1/a/one.txt", "scans-1/a/two.txt"} <= files
    with pytest.raises(RemoteError) as exc:
        client.upload(archive, "scans-1")
    assert exc.value.status == 409


def test_the_registry_its_journal_uploads_studies_and_the_top_level_are_never_downloaded(server, client, tmp_path):
    ws = server.workspace
    (ws / "studies" / "s-x").mkdir(parents=True, exist_ok=True)
    (ws / "studies" / "s-x" / "truth.json").write_text('{"case-1": "real"}')
    (ws / "uploads" / "up-x").mkdir(parents=True, exist_ok=True)
    (ws / "uploads" / "up-x" / "scan.txt").write_text("uploaded")
    client.info()  # the registry is open: its -wal / -shm files exist beside it
    names = ["radsynth.sqlite", "radsynth.sqlite-wal", "radsynth.sqlite-shm"]
    assert {n for n in names if (ws / n).exists()} >= {"radsynth.sqlite"}
    refused = [*names, str(ws / "radsynth.sqlite"), "jobs/../radsynth.sqlite", ".", str(ws), "jobs", "datasets",
               "studies/s-x/truth.json", "studies", "uploads/up-x/scan.txt", "uploads/.incoming"]
    for bad in refused:
        with pytest.raises(RemoteError) as exc:
            client.download(bad, tmp_path / "x")
        assert exc.value.status == 403, bad
        assert "radsynth.sqlite" not in bad or "registry" in str(exc.value) or "'..'" in str(exc.value), bad
    assert not (tmp_path / "x").exists()


def test_job_outputs_are_downloaded(server, client, tmp_path):
    (server.workspace / "outputs").mkdir(exist_ok=True)
    (server.workspace / "outputs" / "result-x.txt").write_text("a job output")
    assert client.download("outputs/result-x.txt", tmp_path).read_text() == "a job output"
    job_id = client.submit({"kind": "selftest", "steps": 2, "size": 8})
    list(client.events(job_id))
    events = client.download(f"jobs/{job_id}/events.jsonl", tmp_path / "events.jsonl").read_text()
    assert events.count("\n") == client.job(job_id)["events"]
