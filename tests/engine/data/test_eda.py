"""The eda job: sample grid, histogram, class counts, mean/std images and class SSIM as events,
files and a plottable result."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from app.engine.data.demo import DemoSpec, write_demo_dataset
from app.engine.data.eda import EdaSpec
from app.engine.jobs import Done, Image, Scalar, run_collect


def test_eda_on_the_demo_dataset(workspace):
    write_demo_dataset(workspace, DemoSpec(n_images=48, size=32, seed=0))
    events = run_collect(EdaSpec(dataset="demo-phantoms", bins=32), workspace=workspace)
    done = events[-1]
    assert isinstance(done, Done), done
    r = done.result
    assert r["n_images"] == 48 and r["class_counts"] == {"healthy": 24, "lesion": 24}
    assert len(r["histogram"]["bins"]) == 33 and sum(r["histogram"]["counts"]) == 48 * 32 * 32
    assert sum(sum(v) for v in r["histogram"]["per_class"].values()) == 48 * 32 * 32
    m = np.array(r["ssim"]["matrix"])
    assert m.shape == (2, 2) and np.allclose(m, m.T) and np.allclose(np.diag(m), 1)
    assert 0 < m[0, 1] < 1  # the lesion class looks different on average
    kinds = {(e.name, e.kind) for e in events if isinstance(e, Image)}
    assert ("samples", "grid") in kinds and ("mean/lesion", "image") in kinds and ("std/healthy", "uncertainty") in kinds
    assert any(isinstance(e, Scalar) and e.name == "ssim/healthy~lesion" for e in events)
    for path in r["files"].values():
        assert Path(path).is_file()
    assert json.loads(Path(r["files"]["json"]).read_text())["class_counts"] == r["class_counts"]
    with np.load(r["files"]["arrays"]) as z:
        assert z["mean_lesion"].shape == (32, 32)


def test_eda_of_one_split(workspace):
    write_demo_dataset(workspace, DemoSpec(n_images=48, size=32, seed=0))
    r = run_collect(EdaSpec(dataset="demo-phantoms", split="test"), workspace=workspace)[-1].result
    assert r["n_images"] == r["splits"]["test"] > 0
