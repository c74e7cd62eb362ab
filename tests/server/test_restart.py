"""kill -9 of a real server mid-job, then a restart on the same workspace: every event a client had received
is on disk, the queued job runs to done, the running one ends "interrupted" (its stream, the API, the SQLite
job table and `radsynth jobs`), and a client resuming after the last sequence number it saw gets exactly the
events after it."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from app.engine import jobs as J
from app.workers.remote import RemoteClient

from .conftest import ROOT, LiveServer


def wait_state(client, job_id, states, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        s = client.job(job_id)
        if s["state"] in states:
            return s
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} still {s['state']}")


def disk_events(ws, job_id) -> list[dict]:
    return [json.loads(line) for line in (ws / "jobs" / job_id / "events.jsonl").read_text().splitlines()]


def test_after_kill_9_and_a_restart_nothing_received_is_lost_the_queued_job_runs_and_the_running_one_is_interrupted(
        server_dirs, tmp_path):
    _, data_root, _ = server_dirs
    ws, token_file = tmp_path / "ws", tmp_path / "token"
    first = LiveServer(ws, token_file, data_root, log_dir=tmp_path).start()
    try:
        with RemoteClient(first.url, first.token) as c:
            running = c.submit({"kind": "selftest", "steps": 2000, "size": 8, "delay": 0.01})
            queued = c.submit({"kind": "selftest", "steps": 3, "size": 8})
            received = []
            for seq, ev in c.events(running):
                received.append({"seq": seq, "event": J.event_to_dict(ev)})
                if len(received) >= 60:
                    break
            assert c.job(queued)["state"] == "queued"  # one job at a time: it waits behind the running one
        first.proc.kill()  # SIGKILL: no shutdown code runs
        first.proc.wait(20)
    finally:
        first.stop()

    on_disk = disk_events(ws, running)
    assert on_disk[:len(received)] == received  # every event the client had is in the file, in order

    second = LiveServer(ws, token_file, data_root, log_dir=tmp_path).start()
    try:
        with RemoteClient(second.url, second.token) as c:
            s = c.job(running)
            assert s["state"] == "interrupted" and "interrupted" in s["message"]
            rest = [(seq, J.event_to_dict(ev)) for seq, ev in c.events(running, after=received[-1]["seq"])]
            after = disk_events(ws, running)[len(received):]
            assert [seq for seq, _ in rest] == [e["seq"] for e in after] == list(range(received[-1]["seq"] + 1,
                                                                                      len(on_disk) + 2))
            assert rest[-1][1]["type"] == "Failed" and "interrupted" in rest[-1][1]["message"]
            assert wait_state(c, queued, ("done", "failed", "cancelled"))["state"] == "done"
            q_events = [ev for _, ev in c.events(queued)]
            assert isinstance(q_events[-1], J.Done) and sum(isinstance(e, J.TERMINAL) for e in q_events) == 1
    finally:
        second.stop()

    from app.engine.store import Workspace

    rows = {j.id: j for j in Workspace.open(ws).jobs()}
    assert rows[running].state == "interrupted" and rows[queued].state == "done"
    out = subprocess.run([sys.executable, "-m", "app.cli", "jobs", "--workspace", str(ws), "--json"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60, check=True)
    cli = {r["id"]: r for r in json.loads(out.stdout)}
    assert cli[running]["state"] == "interrupted" and "interrupted" in cli[running]["message"]


def test_a_graceful_stop_keeps_queued_jobs_queued_for_the_next_start(server_dirs, tmp_path):
    _, data_root, _ = server_dirs
    ws, token_file = tmp_path / "ws", tmp_path / "token"
    first = LiveServer(ws, token_file, data_root, log_dir=tmp_path).start()
    try:
        with RemoteClient(first.url, first.token) as c:
            running = c.submit({"kind": "selftest", "steps": 2000, "size": 8, "delay": 0.01})
            queued = c.submit({"kind": "selftest", "steps": 3, "size": 8})
            cancelled = c.submit({"kind": "selftest", "steps": 3, "size": 8})
            wait_state(c, running, ("running",))
            c.cancel(cancelled)
    finally:
        first.stop()  # SIGTERM: the running job is stopped, the queued ones are left for the next start
    second = LiveServer(ws, token_file, data_root, log_dir=tmp_path).start()
    try:
        with RemoteClient(second.url, second.token) as c:
            assert c.job(running)["state"] in ("cancelled", "interrupted")
            assert wait_state(c, queued, ("done", "failed", "cancelled"))["state"] == "done"
            assert wait_state(c, cancelled, ("done", "failed", "cancelled"))["state"] == "cancelled"
    finally:
        second.stop()


def test_a_training_run_interrupted_by_kill_9_is_stopped_not_running_and_resumes_from_the_api(server_dirs, tmp_path):
    _, data_root, _ = server_dirs
    ws, token_file = tmp_path / "ws", tmp_path / "token"
    first = LiveServer(ws, token_file, data_root, log_dir=tmp_path).start()
    train = {"kind": "train", "dataset": "demo-phantoms", "base_channels": 8, "channel_mults": [1, 2],
             "num_res_blocks": 1, "attention_resolutions": [], "epochs": 200, "batch_size": 8, "preview_every": 0,
             "val_every": 0, "checkpoint_every": 1}
    try:
        with RemoteClient(first.url, first.token) as c:
            demo = c.submit({"kind": "demo", "n_images": 16, "size": 32, "slices_per_patient": 2})
            assert wait_state(c, demo, ("done", "failed"))["state"] == "done"
            job = c.submit(train)
            checkpoints = 0
            for _, ev in c.events(job):
                if isinstance(ev, J.Artifact) and ev.kind == "checkpoint":
                    checkpoints += 1
                    if checkpoints == 2:
                        break
        first.proc.kill()
        first.proc.wait(20)
    finally:
        first.stop()

    from app.engine.store import Workspace

    run = Workspace.open(ws).runs()[-1]
    assert run.state == "running"  # what the killed process left
    second = LiveServer(ws, token_file, data_root, log_dir=tmp_path).start()
    try:
        with RemoteClient(second.url, second.token) as c:
            assert c.job(job)["state"] == "interrupted"
            assert Workspace.open(ws).run(run.id).state == "stopped"  # resumable, not "running"
            resumed = c.submit({"kind": "train", "resume": run.id, "epochs": 4})
            end = wait_state(c, resumed, ("done", "failed", "cancelled"), timeout=240)
            assert end["state"] == "done", end
            assert end["result"]["run"] == run.id and end["result"]["epochs"] == 4  # on from its last checkpoint
    finally:
        second.stop()
    assert Workspace.open(ws).run(run.id).state == "done"
