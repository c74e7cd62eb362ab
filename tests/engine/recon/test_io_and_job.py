"""Reading k-space files (with clear errors for bad ones) and the recon job through the CLI."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from app.cli import main
from app.engine.jobs import UserError
from app.engine.recon.mri.fft import fft2c
from app.engine.recon.mri.io import load_recon_input
from tests.conftest import shared_file


def test_a_complex_image_file_gives_kspace_simulated_from_the_complex_image(tmp_path, siat_slice):
    p = tmp_path / "img.npz"
    np.savez(p, images=siat_slice[None])
    inp = load_recon_input(p, 0)
    assert inp.from_image and inp.fully_sampled
    assert np.allclose(inp.kspace, fft2c(siat_slice), atol=1e-5)  # not the FFT of the magnitude
    assert not np.allclose(inp.kspace, fft2c(np.abs(siat_slice)), atol=1e-3)


def test_real_undersampled_8coil_kspace_is_read_with_its_own_sampling_pattern():
    inp = load_recon_input(shared_file("bart_brain_8coil_kspace.npz"))
    assert inp.multicoil and inp.kspace.shape == (8, 180, 230)
    assert not inp.fully_sampled and 0.1 < inp.measured_mask.mean() < 0.2
    assert inp.reference is None


def test_fastmri_hdf5_is_read_with_its_reference_and_attributes(tmp_path, siat_slice):
    p = tmp_path / "file_brain.h5"
    coils = np.stack([siat_slice, 0.5 * siat_slice])
    with h5py.File(p, "w") as f:
        f["kspace"] = fft2c(coils)[None].repeat(2, axis=0)
        f["reconstruction_rss"] = np.abs(coils[None]).repeat(2, 0).__pow__(2).sum(1) ** 0.5
        f.attrs["acquisition"] = "AXT2"
    inp = load_recon_input(p, 1)
    assert inp.multicoil and inp.slice_index == 1 and inp.n_slices == 2
    assert inp.attrs["acquisition"] == "AXT2"
    assert np.allclose(inp.reference, np.sqrt(1.25) * np.abs(siat_slice), rtol=1e-4)


def test_kspace_with_empty_edge_lines_is_fully_sampled_and_gets_the_retrospective_mask(tmp_path, siat_slice):
    k = fft2c(siat_slice)
    k[:, :24] = 0  # fastMRI knee layout: phase-encode lines outside the acquired matrix are empty
    k[:, -24:] = 0
    p = tmp_path / "file_knee.h5"
    with h5py.File(p, "w") as f:
        f["kspace"] = k[None]
    inp = load_recon_input(p, 0)
    assert inp.fully_sampled and inp.measured_mask is None  # not mistaken for its own sampling pattern
    k[:, 30:110:3] = 0  # lines missing inside the acquired block (the centre kept): undersampled
    with h5py.File(p, "w") as f:
        f["kspace"] = k[None]
    inp = load_recon_input(p, 0)
    assert not inp.fully_sampled and inp.measured_mask[:, 30:110:3].sum() == 0


@pytest.mark.parametrize(
    "arrays, reason",
    [
        ({"kspace": np.zeros((2, 3, 4, 5, 6), np.complex64)}, "shape"),
        ({"kspace": np.full((32, 32), np.nan, np.complex64)}, "NaN"),
        ({"kspace": np.ones((32, 32), np.float32)}, "not complex"),
        ({"something": np.ones(3)}, "no 'kspace' or 'images'"),
    ],
)
def test_bad_kspace_files_get_a_clear_error_naming_the_file(tmp_path, arrays, reason):
    p = tmp_path / "bad.npz"
    np.savez(p, **arrays)
    with pytest.raises(UserError, match=reason) as info:
        load_recon_input(p)
    assert "bad.npz" in str(info.value)


def test_undersampled_kspace_without_a_sampled_centre_is_refused(tmp_path, siat_slice):
    k = fft2c(siat_slice)
    mask = np.zeros(k.shape, bool)
    mask[:, ::3] = True
    mask[:, 120:136] = False  # the centre lines were not acquired
    p = tmp_path / "nocentre.npz"
    np.savez(p, kspace=(k * mask).astype(np.complex64))
    with pytest.raises(UserError, match="no fully sampled centre") as info:
        load_recon_input(p)
    assert "nocentre.npz" in str(info.value)


def test_recon_job_through_the_cli_prints_metrics_per_method_and_the_files(tmp_path, capsys, siat_slice):
    src = tmp_path / "one.npz"
    np.savez(src, images=siat_slice[None])
    out = tmp_path / "out"
    code = main(["recon", "--input", str(src), "--mask", "poisson2d", "--acceleration", "4",
                 "--method", "zero-filled", "cs-tv", "--iterations", "30", "--seed", "0",
                 "--out", str(out), "--json", "--quiet"])
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0, result
    assert abs(result["mask"]["acceleration"] - 4) < 0.2
    zf, tv = result["methods"]["zero-filled"], result["methods"]["cs-tv"]
    assert tv["metrics"]["psnr"] > zf["metrics"]["psnr"]
    assert zf["dc_error"] < 1e-5
    for entry in (zf, tv):
        with np.load(entry["files"]["npz"]) as z:
            assert z["recon"].shape == siat_slice.shape and np.iscomplexobj(z["recon"])
            assert np.all(np.isfinite(z["error"]))
        assert (out / "cs-tv_error.png").exists() and (out / "cs-tv_recon.png").exists()


def test_recon_job_reports_a_bad_input_file_by_name(tmp_path, capsys):
    p = tmp_path / "nan.npz"
    np.savez(p, kspace=np.full((16, 16), np.nan, np.complex64))
    code = main(["recon", "--input", str(p), "--out", str(tmp_path / "o"), "--json", "--quiet"])
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 1 and "nan.npz" in result["error"] and "NaN" in result["error"]


def test_reconstructions_are_written_as_derived_dicom_that_reads_back(tmp_path, siat_slice):
    import pydicom
    from pydicom.data import get_testdata_file

    from app.engine.recon.dicom import write_derived_mr

    src = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    mag = np.abs(siat_slice)
    p = write_derived_mr(tmp_path / "r.dcm", mag, "RadSynth cs-tv reconstruction", source_dataset=src)
    ds = pydicom.dcmread(p)
    assert list(ds.ImageType) == ["DERIVED", "SECONDARY"]
    assert ds.ReferencedSeriesSequence[0].SeriesInstanceUID == src.SeriesInstanceUID
    assert ds.StudyInstanceUID == src.StudyInstanceUID
    back = ds.pixel_array * float(ds.RescaleSlope)
    assert np.allclose(back, mag, atol=mag.max() / 65535)


def test_a_warm_start_without_score_dds_is_refused_by_name_before_the_job_runs(tmp_path, capsys, siat_slice):
    src = tmp_path / "one.npz"
    np.savez(src, images=siat_slice[None])
    code = main(["recon", "--input", str(src), "--method", "zero-filled", "cs-tv", "--warm-start", "0.1",
                 "--out", str(tmp_path / "o"), "--json", "--quiet"])
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    # the spec refuses it (exit 2, bad arguments), so a form says so while the user types
    assert code == 2 and "--warm-start" in result["error"] and "score-dds" in result["error"]
    assert not (tmp_path / "o").exists()
