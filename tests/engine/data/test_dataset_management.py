"""Managing datasets and importing them without surprises: rename, class names, delete with its
dependents named, CT kept in Hounsfield units, bad images in an NPZ left out one by one, plain messages
for a file that is not what its name says, and synthetic sets that stay synthetic through export and
import."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from app.cli import main as cli_main
from app.engine.data.cache import ImageDataset
from app.engine.data.files import open_npz, read_dicom_dataset
from app.engine.data.preprocess import stored_to_units
from app.engine.errors import UserError
from app.engine.export import export_images, read_dicom_provenance
from app.engine.jobs import Done, Failed, Progress, run
from app.engine.specs.data import IngestSpec
from app.engine.store import Workspace
from tests.conftest import shared_file


def _ingest(ws, source, name, **kw):
    events = []
    final = run(IngestSpec(source=str(source), name=name, **kw), events.append, lambda: False, workspace=ws)
    return final, events


def _two_class_npz(path, n=20, nan_at=()):
    rng = np.random.default_rng(0)
    images = rng.random((n, 16, 16)).astype(np.float32)
    for i in nan_at:
        images[i, 3, 4] = np.nan
    np.savez(path, images=images, labels=np.arange(n) % 2)
    return path


# -- rename, class names, delete ------------------------------------------------------------------


def test_classes_shown_as_numbers_get_names_everywhere_the_dataset_is_read(workspace, tmp_path):
    final, _ = _ingest(workspace, _two_class_npz(tmp_path / "x.npz"), "xr")
    assert isinstance(final, Done) and workspace.dataset("xr").classes == ["0", "1"]
    workspace.set_class_names("xr", ["normal", "pneumonia"])
    rec = workspace.dataset("xr")
    assert rec.classes == ["normal", "pneumonia"]
    assert rec.meta["class_counts"] == {"normal": 10, "pneumonia": 10}
    ds = ImageDataset(rec.cache_path)
    assert ds.class_names == ["normal", "pneumonia"] and ds.provenance(1)["class"] == "pneumonia"
    with pytest.raises(UserError, match="has 2 classes"):
        workspace.set_class_names("xr", ["a"])
    with pytest.raises(UserError, match="differ"):
        workspace.set_class_names("xr", ["a", "a"])


def test_class_names_reach_the_checkpoints_of_runs_trained_on_the_dataset(workspace, tmp_path):
    from app.engine.training.checkpoints import META_FILE

    _ingest(workspace, _two_class_npz(tmp_path / "x.npz"), "xr")
    run_rec = workspace.create_run("ddpm", {"kind": "train", "dataset": "xr"}, dataset="xr", run_id="r1")
    ck = run_rec.path / "checkpoints" / "epoch_0001"
    ck.mkdir(parents=True)
    (ck / META_FILE).write_text(json.dumps({"epoch": 1, "class_names": ["0", "1"], "model_sha256": "abc"}))
    with pytest.raises(UserError, match="being trained on by run r1"):
        workspace.set_class_names("xr", ["normal", "pneumonia"])
    workspace.update_run("r1", state="done")
    workspace.set_class_names("xr", ["normal", "pneumonia"])
    meta = json.loads((ck / META_FILE).read_text())
    assert meta == {"epoch": 1, "class_names": ["normal", "pneumonia"], "model_sha256": "abc"}


def test_a_rename_moves_the_dataset_and_the_runs_trained_on_it_follow(workspace, tmp_path):
    _ingest(workspace, _two_class_npz(tmp_path / "x.npz"), "old")
    run_rec = workspace.create_run("ddpm", {"kind": "train", "dataset": "old"}, dataset="old", run_id="r1")
    with pytest.raises(UserError, match="being trained on by run r1"):
        workspace.rename_dataset("old", "new")
    workspace.update_run("r1", state="stopped")
    rec = workspace.rename_dataset("old", "new")
    assert rec.path == workspace.root / "datasets" / "new" and rec.cache_path.exists()
    assert not (workspace.root / "datasets" / "old").exists() and not workspace.has_dataset("old")
    r = workspace.run("r1")
    assert r.dataset == "new" and r.spec["dataset"] == "new"
    assert json.loads((run_rec.path / "spec.json").read_text())["dataset"] == "new"
    _ingest(workspace, _two_class_npz(tmp_path / "y.npz"), "other")
    with pytest.raises(UserError, match="already exists"):
        workspace.rename_dataset("new", "other")
    with pytest.raises(UserError, match="not valid"):
        workspace.rename_dataset("new", "../escape")


def test_what_depends_on_a_dataset_is_named_before_it_is_deleted(workspace, tmp_path):
    from app.engine.sampling.job import register_samples

    _ingest(workspace, _two_class_npz(tmp_path / "x.npz"), "base")
    assert workspace.dataset_dependents("base") == []
    workspace.create_run("ddpm", {"kind": "train"}, dataset="base", run_id="r1")
    workspace.update_run("r1", state="done")
    register_samples(workspace, "r1-samples", np.zeros((2, 1, 16, 16), np.float32), None, [],
                     {"run": "r1", "training_dataset": "base", "job": "j1"})
    deps = workspace.dataset_dependents("base")
    assert deps == ["run r1 (done) was trained on it",
                    "synthetic dataset r1-samples was generated by a model trained on it"]


def test_cli_renames_names_classes_and_deletes_only_with_yes_when_something_depends_on_it(tmp_path, capsys):
    ws_dir = tmp_path / "ws"
    src = _two_class_npz(tmp_path / "x.npz")
    assert cli_main(["ingest", str(src), "--name", "xr", "--size", "16", "--workspace", str(ws_dir), "-q", "--json"]) == 0
    assert cli_main(["datasets", "classes", "xr", "1=pneumonia", "0=normal", "--workspace", str(ws_dir)]) == 0
    assert cli_main(["datasets", "rename", "xr", "chest", "--workspace", str(ws_dir)]) == 0
    capsys.readouterr()
    assert cli_main(["datasets", "classes", "chest", "--workspace", str(ws_dir), "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == {"name": "chest",
                                                                           "classes": ["normal", "pneumonia"]}
    assert cli_main(["datasets", "classes", "chest", "5=x", "--workspace", str(ws_dir)]) == 1
    assert "class index 5 does not exist" in capsys.readouterr().err
    ws = Workspace.open(ws_dir)
    ws.create_run("ddpm", {"kind": "train"}, dataset="chest", run_id="r1")
    ws.update_run("r1", state="done")
    assert cli_main(["datasets", "delete", "chest", "--workspace", str(ws_dir)]) == 1
    err = capsys.readouterr().err
    assert "run r1 (done) was trained on it" in err and "--yes" in err and ws.has_dataset("chest")
    assert cli_main(["datasets", "delete", "chest", "--yes", "--workspace", str(ws_dir), "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip())["dependents"] == ["run r1 (done) was trained on it"]
    assert not ws.has_dataset("chest")


def test_an_empty_source_is_refused_before_anything_runs(tmp_path, capsys):
    assert cli_main(["ingest", "", "--workspace", str(tmp_path / "ws")]) == 2
    assert "source: an empty path" in capsys.readouterr().err
    assert not Workspace.open(tmp_path / "ws").jobs()


# -- bad input -----------------------------------------------------------------------------------------


def test_two_bad_images_of_twenty_in_an_npz_are_left_out_one_by_one_with_the_reason(workspace, tmp_path):
    final, _ = _ingest(workspace, _two_class_npz(tmp_path / "x.npz", nan_at=(3, 17)), "x")
    assert isinstance(final, Done), final
    res = final.result
    assert res["kept"] == 18 and res["skipped"] == []
    (entry,) = res["frames_skipped"]
    assert entry["file"] == "x.npz" and entry["frames"] == 2
    assert "image 3 contains NaN" in entry["reason"] and "image 17 contains NaN" in entry["reason"]
    ds = ImageDataset.from_workspace(workspace, "x")
    assert sorted(ds.provenance(i)["frame"] for i in range(len(ds))) == [i for i in range(20) if i not in (3, 17)]


def test_a_failed_import_never_reports_its_progress_as_complete(workspace, tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "notes.npz").write_text("this is text, not numpy")
    final, events = _ingest(workspace, tmp_path / "src", "x")
    assert isinstance(final, Failed)
    assert "notes.npz" in final.message and "Choose a file or folder" in final.message
    assert all(e.step < e.total for e in events if isinstance(e, Progress))


def test_a_text_file_named_npz_and_a_file_that_is_not_dicom_get_plain_messages(tmp_path):
    from app.engine.recon.ct.job import load_ct_slice
    from app.engine.recon.mri.io import load_recon_input

    text = tmp_path / "scan.npz"
    text.write_text("patient 12, see report\n")
    for call in (lambda: open_npz(text), lambda: load_recon_input(text), lambda: load_ct_slice(text, 0)):
        with pytest.raises(UserError) as err:
            call()
        msg = str(err.value)
        assert str(text) in msg and "not a NumPy file (it holds text)" in msg and "numpy.savez" in msg
        assert "pickle" not in msg
    bad = tmp_path / "slice.dcm"
    bad.write_bytes(b"\x00\x01garbage" * 40)
    for call in (lambda: read_dicom_dataset(bad), lambda: load_ct_slice(bad, 0)):
        with pytest.raises(UserError) as err:
            call()
        assert "not a DICOM file" in str(err.value) and "force" not in str(err.value)
    assert read_dicom_dataset(get_testdata_file("CT_small.dcm")).Modality == "CT"


# -- CT in Hounsfield units ----------------------------------------------------------------------------


def test_real_ct_in_hounsfield_units_keeps_its_hu_scale_per_image(workspace, tmp_path):
    from skimage.transform import resize

    vol = np.load(shared_file("ct_head_hu.npz"))["volume_hu"][50:56]
    np.savez(tmp_path / "head.npz", volume_hu=vol)
    final, _ = _ingest(workspace, tmp_path / "head.npz", "head", size=128)
    assert isinstance(final, Done), final
    assert final.result["modalities"] == {"CT": 6}
    ds = ImageDataset.from_workspace(workspace, "head")
    ranges, units = ds.units(range(6))
    assert units == ["HU"] * 6
    for i in range(6):
        lo, hi = np.percentile(vol[i].astype(np.float32), (0.5, 99.5))
        assert ranges[i] == pytest.approx((lo, hi), abs=0.01)
        hu = stored_to_units(ds.images(indices=[i])[0, 0], *ranges[i])
        want = resize(np.clip(vol[i].astype(np.float32), lo, hi), (128, 128), order=1, anti_aliasing=True,
                      preserve_range=True)
        assert np.abs(hu - want).max() < 0.5  # to within half a Hounsfield unit
    assert ds.provenance(0)["stored range"].endswith("HU")


def test_dicom_ct_is_in_hu_and_a_mixed_set_counts_every_modality(workspace, tmp_path):
    src = tmp_path / "mix"
    src.mkdir()
    shutil.copy(get_testdata_file("CT_small.dcm"), src / "ct.dcm")
    shutil.copy(get_testdata_file("MR_small.dcm"), src / "mr.dcm")
    final, _ = _ingest(workspace, src, "mix", size=64, min_size=8)
    assert isinstance(final, Done), final
    rec = workspace.dataset("mix")
    assert rec.meta["modalities"] == {"CT": 1, "MR": 1}
    ds = ImageDataset(rec.cache_path)
    assert ds.count_of("modality") == {"CT": 1, "MR": 1}
    by_mod = {ds.provenance(i)["modality"]: i for i in range(2)}
    _ranges, units = ds.units([by_mod["CT"], by_mod["MR"]])
    assert units == ["HU", ""]
    raw = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    hu = raw.pixel_array * float(raw.RescaleSlope) + float(raw.RescaleIntercept)
    lo, hi = ds.units([by_mod["CT"]])[0][0]
    assert (lo, hi) == pytest.approx(tuple(np.percentile(hu, (0.5, 99.5))), abs=0.01)


# -- synthetic sets through export and import ------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["png", "dicom", "npz"])
def test_an_exported_synthetic_set_comes_back_synthetic_with_its_provenance(workspace, tmp_path, fmt):
    rng = np.random.default_rng(1)
    images = rng.uniform(-1, 1, (3, 1, 32, 32)).astype(np.float32)
    ckpt = workspace.root / "runs" / "r1" / "checkpoints" / "epoch_0003"
    prov = {"model": "ddpm U-Net (r1)", "run": "r1", "checkpoint": str(ckpt), "sampler": "ddim", "steps": 10,
            "seed": 7, "class_names": ["normal", "pneumonia"]}
    per = [{"index": i, "seed": 7, "class_label": i % 2, "class_name": ["normal", "pneumonia"][i % 2]}
           for i in range(3)]
    out = tmp_path / "export"
    files = export_images(images, out, fmt, prov, per_image=per, workspace_root=workspace.root)
    for f in [*files, out / "provenance.json"]:  # no absolute workspace path in any exported file
        assert str(workspace.root).encode() not in f.read_bytes()
    if fmt == "dicom":
        assert read_dicom_provenance(files[0])["checkpoint"] == "runs/r1/checkpoints/epoch_0003"
    final, _ = _ingest(workspace, out if fmt != "npz" else files[0], "back", size=32)
    assert isinstance(final, Done), final
    assert final.result["skipped"] == [] and final.result["synthetic_images"] == 3
    rec = workspace.dataset("back")
    assert rec.synthetic and rec.meta["generated"]["run"] == "r1" and rec.meta["generated"]["sampler"] == "ddim"
    assert rec.meta["generated"]["checkpoint"] == "runs/r1/checkpoints/epoch_0003"
    assert sorted(rec.classes) == ["normal", "pneumonia"]
    ds = ImageDataset(rec.cache_path)
    p = ds.provenance(0)
    assert p["synthetic"].startswith("yes") and p["generated seed"] == 7 and p["generated class"] == p["class"]
