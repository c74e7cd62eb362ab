"""The CLI contract: --json prints one JSON object last, exit codes 0 / 1 / 2 / 130."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from app.cli import main


def _last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


def test_done_prints_the_result_as_the_last_line_and_exits_0(capsys):
    code = main(["selftest", "--steps", "3", "--size", "8", "--json"])
    out = capsys.readouterr().out
    assert code == 0
    assert _last_json(out)["device"] == "cpu"


def test_failed_prints_the_error_and_exits_1(capsys):
    code = main(["selftest", "--steps", "3", "--fail-at", "2", "--json"])
    assert code == 1
    assert _last_json(capsys.readouterr().out) == {"error": "self-test asked to fail at step 2", "exit_code": 1}


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["selftest", "--steps", "zero"], "steps"),
        (["selftest", "--steps", "0"], "steps"),
        (["selftest", "--bogus"], "unrecognized"),
        (["no-such-verb"], "unknown job kind"),
    ],
)
def test_bad_arguments_exit_2_with_a_message_naming_the_problem(argv, needle, capsys):
    assert main(argv + ["--json"]) == 2
    captured = capsys.readouterr()
    assert needle in captured.err + captured.out


def test_config_file_is_read_and_flags_override_it(tmp_path, capsys):
    cfg = tmp_path / "spec.json"
    cfg.write_text(json.dumps({"kind": "selftest", "steps": 2, "size": 8, "fail_at": 1}))
    assert main(["selftest", "--config", str(cfg), "--json"]) == 1
    capsys.readouterr()
    assert main(["selftest", "--config", str(cfg), "--fail-at", "-1", "--json"]) == 0
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"kind": "train"}))
    assert main(["selftest", "--config", str(wrong)]) == 2
    assert main(["selftest", "--config", str(tmp_path / "missing.json")]) == 2


def test_ctrl_c_cancels_the_job_cleanly_and_exits_130(tmp_path):
    env = dict(os.environ, RADSYNTH_WORKSPACE=str(tmp_path / "ws"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "selftest", "--steps", "1000", "--delay", "0.05", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    # wait until the job is running (its first log line), however long the imports take here
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if "self-test on" in line or not line:
            break
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert _last_json(out) == {"cancelled": True, "exit_code": 130}
    from app.engine.store import Workspace

    assert [j.state for j in Workspace.open(tmp_path / "ws").jobs()] == ["cancelled"]


def test_workspace_flag_selects_the_workspace(tmp_path, capsys):
    ws = tmp_path / "elsewhere"
    assert main(["selftest", "--steps", "1", "--workspace", str(ws), "--json"]) == 0
    assert (ws / "radsynth.sqlite").exists()


def test_datasets_and_runs_are_deleted_from_the_command_line_but_not_a_run_that_trains(tmp_path, capsys):
    from app.engine.store import Workspace

    ws = tmp_path / "ws"
    assert main(["demo", "--n", "16", "--size", "32", "--workspace", str(ws), "--json", "-q"]) == 0
    w = Workspace.open(ws)
    w.create_run("ddpm", {"kind": "train"}, dataset="demo-phantoms", run_id="run-a")  # "running"
    capsys.readouterr()
    assert main(["datasets", "delete", "demo-phantoms", "--workspace", str(ws)]) == 1  # run-a trains on it
    assert "being trained on by run run-a" in capsys.readouterr().err
    assert main(["runs", "delete", "run-a", "--workspace", str(ws)]) == 1
    assert "stop it first" in capsys.readouterr().err
    w.update_run("run-a", state="stopped")
    assert main(["runs", "delete", "run-a", "--workspace", str(ws), "--json"]) == 0
    assert main(["datasets", "delete", "demo-phantoms", "--workspace", str(ws), "--json"]) == 0
    assert not w.datasets() and not w.runs() and not (ws / "runs" / "run-a").exists()
    assert main(["datasets", "delete", "demo-phantoms", "--workspace", str(ws)]) == 1
    assert "no dataset 'demo-phantoms'" in capsys.readouterr().err
