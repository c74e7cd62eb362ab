"""Reconstruction panel: real recon jobs on real SIAT / CT data, linked comparison views, sweep, export."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import shared_file
from tests.views.conftest import assert_not_blank

SHOTS = __import__("pathlib").Path("/tmp/shots")
JOB_TIMEOUT = 120_000


@pytest.fixture
def siat_small(tmp_path):
    """Three real SIAT validation slices at 64x64: the centre of their k-space (phase kept), as NPZ."""
    from app.engine.recon.mri.fft import fft2c, ifft2c

    with np.load(shared_file("siat_brain_t2_complex_dev.npz")) as z:
        imgs = np.asarray(z["images"][124:127], np.complex64)
    small = ifft2c(fft2c(imgs)[:, 96:160, 96:160]).astype(np.complex64)
    p = tmp_path / "siat_small.npz"
    np.savez(p, images=small)
    return p


@pytest.fixture
def panel(main_window):
    main_window.resize(1700, 1100)  # screenshots at a desktop size
    return main_window.show_panel("reconstruct")


def _load(panel, qtbot, path, slice_index=0):
    panel.source_kind.setCurrentIndex(0)
    panel.load_file(str(path), slice_index)
    qtbot.waitUntil(lambda: panel.source is not None and panel.preview is not None, timeout=20000)


def _run_and_wait(panel, qtbot, n_methods):
    assert panel.reconstruct() is not None
    qtbot.waitUntil(lambda: panel.group is not None and len(panel.group.handles) == n_methods, timeout=30000)
    for h in panel.group.handles:
        qtbot.waitUntil(lambda h=h: h.is_final, timeout=JOB_TIMEOUT)
        assert h.state == "done", h.message
    qtbot.waitUntil(lambda: len(panel.group.results) == n_methods
                    and all(r.get("_final") for r in panel.group.results.values()), timeout=20000)


def _run_zero_filled_and_cs_tv(panel, qtbot, cs_iterations):
    panel.use_zf.setChecked(True)
    panel.use_cs.setChecked(True)
    panel.use_score.setChecked(False)
    panel.cs_iter.setValue(cs_iterations)
    _run_and_wait(panel, qtbot, 2)


def test_mask_designer_redraws_mask_and_kspace_with_the_achieved_acceleration(panel, qtbot, siat_small):
    _load(panel, qtbot, siat_small)
    assert panel.mask_view.image().shape == (64, 64)
    first = panel.preview["achieved"]
    n = panel.preview_count
    panel.accel.setValue(8.0)  # several quick changes are debounced into one preview
    panel.accel.setValue(6.0)
    qtbot.waitUntil(lambda: panel.preview_count > n and abs(panel.preview["achieved"] - 6.0) < 0.6, timeout=10000)
    assert abs(first - 4.0) < 0.5
    assert "6." in panel.achieved.text() or "5." in panel.achieved.text()
    sampled = panel.mask_view.image().mean()
    assert abs(sampled - 1 / panel.preview["achieved"]) < 1e-6
    # the undersampled k-space is zero (log1p(0) = 0) off the mask
    assert np.all(panel.kspace_view.image()[panel.mask_view.image() == 0] == 0)


def test_zero_filled_and_cs_tv_on_a_real_slice_fill_the_linked_grid_and_the_metrics_table(panel, qtbot, siat_small, tmp_path):
    _load(panel, qtbot, siat_small, 1)
    _run_zero_filled_and_cs_tv(panel, qtbot, cs_iterations=60)
    grid = panel.grid
    assert grid.methods == ["zero-filled", "cs-tv"]
    for m in grid.methods:
        assert grid.views[m].image().shape == (64, 64)
        assert grid.error_views[m].image() is not None and grid.error_views[m].colormap() == "inferno"
    assert grid.reference.image() is not None
    # the metrics table holds both methods with numbers; CS-TV beats zero-filled on this slice
    t = panel.metrics_table
    rows = {t.item(r, 0).text(): [t.item(r, c).text() for c in range(1, 4)] for r in range(t.rowCount())}
    assert set(rows) == {"zero-filled", "cs-tv"}
    psnr = {m: float(v[0]) for m, v in rows.items()}
    assert psnr["cs-tv"] > psnr["zero-filled"]
    assert all(0 < float(v[1]) <= 1 for v in rows.values())

    # linked views: zooming one result zooms the other result, the reference and the error maps
    zf, cs = grid.views["zero-filled"], grid.views["cs-tv"]
    zf.vb.setRange(xRange=(10, 30), yRange=(12, 32), padding=0)
    qtbot.wait(50)
    target = zf.vb.viewRange()
    for other in (cs, grid.reference):
        got = other.vb.viewRange()
        assert np.allclose(got[0], target[0], atol=0.5) and np.allclose(got[1], target[1], atol=0.5), (other, got, target)
    for other in (grid.error_views["cs-tv"], grid.error_views["zero-filled"]):  # narrower (colour bar): same
        (x0, x1), (y0, y1) = other.vb.viewRange()  # centre, the zoomed region fully in view, same zoom on one axis
        assert abs((x0 + x1) / 2 - 20) < 0.5 and abs((y0 + y1) / 2 - 22) < 0.5
        assert x0 <= 10.5 and x1 >= 29.5 and y0 <= 12.5 and y1 >= 31.5
        assert min(x1 - x0 - (target[0][1] - target[0][0]), y1 - y0 - 20) < 0.5
    # window / level follows in the image views (not in the error maps, which have their own scale)
    cs.set_levels(0.1, 0.7)
    assert zf.levels() == pytest.approx((0.1, 0.7)) and grid.reference.levels() == pytest.approx((0.1, 0.7))
    assert grid.error_views["cs-tv"].levels() != pytest.approx((0.1, 0.7))
    # flicker flips between the two results in one view
    shown = grid.flicker_showing
    assert grid.flick() != shown
    assert np.array_equal(grid.flicker.image(), grid.arrays()[grid.flicker_showing])

    zf.reset_view()
    assert panel.mask_view.levels() == (0.0, 1.0)  # the mask keeps its own window beside the k-space
    SHOTS.mkdir(parents=True, exist_ok=True)
    assert_not_blank(panel, SHOTS / "reconstruct_panel_mri.png")
    files = panel.export(tmp_path / "export")  # written off the GUI thread
    qtbot.waitUntil(lambda: panel.last_export == files, timeout=10000)
    assert files[0].stat().st_size > 10_000
    with np.load(files[1]) as z:
        assert {"reference", "zero-filled", "cs-tv", "zero-filled_error", "cs-tv_error"} <= set(z.files)


def test_measured_multicoil_kspace_without_a_reference_hides_the_reference_and_error_row(panel, qtbot, tmp_path):
    # the real BART 8-coil k-space was undersampled when it was acquired: nothing to compare against
    with np.load(shared_file("bart_brain_8coil_kspace.npz")) as z:
        k = np.asarray(z["kspace"], np.complex64)
    p = tmp_path / "bart.npz"
    np.savez(p, kspace=k)
    _load(panel, qtbot, p)
    _run_zero_filled_and_cs_tv(panel, qtbot, cs_iterations=20)
    grid = panel.grid
    qtbot.wait(50)
    assert not grid.reference_expected and grid.no_reference_hint.isVisible()
    assert not grid.reference.isVisible() and grid.reference.image() is None
    assert all(not e.isVisible() and e.image() is None for e in grid.error_views.values())
    assert grid.flicker.isVisible() and grid.flicker.geometry().top() == grid.views["cs-tv"].geometry().top()
    for m in ("zero-filled", "cs-tv"):  # the results take the room the error row had
        assert grid.views[m].image().shape == (180, 230)
        assert grid.views[m].height() > grid.height() * 0.6
    t = panel.metrics_table
    assert [t.item(r, 2).text() for r in range(t.rowCount())] == ["–", "–"]  # no SSIM without a reference
    SHOTS.mkdir(parents=True, exist_ok=True)
    assert_not_blank(panel, SHOTS / "reconstruct_panel_no_reference.png")

    # a fully sampled source brings the reference view and the error row back
    grid.set_reference_expected(True)
    assert grid.reference.isVisible() and all(e.isVisible() for e in grid.error_views.values())
    assert not grid.no_reference_hint.isVisible()
    qtbot.wait(50)
    assert grid.flicker.geometry().top() > grid.reference.geometry().top()


def test_the_fast_sampler_brings_its_own_step_count_unless_the_user_set_one(panel):
    from app.views.reconstruct_panel import SCORE_DEFAULT_STEPS, warm_default

    WARM_DEFAULT_LEVEL, WARM_DEFAULT_STEPS = warm_default("poisson2d", 4.0)
    panel.file_edit.setText("slice.npz")  # a spec needs an input; it is not read here
    panel.mask_kind.setCurrentIndex(panel.mask_kind.findData("poisson2d"))
    panel.accel.setValue(4.0)

    assert panel.score_method.findData("score-dds") >= 0
    panel.use_score.setChecked(True)
    panel.score_method.setCurrentIndex(panel.score_method.findData("score-pc"))
    assert panel.steps.value() == SCORE_DEFAULT_STEPS["score-pc"]
    assert not panel.warm_row.isEnabled()  # the warm start belongs to decomposed diffusion
    assert "warm_start" not in panel.method_spec("score-pc").model_fields_set
    panel.score_method.setCurrentIndex(panel.score_method.findData("score-dds"))
    # decomposed diffusion starts from CS-TV by default, with its own (smaller) step count
    assert panel.warm_row.isEnabled() and panel.warm.isChecked()
    assert panel.steps.value() == WARM_DEFAULT_STEPS < SCORE_DEFAULT_STEPS["score-dds"]
    assert panel.selected_methods()[-1] == "score-dds"
    panel.cs_lam.setValue(0.01)
    spec = panel.method_spec("score-dds")
    assert spec.steps == WARM_DEFAULT_STEPS and spec.warm_start == WARM_DEFAULT_LEVEL
    assert spec.lam == 0.01 and spec.iterations == panel.cs_iter.value()  # the CS-TV it starts from
    panel.warm.setChecked(False)  # from pure noise: the sampler's own step count
    assert panel.steps.value() == SCORE_DEFAULT_STEPS["score-dds"]
    assert "warm_start" not in panel.method_spec("score-dds").model_fields_set and not panel.warm_level.isEnabled()
    panel.steps.setValue(7)  # the user's own choice stays when the sampler changes
    panel.score_method.setCurrentIndex(panel.score_method.findData("score-ald"))
    assert panel.steps.value() == 7
    panel.warm.setChecked(True)
    panel.score_method.setCurrentIndex(panel.score_method.findData("score-dds"))
    assert panel.steps.value() == 7
    SHOTS.mkdir(parents=True, exist_ok=True)
    assert_not_blank(panel, SHOTS / "reconstruct_panel_dds_form.png")


def test_the_warm_start_follows_the_mask_unless_the_user_set_it(panel):
    from app.views.reconstruct_panel import warm_default

    panel.file_edit.setText("slice.npz")  # a spec needs an input; it is not read here
    panel.use_score.setChecked(True)
    panel.score_method.setCurrentIndex(panel.score_method.findData("score-dds"))
    panel.mask_kind.setCurrentIndex(panel.mask_kind.findData("poisson2d"))
    panel.accel.setValue(4.0)
    low = warm_default("poisson2d", 4.0)
    assert (panel.warm_level.value(), panel.steps.value()) == low
    # a 1D Cartesian mask leaves more aliasing in CS-TV, a high acceleration more still: start higher
    panel.mask_kind.setCurrentIndex(panel.mask_kind.findData("random"))
    one_d = warm_default("random", 4.0)
    assert one_d[0] > low[0] and (panel.warm_level.value(), panel.steps.value()) == one_d
    panel.accel.setValue(8.0)
    high = warm_default("random", 8.0)
    assert high[0] > one_d[0] and (panel.warm_level.value(), panel.steps.value()) == high
    spec = panel.method_spec("score-dds")
    assert spec.warm_start == high[0] and spec.steps == high[1]
    # a sweep over several accelerations gives each its own level and steps ("auto", resolved by the job)
    panel.sweep_accels.setText("4 8")
    sweep = panel.sweep_spec()
    assert sweep.warm_start == "auto" and "steps" not in sweep.model_fields_set and sweep.mask == "random"
    # the user's own level and steps stay when the mask changes, and the sweep takes them as they are
    panel.warm_level.setValue(0.25)
    panel.steps.setValue(12)
    panel.accel.setValue(4.0)
    panel.mask_kind.setCurrentIndex(panel.mask_kind.findData("poisson2d"))
    assert (panel.warm_level.value(), panel.steps.value()) == (0.25, 12)
    sweep = panel.sweep_spec()
    assert sweep.warm_start == 0.25 and sweep.steps == 12
    # from noise, the mask does not touch the sampler's steps
    panel.warm.setChecked(False)
    panel.steps.setValue(30)
    panel.accel.setValue(8.0)
    assert panel.steps.value() == 30


def _train_complex_prior(workspace, tmp_path):
    """A tiny 2-channel (real, imaginary) NCSN prior on 16 SIAT training slices imported with ingest --complex
    (centre 32x32): the real ingest and train jobs, 2 steps."""
    from app.engine.data.ingest import IngestSpec
    from app.engine.jobs import Done, run_collect
    from app.engine.training.loop import TrainSpec

    with np.load(shared_file("siat_brain_t2_complex_dev.npz")) as z:
        np.savez(tmp_path / "siat16.npz", images=z["images"][:16])
    ev = run_collect(IngestSpec(source=str(tmp_path / "siat16.npz"), name="siat-complex", complex=True, size=32),
                     workspace=workspace)
    assert isinstance(ev[-1], Done), ev[-1]
    ev = run_collect(TrainSpec(dataset="siat-complex", epochs=1, max_steps=2, preview_every=0, val_every=0,
                               base_channels=8, channel_mults=[1, 2], num_res_blocks=1, attention_resolutions=[],
                               batch_size=8, warmup_steps=1, process="ncsn", num_levels=10, sigma_max=5.0),
                     workspace=workspace)
    assert isinstance(ev[-1], Done), ev[-1]
    return ev[-1].result["run"]


def test_score_based_run_with_two_posterior_samples_shows_the_uncertainty_map_with_a_colour_bar(
        main_window, qtbot, siat_small, workspace, tmp_path):
    run_id = _train_complex_prior(workspace, tmp_path)
    main_window.resize(1700, 1100)
    panel = main_window.show_panel("reconstruct")
    panel.refresh_runs()  # read off the GUI thread
    qtbot.waitUntil(lambda: panel.run_combo.findData(run_id) >= 0, timeout=10000)
    panel.run_combo.setCurrentIndex(panel.run_combo.findData(run_id))
    _load(panel, qtbot, siat_small)
    panel.use_zf.setChecked(True)
    panel.use_cs.setChecked(False)
    panel.use_score.setChecked(True)
    panel.score_method.setCurrentIndex(panel.score_method.findData("score-pc"))  # annealed Langevin needs 50 steps
    panel.samples.setValue(2)
    panel.steps.setValue(3)
    _run_and_wait(panel, qtbot, 2)
    grid = panel.grid
    assert "score-pc" in grid.std_views and "zero-filled" not in grid.std_views
    std = grid.std_views["score-pc"]
    assert std.image().shape == (64, 64) and float(std.image().max()) > 0
    assert std.colormap() == "viridis" and std._colorbar is not None
    # the uncertainty view moves with the others
    grid.views["score-pc"].vb.setRange(xRange=(5, 25), yRange=(5, 25), padding=0)
    qtbot.wait(50)
    # the same region is asked of every view (each widens one axis to its own shape, aspect locked)
    assert np.allclose(std.vb.targetRange(), [[5, 25], [5, 25]], atol=0.5)
    (x0, x1), (y0, y1) = std.vb.viewRange()
    assert x0 <= 5.5 and x1 >= 24.5 and y0 <= 5.5 and y1 >= 24.5 and min(x1 - x0, y1 - y0) < 21
    grid.views["score-pc"].vb.autoRange(padding=0)
    assert_not_blank(panel, SHOTS / "reconstruct_panel_score.png")


def test_acceleration_sweep_plots_metric_per_method_and_shows_best_and_worst_cases(panel, qtbot, siat_small):
    _load(panel, qtbot, siat_small)
    panel.use_score.setChecked(False)
    panel.cs_iter.setValue(20)
    panel.tabs.setCurrentIndex(1)
    panel.sweep_slices.setText("0-2")
    panel.sweep_accels.setText("2 6")
    assert panel.run_sweep() is not None
    qtbot.waitUntil(lambda: panel.sweep_handle is not None and panel.sweep_handle.is_final, timeout=JOB_TIMEOUT)
    assert panel.sweep_handle.state == "done", panel.sweep_handle.message
    qtbot.waitUntil(lambda: panel.sweep_table.rowCount() == 4 and panel.worst_view.image() is not None, timeout=20000)
    curves = [c for c in panel.sweep_plot.plotItem.listDataItems() if c.name()]
    assert sorted(c.name() for c in curves) == ["cs-tv", "zero-filled"]
    zf = next(c for c in curves if c.name() == "zero-filled")
    x, y = zf.getData()
    assert list(x) == [2.0, 6.0] and y[0] > y[1]  # SSIM falls with acceleration
    assert panel.best_view.image().shape == (64, 64)
    panel.sweep_table.selectRow(1)
    panel.open_case("worst")
    worst = int(panel.sweep_result["table"][1]["worst_slice"])
    qtbot.waitUntil(lambda: panel.source is not None and panel.source["slice"] == worst, timeout=20000)
    assert panel.accel.value() == 6.0 and panel.tabs.currentIndex() == 0
    panel.tabs.setCurrentIndex(1)
    assert_not_blank(panel, SHOTS / "reconstruct_panel_sweep.png")


def test_ct_sparse_view_comparison_on_a_real_head_ct_slice(panel, qtbot):
    panel.tabs.setCurrentIndex(2)
    panel.ct_file.setText(str(shared_file("ct_head_hu.npz")))
    panel.ct_slice.setValue(54)
    panel.ct_views.setValue(45)
    assert panel.ct_selected_methods() == ["fbp", "backprojection"]
    assert panel.run_ct() is not None
    qtbot.waitUntil(lambda: panel.ct_group is not None and len(panel.ct_group.handles) == 2, timeout=30000)
    qtbot.waitUntil(lambda: len(panel.ct_group.results) == 2, timeout=JOB_TIMEOUT)
    g = panel.ct_grid
    assert g.reference.image().shape == (256, 256)
    assert all(g.views[m].image() is not None and g.error_views[m].image() is not None for m in ("fbp", "backprojection"))
    t = panel.ct_table
    psnr = {t.item(r, 0).text(): float(t.item(r, 1).text()) for r in range(t.rowCount())}
    assert psnr["fbp"] > psnr["backprojection"]
    assert_not_blank(panel, SHOTS / "reconstruct_panel_ct.png")


def test_an_invalid_value_disables_reconstruct_and_is_named_under_its_group_without_a_job(panel, qtbot, siat_small, main_window):
    _load(panel, qtbot, siat_small)
    panel.use_zf.setChecked(True)
    panel.use_cs.setChecked(True)
    assert panel.run_button.isEnabled()
    n_jobs = len(main_window.jobs.handles())
    panel.cs_lam.setValue(0.0)  # the spin box reaches the bound; ReconSpec wants lam > 0
    # validated at once, on the GUI thread (no event-loop turn, no worker): the button and the message follow
    err = panel.methods_error
    assert not panel.run_button.isEnabled()
    assert not err.isHidden() and err.text().startswith("lam: ") and "greater than 0" in err.text()
    assert panel.mask_error.isHidden() and panel.source_error.isHidden()
    assert panel.reconstruct() is None
    assert "Not valid" in panel.status.text()
    assert len(main_window.jobs.handles()) == n_jobs  # nothing submitted
    panel.center.setValue(0.0)  # centre fraction in (0, 1): named under the mask designer
    assert "center_fraction: " in panel.mask_error.text() and not panel.mask_error.isHidden()
    panel.center.setValue(0.08)
    panel.cs_lam.setValue(0.01)
    assert panel.run_button.isEnabled() and err.isHidden() and panel.mask_error.isHidden()

    # the sweep: its own fields are named under them, the MRI tab's fields say where they are set
    panel.tabs.setCurrentIndex(1)
    assert panel.sweep_button.isEnabled()
    panel.sweep_slices.setText("0-2 x")
    assert not panel.sweep_button.isEnabled()
    assert panel.slices_error.text().startswith("slices: ") and not panel.slices_error.isHidden()
    assert panel.run_sweep() is None and len(main_window.jobs.handles()) == n_jobs
    panel.sweep_slices.setText("0-2")
    panel.use_score.setChecked(True)
    panel.samples.setValue(100)  # the recon job takes 256 posterior samples, the sweep at most 64
    assert not panel.sweep_button.isEnabled()
    assert panel.sweep_error.text() == "samples: Input should be less than or equal to 64 (set in the MRI tab)"
    panel.samples.setValue(4)
    assert panel.sweep_button.isEnabled() and panel.sweep_error.isHidden()
    assert_not_blank(panel, SHOTS / "reconstruct_panel_sweep_invalid.png")


def test_a_bad_ct_input_gives_one_message_and_one_dialog_not_one_failed_job_per_method(panel, qtbot, tmp_path,
                                                                                        main_window):
    panel.tabs.setCurrentIndex(2)
    panel.ct_file.setText(str(tmp_path / "missing.npz"))
    assert panel.ct_button.isEnabled()  # a path that is not there is read (off the GUI thread) when Run is pressed
    n_jobs, n_errors = len(main_window.jobs.handles()), len(main_window.errors)
    assert panel.run_ct() is not None and len(panel.ct_selected_methods()) == 2
    qtbot.waitUntil(lambda: not panel.checking, timeout=30000)
    assert len(main_window.jobs.handles()) == n_jobs  # no job started
    assert len(main_window.errors) == n_errors + 1 and "does not exist" in main_window.last_error["message"]
    text = panel.ct_status.text()
    assert text == "Cannot reconstruct missing.npz: file does not exist"
    assert panel.ct_button.isEnabled() and panel.ct_table.rowCount() == 0
