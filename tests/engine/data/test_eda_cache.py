"""EDA results stored next to the dataset: valid only for the same content and spec; a corrupt
stored result is reported and ignored, never raised."""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from app.engine.data import eda_cache
from app.engine.data.demo import DemoSpec, write_demo_dataset
from app.engine.data.eda import EdaSpec
from app.engine.jobs import Done, run_collect

NAME = "demo-phantoms"


def _eda(workspace, **kw):
    spec = EdaSpec(dataset=NAME, **kw)
    fp = eda_cache.fingerprint(workspace, NAME)
    done = run_collect(spec, workspace=workspace)[-1]
    assert isinstance(done, Done), done
    return spec.model_dump(mode="json"), fp, done.result


@pytest.fixture
def stored(workspace):
    write_demo_dataset(workspace, DemoSpec(n_images=16, size=32, seed=0))
    spec, fp, res = _eda(workspace)
    res["attribute_counts"] = {"sex": {"F": 9, "M": 7}}  # a key a later eda version may add: kept as is
    eda_cache.save(workspace, NAME, spec, fp, res)
    return spec, res


def test_a_stored_result_is_whole_without_the_job_folder_and_keeps_every_key(workspace, stored):
    spec, res = stored
    shutil.rmtree(Path(res["files"]["arrays"]).parent)  # the job folder is gone
    got, note = eda_cache.load(workspace, NAME, spec)
    assert note is None and got is not None
    assert got["class_counts"] == res["class_counts"] == {"healthy": 8, "lesion": 8}
    assert got["histogram"] == res["histogram"] and got["attribute_counts"] == {"sex": {"F": 9, "M": 7}}
    folder = workspace.dataset(NAME).path / "eda"
    for key, path in got["files"].items():
        assert Path(path).parent == folder and Path(path).is_file(), key
    with np.load(got["files"]["arrays"]) as z:
        assert z["mean_lesion"].shape == (32, 32)


def test_nothing_stored_other_options_a_touched_or_reimported_dataset_all_miss(workspace, stored):
    spec, _ = stored
    assert eda_cache.load(workspace, NAME, {**spec, "bins": 32}) == (None, "the statistics options differ from the stored ones")
    assert eda_cache.load(workspace, "other", spec)[0] is None
    cache = workspace.dataset(NAME).cache_path
    st = cache.stat()
    os.utime(cache, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    got, note = eda_cache.load(workspace, NAME, spec)
    assert got is None and "changed" in note
    os.utime(cache, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert eda_cache.load(workspace, NAME, spec)[0] is not None  # same content again
    write_demo_dataset(workspace, DemoSpec(n_images=12, size=32, seed=1, replace=True))
    assert eda_cache.load(workspace, NAME, spec) == (None, None)  # the folder went with the old dataset


@pytest.mark.parametrize("damage", ["garbage json", "other format", "truncated arrays", "arrays missing"])
def test_a_corrupt_stored_result_is_reported_and_logged_not_raised(workspace, stored, damage, caplog):
    spec, _ = stored
    folder = workspace.dataset(NAME).path / "eda"
    index = folder / "stored.json"
    if damage == "garbage json":
        index.write_bytes(b'{"format": "radsynth-eda/1", "result": {\x00\xff')
    elif damage == "other format":
        index.write_text(json.dumps({"format": "something-else", "result": {}}))
    elif damage == "truncated arrays":
        arrays = folder / "class_means.npz"
        arrays.write_bytes(arrays.read_bytes()[:40])
    else:
        (folder / "class_means.npz").unlink()
    with caplog.at_level(logging.WARNING, logger="app.engine.data.eda_cache"):
        got, note = eda_cache.load(workspace, NAME, spec)
    assert got is None and "unreadable" in note and str(folder) in note
    assert any("computed again" in r.getMessage() for r in caplog.records)


def test_saving_again_replaces_the_stored_result(workspace, stored):
    spec, _ = stored
    spec2, fp2, res2 = _eda(workspace, seed=3)
    eda_cache.save(workspace, NAME, spec2, fp2, res2)
    assert eda_cache.load(workspace, NAME, spec)[0] is None
    got, _ = eda_cache.load(workspace, NAME, spec2)
    assert got is not None and "attribute_counts" not in got
    assert not list((workspace.dataset(NAME).path / "eda").glob(".*.tmp"))
