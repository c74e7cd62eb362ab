"""Reconstruction between panels: a complex dataset's image keeps its phase, a CT input is checked for its modality
once, annealed Langevin with too few levels is refused with the number that works, and the checkpoint pickers
offer only runs that can serve as the prior. Real import and training jobs, real SIAT / DICOM files."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import shared_file
from tests.views.conftest import assert_not_blank
from tests.views.test_panels import make_dataset
from tests.views.test_reconstruct_panel import SHOTS, _train_complex_prior


@pytest.fixture
def panel(main_window):
    main_window.resize(1366, 768)
    return main_window.show_panel("reconstruct")


@pytest.fixture
def siat_small(tmp_path):
    """One real SIAT validation slice at 64x64 (the centre of its k-space, phase kept), as NPZ."""
    from app.engine.recon.mri.fft import fft2c, ifft2c

    with np.load(shared_file("siat_brain_t2_complex_dev.npz")) as z:
        img = np.asarray(z["images"][124:125], np.complex64)
    p = tmp_path / "siat_small.npz"
    np.savez(p, images=ifft2c(fft2c(img)[:, 96:160, 96:160]).astype(np.complex64))
    return p


def test_an_image_of_a_complex_dataset_keeps_its_phase_and_the_scanners_contrast(panel, qtbot, workspace, tmp_path):
    from app.engine.data.ingest import IngestSpec
    from app.engine.jobs import Done, run_collect

    with np.load(shared_file("siat_brain_t2_complex_dev.npz")) as z:
        src = np.asarray(z["images"][:4], np.complex64)  # 256 x 256 slices with the scanner's phase
    np.savez(tmp_path / "siat4.npz", images=src)
    ev = run_collect(IngestSpec(source=str(tmp_path / "siat4.npz"), name="siat-complex", complex=True, size=256),
                     workspace=workspace)
    assert isinstance(ev[-1], Done), ev[-1]
    panel.refresh_datasets()
    panel.source_kind.setCurrentIndex(panel.source_kind.findData("dataset"))
    panel.dataset_combo.setCurrentText("siat-complex")
    panel.dataset_index.setValue(2)
    panel.use_dataset_image()
    qtbot.waitUntil(lambda: panel.source is not None and "siat-complex" in panel.input_path
                    and panel.preview is not None, timeout=20000)
    assert panel.input_path.endswith("siat-complex_00002_complex.npz")
    with np.load(panel.input_path) as f:
        z = f["images"][0]
    assert np.iscomplexobj(z) and z.shape == (256, 256)
    ref = src[2]
    strong = np.abs(ref) > np.percentile(np.abs(ref), 75)
    # the scanner's phase, pixel by pixel (the ingest's scale is real and positive), not zero phase
    assert np.abs(np.angle(z[strong] * np.conj(ref[strong]))).max() < 1e-3
    assert np.abs(z[strong].imag).mean() > 0.05 * np.abs(z[strong]).mean()
    def background(a):  # the corners' mean magnitude over the 99th percentile
        a = np.abs(a)
        return np.concatenate([a[:16, :16].ravel(), a[:16, -16:].ravel()]).mean() / np.percentile(a, 99)

    assert background(z) == pytest.approx(background(ref), rel=1e-3)  # no floor added, no clipping
    assert panel.source["reference"].shape == (256, 256)


def test_an_mr_dicom_is_refused_as_ct_input_once(panel, qtbot, main_window):
    from pydicom.data import get_testdata_file

    panel.tabs.setCurrentIndex(2)
    panel.ct_file.setText(get_testdata_file("MR_small.dcm"))
    n_jobs, n_errors = len(main_window.jobs.handles()), len(main_window.errors)
    panel.run_ct()
    qtbot.waitUntil(lambda: not panel.checking, timeout=30000)
    assert len(main_window.jobs.handles()) == n_jobs
    assert len(main_window.errors) == n_errors + 1  # one dialog for the input, not one per method
    msg = main_window.last_error["message"]
    assert "MR_small.dcm" in msg and "modality is MR, not CT" in msg
    assert panel.ct_status.text().startswith("Cannot reconstruct MR_small.dcm: the DICOM modality is MR, not CT")
    for size in ((1366, 768), (1920, 1080)):
        main_window.resize(*size)
        qtbot.wait(50)
        assert_not_blank(panel, SHOTS / f"reconstruct_ct_refused_{size[0]}x{size[1]}.png")
    # a CT DICOM passes the same check and its jobs run
    panel.ct_file.setText(get_testdata_file("CT_small.dcm"))
    panel.run_ct()
    qtbot.waitUntil(lambda: panel.ct_group is not None and len(panel.ct_group.handles) == 2, timeout=30000)
    qtbot.waitUntil(lambda: panel.ct_group.all_final(), timeout=60000)
    assert [h.state for h in panel.ct_group.handles] == ["done", "done"], [h.message for h in panel.ct_group.handles]


def test_annealed_langevin_with_too_few_levels_is_refused_with_the_number_that_works(panel, qtbot, siat_small):
    from app.engine.specs.options import ALD_MIN_STEPS

    panel.file_edit.setText(str(siat_small))
    panel.use_score.setChecked(True)
    panel.score_method.setCurrentIndex(panel.score_method.findData("score-ald"))
    panel.steps.setValue(10)
    assert panel.validate() is None
    err = panel.methods_error
    assert not err.isHidden() and err.text().startswith("steps: ")
    assert f"at least {ALD_MIN_STEPS} noise levels" in err.text() and "with 10" in err.text()
    for size in ((1366, 768), (1920, 1080)):
        panel.window().resize(*size)
        qtbot.wait(50)
        assert_not_blank(panel, SHOTS / f"reconstruct_langevin_refused_{size[0]}x{size[1]}.png")
    panel.steps.setValue(ALD_MIN_STEPS)
    assert "steps" not in panel.field_errors.errors
    panel.score_method.setCurrentIndex(panel.score_method.findData("score-pc"))
    panel.steps.setValue(10)  # the predictor-corrector is not refused
    assert "steps" not in panel.field_errors.errors


def test_the_checkpoint_pickers_offer_only_runs_that_can_serve_as_the_prior(panel, qtbot, workspace, tmp_path):
    from app.engine.jobs import Done, run_collect
    from app.engine.training.loop import TrainSpec

    complex_run = _train_complex_prior(workspace, tmp_path)
    make_dataset(workspace, n=8, size=16)
    ev = run_collect(TrainSpec(dataset="phantoms", epochs=1, max_steps=1, preview_every=0, val_every=0,
                               base_channels=8, channel_mults=[1, 2], num_res_blocks=1, attention_resolutions=[],
                               batch_size=4, warmup_steps=0), workspace=workspace)
    assert isinstance(ev[-1], Done), ev[-1]
    magnitude_run = ev[-1].result["run"]
    empty = workspace.create_run("ddpm", {"dataset": "phantoms"}, dataset="phantoms").id  # no checkpoint yet
    panel.refresh_runs()
    mri = panel.run_combo
    ct = panel.ct_run_combo
    qtbot.waitUntil(lambda: mri.count() == 1 and ct.count() == 1, timeout=10000)
    assert mri.itemData(0) == complex_run and ct.itemData(0) == magnitude_run
    assert mri.findData(empty) < 0 and ct.findData(empty) < 0
