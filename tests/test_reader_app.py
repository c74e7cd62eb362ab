"""RadSynth Reader (app/reader_app.py), run as a radiologist would: its own process, no torch, a package made by
the Studio, answers by key press, a kill, a reopen, the answers file back into the Studio."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

from app import __version__

ROOT = Path(__file__).resolve().parents[1]
READER = [sys.executable, "-m", "app.reader_app"]
STUDIO = [sys.executable, "-m", "app.cli"]


def _env(tmp_path) -> dict:
    return dict(os.environ, QT_QPA_PLATFORM="offscreen", RADSYNTH_THREADS="1", HOME=str(tmp_path / "home"))


def test_the_version_is_the_one_of_pyproject():
    with open(ROOT / "pyproject.toml", "rb") as f:
        assert tomllib.load(f)["project"]["version"] == __version__
    r = subprocess.run(READER + ["--version"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == f"RadSynth Reader {__version__}"


def test_the_selftest_opens_a_reading_window_saves_an_answer_and_loads_no_torch(tmp_path):
    r = subprocess.run(READER + ["--selftest"], cwd=ROOT, env=_env(tmp_path), capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr[-2000:]
    assert "saved an answer" in r.stdout and "torch is not loaded" in r.stdout and r.stdout.rstrip().endswith("passed")


@pytest.mark.timeout(240)
def test_a_scripted_reading_survives_a_kill_and_its_answers_come_back_to_the_studio(tmp_path):
    env = _env(tmp_path)
    studio = tmp_path / "studio"
    for cmd in (["demo", "--n", "32", "--size", "32"],
                ["study", "create", "s1", "--real", "demo-phantoms:test", "--synthetic", "demo-phantoms:train",
                 "--n", "6", "--size", "32"],
                ["study", "export", "s1", str(tmp_path / "s1.h5"), "--readers", "dr-a"]):
        r = subprocess.run(STUDIO + cmd + ["--workspace", str(studio), "--json", "-q"], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr[-1500:]
    base = READER + [str(tmp_path / "s1.h5"), "--reader", "dr-a", "--workspace", str(tmp_path / "reader")]
    proc = subprocess.Popen(base + ["--keys", "R3 S4 R5"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    said, deadline = "", time.monotonic() + 120
    while "answered" not in said and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            break
        said += line
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)
    assert json.loads(said.strip().splitlines()[-1]) == {"answered": 3}, proc.stderr.read()[-1500:]
    r = subprocess.run(base + ["--status"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert json.loads(r.stdout.strip().splitlines()[-1])["answered"] == 3  # nothing lost to the kill
    answers = tmp_path / "answers.json"
    r = subprocess.run(base + ["--export-answers", str(answers)], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0 and answers.is_file(), r.stderr[-1500:]
    r = subprocess.run(STUDIO + ["study", "import", str(answers), "--workspace", str(studio), "--json", "-q"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert json.loads(r.stdout.strip().splitlines()[-1])["added"] == 3, r.stderr[-1500:]
    r = subprocess.run(STUDIO + ["study", "stats", "s1", "--workspace", str(studio), "--json", "-q"], cwd=ROOT,
                       env=env, capture_output=True, text=True, timeout=60)
    stats = json.loads(r.stdout.strip().splitlines()[-1])
    assert stats["per_reader"]["dr-a"]["n"] == 3 and stats["n_answers"] == 3
