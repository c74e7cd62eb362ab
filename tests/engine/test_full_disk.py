"""A real full disk: a 12 MiB tmpfs holds the workspace. Mounting needs root with CAP_SYS_ADMIN; where
the test cannot mount one it skips and says so."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.engine.data.cache import ImageDataset
from app.engine.data.ingest import IngestSpec
from app.engine.jobs import Done, Failed, run_collect
from app.engine.store import Workspace


@pytest.fixture
def small_disk(tmp_path):
    mnt = tmp_path / f"disk-{uuid.uuid4().hex[:6]}"
    mnt.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command here to make a small real disk")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=12m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a 12 MiB tmpfs to fill (needs root with CAP_SYS_ADMIN): {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def _pngs(folder: Path, n: int, size: int) -> Path:
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):  # noise does not compress: the cache needs about n * size^2 * 4 bytes
        Image.fromarray(rng.integers(0, 255, (size, size), dtype=np.uint8)).save(folder / f"img{i:03d}.png")
    return folder


# h5py reports the failed writes of its chunk cache from destructors (unraisable exceptions): they
# are expected here, and the job's own message is what is checked
@pytest.mark.qt_no_exception_capture
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_full_disk_fails_the_job_with_a_clear_message_and_keeps_what_was_saved(small_disk, tmp_path):
    src = _pngs(tmp_path / "src", 300, 128)
    ws = Workspace.open(small_disk / "ws")
    first = run_collect(IngestSpec(source=str(src), name="small", size=32), workspace=ws)[-1]
    assert isinstance(first, Done), first
    before = ImageDataset.from_workspace(ws, "small").images()

    final = run_collect(IngestSpec(source=str(src), name="big", size=128), workspace=ws)[-1]
    assert isinstance(final, Failed)
    assert "disk is full" in final.message and str(small_disk) in final.message, final.message
    assert "unchanged" in final.message

    again = Workspace.open(ws.root)  # the workspace still opens, with the first dataset intact
    assert [d.name for d in again.datasets()] == ["small"]
    np.testing.assert_array_equal(ImageDataset.from_workspace(again, "small").images(), before)
    assert not list((again.root / "datasets").glob(".staging-*"))  # the failed ingest's files are gone
    failed = again.query("SELECT state, message FROM jobs WHERE state = 'failed'")
    assert len(failed) == 1 and "disk is full" in failed[0]["message"]


def test_training_that_fills_the_disk_says_so_keeps_its_last_good_checkpoint_and_resumes(small_disk):
    """A 12 MiB disk holds the dataset and a few checkpoints of a small net; the next one does not fit."""
    from app.engine.jobs import parse_spec
    from app.engine.training.checkpoints import list_checkpoint_folders, load_checkpoint

    ws = Workspace.open(small_disk / "ws")
    assert isinstance(run_collect(parse_spec({"kind": "demo", "n_images": 16, "size": 32, "slices_per_patient": 2}),
                                  workspace=ws)[-1], Done)
    train = {"kind": "train", "dataset": "demo-phantoms", "base_channels": 16, "channel_mults": [1, 2],
             "num_res_blocks": 1, "attention_resolutions": [], "epochs": 40, "batch_size": 8, "preview_every": 0,
             "val_every": 0, "checkpoint_every": 1}
    end = run_collect(parse_spec(train), workspace=ws)[-1]
    assert isinstance(end, Failed)
    run = ws.runs()[-1]
    kept = list_checkpoint_folders(ws.root / run.path)
    assert kept, "at least one checkpoint fitted"
    assert end.message.startswith("the disk is full (no space left on device) while writing checkpoint")
    assert f"the last good checkpoint, {kept[-1].name}, is kept" in end.message.lower()
    assert f"radsynth train --resume {run.id}" in end.message and "Traceback" not in end.message
    # the kept checkpoint is whole, and nothing half-written was left behind
    load_checkpoint(str(kept[-1]), workspace=ws)
    assert not [p for p in (ws.root / run.path).rglob(".tmp-*")]
