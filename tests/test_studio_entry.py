"""The Studio's own entry point answers --version and --selftest as the frozen bundle's does."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from app import __version__

ROOT = Path(__file__).resolve().parents[1]


def test_the_studio_says_its_version_and_passes_its_selftest(tmp_path):
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", RADSYNTH_THREADS="1", HOME=str(tmp_path))
    r = subprocess.run([sys.executable, "-m", "app", "--version"], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == f"RadSynth Studio {__version__}"
    r = subprocess.run([sys.executable, "-m", "app", "--selftest"], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr[-2000:]
    assert "the main window opened" in r.stdout and "the demo job" in r.stdout and "the selftest job" in r.stdout
    assert r.stdout.rstrip().endswith("selftest passed")
