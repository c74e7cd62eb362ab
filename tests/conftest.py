"""Shared fixtures: an isolated workspace per test, the real data folder, offscreen Qt, seeds."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("RADSYNTH_THREADS", "2")

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("RADSYNTH_SHARED_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture(autouse=True)
def isolated_workspace(tmp_path, monkeypatch):
    """Every test gets its own empty workspace folder via RADSYNTH_WORKSPACE."""
    ws = tmp_path / "workspace"
    monkeypatch.setenv("RADSYNTH_WORKSPACE", str(ws))
    return ws


@pytest.fixture
def workspace(isolated_workspace):
    from app.engine.store import Workspace

    return Workspace.open(isolated_workspace)


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent (it is present in CI)")
    return SHARED_DATA


def shared_file(name: str) -> Path:
    p = SHARED_DATA / name
    if not p.exists():
        pytest.skip(f"real data file {p} is absent (it is present in CI)")
    return p


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def pytest_configure(config):
    try:
        import torch

        torch.set_num_threads(int(os.environ.get("RADSYNTH_THREADS", "2")))
    except ImportError:
        pass
