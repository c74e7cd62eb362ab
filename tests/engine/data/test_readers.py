"""Readers: DICOM (LUTs, MONOCHROME1, multi-frame, compressed, big-endian), image files, NIfTI,
fastMRI HDF5 and NPZ, and format detection from content rather than extension."""

from __future__ import annotations

import shutil

import h5py
import nibabel as nib
import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file

from app.engine.data.readers import (
    SkipFile,
    detect_format,
    read_dicom,
    read_fastmri_h5,
    read_file,
    read_image,
    read_nifti,
    read_npz,
)
from tests.conftest import shared_file


def _mr_reference() -> np.ndarray:
    return pydicom.dcmread(get_testdata_file("MR_small.dcm")).pixel_array.astype(np.float32)


def test_ct_pixels_come_back_in_hounsfield_units():
    path = get_testdata_file("CT_small.dcm")
    ds = pydicom.dcmread(path)
    (fr,) = read_dicom(path)
    expected = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    np.testing.assert_allclose(fr.pixels, expected)
    assert fr.modality == "CT" and fr.pixels.min() < 0  # intercept -1024 applied
    assert fr.patient == ds.PatientID and fr.series == ds.SeriesInstanceUID


@pytest.mark.parametrize(
    "name",
    ["MR_small_bigendian.dcm", "MR_small_RLE.dcm", "MR_small_jp2klossless.dcm", "MR_small_implicit.dcm"],
)
def test_big_endian_and_compressed_mr_decode_to_the_same_pixels(name):
    (fr,) = read_dicom(get_testdata_file(name))
    np.testing.assert_array_equal(fr.pixels, _mr_reference())
    assert fr.modality == "MR"


def test_jpeg2000_ct_decodes():
    (fr,) = read_dicom(get_testdata_file("693_J2KI.dcm"))
    assert fr.pixels.shape == (512, 512) and fr.modality == "CT"


def test_multiframe_rle_file_gives_one_grey_frame_per_frame():
    frames = read_dicom(get_testdata_file("SC_rgb_rle_2frame.dcm"))
    assert [f.frame for f in frames] == [0, 1]
    assert all(f.pixels.shape == (100, 100) for f in frames)


def test_multiframe_ct_applies_the_rescale_to_every_frame(tmp_path):
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    raw = ds.pixel_array
    stack = np.stack([raw, raw + 10, raw + 20]).astype(raw.dtype)
    ds.NumberOfFrames = 3
    ds.PixelData = stack.tobytes()
    ds.save_as(tmp_path / "mf.dcm")
    frames = read_dicom(tmp_path / "mf.dcm")
    assert len(frames) == 3
    for k, fr in enumerate(frames):
        np.testing.assert_allclose(fr.pixels, raw + 10 * k - 1024.0)


def test_monochrome1_is_inverted(tmp_path):
    ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    ds.PhotometricInterpretation = "MONOCHROME1"
    ds.save_as(tmp_path / "m1.dcm")
    (fr,) = read_dicom(tmp_path / "m1.dcm")
    ref = _mr_reference()
    np.testing.assert_allclose(fr.pixels, ref.max() + ref.min() - ref)


def test_non_image_objects_are_skipped_with_what_they_are():
    with pytest.raises(SkipFile, match=r"structure set \(RTSTRUCT\)"):
        read_dicom(get_testdata_file("rtstruct.dcm"))
    with pytest.raises(SkipFile, match=r"segmentation object \(SEG\)"):
        read_dicom(get_testdata_file("liver_1frame.dcm"))
    with pytest.raises(SkipFile, match=r"structured report \(SR\)"):
        read_dicom(get_testdata_file("test-SR.dcm"))


def test_truncated_dicom_is_skipped_as_truncated(tmp_path):
    data = open(get_testdata_file("MR_small.dcm"), "rb").read()
    (tmp_path / "cut_pixels.dcm").write_bytes(data[:-500])
    (tmp_path / "cut_header.dcm").write_bytes(data[:1000])
    with pytest.raises(SkipFile, match="truncated: the pixel data is shorter"):
        read_dicom(tmp_path / "cut_pixels.dcm")
    with pytest.raises(SkipFile, match="truncated or incomplete"):
        read_dicom(tmp_path / "cut_header.dcm")


def test_format_is_detected_from_content_not_extension(tmp_path):
    shutil.copy(get_testdata_file("MR_small.dcm"), tmp_path / "IM0001")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "pic.png")
    shutil.copy(tmp_path / "pic.png", tmp_path / "pic.dat")
    np.savez(tmp_path / "arr.npz", images=np.zeros((2, 8, 8)))
    (tmp_path / "notes.dcm").write_text("not a dicom file at all")
    assert detect_format(tmp_path / "IM0001") == "dicom"
    assert detect_format(tmp_path / "pic.dat") == "png"
    assert detect_format(tmp_path / "arr.npz") == "npz"
    assert detect_format(tmp_path / "notes.dcm") == "unknown"
    np.testing.assert_array_equal(read_file(tmp_path / "IM0001")[0].pixels, _mr_reference())


def test_dicom_without_preamble_is_detected_by_parsing(tmp_path):
    ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    ds.preamble = None
    ds.save_as(tmp_path / "raw", enforce_file_format=False)
    assert open(tmp_path / "raw", "rb").read(132)[128:132] != b"DICM"
    assert detect_format(tmp_path / "raw") == "dicom"


def test_8_and_16_bit_png_and_rgb_tiff(tmp_path):
    rng = np.random.default_rng(0)
    a8 = rng.integers(0, 256, (10, 12), dtype=np.uint8)
    a16 = rng.integers(0, 65536, (10, 12), dtype=np.uint16)
    rgb = rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)
    Image.fromarray(a8).save(tmp_path / "a8.png")
    Image.fromarray(a16).save(tmp_path / "a16.png")
    import tifffile

    tifffile.imwrite(tmp_path / "rgb.tif", rgb)
    (f8,), (f16,), (frgb,) = (read_image(tmp_path / n) for n in ("a8.png", "a16.png", "rgb.tif"))
    np.testing.assert_array_equal(f8.pixels, a8)
    np.testing.assert_array_equal(f16.pixels, a16)
    assert f8.bits == 8 and f16.bits == 16
    np.testing.assert_allclose(frgb.pixels, rgb @ np.array([0.299, 0.587, 0.114]), atol=1e-3)


def test_nifti_is_reoriented_to_canonical_and_sliced_along_the_axis(tmp_path):
    vol = np.zeros((6, 7, 5), np.float32)
    vol[0, 3, 2] = 100.0  # a marker at the first x index of a volume whose x axis points left
    img = nib.Nifti1Image(vol, np.diag([-1.0, 1.0, 1.0, 1.0]))  # x axis points left (LAS)
    nib.save(img, tmp_path / "v.nii.gz")
    assert detect_format(tmp_path / "v.nii.gz") == "nifti"
    frames = read_nifti(tmp_path / "v.nii.gz", axis=2)
    assert len(frames) == 5 and frames[0].pixels.shape == (7, 6)
    # canonical RAS+: the voxel moves to the last x index; displayed transposed and flipped up-down
    px = frames[2].pixels
    assert px[7 - 1 - 3, 5] == 100.0
    assert len(read_nifti(tmp_path / "v.nii.gz", axis=0)) == 6
    assert all(f.series == str(tmp_path / "v.nii.gz") for f in frames)  # one volume, one group


def test_fastmri_h5_reads_rss_slices_and_skips_kspace_only_files(tmp_path):
    rss = np.random.default_rng(1).random((4, 16, 16)).astype(np.float32)
    with h5py.File(tmp_path / "file1000.h5", "w") as f:
        f["reconstruction_rss"] = rss
        f["kspace"] = np.zeros((4, 2, 16, 16), np.complex64)
        f.attrs["acquisition"] = "CORPD_FBK"
        f.attrs["patient_id"] = "abc123"
    with h5py.File(tmp_path / "kspace_only.h5", "w") as f:
        f["kspace"] = np.zeros((4, 2, 16, 16), np.complex64)
    frames = read_fastmri_h5(tmp_path / "file1000.h5")
    assert len(frames) == 4 and frames[0].modality == "MR" and frames[0].patient == "abc123"
    np.testing.assert_array_equal(frames[3].pixels, rss[3])
    with pytest.raises(SkipFile, match="no reconstruction_rss or reconstruction_esc"):
        read_fastmri_h5(tmp_path / "kspace_only.h5")


def test_medmnist_npz_keeps_its_splits_and_labels_on_real_pneumoniamnist():
    path = shared_file("pneumoniamnist_balanced_28.npz")
    frames = read_npz(path)
    with np.load(path) as z:
        sizes = {s: len(z[f"{s}_images"]) for s in ("train", "val", "test")}
        first_val = z["val_images"][0]
        first_val_label = str(z["val_labels"].ravel()[0])
    assert len(frames) == sum(sizes.values())
    assert {s: sum(f.split == s for f in frames) for s in sizes} == sizes
    val = [f for f in frames if f.split == "val"]
    np.testing.assert_array_equal(val[0].pixels, first_val)
    assert val[0].label == first_val_label and val[0].bits == 8
    assert len(read_npz(path, split="test")) == sizes["test"]


def test_complex_npz_gives_magnitudes(tmp_path):
    z = (np.ones((2, 8, 8)) * (3 + 4j)).astype(np.complex64)
    np.savez(tmp_path / "c.npz", images=z, series=np.array([0, 1]))
    frames = read_npz(tmp_path / "c.npz")
    np.testing.assert_allclose(frames[0].pixels, 5.0)
    assert [f.series for f in frames] == ["0", "1"]


@pytest.mark.parametrize("name", ["MR_small_jpeg_ls_lossless.dcm"])
def test_jpeg_ls_lossless_mr_decodes_to_the_same_pixels(name):
    (fr,) = read_dicom(get_testdata_file(name))
    np.testing.assert_array_equal(fr.pixels, _mr_reference())


def test_lossless_jpeg_process_14_decodes():
    # JPEG Lossless, first-order prediction: the usual encoding of CR/DX archives (GDCM decodes it)
    path = get_testdata_file("SC_rgb_jpeg_gdcm.dcm")
    assert pydicom.dcmread(path).file_meta.TransferSyntaxUID == pydicom.uid.JPEGLosslessSV1
    (fr,) = read_dicom(path)
    assert fr.pixels.shape == (100, 100) and np.isfinite(fr.pixels).all() and fr.pixels.std() > 0


def test_undecodable_12_bit_jpeg_extended_is_skipped_with_the_reason():
    with pytest.raises(SkipFile) as err:
        read_dicom(get_testdata_file("JPEG-lossy.dcm"))
    msg = str(err.value)
    assert "JPEG Extended" in msg and "12-bit" in msg and "pylibjpeg-libjpeg" in msg


def test_npz_labels_with_class_names_minus_one_is_no_class_and_out_of_range_is_refused(tmp_path):
    imgs = np.zeros((3, 8, 8), np.float32)
    ok = tmp_path / "ok.npz"
    np.savez(ok, images=imgs, labels=np.array([1, -1, 0]), class_names=np.array(["normal", "pneumonia"]))
    assert [f.label for f in read_npz(ok)] == ["pneumonia", None, "normal"]
    bad = tmp_path / "bad.npz"
    np.savez(bad, images=imgs, labels=np.array([0, 2, 1]), class_names=np.array(["normal", "pneumonia"]))
    with pytest.raises(SkipFile, match="label 2 of image 1"):
        read_npz(bad)
