"""The ingest job: every bad file skipped with its reason, patient-grouped splits, hashed ids, no
half-registered dataset after a cancel, and the CLI's --json contract."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from app.cli import main as cli_main
from app.engine.data.cache import ImageDataset
from app.engine.data.ingest import IngestSpec, workspace_salt
from app.engine.jobs import Cancelled, Done, Failed, Image as ImageEvent, Progress, run, run_collect
from tests.conftest import shared_file
from app.engine.store import Workspace


def _no_pixel_dicom(path):
    """A valid DICOM object that is not an image: a Basic Text SR without pixel data."""
    ds = pydicom.Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"
    ds.SOPInstanceUID = generate_uid()
    ds.PatientID = "X"
    ds.Modality = "OT"
    ds.save_as(path, enforce_file_format=True)


@pytest.fixture
def mixed_folder(tmp_path):
    src = tmp_path / "mixed"
    src.mkdir()
    shutil.copy(get_testdata_file("MR_small.dcm"), src / "mr.dcm")
    shutil.copy(get_testdata_file("CT_small.dcm"), src / "CT_IMAGE")  # no extension
    data = open(get_testdata_file("MR_small.dcm"), "rb").read()
    (src / "truncated.dcm").write_bytes(data[:-500])
    (src / "readme.txt").write_text("scanned on the 3T, see protocol")
    _no_pixel_dicom(src / "report.dcm")
    return src


def test_mixed_folder_keeps_the_images_and_lists_every_skipped_file_with_its_reason(workspace, mixed_folder):
    ev = run_collect(IngestSpec(source=str(mixed_folder), name="mixed", size=32), workspace=workspace)[-1]
    assert isinstance(ev, Done), ev
    r = ev.result
    assert r["dataset"] == "mixed" and r["kept"] == 2 and r["files_kept"] == 2
    assert r["skipped"] == [
        {"file": "readme.txt",
         "reason": "not a recognised image format (checked the content: not DICOM, PNG, JPEG, TIFF, NIfTI, HDF5 or NPZ)"},
        {"file": "report.dcm", "reason": "no pixel data: not an image object (Basic Text SR Storage)"},
        {"file": "truncated.dcm", "reason": "truncated: the pixel data is shorter than the image size says"},
    ]
    assert r["modalities"] == {"CT": 1, "MR": 1}
    assert sum(r["splits"].values()) == 2
    ds = ImageDataset(workspace.dataset("mixed").cache_path)
    assert len(ds) == 2 and ds.shape == (1, 32, 32)
    imgs = ds.images()
    assert imgs.min() >= -1 and imgs.max() <= 1
    report = json.loads((workspace.dataset("mixed").path / "ingest_report.json").read_text())
    assert len(report["skipped"]) == 3 and report["kept"] == 2


def test_patient_ids_are_stored_only_as_salted_hashes(workspace, mixed_folder):
    run_collect(IngestSpec(source=str(mixed_folder), name="h", size=32), workspace=workspace)
    rec = workspace.dataset("h")
    raw = rec.cache_path.read_bytes() + (rec.path / "ingest_report.json").read_bytes()
    for pid in (b"4MR1", b"1CT1"):
        assert pid not in raw
    salt = workspace_salt(workspace)
    assert len(salt) == 32 and workspace_salt(workspace) == salt  # created once, then reused
    groups = ImageDataset(rec.cache_path).groups()
    assert len(set(groups)) == 2 and all(g.startswith("p-") for g in groups)


def test_slices_of_one_patient_stay_in_one_split(workspace, tmp_path):
    src = tmp_path / "series"
    src.mkdir()
    base = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    for p in range(6):
        for s in range(4):
            ds = base.copy()
            ds.PatientID = f"PAT{p}"
            ds.SOPInstanceUID = generate_uid()
            ds.InstanceNumber = s
            ds.save_as(src / f"p{p}_s{s}.dcm")
    r = run_collect(IngestSpec(source=str(src), name="s", size=16, val_fraction=0.2, test_fraction=0.2),
                    workspace=workspace)[-1].result
    assert r["kept"] == 24 and r["groups"] == 6
    ds = ImageDataset(workspace.dataset("s").cache_path)
    groups, split = ds.groups(), ds.split_array()
    for g in set(groups):
        assert len(set(split[groups == g].tolist())) == 1
    assert min(r["splits"].values()) >= 4  # every split got at least one patient


def test_labels_from_subfolders_and_from_a_csv(workspace, tmp_path):
    src = tmp_path / "pngs"
    rng = np.random.default_rng(0)
    for cls in ("normal", "pneumonia"):
        (src / cls).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 256, (20, 24), dtype=np.uint8)).save(src / cls / f"{cls}{i}.png")
    r = run_collect(IngestSpec(source=str(src), name="sub", size=16), workspace=workspace)[-1].result
    assert r["classes"] == ["normal", "pneumonia"] and r["class_counts"] == {"normal": 3, "pneumonia": 3}
    csv = tmp_path / "labels.csv"
    csv.write_text("file,label\nnormal/normal0.png,a\nnormal/normal1.png,b\n")
    r = run_collect(IngestSpec(source=str(src), name="csv", size=16, labels=f"csv:{csv}"), workspace=workspace)[-1].result
    assert r["kept"] == 2 and r["classes"] == ["a", "b"]
    assert len(r["skipped"]) == 4 and {s["reason"] for s in r["skipped"]} == {"no label: not listed in labels.csv"}


def test_ct_window_maps_hounsfield_units_and_refuses_mr(workspace, tmp_path):
    src = tmp_path / "ct"
    src.mkdir()
    shutil.copy(get_testdata_file("CT_small.dcm"), src / "ct.dcm")
    shutil.copy(get_testdata_file("MR_small.dcm"), src / "mr.dcm")
    r = run_collect(IngestSpec(source=str(src), name="w", size=128, normalize="ct-window:40,400"),
                    workspace=workspace)[-1].result
    assert r["kept"] == 1 and "CT window needs CT" in r["skipped"][0]["reason"]
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    hu = ds.pixel_array * 1.0 + float(ds.RescaleIntercept)
    expected = np.clip((hu - (40 - 200)) / 400 * 2 - 1, -1, 1)
    got = ImageDataset(workspace.dataset("w").cache_path).images()[0, 0]
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_bad_normalize_name_is_refused_naming_the_choices():
    with pytest.raises(ValueError, match="ct-window"):
        IngestSpec(source="x", normalize="ct-window:kidney")


def test_nifti_volume_and_fastmri_file_ingest_as_one_group_each(workspace, tmp_path):
    import h5py
    import nibabel as nib

    src = tmp_path / "vols"
    src.mkdir()
    vol = np.random.default_rng(0).random((20, 20, 6)).astype(np.float32)
    nib.save(nib.Nifti1Image(vol, np.eye(4)), src / "brain.nii.gz")
    with h5py.File(src / "file1.h5", "w") as f:
        f["reconstruction_rss"] = np.random.default_rng(1).random((3, 20, 20)).astype(np.float32)
    r = run_collect(IngestSpec(source=str(src), name="v", size=16), workspace=workspace)[-1].result
    assert r["kept"] == 9 and r["groups"] == 2 and r["skipped"] == []
    assert r["modalities"] == {"MR": 3, "OT": 6}


def test_real_pneumoniamnist_ingest_keeps_the_given_splits(workspace):
    path = shared_file("pneumoniamnist_balanced_28.npz")
    r = run_collect(IngestSpec(source=str(path), name="pmnist", size=28, normalize="bit-depth"),
                    workspace=workspace)[-1].result
    with np.load(path) as z:
        sizes = {s: len(z[f"{s}_images"]) for s in ("train", "val", "test")}
        n1 = int(sum((z[f"{s}_labels"] == 1).sum() for s in sizes))
    assert r["splits"] == sizes and r["kept"] == sum(sizes.values())
    assert r["classes"] == ["0", "1"] and r["class_counts"]["1"] == n1
    assert r["split_source"] == "given by the source file"


def test_cancelled_ingest_leaves_no_dataset_and_no_staging_folder(workspace, mixed_folder):
    seen = {"progress": 0}

    def emit(ev):
        if isinstance(ev, Progress):
            seen["progress"] += 1

    final = run(IngestSpec(source=str(mixed_folder), name="cancelled", size=32), emit,
                lambda: seen["progress"] >= 2, workspace=workspace)
    assert isinstance(final, Cancelled)
    assert not workspace.has_dataset("cancelled")
    assert [p.name for p in (workspace.root / "datasets").iterdir()] == []


def test_an_ingest_that_fails_leaves_no_dataset(workspace, tmp_path):
    src = tmp_path / "junk"
    src.mkdir()
    (src / "a.txt").write_text("x")
    final = run_collect(IngestSpec(source=str(src), name="junk"), workspace=workspace)[-1]
    assert isinstance(final, Failed) and "no usable images" in final.message and "a.txt" in final.message
    assert workspace.datasets() == [] and list((workspace.root / "datasets").iterdir()) == []


def test_ingest_emits_a_sample_grid(workspace, mixed_folder):
    events = run_collect(IngestSpec(source=str(mixed_folder), name="g", size=32), workspace=workspace)
    grids = [e for e in events if isinstance(e, ImageEvent) and e.kind == "grid"]
    assert len(grids) == 1 and grids[0].array.ndim == 2


def test_cli_json_summary_and_exit_codes(workspace, mixed_folder, capsys):
    rc = cli_main(["ingest", str(mixed_folder), "--name", "cli", "--size", "32", "--json", "--quiet",
                   "--workspace", str(workspace.root)])
    out = capsys.readouterr().out.strip().splitlines()[-1]
    assert rc == 0
    summary = json.loads(out)
    assert summary["dataset"] == "cli" and summary["kept"] == 2 and len(summary["skipped"]) == 3
    rc = cli_main(["ingest", str(mixed_folder / "nope"), "--json", "--quiet", "--workspace", str(workspace.root)])
    captured = capsys.readouterr()
    assert rc == 1
    err = json.loads(captured.out.strip().splitlines()[-1])
    assert "does not exist" in err["error"] and "nope" in err["error"]
    rc = cli_main(["ingest", str(mixed_folder), "--normalize", "loud", "--json", "--workspace", str(workspace.root)])
    assert rc == 2


def test_an_ingest_process_killed_midway_leaves_no_dataset_and_a_clean_retry(workspace, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    src = tmp_path / "many"
    src.mkdir()
    rng = np.random.default_rng(0)
    for i in range(600):
        Image.fromarray(rng.integers(0, 255, (96, 96), dtype=np.uint8)).save(src / f"img{i:04d}.png")
    datasets = workspace.root / "datasets"
    cmd = [sys.executable, "-m", "app.cli", "ingest", str(src), "--name", "big", "--size", "64", "--quiet",
           "--workspace", str(workspace.root)]
    env = {**os.environ, "RADSYNTH_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, cwd=Path(__file__).resolve().parents[3],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        staged = [p for d in datasets.glob(".staging-*") for p in d.rglob("*") if p.is_file()]
        if staged:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the ingest finished before it could be killed: " + proc.stderr.read().decode()[-500:]
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert any(datasets.glob(".staging-*"))  # the dead process's half-written files are there ...
    reopened = Workspace.open(workspace.root)  # ... until the workspace is opened again
    assert not reopened.has_dataset("big") and list(datasets.iterdir()) == []
    final = run_collect(IngestSpec(source=str(src), name="big", size=64), workspace=reopened)[-1]
    assert isinstance(final, Done) and final.result["kept"] == 600
