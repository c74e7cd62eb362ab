"""The workspace registry: real SQLite file, transactions, atomic dataset registration."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from app.engine.data.cache import CacheWriter, ImageDataset
from app.engine.jobs import UserError
from app.engine.store import Workspace


def _make_dataset(ws: Workspace, name: str, n: int = 4) -> None:
    staging = ws.staging_dir()
    w = CacheWriter(staging / "cache.h5", 8, 8, ["a", "b"])
    imgs = np.linspace(-1, 1, n * 64, dtype=np.float32).reshape(n, 8, 8)
    w.append(imgs, labels=[i % 2 for i in range(n)], groups=[f"p{i}" for i in range(n)],
             sources=[f"f{i}.png" for i in range(n)], frames=0, modalities="MR")
    w.set_splits(np.array([0] * (n - 1) + [1]))
    w.close()
    ws.commit_dataset(staging, name, n_images=n, height=8, width=8, classes=["a", "b"], source="test", meta={})


def test_workspace_is_a_real_sqlite_file_in_wal_mode(workspace):
    con = sqlite3.connect(workspace.db_path)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"datasets", "runs", "jobs", "studies"} <= tables


def test_dataset_round_trip_through_cache_and_registry(workspace):
    _make_dataset(workspace, "toy", n=5)
    rec = Workspace.open(workspace.root).dataset("toy")  # a second connection sees it
    assert rec.n_images == 5 and rec.classes == ["a", "b"]
    ds = ImageDataset(rec.cache_path)
    assert ds.images().shape == (5, 1, 8, 8)
    assert list(ds.labels()) == [0, 1, 0, 1, 0]
    assert list(ds.indices("val")) == [4]
    assert ds.images(indices=[3, 1]).shape == (2, 1, 8, 8)
    np.testing.assert_array_equal(ds.images(indices=[3, 1])[0], ds.images()[3])
    assert ds.provenance(2) == {"index": 2, "source": "f2.png", "frame": 0, "modality": "MR", "group": "p2",
                                "label": 0, "class": "a", "split": "train"}


def test_duplicate_dataset_names_are_refused_and_the_first_is_kept(workspace):
    _make_dataset(workspace, "toy", n=3)
    with pytest.raises(UserError, match="already exists"):
        _make_dataset(workspace, "toy", n=4)
    assert workspace.dataset("toy").n_images == 3
    assert ImageDataset(workspace.dataset("toy").cache_path).n == 3


def test_a_failed_transaction_leaves_the_last_committed_state(workspace):
    _make_dataset(workspace, "keep", n=2)
    with pytest.raises(RuntimeError):
        with workspace.transaction() as con:
            con.execute("DELETE FROM datasets")
            raise RuntimeError("crash mid-write")
    assert [d.name for d in workspace.datasets()] == ["keep"]


def test_bad_names_and_missing_things_get_clear_messages(workspace):
    with pytest.raises(UserError, match="not valid"):
        workspace.create_run("ddpm", {}, run_id="../escape")
    with pytest.raises(UserError, match="no dataset named 'ghost'"):
        workspace.dataset("ghost")
    with pytest.raises(UserError, match="no run"):
        workspace.run("ghost")


def test_runs_keep_their_spec_and_merge_meta(workspace):
    run = workspace.create_run("ddpm", {"lr": 1e-3}, dataset="toy")
    assert (run.path / "spec.json").exists()
    workspace.update_run(run.id, meta={"epoch": 1})
    workspace.update_run(run.id, state="done", meta={"loss": 0.5})
    again = workspace.run(run.id)
    assert again.state == "done" and again.meta == {"epoch": 1, "loss": 0.5} and again.spec == {"lr": 1e-3}


def test_a_corrupt_database_file_gets_a_clear_error(tmp_path):
    root = tmp_path / "broken"
    root.mkdir()
    (root / "radsynth.sqlite").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(UserError, match="not a usable RadSynth workspace"):
        Workspace.open(root)


def test_only_jobs_whose_process_has_stopped_are_marked_interrupted(workspace, tmp_path):
    """A job recorded by another process that still runs (``radsynth train`` in a terminal while the app opens
    the workspace) stays 'running'; once that process has gone it is marked failed. Real processes, real file."""
    import subprocess
    import sys

    code = ("import sys, time; from app.engine.store import Workspace; "
            "Workspace.open(sys.argv[1]).record_job_start(sys.argv[2], 'train', {'dataset': 'x'}); "
            "print('recorded', flush=True); time.sleep(60)")
    live = subprocess.Popen([sys.executable, "-c", code, str(workspace.root), "live-job"], stdout=subprocess.PIPE,
                            text=True)
    try:
        assert live.stdout.readline().strip() == "recorded"
        subprocess.run([sys.executable, "-c", code.replace("time.sleep(60)", "pass"), str(workspace.root),
                        "gone-job"], check=True, capture_output=True)
        states = {j.id: j.state for j in workspace.jobs()}
        assert states == {"live-job": "running", "gone-job": "running"}
        assert workspace.mark_interrupted_jobs() == 1
        jobs = {j.id: j for j in workspace.jobs()}
        assert jobs["live-job"].state == "running"
        assert jobs["gone-job"].state == "failed" and "interrupted" in jobs["gone-job"].message
    finally:
        live.kill()
        live.wait()
    # the process has stopped now: the next start of the app marks its job too
    assert workspace.mark_interrupted_jobs() == 1
    assert {j.id: j.state for j in workspace.jobs()}["live-job"] == "failed"
    # a job whose process number belongs to a process started after it (reused after a reboot): not its process
    workspace.record_job_start("reused", "eda", {})
    assert workspace.mark_interrupted_jobs() == 0  # this test's own process, still running
    with workspace.transaction() as con:
        con.execute("UPDATE jobs SET created = 1.0 WHERE id = 'reused'")  # recorded in 1970
    assert workspace.mark_interrupted_jobs() == 1


def test_a_schema_1_workspace_gets_the_job_process_columns_and_its_running_jobs_are_interrupted(tmp_path):
    root = tmp_path / "old"
    root.mkdir()
    con = sqlite3.connect(root / "radsynth.sqlite")
    con.executescript("""
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        INSERT INTO meta VALUES ('schema_version', '1');
        CREATE TABLE jobs (id TEXT PRIMARY KEY, kind TEXT NOT NULL, spec TEXT NOT NULL, state TEXT NOT NULL,
                           transport TEXT NOT NULL, created REAL NOT NULL, finished REAL, result TEXT, message TEXT);
        INSERT INTO jobs VALUES ('old-job', 'eda', '{}', 'running', 'local', 1.0, NULL, NULL, NULL);
        INSERT INTO jobs VALUES ('old-done', 'eda', '{}', 'done', 'local', 1.0, 2.0, '{"ok": 1}', NULL);
    """)
    con.close()
    ws = Workspace.open(root)
    assert {"pid", "host"} <= {r[1] for r in sqlite3.connect(ws.db_path).execute("PRAGMA table_info(jobs)")}
    assert ws.query("SELECT value FROM meta WHERE key = 'schema_version'")[0]["value"] == "2"
    assert ws.mark_interrupted_jobs() == 1
    jobs = {j.id: j for j in ws.jobs()}
    assert jobs["old-job"].state == "failed" and jobs["old-done"].state == "done" and jobs["old-done"].result == {"ok": 1}
    Workspace.open(root)  # opening again finds the columns in place


def test_only_datasets_a_model_generated_are_synthetic_and_older_records_are_not(workspace):
    from app.engine.data.demo import write_demo_dataset
    from app.engine.specs.data import DemoSpec
    from app.engine.store import GENERATED_META

    _make_dataset(workspace, "old")  # a record from before the flag: no "generated" key in its meta
    write_demo_dataset(workspace, DemoSpec(name="phantoms", n_images=8, size=32))  # simulated, but the real side
    staging = workspace.staging_dir()
    w = CacheWriter(staging / "cache.h5", 8, 8, [])
    w.append(np.zeros((2, 8, 8), np.float32), labels=-1, groups=["g0", "g1"], sources=["a", "b"], frames=0,
             modalities="OT")
    w.close()
    workspace.commit_dataset(staging, "gen", n_images=2, height=8, width=8, classes=[], source="sample job",
                             meta={GENERATED_META: {"run": "r1", "seed": 0}})
    flags = {d.name: d.synthetic for d in workspace.datasets()}
    assert flags == {"old": False, "phantoms": False, "gen": True}
    assert [d.name for d in workspace.datasets(synthetic=True)] == ["gen"]
    assert [d.name for d in workspace.datasets(synthetic=False)] == ["old", "phantoms"]
    assert Workspace.open(workspace.root).dataset("gen").meta[GENERATED_META]["run"] == "r1"  # survives reopening
