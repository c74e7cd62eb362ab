"""Export of generated images: every file reads back, carries its provenance and says it is synthetic."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pydicom
import pytest
from PIL import Image as PILImage

from app.engine.export import (
    SECONDARY_CAPTURE_SOP_CLASS,
    export_images,
    read_dicom_provenance,
    read_png_provenance,
)
from app.engine.jobs import UserError
from tests.conftest import shared_file

PROV = {
    "model": "ddpm-unet-tiny",
    "checkpoint": "run-123/epoch-0004",
    "checkpoint_sha256": "ab" * 32,
    "sampler": "ddim",
    "steps": 50,
    "seed": 7,
    "created": "2024-01-01T00:00:00+00:00",
}


def _images(n=4, size=24, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, (n, 1, size, size)).astype(np.float32)
    x[:, :, 0, 0] = -1.0  # the full range is present
    x[:, :, 0, 1] = 1.0
    return x


def test_dicom_export_reads_back_as_secondary_capture_marked_synthetic(tmp_path):
    x = _images(4)
    per = [{"class_label": i % 2, "class_name": ["normal", "pneumonia"][i % 2]} for i in range(4)]
    files = export_images(x, tmp_path, "dicom", PROV, per_image=per)
    assert len(files) == 4
    sop_uids, series_uids, study_uids, patient_ids = set(), set(), set(), set()
    for i, path in enumerate(files):
        ds = pydicom.dcmread(path)
        # file meta: Part 10 file, explicit VR little endian, matching SOP identity
        assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
        assert ds.file_meta.MediaStorageSOPClassUID == SECONDARY_CAPTURE_SOP_CLASS
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert ds.SOPClassUID == SECONDARY_CAPTURE_SOP_CLASS
        # required modules present (patient, study, series, SC equipment, image, pixel)
        for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID",
                        "StudyDate", "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber",
                        "Modality", "SeriesInstanceUID", "SeriesNumber", "ConversionType", "InstanceNumber",
                        "SamplesPerPixel", "PhotometricInterpretation", "Rows", "Columns", "BitsAllocated",
                        "BitsStored", "HighBit", "PixelRepresentation", "PixelData"):
            assert keyword in ds, f"{keyword} missing from {path.name}"
        # marked synthetic in every place a reader or a PACS looks
        assert list(ds.ImageType) == ["DERIVED", "SECONDARY"]
        assert ds.ConversionType == "SYN"
        assert "SYNTHETIC" in ds.SeriesDescription
        assert "SYNTHETIC" in ds.ImageComments
        assert "Synthetic" in ds.DerivationDescription
        assert ds.BurnedInAnnotation == "NO"
        assert str(ds.PatientName) == "SYNTHETIC^RADSYNTH"
        assert ds.PatientID.startswith("SYN-")
        assert ds.PhotometricInterpretation == "MONOCHROME2"
        assert float(ds.WindowWidth) > 0 and 0 < float(ds.WindowCenter) < 2**ds.BitsStored
        # pixels round-trip within one stored level of the 12-bit quantisation
        back = ds.pixel_array.astype(np.float32) / (2**ds.BitsStored - 1) * 2 - 1
        assert back.shape == (24, 24)
        assert np.abs(back - x[i, 0]).max() <= 1.0 / (2**ds.BitsStored - 1) + 1e-6
        # the generation metadata is kept with every image
        prov = read_dicom_provenance(ds)
        for key, value in PROV.items():
            assert prov[key] == value
        assert prov["image"]["class_label"] == i % 2
        assert prov["synthetic"] is True
        assert json.loads(ds.ImageComments.split("provenance: ", 1)[1])["seed"] == 7
        sop_uids.add(ds.SOPInstanceUID)
        series_uids.add(ds.SeriesInstanceUID)
        study_uids.add(ds.StudyInstanceUID)
        patient_ids.add(ds.PatientID)
    assert len(sop_uids) == 4, "every image has its own SOP instance UID"
    assert len(series_uids) == 1 and len(study_uids) == 1 and len(patient_ids) == 1, "one series per export"
    sidecar = json.loads((tmp_path / "provenance.json").read_text())
    assert sidecar["series_instance_uid"] in series_uids
    assert sidecar["files"] == [f.name for f in files]
    assert sidecar["checkpoint_sha256"] == PROV["checkpoint_sha256"]


def test_each_dicom_export_is_a_new_series_with_fresh_uids_and_patient_id(tmp_path):
    a = export_images(_images(2), tmp_path / "a", "dicom", PROV)
    b = export_images(_images(2), tmp_path / "b", "dicom", PROV)
    da, db = pydicom.dcmread(a[0]), pydicom.dcmread(b[0])
    assert da.SeriesInstanceUID != db.SeriesInstanceUID
    assert da.StudyInstanceUID != db.StudyInstanceUID
    assert da.SOPInstanceUID != db.SOPInstanceUID
    assert da.PatientID != db.PatientID


def test_dicom_export_copies_nothing_from_a_real_patient_file(tmp_path):
    """A real MR file stands in for a training patient: none of its identifiers reach the export."""
    real = pydicom.dcmread(pydicom.data.get_testdata_file("MR_small.dcm"))
    img = real.pixel_array.astype(np.float32)
    img = (img - img.min()) / (img.max() - img.min()) * 2 - 1
    (path,) = export_images(img[None, None], tmp_path, "dicom", PROV)
    ds = pydicom.dcmread(path)
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "StudyInstanceUID", "SeriesInstanceUID",
                    "SOPInstanceUID", "InstitutionName", "StudyDate"):
        if keyword in real and str(real.data_element(keyword).value):
            assert str(ds.get(keyword, "")) != str(real.data_element(keyword).value), keyword
    assert "InstitutionName" not in ds and "OperatorsName" not in ds


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dicom3tools' dciodvfy is not installed")
def test_dicom_export_passes_the_dicom3tools_iod_validator(tmp_path):
    (path,) = export_images(_images(1), tmp_path, "dicom", PROV)
    out = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    report = out.stdout + out.stderr
    assert "SCImage" in report
    assert "Error" not in report, report


@pytest.mark.parametrize("fmt,bits", [("png", 8), ("png16", 16)])
def test_png_export_round_trips_pixels_and_carries_provenance(tmp_path, fmt, bits):
    x = _images(3)
    files = export_images(x, tmp_path, fmt, PROV, names=["a", "b", "c"])
    assert [f.name for f in files] == ["a.png", "b.png", "c.png"]
    levels = 2**bits - 1
    for i, path in enumerate(files):
        with PILImage.open(path) as im:
            arr = np.asarray(im).astype(np.float64)
            assert im.size == (24, 24)
            assert "SYNTHETIC" in im.text["Description"]
        assert arr.max() <= levels
        back = arr / levels * 2 - 1
        assert np.abs(back - x[i, 0]).max() <= 1.0 / levels + 1e-6
        prov = read_png_provenance(path)
        assert prov["sampler"] == "ddim" and prov["seed"] == 7 and prov["synthetic"] is True
        assert prov["image"]["index"] == i


def test_npz_and_hdf5_export_hold_the_images_and_provenance(tmp_path):
    import h5py

    x = _images(5)
    (npz,) = export_images(x, tmp_path / "n", "npz", PROV)
    with np.load(npz) as z:
        np.testing.assert_array_equal(z["images"], x)
        prov = json.loads(str(z["provenance"]))
        assert prov["checkpoint_sha256"] == PROV["checkpoint_sha256"] and prov["synthetic"] is True
        assert list(z["names"]) == [f"synthetic_{i:05d}" for i in range(5)]
    (h5,) = export_images(x, tmp_path / "h", "hdf5", PROV)
    with h5py.File(h5, "r") as f:
        np.testing.assert_array_equal(f["images"][...], x)
        assert json.loads(f.attrs["provenance"])["steps"] == 50
        assert bool(f.attrs["synthetic"])


def test_keep_mask_withholds_flagged_images_and_records_it(tmp_path):
    x = _images(4)
    keep = np.array([True, False, True, False])
    files = export_images(x, tmp_path, "dicom", PROV, keep=keep)
    assert [f.name for f in files] == ["synthetic_00000.dcm", "synthetic_00002.dcm"]
    back = [pydicom.dcmread(f) for f in files]
    assert [read_dicom_provenance(ds)["image"]["index"] for ds in back] == [0, 2]
    sidecar = json.loads((tmp_path / "provenance.json").read_text())
    assert sidecar["n_withheld"] == 2 and sidecar["n_exported"] == 2
    with np.load(export_images(x, tmp_path / "z", "npz", PROV, keep=keep)[0]) as z:
        np.testing.assert_array_equal(z["images"], x[[0, 2]])


def test_real_chest_xrays_survive_a_png16_round_trip(tmp_path):
    data = np.load(shared_file("pneumoniamnist_balanced_28.npz"))
    x = data["test_images"][:6].astype(np.float32)[:, None] / 127.5 - 1
    files = export_images(x, tmp_path, "png16", PROV)
    back = np.stack([np.asarray(PILImage.open(f)).astype(np.float64) / 65535 * 2 - 1 for f in files])
    assert np.abs(back - x[:, 0]).max() < 2e-5


def test_bad_export_requests_raise_clear_user_errors(tmp_path):
    x = _images(2)
    with pytest.raises(UserError, match="format 'jpeg'"):
        export_images(x, tmp_path, "jpeg", PROV)
    bad = x.copy()
    bad[1, 0, 3, 3] = np.nan
    with pytest.raises(UserError, match="NaN"):
        export_images(bad, tmp_path, "png", PROV)
    with pytest.raises(UserError, match="keep mask"):
        export_images(x, tmp_path, "png", PROV, keep=np.array([1, 0]))
    with pytest.raises(UserError, match="names"):
        export_images(x, tmp_path, "png", PROV, names=["one"])
    with pytest.raises(UserError, match=r"\(N, 1, H, W\)"):
        export_images(np.zeros((2, 3, 8, 8), np.float32), tmp_path, "png", PROV)


@pytest.mark.parametrize("fmt", ["npz", "png", "dicom"])
def test_exported_classes_read_back_as_labels_for_evaluation(tmp_path, fmt):
    """A class-conditional set keeps its classes: NPZ ``labels`` + ``class_names``, a labels.csv
    beside image files; ``load_image_set`` (what evaluate and audit read) gives them back, withheld
    images included in none of them."""
    from app.engine.data.imagesets import load_image_set

    imgs = _images(n=5)
    per = [{"class_label": c, "class_name": ["normal", "pneumonia"][c]} for c in (0, 1, 1, 0, 1)]
    keep = np.array([True, True, False, True, True])
    export_images(imgs, tmp_path, fmt, {**PROV, "class_names": ["normal", "pneumonia"]}, per_image=per, keep=keep)
    ref = tmp_path / "synthetic_images.npz" if fmt == "npz" else tmp_path
    got = load_image_set(ref)
    assert sorted(got.class_names) == ["normal", "pneumonia"]
    names = [got.class_names[k] for k in got.labels]
    assert sorted(names) == sorted(["normal", "pneumonia", "normal", "pneumonia"])
    if fmt == "npz":  # order is kept in the one file
        assert names == ["normal", "pneumonia", "normal", "pneumonia"]


def test_an_unconditional_set_writes_no_labels(tmp_path):
    export_images(_images(n=3), tmp_path, "png", PROV, per_image=[{"class_label": None}] * 3)
    assert not (tmp_path / "labels.csv").exists()
    export_images(_images(n=3), tmp_path / "z", "npz", PROV, per_image=[{"class_label": None}] * 3)
    with np.load(tmp_path / "z" / "synthetic_images.npz") as z:
        assert "labels" not in z.files
