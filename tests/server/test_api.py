"""The server's job API against a real `radsynth serve` process: submit, stream, cancel, replay,
artifacts, spec validation, and a server restart that still replays finished jobs."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from app.engine import jobs as J
from app.workers.remote import RemoteClient, RemoteError

from .conftest import LiveServer, shared_file_or_skip


def wait_state(client, job_id, states=("done", "failed", "cancelled"), timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        s = client.job(job_id)
        if s["state"] in states:
            return s
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} still {s['state']}")


def test_info_reports_version_torch_gpus_and_queue(client):
    info = client.info()
    assert info["server"] == "radsynth" and info["version"]
    assert info["torch"].startswith("2.")
    assert isinstance(info["gpus"], list)  # empty on a CPU box, [{"name", "free_gb", ...}] on a GPU box
    assert info["queue"]["max_concurrent"] == 1
    assert "selftest" in info["kinds"]


def test_a_submitted_selftest_streams_every_event_in_order_up_to_done(client):
    job_id = client.submit(J.parse_spec({"kind": "selftest", "steps": 25, "size": 16}))
    got = list(client.events(job_id))
    seqs = [s for s, _ in got]
    assert seqs == list(range(1, len(got) + 1))
    events = [e for _, e in got]
    assert isinstance(events[-1], J.Done) and events[-1].result["device"] == "cpu"
    assert [e.step for e in events if isinstance(e, J.Scalar)] == list(range(1, 26))
    assert sum(isinstance(e, J.TERMINAL) for e in events) == 1
    images = [e for e in events if isinstance(e, J.Image)]
    assert images and images[0].array.shape == (16, 16)  # arrays cross the wire as .npy


def test_the_stream_replays_from_the_first_event_after_the_job_ended(client):
    job_id = client.submit({"kind": "selftest", "steps": 5, "size": 8})
    wait_state(client, job_id)  # no client followed it while it ran: it ran anyway
    got = list(client.events(job_id))
    assert [s for s, _ in got] == list(range(1, len(got) + 1))
    assert isinstance(got[-1][1], J.Done)


def test_a_client_reconnecting_with_its_last_sequence_number_misses_nothing_and_gets_no_duplicate(client):
    job_id = client.submit({"kind": "selftest", "steps": 60, "size": 8, "delay": 0.02})
    first = []
    for seq, ev in client.events(job_id):  # disconnect after 10 events, mid-job
        first.append((seq, ev))
        if len(first) == 10:
            break
    assert client.job(job_id)["state"] == "running"
    second = list(client.events(job_id, after=first[-1][0]))
    combined = first + second
    assert [s for s, _ in combined] == list(range(1, len(combined) + 1))
    assert [e.step for _, e in combined if isinstance(e, J.Scalar)] == list(range(1, 61))
    assert isinstance(combined[-1][1], J.Done)


def test_cancel_ends_a_running_job_cancelled_and_a_queued_one_before_it_starts(client):
    running = client.submit({"kind": "selftest", "steps": 100000, "size": 8, "delay": 0.01})
    queued = client.submit({"kind": "selftest", "steps": 3, "size": 8})
    wait_state(client, running, ("running",))
    assert client.job(queued)["state"] == "queued"  # one job at a time by default
    client.cancel(queued)
    client.cancel(running)
    assert wait_state(client, running)["state"] == "cancelled"
    assert wait_state(client, queued)["state"] == "cancelled"
    events = [e for _, e in client.events(running)]
    assert isinstance(events[-1], J.Cancelled)
    assert [type(e).__name__ for _, e in client.events(queued)] == ["Cancelled"]  # never ran


def test_a_malformed_spec_gets_422_naming_the_field(client):
    with pytest.raises(RemoteError) as exc:
        client.submit({"kind": "selftest", "steps": "many"})
    assert exc.value.status == 422 and exc.value.detail[0]["loc"] == ["steps"]
    assert "steps" in str(exc.value)
    with pytest.raises(RemoteError) as exc:
        client.submit({"kind": "selftest", "stepz": 3})
    assert exc.value.status == 422 and exc.value.detail[0]["loc"] == ["stepz"]
    with pytest.raises(RemoteError) as exc:
        client.submit({"kind": "no-such-job"})
    assert exc.value.status == 422 and exc.value.detail[0]["loc"] == ["kind"]


def test_a_failing_job_ends_failed_with_its_message(client):
    job_id = client.submit({"kind": "selftest", "steps": 5, "fail_at": 3, "size": 8})
    events = [e for _, e in client.events(job_id)]
    assert isinstance(events[-1], J.Failed) and "fail at step 3" in events[-1].message


def test_a_real_recon_job_runs_remotely_and_its_artifacts_download_and_load(server, client, tmp_path):
    src = shared_file_or_skip(server, "siat_brain_t2_complex_dev.npz")
    spec = {"kind": "recon", "input": src, "slice": 125, "method": ["zero-filled"], "acceleration": 4,
            "mask": "random", "seed": 0}
    job_id = client.submit(spec)
    events = [e for _, e in client.events(job_id)]
    assert isinstance(events[-1], J.Done), getattr(events[-1], "message", "")
    listed = client.artifacts(job_id)
    npz = [a for a in listed if a["path"].endswith(".npz")]
    assert npz and npz[0]["bytes"] > 0
    local = client.download(npz[0]["path"], tmp_path)
    with np.load(local, allow_pickle=False) as z:
        assert z["magnitude"].shape == (256, 256) and np.isfinite(z["magnitude"]).all()
    png = [a for a in listed if a["path"].endswith("_recon.png")][0]
    assert client.download(png["path"], tmp_path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_restarted_server_still_lists_and_replays_finished_jobs(server_dirs, tmp_path):
    base, data_root, _ = server_dirs
    ws, token_file = tmp_path / "ws", tmp_path / "token"
    first = LiveServer(ws, token_file, data_root).start()
    try:
        with RemoteClient(first.url, first.token) as c:
            job_id = c.submit({"kind": "selftest", "steps": 7, "size": 8})
            before = [(s, J.event_to_dict(e)) for s, e in c.events(job_id)]
    finally:
        first.stop()
    second = LiveServer(ws, token_file, data_root).start()
    try:
        with RemoteClient(second.url, second.token) as c:
            assert c.job(job_id)["state"] == "done"
            after = [(s, J.event_to_dict(e)) for s, e in c.events(job_id)]
    finally:
        second.stop()
    assert json.dumps(after) == json.dumps(before)


def test_a_tiny_training_run_on_the_server_ends_done_and_its_safetensors_checkpoint_downloads_and_loads(
        server, client, tmp_path):
    from safetensors.numpy import load_file

    src = shared_file_or_skip(server, "pneumoniamnist_balanced_28.npz")
    ingest = client.submit({"kind": "ingest", "source": src, "name": "pneu-remote", "size": 16, "replace": True})
    last = [e for _, e in client.events(ingest)][-1]
    assert isinstance(last, J.Done), getattr(last, "message", "")
    job_id = client.submit({"kind": "train", "dataset": "pneu-remote", "process": "ddpm", "T": 50,
                            "base_channels": 8, "channel_mults": [1, 2], "num_res_blocks": 1,
                            "attention_resolutions": [], "epochs": 1, "max_steps": 3, "batch_size": 8,
                            "warmup_steps": 0, "preview_every": 0, "log_every": 1, "device": "cpu", "seed": 0})
    got = list(client.events(job_id))
    assert [s for s, _ in got] == list(range(1, len(got) + 1))
    events = [e for _, e in got]
    assert isinstance(events[-1], J.Done), getattr(events[-1], "message", "")
    assert any(isinstance(e, J.Scalar) for e in events)  # the loss curve crossed the wire
    ckpts = [a for a in client.artifacts(job_id) if a["kind"] == "checkpoint"]
    assert ckpts, client.artifacts(job_id)
    local = client.download(ckpts[-1]["path"], tmp_path)  # a checkpoint folder, file by file
    weights = sorted(local.rglob("*.safetensors"))
    assert weights
    tensors = load_file(str(weights[0]))  # safetensors: nothing unpickled
    assert tensors and all(np.isfinite(v).all() for v in tensors.values())
