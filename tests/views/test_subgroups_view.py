"""Datasets panel: the subgroup attributes a dataset carries are listed under its class distribution."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from app.views.datasets_panel import subgroup_summary

SHOTS = Path(os.environ.get("RADSYNTH_SHOTS", "/tmp/shots"))

pytest.importorskip("app.engine.data.eda")


def test_subgroup_summary_orders_values_by_count_and_caps_long_lists():
    text = subgroup_summary({"sex": {"M": 3, "F": 5, "unknown": 1},
                             "site": {f"s{i}": 10 - i for i in range(9)}})
    assert text.splitlines()[0] == "Subgroups — sex: F 5 · M 3 · unknown 1"
    assert text.splitlines()[1] == "site: s0 10 · s1 9 · s2 8 · s3 7 · s4 6 · s5 5 · 3 more"
    assert subgroup_summary({}) == "" and subgroup_summary(None) == ""


def test_an_ingested_dataset_with_attributes_shows_them_in_the_panel(workspace, qtbot, tmp_path):
    from app.engine.data.ingest import IngestSpec
    from app.engine.jobs import Done, run_collect
    from app.views.main_window import MainWindow
    from app.workers.manager import wait_for_calls

    rng = np.random.default_rng(0)
    src = tmp_path / "cohort.npz"
    np.savez(src, images=rng.integers(0, 255, (12, 16, 16), dtype=np.uint8), labels=np.arange(12) % 2,
             attr_sex=np.array(list("FFM") * 4))
    done = run_collect(IngestSpec(source=str(src), name="cohort", size=16), workspace=workspace)[-1]
    assert isinstance(done, Done), done

    win = MainWindow(workspace=workspace.root, error_mode="record", demo_at_first_start=False)
    qtbot.addWidget(win)
    win.resize(1300, 820)
    win.show()
    panel = win.show_panel("datasets")
    panel.select("cohort")
    qtbot.waitUntil(lambda: "cohort" in panel.eda_results, timeout=60000)
    split_counts = panel.eda_results["cohort"]["attributes"]["sex"]
    assert set(split_counts) <= {"F", "M"} and sum(split_counts.values()) >= 1
    assert panel.subgroups.text().startswith("Subgroups — sex: ")
    for value, count in split_counts.items():
        assert f"{value} {count}" in panel.subgroups.text()
    SHOTS.mkdir(parents=True, exist_ok=True)
    panel.grab().save(str(SHOTS / "datasets_subgroups.png"))
    wait_for_calls(10)
    win.jobs.cancel_all()
    win.jobs.wait_all(30000)
    win.close()
