"""Quotas and clean-up on a real server: zip bombs (by expansion ratio) and many-file archives refused with
their limits named and nothing left behind, the workspace quota, deletion of uploads, datasets and finished
jobs (refused while a queued or running job uses them), and dataset listings answered from the registry."""

from __future__ import annotations

import io
import os
import tarfile
import time
import zipfile

import httpx
import pytest

from app.server.quota import folder_bytes
from app.workers.remote import RemoteClient, RemoteError

from .conftest import LiveServer

MAX_FILES = 50


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _tgz(n_files: int) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for i in range(n_files):
            info = tarfile.TarInfo(f"f/{i:05d}.txt")
            info.size = 1
            tf.addfile(info, io.BytesIO(b"x"))
    return buf.getvalue()


@pytest.fixture(scope="module")
def box(tmp_path_factory):
    from app.engine.data.demo import DemoSpec, write_demo_dataset
    from app.engine.store import Workspace

    base = tmp_path_factory.mktemp("quotas")
    (base / "data").mkdir()
    ws = Workspace.open(base / "ws")
    write_demo_dataset(ws, DemoSpec(n_images=8, size=32, slices_per_patient=2))
    # the quota: what the workspace holds now plus 1.2 MiB, so one 0.7 MiB upload fits and a second does not
    quota_gb = (folder_bytes(ws.root) + 1.2 * 2**20) / 2**30
    srv = LiveServer(ws.root, base / "token", base / "data", log_dir=base,
                     extra=["--max-upload-files", str(MAX_FILES), "--max-workspace-gb", f"{quota_gb:.9f}"]).start()
    yield srv
    srv.stop()


def _upload(server, name, payload):
    return httpx.post(server.url + "/api/datasets/upload", params={"name": name}, content=payload,
                      headers={"Authorization": f"Bearer {server.token}"}, timeout=30)


def test_a_zip_expanding_a_hundredfold_is_refused_as_a_bomb_before_it_is_written_whatever_its_size(box):
    payload = _zip({"zeros.bin": b"\0" * (512 << 10)})  # 512 KiB of zeros in about 1 KiB: under every size cap
    assert len(payload) < 4096
    r = _upload(box, "bomb", payload)
    assert r.status_code == 413, r.text
    message = r.json()["message"]
    assert "expansion ratio of 100x" in message and "zip bomb" in message
    assert not (box.workspace / "uploads" / "bomb").exists()
    assert list((box.workspace / "uploads" / ".incoming").iterdir()) == []


@pytest.mark.parametrize("payload", [_zip({f"f/{i:05d}.txt": b"" for i in range(MAX_FILES + 10)}), _tgz(MAX_FILES + 10)],
                         ids=["zip", "tar.gz"])
def test_an_archive_of_more_files_than_the_limit_is_refused_naming_the_limit(box, payload):
    r = _upload(box, "many", payload)
    assert r.status_code == 413, r.text
    message = r.json()["message"]
    assert f"{MAX_FILES} files" in message and "--max-upload-files" in message
    assert not (box.workspace / "uploads" / "many").exists()


def test_an_archive_of_files_up_to_the_limit_is_taken(box):
    r = _upload(box, "fifty", _zip({f"f/{i:05d}.txt": b"x" for i in range(MAX_FILES)}))
    assert r.status_code == 200 and r.json()["files"] == MAX_FILES, r.text
    with RemoteClient(box.url, box.token) as c:
        c.delete_upload("fifty")
    assert not (box.workspace / "uploads" / "fifty").exists()


def test_uploads_past_the_workspace_quota_are_refused_until_an_upload_is_deleted(box):
    payload = _zip({"noise.bin": os.urandom(700 << 10)})  # incompressible: 0.7 MiB on disk
    first = _upload(box, "first", payload)
    assert first.status_code == 200, first.text
    r = _upload(box, "second", payload)
    assert r.status_code in (413, 507), r.text
    assert "--max-workspace-gb" in r.json()["message"]
    assert not (box.workspace / "uploads" / "second").exists()
    with RemoteClient(box.url, box.token) as c:
        freed = c.delete_upload("first")["bytes"]
    assert freed >= 700 << 10 and not (box.workspace / "uploads" / "first").exists()
    assert _upload(box, "second", payload).status_code == 200
    with RemoteClient(box.url, box.token) as c:
        c.delete_upload("second")


def wait_state(c, job_id, states, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        s = c.job(job_id)
        if s["state"] in states:
            return s
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} still {s['state']}")


def test_datasets_and_jobs_in_use_are_not_deleted_and_finished_ones_are(box):
    with RemoteClient(box.url, box.token) as c:
        page = c.datasets(limit=1)
        assert page["total"] == 1 and [d["name"] for d in page["datasets"]] == ["demo-phantoms"]
        blocker = c.submit({"kind": "selftest", "steps": 100000, "size": 8, "delay": 0.01})
        user = c.submit({"kind": "eda", "dataset": "demo-phantoms"})  # queued behind the blocker
        wait_state(c, blocker, ("running",))
        with pytest.raises(RemoteError) as exc:
            c.delete_dataset("demo-phantoms")
        assert exc.value.status == 409 and user in str(exc.value)
        with pytest.raises(RemoteError) as exc:
            c.delete_job(blocker)
        assert exc.value.status == 409 and "cancel it first" in str(exc.value)
        c.cancel(user)
        c.cancel(blocker)
        wait_state(c, blocker, ("cancelled",))
        wait_state(c, user, ("cancelled",))
        gone = c.delete_dataset("demo-phantoms")
        assert gone["deleted"] and gone["dependents"] == []  # nothing was trained on it
        assert c.datasets()["total"] == 0
        assert not (box.workspace / "datasets" / "demo-phantoms").exists()
        for job_id in (blocker, user):
            assert c.delete_job(job_id)["deleted"]
            assert not (box.workspace / "jobs" / job_id).exists()
            with pytest.raises(RemoteError) as exc:
                c.job(job_id)
            assert exc.value.status == 404


def test_the_file_listing_stops_at_its_cap_whatever_an_upload_holds(box):
    from app.server.app import LISTING_CAP

    many = box.workspace / "uploads" / "on-disk"
    for d in range(3):
        (many / f"d{d}").mkdir(parents=True)
        for i in range(LISTING_CAP):
            (many / f"d{d}" / f"{i:05d}").touch()
    with RemoteClient(box.url, box.token) as c:
        files = c.datasets()["files"]["uploads"]
    assert len(files) == LISTING_CAP
    assert files[0]["path"] == "on-disk" and files[1]["path"] == "on-disk/d0"  # in path order, from the top


def test_runs_training_or_used_by_a_job_are_not_deleted_and_others_are(box):
    from app.engine.store import Workspace

    ws = Workspace.open(box.workspace)
    ws.create_run("ddpm", {"kind": "train"}, run_id="run-training")  # a run's row says "running" while it trains
    ws.create_run("ddpm", {"kind": "train"}, run_id="run-done")
    ws.update_run("run-done", state="done")
    with RemoteClient(box.url, box.token) as c:
        with pytest.raises(RemoteError) as exc:
            c.delete_run("run-training")
        assert exc.value.status == 409 and "is training" in str(exc.value)
        blocker = c.submit({"kind": "selftest", "steps": 100000, "size": 8, "delay": 0.01})
        user = c.submit({"kind": "sample", "run": "run-done", "n_images": 1})  # queued behind the blocker
        wait_state(c, blocker, ("running",))
        with pytest.raises(RemoteError) as exc:
            c.delete_run("run-done")
        assert exc.value.status == 409 and user in str(exc.value)
        c.cancel(user)
        c.cancel(blocker)
        wait_state(c, blocker, ("cancelled",))
        wait_state(c, user, ("cancelled",))
        assert c.delete_run("run-done")["deleted"]
        assert not (box.workspace / "runs" / "run-done").exists()
        with pytest.raises(RemoteError) as exc:
            c.delete_run("run-done")
        assert exc.value.status == 404


def test_an_ingest_of_more_files_than_a_dataset_may_hold_is_refused_at_submit(tmp_path):
    data = tmp_path / "data"
    (data / "big").mkdir(parents=True)
    (data / "small").mkdir()
    for i in range(6):
        (data / "big" / f"f{i}.png").write_bytes(b"x")
    for i in range(2):
        (data / "small" / f"f{i}.png").write_bytes(b"x")
    srv = LiveServer(tmp_path / "ws", tmp_path / "token", data, log_dir=tmp_path,
                     extra=["--max-dataset-files", "4"]).start()
    try:
        with RemoteClient(srv.url, srv.token) as c:
            with pytest.raises(RemoteError) as exc:
                c.submit({"kind": "ingest", "source": "big"})
            assert exc.value.status == 422 and exc.value.detail[0]["loc"] == ["source"]
            assert "more than 4 files" in str(exc.value)
            job = c.submit({"kind": "ingest", "source": "small", "size": 16})
            assert job  # accepted (what the two tiny files hold is the job's business)
    finally:
        srv.stop()
