"""Complex MR datasets end to end: ``ingest --complex`` keeps the phase (real SIAT brain data and
fastMRI-layout k-space), magnitude-only sources are skipped with the reason, the train job learns a
2-channel prior on random crops with random global phases (and resumes it exactly), and the
reconstruction loads that prior with the dataset's intensity unit."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from PIL import Image
from pydantic import ValidationError
from safetensors.torch import load_file

from app.cli import main
from app.engine.training.checkpoints import list_checkpoints
from app.engine.data.cache import ImageDataset
from app.engine.data.ingest import IngestSpec
from app.engine.data.preprocess import COMPLEX_HEADROOM, fit_complex, magnitude_display, normalize_complex
from app.engine.jobs import Cancelled, Done, Failed, Image as ImageEvent, Log, run_collect
from app.engine.recon.mri.coils import simulated_coil_maps
from app.engine.recon.mri.fft import fft2c
from app.engine.sampling.job import SampleSpec
from app.engine.training.loop import TrainSpec
from tests.conftest import shared_file

TINY = dict(base_channels=8, channel_mults=[1, 2], num_res_blocks=1, attention_resolutions=[], batch_size=4,
            warmup_steps=1, log_every=1, lr=1e-3, ema_decay=0.9, preview_every=0, val_every=0, process="vpsde",
            prediction_type="v")


@pytest.fixture(scope="module")
def siat():
    with np.load(shared_file("siat_brain_t2_complex_dev.npz")) as z:
        return z["images"][::10][:12], z["series"][::10][:12]  # 12 slices of 12 series


def _result(events):
    assert isinstance(events[-1], Done), events[-1]
    return events[-1].result


@pytest.fixture
def complex_ds(workspace, siat, tmp_path):
    """The 12 SIAT slices at 64x64 (centre crop), 8 for training and 4 for validation, imported with --complex."""
    images, _ = siat
    src = tmp_path / "siat.npz"
    np.savez(src, train_images=images[:8], val_images=images[8:])
    ev = run_collect(IngestSpec(source=str(src), name="siatc", complex=True, size=64), workspace=workspace)
    res = _result(ev)
    assert res["kept"] == 12 and res["splits"] == {"train": 8, "val": 4, "test": 0} and res["complex"]
    warned = [e.text for e in ev if isinstance(e, Log) and e.level == "warning"]
    assert any("centre-cropped to 64x64" in t and "12 images of 256x256" in t for t in warned), warned
    return ImageDataset.from_workspace(workspace, "siatc")


def test_normalize_complex_keeps_the_phase_and_bounds_the_magnitude(rng):
    z = (rng.normal(size=(32, 32)) + 1j * rng.normal(size=(32, 32))).astype(np.complex64)
    z[3, 4] = 50  # one hot pixel far above the 99th percentile
    x = normalize_complex(z)
    back = x[0] + 1j * x[1]
    assert x.shape == (2, 32, 32) and np.abs(back).max() <= 1 + 1e-6
    assert np.allclose(np.angle(back), np.angle(z), atol=1e-5)  # the phase of every pixel, the hot one too
    keep = np.abs(z) <= COMPLEX_HEADROOM * np.percentile(np.abs(z), 99)
    ratio = back[keep] / z[keep]  # one real positive scale for every unclipped pixel
    assert np.allclose(ratio, ratio[0], rtol=1e-4) and abs(ratio[0].imag) < 1e-6 and ratio[0].real > 0
    assert np.isclose(np.percentile(np.abs(back), 99), 1 / COMPLEX_HEADROOM, rtol=1e-4)


def test_fit_complex_crops_and_pads_about_the_centre():
    x = np.zeros((2, 6, 10), np.float32)
    x[:, 3, 5] = 1.0  # the FFT centre (H // 2, W // 2)
    y = fit_complex(x, 8)
    assert y.shape == (2, 8, 8) and y[0, 4, 4] == 1 and y.sum() == 2  # padded rows, cropped columns
    assert fit_complex(fit_complex(x, 8), 6)[0, 3, 3] == 1


def test_complex_ingest_of_real_siat_data_stores_real_and_imaginary_parts(workspace, siat, complex_ds):
    images, _ = siat
    ds = complex_ds
    assert ds.is_complex and ds.channels == 2 and ds.shape == (2, 64, 64)
    stored = ds.images(indices=np.arange(12), stored=True)
    want = np.stack([fit_complex(normalize_complex(im), 64) for im in np.concatenate([images[:8], images[8:]])])
    np.testing.assert_allclose(stored, want, atol=1e-6)
    # the stored image is the source's centre 64x64 times one positive scale: its phase is the source's
    c = stored[0, 0] + 1j * stored[0, 1]
    src = images[0][96:160, 96:160]
    ratio = c[np.abs(src) > 0] / src[np.abs(src) > 0]
    assert np.allclose(ratio, np.median(ratio.real), rtol=1e-3)
    # everything else (thumbnails, statistics, evaluation) sees magnitudes in [-1, 1]
    shown = ds.images(indices=[0, 1])
    assert shown.shape == (2, 1, 64, 64) and shown.min() >= -1 and shown.max() <= 1
    np.testing.assert_allclose(shown, magnitude_display(stored[:2]))
    assert workspace.dataset("siatc").meta["complex"] is True


def test_complex_ingest_skips_magnitude_only_files_with_the_reason(workspace, siat, tmp_path):
    images, _ = siat
    src = tmp_path / "mixed"
    src.mkdir()
    Image.fromarray((np.abs(images[0]) / np.abs(images[0]).max() * 255).astype(np.uint8)).save(src / "slice.png")
    np.savez(src / "magnitude.npz", images=np.abs(images[:2]))
    np.savez(src / "stack.npz", images=np.zeros((2, 2, 3, 32, 32), np.complex64))
    k = fft2c(images[:3])
    with h5py.File(src / "single.h5", "w") as f:  # fastMRI single-coil layout: kspace (slices, H, W)
        f.create_dataset("kspace", data=k)
        f.attrs["acquisition"] = "AXT2"
    with h5py.File(src / "rss.h5", "w") as f:  # reconstructions only: magnitudes
        f.create_dataset("reconstruction_rss", data=np.abs(images[:2]))
    res = _result(run_collect(IngestSpec(source=str(src), name="mixed", complex=True, size=256), workspace=workspace))
    assert res["kept"] == 3 and res["modalities"] == {"MR": 3}
    reasons = {s["file"]: s["reason"] for s in res["skipped"]}
    assert set(reasons) == {"slice.png", "magnitude.npz", "stack.npz", "rss.h5"}
    assert "(2, 2, 3, 32, 32)" in reasons["stack.npz"]
    assert "PNG files hold magnitude images" in reasons["slice.png"]
    assert "real-valued" in reasons["magnitude.npz"]
    assert "no 'kspace'" in reasons["rss.h5"]
    # the single-coil k-space became the complex images themselves
    stored = ImageDataset.from_workspace(workspace, "mixed").images(indices=[0], stored=True)[0]
    np.testing.assert_allclose(stored, normalize_complex(images[0]), atol=1e-5)

    only_png = tmp_path / "png"
    only_png.mkdir()
    (src / "slice.png").rename(only_png / "slice.png")
    failed = run_collect(IngestSpec(source=str(only_png), name="png", complex=True), workspace=workspace)[-1]
    assert isinstance(failed, Failed) and "slice.png" in failed.message and "magnitude" in failed.message
    assert not workspace.has_dataset("png")


def test_multicoil_data_are_combined_with_espirit_maps_and_undersampled_kspace_is_skipped(workspace, siat,
                                                                                         tmp_path):
    images, _ = siat
    x = images[[3, 7]].astype(np.complex64)  # two real brain slices, 256x256
    maps = simulated_coil_maps(256, 256)
    coil_images = maps[None] * x[:, None]  # (slices, coils, H, W)
    src = tmp_path / "multi"
    src.mkdir()
    with h5py.File(src / "brain_multicoil.h5", "w") as f:  # fastMRI multi-coil layout
        f.create_dataset("kspace", data=fft2c(coil_images))
    np.savez(src / "coil_images.npz", images=coil_images[:1])  # (N, coils, H, W) complex coil images
    np.savez(src / "bart_8coil.npz", **dict(np.load(shared_file("bart_brain_8coil_kspace.npz"))))  # real, R ~ 8
    res = _result(run_collect(IngestSpec(source=str(src), name="multi", complex=True, size=256), workspace=workspace))
    assert res["kept"] == 3
    reasons = {s["file"]: s["reason"] for s in res["skipped"]}
    assert set(reasons) == {"bart_8coil.npz"} and "undersampled (13%" in reasons["bart_8coil.npz"]

    ds = ImageDataset.from_workspace(workspace, "multi")
    stored = ds.images(stored=True)
    combined = (stored[:, 0] + 1j * stored[:, 1]).reshape(3, 256, 256)
    # the files are read in name order: brain_multicoil.h5 (slices 3, 7), then coil_images.npz (slice 3)
    truth = x[[0, 1, 0]] * np.exp(1j * np.angle(maps[0]))  # SENSE-1: the object x the phase of coil 0
    for got, want in zip(combined, truth):
        obj = np.abs(want) > 0.1 * np.abs(want).max()
        scale = np.vdot(want[obj], got[obj]) / np.vdot(want[obj], want[obj])  # the ingest's intensity unit
        assert abs(scale.imag) < 1e-3 * abs(scale) and scale.real > 0
        err = np.linalg.norm(got[obj] - scale * want[obj]) / np.linalg.norm(scale * want[obj])
        assert err < 0.05, err
    np.testing.assert_allclose(combined[2], combined[0], atol=1e-4)  # coil images = their k-space


def test_multicoil_ingest_reports_each_slice_and_stops_inside_a_file_when_asked(workspace, siat, tmp_path):
    from app.engine.jobs import Progress

    images, _ = siat
    x = images[:4, 64:192, 64:192].astype(np.complex64)
    coil_images = simulated_coil_maps(128, 128, coils=4)[None] * x[:, None]
    src = tmp_path / "multi"
    src.mkdir()
    with h5py.File(src / "brain_multicoil.h5", "w") as f:  # one file of 4 slices, each one a coil combination
        f.create_dataset("kspace", data=fft2c(coil_images))
    spec = IngestSpec(source=str(src), name="multi", complex=True, size=128)
    events = run_collect(spec, workspace=workspace)
    labels = [e.label for e in events if isinstance(e, Progress)]
    assert [f"brain_multicoil.h5: slice {i} of 4" for i in (1, 2, 3, 4)] == [lb for lb in labels if "slice" in lb]
    assert _result(events)["kept"] == 4

    seen = []

    def stop_at_slice_2():  # the stop check runs before each slice: asked during slice 2, it ends before slice 3
        seen.append(sum(isinstance(e, Progress) and "slice" in e.label for e in got))
        return seen[-1] >= 2

    got: list = []
    from app.engine.jobs import run

    run(IngestSpec(source=str(src), name="multi-2", complex=True, size=128), got.append, stop_at_slice_2,
        workspace=workspace)
    assert isinstance(got[-1], Cancelled), got[-1]
    assert [e.label for e in got if isinstance(e, Progress) and "slice" in e.label] == [
        "brain_multicoil.h5: slice 1 of 4", "brain_multicoil.h5: slice 2 of 4"]
    with pytest.raises(Exception, match="multi-2"):
        ImageDataset.from_workspace(workspace, "multi-2")  # nothing half-made was registered
    assert not list((workspace.root / "datasets").glob(".staging-*"))


def test_kspace_zero_padded_at_the_edges_counts_as_fully_sampled(siat):
    from app.engine.data.readers import SkipFile, complex_from_kspace
    from app.engine.recon.mri.io import is_fully_sampled, sampling_pattern

    k = fft2c(siat[0][0])
    k[:, :20] = 0  # fastMRI knee files leave the phase-encode lines outside the acquired matrix empty
    k[:, -17:] = 0
    assert is_fully_sampled(sampling_pattern(k))
    np.testing.assert_allclose(complex_from_kspace(k), np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(k), norm="ortho")),
                               atol=1e-5)
    k[:, 40:200:2] = 0  # every other line missing inside the acquired block: undersampled
    assert not is_fully_sampled(sampling_pattern(k))
    with pytest.raises(SkipFile, match="undersampled"):
        complex_from_kspace(k)


def test_a_prior_trains_on_random_crops_with_random_phases_and_loads_with_the_datasets_unit(workspace, complex_ds,
                                                                                          tmp_path, capsys,
                                                                                          monkeypatch):
    from app.engine.recon.mri.score import load_prior
    from app.engine.recon.mri.warm import warm_default

    res = _result(run_collect(TrainSpec(dataset="siatc", epochs=1, crop_size=32, hflip=True, **TINY),
                              workspace=workspace))
    assert res["steps"] == 2 and np.isfinite(res["final_loss"])
    meta = json.loads((Path(list_checkpoints(res["run"], workspace)[-1]["path"]) / "meta.json").read_text())
    assert meta["complex"] is True and meta["complex_headroom"] == COMPLEX_HEADROOM and meta["image_size"] == 32
    prior = load_prior(res["run"], workspace=workspace, device="cpu")
    assert prior.channels == 2 and prior.unit == COMPLEX_HEADROOM
    # fully convolutional: the 32x32-crop prior takes a whole 64x64 slice
    x = torch.zeros(1, 2, 64, 64)
    assert prior.net(x, torch.tensor([0.5])).shape == (1, 2, 64, 64)
    # reconstruction puts the measurements in the prior's unit: headroom x p99 of the zero-filled image
    from app.engine.recon.mri.methods import reconstruct
    from app.engine.recon.mri.operators import MaskedFFT
    from app.engine.recon.mri.score import image_scale

    img = ImageDataset.from_workspace(workspace, "siatc").images(indices=[9], stored=True)[0]
    img = (img[0] + 1j * img[1]).astype(np.complex64)
    mask = np.zeros((64, 64), bool)
    mask[:, ::2] = mask[:, 28:36] = True
    A = MaskedFFT(mask)
    y = A.forward(img)
    rec = reconstruct("score-dds", A, y, model=prior, samples=1, steps=2, seed=0)
    assert rec.info["scale"] == pytest.approx(COMPLEX_HEADROOM * image_scale(A.adjoint(y)), rel=1e-5)
    # radsynth recon finds the run in --workspace, with the files sent elsewhere by --out (and another
    # default workspace), and runs the prior on a matrix it cannot halve (63 x 61)
    monkeypatch.setenv("RADSYNTH_WORKSPACE", str(tmp_path / "other-default"))
    src = tmp_path / "slice.npz"
    np.savez(src, images=img[None, :63, :61])
    code = main(["recon", "--workspace", str(workspace.root), "--input", str(src), "--method", "score-dds",
                 "--run", res["run"], "--samples", "1", "--steps", "2", "--warm-start", "0.1", "--iterations", "20",
                 "--out", str(tmp_path / "recon"), "--json", "--quiet"])
    out_json = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0, out_json
    assert np.isfinite(out_json["methods"]["score-dds"]["metrics"]["psnr"])
    # started from the CS-TV image, as asked
    assert out_json["methods"]["score-dds"]["warm_start"] == {"from": "cs-tv", "sigma": 0.1, "lam": 0.005, "iterations": 20}
    assert (tmp_path / "recon" / "score-dds_recon.png").exists()
    # radsynth recon-sweep --warm-start auto: each acceleration starts at its own level, with its own steps
    code = main(["recon-sweep", "--workspace", str(workspace.root), "--input", str(src), "--slices", "0",
                 "--method", "cs-tv", "score-dds", "--mask", "poisson2d", "--accelerations", "4", "8",
                 "--run", res["run"], "--samples", "1", "--warm-start", "auto", "--iterations", "20",
                 "--out", str(tmp_path / "sweep"), "--json", "--quiet"])
    sweep = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0, sweep
    used = {r["acceleration"]: (r["warm_start"], r["steps"]) for r in sweep["table"] if r["method"] == "score-dds"}
    assert used == {4.0: warm_default("poisson2d", 4.0), 8.0: warm_default("poisson2d", 8.0)}
    assert used[4.0] != used[8.0] and all("steps" not in r for r in sweep["rows"] if r["method"] == "cs-tv")
    # generating from it exports magnitudes, on the dataset's display scale
    out = tmp_path / "samples"
    ev = run_collect(SampleSpec(run=res["run"], n_images=2, steps=2, format="npz", out=str(out), preview_every=1),
                     workspace=workspace)
    assert isinstance(ev[-1], Done), ev[-1]
    with np.load(next(out.glob("*.npz"))) as z:
        arr = z[[k for k in z.files if z[k].ndim == 4][0]]
    assert arr.shape[1:] == (1, 32, 32)
    grids = [e.array for e in ev if isinstance(e, ImageEvent) and e.name == "preview"]
    assert grids and grids[-1].ndim == 2  # the clean-image estimate shown as one magnitude grid


def test_random_phase_on_a_magnitude_dataset_and_too_large_crops_are_refused(workspace, complex_ds, siat, tmp_path):
    images, _ = siat
    src = tmp_path / "mag.npz"
    np.savez(src, images=np.abs(images[:8]))
    _result(run_collect(IngestSpec(source=str(src), name="mag", size=32), workspace=workspace))
    failed = run_collect(TrainSpec(dataset="mag", epochs=1, random_phase=True, **TINY), workspace=workspace)[-1]
    assert isinstance(failed, Failed) and "random_phase needs a complex dataset" in failed.message
    failed = run_collect(TrainSpec(dataset="siatc", epochs=1, crop_size=128, **TINY), workspace=workspace)[-1]
    assert isinstance(failed, Failed) and "crop_size 128 is larger than the 64x64 images" in failed.message


def test_resume_with_crops_flips_and_phases_reproduces_the_uninterrupted_run(workspace, complex_ds):
    common = dict(dataset="siatc", epochs=2, crop_size=32, hflip=True, seed=5, **TINY)
    full = _result(run_collect(TrainSpec(**common), workspace=workspace))
    calls = {"n": 0}

    def stop_after_three_steps():
        calls["n"] += 1
        return calls["n"] > 3

    stopped = run_collect(TrainSpec(**common), stop_after_three_steps, workspace=workspace)
    assert isinstance(stopped[-1], Cancelled)
    run_id = next(e.path for e in stopped if getattr(e, "kind", "") == "run").rsplit("/", 1)[-1]
    resumed = _result(run_collect(TrainSpec(resume=run_id), workspace=workspace))
    assert resumed["steps"] == full["steps"] == 4
    a = load_file(workspace.run(full["run"]).path / "checkpoints" / "epoch-0002" / "ema.safetensors")
    b = load_file(workspace.run(run_id).path / "checkpoints" / "epoch-0002" / "ema.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)  # the same crops, flips and phases after the stop
    other = _result(run_collect(TrainSpec(**{**common, "seed": 6}), workspace=workspace))
    c = load_file(workspace.run(other["run"]).path / "checkpoints" / "epoch-0002" / "ema.safetensors")
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_augmentation_keeps_the_magnitude_and_draws_different_crops(workspace, complex_ds):
    from app.engine.jobs import JobContext
    from app.engine.training.loop import DistInfo, Trainer

    spec = TrainSpec(dataset="siatc", epochs=1, crop_size=32, hflip=True, **TINY)
    tr = Trainer(spec, JobContext(lambda e: None, lambda: False, workspace=workspace), DistInfo())
    tr.device = torch.device("cpu")
    tr._load_data()
    assert tr.random_phase and tr.train_x.shape == (8, 2, 64, 64)
    x = tr.train_x[:4]
    g = torch.Generator().manual_seed(0)
    out = tr._augment(x, g)
    assert out.shape == (4, 2, 32, 32)
    z_in = torch.complex(x[:, 0], x[:, 1])
    z_out = torch.complex(out[:, 0], out[:, 1])
    phases = []
    for i in range(4):  # each output is a (possibly flipped) crop of its image times one e^{i phi}
        hits = [crop for r in range(33) for c in range(33)
                for crop in (z_in[i, r : r + 32, c : c + 32], z_in[i, r : r + 32, c : c + 32].flip(-1))
                if torch.allclose(crop.abs(), z_out[i].abs(), atol=1e-5)]
        assert len(hits) >= 1, i
        ratio = z_out[i][hits[0].abs() > 0.05] / hits[0][hits[0].abs() > 0.05]
        assert torch.allclose(ratio.abs(), torch.ones(()), atol=1e-4)
        assert torch.allclose(ratio, ratio[0], atol=1e-3)
        phases.append(float(ratio[0].angle()))
    assert np.ptp(phases) > 0.1  # not one phase for the whole batch
    with pytest.raises(ValidationError, match="crop_size"):
        TrainSpec(dataset="siatc", crop_size=4)
