"""Subgroup attributes: kept at ingest from DICOM headers, labels-CSV columns and NPZ arrays, read
back through the dataset / workspace / image-set APIs and counted by EDA; identifying values never
stored anywhere in the dataset."""

from __future__ import annotations

import csv
import json
import sqlite3

import h5py
import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from app.engine.data.attributes import UNKNOWN, age_group, identifying_name, screen
from app.engine.data.cache import CacheWriter, ImageDataset
from app.engine.data.eda import EdaSpec
from app.engine.data.imagesets import load_image_set
from app.engine.data.ingest import IngestSpec
from app.engine.jobs import Done, run_collect

#: (sex, age, manufacturer) per patient; patient k also has a name and an id that must never be stored
PATIENTS = [("F", "045Y", "SIEMENS"), ("M", "071Y", "GE MEDICAL SYSTEMS"), ("F", "093Y", "SIEMENS"),
            ("M", "", "PHILIPS"), ("O", "008M", "")]
NAMES = [f"DOE^JANE{k}" for k in range(len(PATIENTS))]
IDS = [f"MRN-77{k}31" for k in range(len(PATIENTS))]
BIRTH = "19510423"


def _dicom_folder(root, slices=3):
    root.mkdir()
    base = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    for k, (sex, age, maker) in enumerate(PATIENTS):
        for s in range(slices):
            ds = base.copy()
            ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.StudyDate = NAMES[k], IDS[k], BIRTH, "20240611"
            ds.PatientSex, ds.PatientAge, ds.Manufacturer = sex, age, maker
            ds.InstitutionName = "St Elsewhere Hospital"
            ds.BodyPartExamined = "HEAD"
            ds.SOPInstanceUID = generate_uid()
            ds.InstanceNumber = s
            ds.save_as(root / f"pat{k}_s{s}.dcm")
    return root


def _ingest(workspace, src, name, **kw):
    ev = run_collect(IngestSpec(source=str(src), name=name, size=16, **kw), workspace=workspace)[-1]
    assert isinstance(ev, Done), ev
    return ev.result


def _all_stored_text(workspace, name) -> str:
    """Every string the dataset keeps: all HDF5 string arrays and attributes, the ingest report,
    and the registry row (meta JSON)."""
    rec = workspace.dataset(name)
    parts = []
    with h5py.File(rec.cache_path, "r") as f:
        parts += [str(v) for v in f.attrs.values()]

        def visit(key, obj):
            if isinstance(obj, h5py.Dataset) and obj.dtype.kind == "O":
                parts.extend(obj.asstr()[:].tolist())
        f.visititems(visit)
    parts.append((rec.path / "ingest_report.json").read_text())
    con = sqlite3.connect(workspace.db_path)
    try:
        for (table,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
            parts += [str(r) for r in con.execute(f"SELECT * FROM {table}").fetchall()]
    finally:
        con.close()
    parts.append(json.dumps(rec.meta))
    return "\n".join(parts)


def test_dicom_header_attributes_are_kept_per_image_and_nothing_identifying_is_stored(workspace, tmp_path):
    src = _dicom_folder(tmp_path / "dicom")
    r = _ingest(workspace, src, "heads", val_fraction=0.2, test_fraction=0.2)
    assert r["kept"] == 15 and r["groups"] == 5
    assert r["attributes"]["sex"] == {"F": 6, "M": 6, "O": 3}
    assert r["attributes"]["age_group"] == {"40-49": 3, "70-79": 3, "90+": 3, "0-9": 3, UNKNOWN: 3}
    assert r["attributes"]["manufacturer"] == {"SIEMENS": 6, "GE MEDICAL SYSTEMS": 3, "PHILIPS": 3, UNKNOWN: 3}
    assert r["attributes"]["body_part"] == {"HEAD": 15} and r["attributes"]["modality"] == {"MR": 15}

    ds = ImageDataset.from_workspace(workspace, "heads")
    attrs = ds.attributes()
    assert set(attrs) == {"sex", "age_group", "manufacturer", "body_part", "modality"}
    for i in range(ds.n):  # each image carries its own patient's values
        k = int(ds.provenance(i)["source"].split("_")[0][3:])
        sex, age, maker = PATIENTS[k]
        assert attrs["sex"][i] == sex and attrs["age_group"][i] == age_group(age)
        assert attrs["manufacturer"][i] == (maker or UNKNOWN)
    # the workspace API, per split, lines up with the split's images
    for split in ("train", "val", "test"):
        a = workspace.attributes("heads", split)
        assert len(a["sex"]) == len(ds.indices(split)) > 0
        assert a["sex"].tolist() == attrs["sex"][ds.indices(split)].tolist()

    stored = _all_stored_text(workspace, "heads")
    for secret in NAMES + IDS + ["DOE", "MRN-77", BIRTH, "20240611", "St Elsewhere"]:
        assert secret not in stored, secret
    assert "SIEMENS" in stored and "90+" in stored and "heads" in stored  # the check above sees every store


def test_labels_csv_extra_columns_become_attributes_and_identifying_columns_are_dropped(workspace, tmp_path):
    src = tmp_path / "pngs"
    src.mkdir()
    rng = np.random.default_rng(0)
    rows = []
    for i in range(10):
        Image.fromarray(rng.integers(0, 255, (20, 20), dtype=np.uint8)).save(src / f"img{i}.png")
        rows.append({"file": f"img{i}.png", "label": "pneumonia" if i % 2 else "normal",
                     "site": "A" if i < 6 else "B", "PatientName": f"SMITH^JOHN{i}", "Age": str(38 + 5 * i),
                     "scan_date": f"2021-03-{i + 1:02d}", "case_ref": f"C{i:04d}", "scanner_id": ""})
    with open(src / "labels.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    r = _ingest(workspace, src, "csvset", val_fraction=0.0, test_fraction=0.0)
    assert r["kept"] == 10 and r["classes"] == ["normal", "pneumonia"]
    assert r["attributes"] == {"site": {"A": 6, "B": 4},
                               "age_group": {"40-49": 2, "50-59": 2, "60-69": 2, "70-79": 2, "30-39": 1, "80-89": 1}}
    dropped = {d["attribute"]: d["reason"] for d in r["attributes_dropped"]}
    assert set(dropped) == {"PatientName", "scan_date", "case_ref", "scanner_id"}
    assert "identifiers" in dropped["PatientName"] and "dates" in dropped["scan_date"]
    assert "its own value" in dropped["case_ref"] and "no image has a value" in dropped["scanner_id"]
    a = ImageDataset.from_workspace(workspace, "csvset")
    site = a.attributes()["site"]
    for i in range(a.n):
        k = int(a.provenance(i)["source"][3:-4])
        assert site[i] == ("A" if k < 6 else "B")
    stored = _all_stored_text(workspace, "csvset")
    assert "SMITH" not in stored and "2021-03-" not in stored and "C0003" not in stored


def test_npz_attribute_arrays_both_layouts_and_a_wrong_length_array_is_reported(workspace, tmp_path):
    rng = np.random.default_rng(1)
    imgs = rng.integers(0, 255, (12, 16, 16), dtype=np.uint8)
    plain = tmp_path / "plain.npz"
    np.savez(plain, images=imgs, labels=np.arange(12) % 2, attr_sex=np.array(list("FM") * 6),
             attr_scanner=np.array([1, 1, 2] * 4), attr_bad=np.arange(5))
    r = _ingest(workspace, plain, "plain")
    assert r["attributes"] == {"sex": {"F": 6, "M": 6}, "scanner": {"1": 8, "2": 4}}
    assert [d["attribute"] for d in r["attributes_dropped"]] == ["bad"]
    assert "5 values for 12 images" in r["attributes_dropped"][0]["reason"]
    ds = ImageDataset.from_workspace(workspace, "plain")
    frames = np.array([ds.provenance(i)["frame"] for i in range(ds.n)])
    assert ds.attributes()["sex"].tolist() == np.array(list("FM") * 6)[frames].tolist()

    med = tmp_path / "med.npz"
    np.savez(med, train_images=imgs[:8], train_labels=np.arange(8) % 2, test_images=imgs[8:], test_labels=np.arange(4) % 2,
             train_attr_site=np.array(["s1"] * 5 + ["s2"] * 3), test_attr_site=np.array(["s2", "s2", "s3", "s3"]))
    r = _ingest(workspace, med, "med")
    assert r["split_source"] == "given by the source file"
    assert r["attributes"] == {"site": {"s2": 5, "s1": 5, "s3": 2}}
    s = load_image_set("med:test", workspace=workspace)
    assert s.attributes["site"].tolist() == ["s2", "s2", "s3", "s3"] and len(s) == 4
    # the NPZ itself through the loader gives the same arrays; a bad length is a clear error
    assert load_image_set(str(med), split="train").attributes["site"].tolist() == ["s1"] * 5 + ["s2"] * 3
    with pytest.raises(Exception, match=r"plain\.npz: attribute array 'attr_bad' has 5 values for 12 images"):
        load_image_set(str(plain))


def test_image_sets_of_a_dataset_split_a_dicom_folder_and_an_old_cache_carry_their_attributes(workspace, tmp_path):
    src = _dicom_folder(tmp_path / "dicom", slices=2)
    _ingest(workspace, src, "heads", val_fraction=0.2, test_fraction=0.2)
    ds = ImageDataset.from_workspace(workspace, "heads")
    for ref in ("heads", "heads:test", "heads:train"):
        s = load_image_set(ref, workspace=workspace, limit=3)
        split = ref.split(":")[1] if ":" in ref else None
        idx = ds.indices(split)[:3]
        assert s.attributes["sex"].tolist() == ds.attributes()["sex"][idx].tolist()
    folder = load_image_set(src)
    by_name = dict(zip(folder.names, folder.attributes["sex"].tolist()))
    assert by_name["pat0_s1.dcm"] == "F" and by_name["pat4_s0.dcm"] == "O"
    assert folder.attributes["age_group"].tolist().count("90+") == 2
    # a cache written without attributes (before they existed) reads as none, not as an error
    old = tmp_path / "old.h5"
    w = CacheWriter(old, 8, 8, [])
    w.append(np.zeros((2, 8, 8)), -1, "g", "x", 0, "MR")
    w.close()
    assert ImageDataset(old).attributes() == {} and load_image_set(str(old)).attributes == {}


def test_eda_counts_images_per_attribute_value_in_the_split(workspace, tmp_path):
    _ingest(workspace, _dicom_folder(tmp_path / "dicom"), "heads", val_fraction=0.2, test_fraction=0.2)
    ds = ImageDataset.from_workspace(workspace, "heads")
    for split in ("all", "train"):
        ev = run_collect(EdaSpec(dataset="heads", split=split, n_samples=4), workspace=workspace)[-1]
        assert isinstance(ev, Done), ev
        sex = ds.attributes(None if split == "all" else split)["sex"]
        want = {v: int((sex == v).sum()) for v in set(sex.tolist())}
        assert ev.result["attributes"]["sex"] == want and sum(want.values()) == ev.result["n_images"]
        assert json.loads(open(ev.result["files"]["json"]).read())["attributes"] == ev.result["attributes"]


def test_screen_rules():
    assert identifying_name("PatientID") and identifying_name("accession_number") and identifying_name("StudyDate")
    assert not identifying_name("site_id") and not identifying_name("scanner") and not identifying_name("sex")
    assert [age_group(a) for a in ("045Y", "006M", "090Y", "89", "", "x")] == ["40-49", "0-9", "90+", "80-89", UNKNOWN, UNKNOWN]
    kept, dropped = screen({"site": ["a", "b"] * 5, "serial": [str(i) for i in range(10)]}, 10)
    assert list(kept) == ["site"] and dropped[0]["attribute"] == "serial"
