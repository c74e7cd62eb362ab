"""The recon-sweep job: metrics per (method, R), radial k-space error, best/worst, subgroup flags."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from app.engine.jobs import Done, Failed, run_collect
from app.engine.recon.mri.fft import fft2c, ifft2c
from app.engine.recon.sweep import ReconSweepSpec, radial_error, subgroup_report
from tests.conftest import shared_file


def _low_res_stack(n: int) -> np.ndarray:
    with np.load(shared_file("siat_brain_t2_complex_dev.npz")) as z:
        imgs = z["images"][120 : 120 + n]
    return ifft2c(fft2c(imgs)[:, 96:160, 96:160]).astype(np.complex64)  # 64x64, phase kept


def test_radial_error_of_zero_filled_is_zero_in_the_sampled_centre_and_grows_outwards():
    img = _low_res_stack(1)[0]
    mask = np.zeros(img.shape, np.float32)
    mask[:, 28:36] = 1  # centre lines only
    zf = ifft2c(mask * fft2c(img))
    curve = radial_error(img, zf)
    assert curve[0] < 1e-10 and curve[-1] > 0.5


def test_subgroups_well_below_the_rest_are_flagged():
    rows = [{"method": "cs-tv", "acceleration": 4.0, "ssim": s, "scanner": g}
            for s, g in [(0.95, "A"), (0.94, "A"), (0.96, "B"), (0.80, "C"), (0.82, "C")]]
    report = {g["value"]: g for g in subgroup_report(rows, "scanner", 0.05)}
    assert report["C"]["flagged"] and not report["A"]["flagged"] and not report["B"]["flagged"]


def test_recon_sweep_writes_a_table_per_method_and_acceleration(tmp_path):
    src = tmp_path / "four.npz"
    np.savez(src, images=_low_res_stack(4), series=np.array([12, 12, 13, 13]))
    spec = ReconSweepSpec(input=str(src), slices=[0, 1, 2, 3], accelerations=[2, 6], method=["zero-filled", "cs-tv"],
                          iterations=20, out=str(tmp_path / "out"))
    events = run_collect(spec, workspace=tmp_path / "ws")
    done = events[-1]
    assert isinstance(done, Done), done
    table = {(r["method"], r["acceleration"]): r for r in done.result["table"]}
    assert set(table) == {("zero-filled", 2.0), ("zero-filled", 6.0), ("cs-tv", 2.0), ("cs-tv", 6.0)}
    for r in table.values():
        assert r["ssim"]["n"] == 4 and len(r["radial_error"]) == 16
    assert table[("zero-filled", 2.0)]["ssim"]["mean"] > table[("zero-filled", 6.0)]["ssim"]["mean"]
    assert {g["value"] for g in done.result["subgroups"]} == {12, 13}
    assert (tmp_path / "out" / "sweep.json").exists() and (tmp_path / "out" / "radial_error.png").exists()


def test_recon_sweep_reads_attr_arrays_and_refuses_a_short_one(tmp_path):
    src = tmp_path / "three.npz"
    np.savez(src, images=_low_res_stack(3), attr_sex=np.array(["F", "M", "F"]))
    spec = ReconSweepSpec(input=str(src), slices=[0, 1, 2], accelerations=[4], method=["zero-filled"],
                          out=str(tmp_path / "out"))
    done = run_collect(spec, workspace=tmp_path / "ws")[-1]
    assert isinstance(done, Done), done
    groups = {(g["attribute"], g["value"]) for g in done.result["subgroups"]}
    assert groups == {("sex", "F"), ("sex", "M")}
    short = tmp_path / "short.npz"
    np.savez(short, images=_low_res_stack(3), attr_site=np.array(["a", "b"]))
    bad = run_collect(ReconSweepSpec(input=str(short), slices=[0, 1, 2], accelerations=[4], method=["zero-filled"],
                                     out=str(tmp_path / "out2")), workspace=tmp_path / "ws")[-1]
    assert isinstance(bad, Failed) and "short.npz" in bad.message and "attr_site" in bad.message


def test_recon_sweep_refuses_a_warm_start_without_score_dds(tmp_path):
    src = tmp_path / "one.npz"
    np.savez(src, images=_low_res_stack(1))
    # the spec itself refuses it, before anything runs (a form shows the message as the user types)
    with pytest.raises(ValidationError) as exc:
        ReconSweepSpec(input=str(src), slices=[0], accelerations=[4], method=["zero-filled", "cs-tv"],
                       warm_start=0.1, out=str(tmp_path / "out"))
    assert "--warm-start" in str(exc.value) and "score-dds" in str(exc.value)
    assert not (tmp_path / "out").exists()
