"""The training job: runs, checkpoints, exact resume, non-finite losses, presets and the CLI."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from app.engine.training.checkpoints import list_checkpoints, load_checkpoint
from app.engine.data.cache import CacheWriter
from app.engine.jobs import Cancelled, Done, Failed, Image, Scalar, UserError, run_collect
from app.engine.run_history import read_history
from app.engine.training.loop import TrainSpec, list_presets, load_preset, resolve_spec
from tests.conftest import shared_file


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    """Tiny models train fastest on one thread (the job reads RADSYNTH_THREADS); restored afterwards."""
    n = torch.get_num_threads()
    monkeypatch.setenv("RADSYNTH_THREADS", "1")
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


#: a tiny net and schedule: 4 optimizer steps per epoch on 64 images
TINY = dict(image_size=16, base_channels=8, channel_mults=[1, 2], num_res_blocks=1, attention_resolutions=[],
            batch_size=16, warmup_steps=2, log_every=1, lr=1e-3, ema_decay=0.9)


@pytest.fixture
def xray(workspace):
    """64 training and 16 validation chest X-rays (28x28, normal / pneumonia) as workspace dataset 'xray'."""
    d = np.load(shared_file("pneumoniamnist_balanced_28.npz"))
    imgs = np.concatenate([d["train_images"][:64], d["val_images"][:16]]).astype(np.float32) / 127.5 - 1
    labels = np.concatenate([d["train_labels"][:64], d["val_labels"][:16]]).reshape(-1)
    staging = workspace.staging_dir()
    w = CacheWriter(staging / "cache.h5", 28, 28, ["normal", "pneumonia"])
    w.append(imgs, labels, "g", "pneumoniamnist", list(range(80)), "CR")
    w.set_splits(np.r_[np.zeros(64), np.ones(16)])
    w.close()
    return workspace.commit_dataset(staging, "xray", n_images=80, height=28, width=28,
                                    classes=["normal", "pneumonia"], source="test", meta={})


def _done(events) -> dict:
    last = events[-1]
    assert isinstance(last, Done), last
    return last.result


def _weights(folder) -> dict:
    return {**{f"model.{k}": v for k, v in load_file(folder / "model.safetensors").items()},
            **{f"ema.{k}": v for k, v in load_file(folder / "ema.safetensors").items()}}


def test_training_registers_the_run_reports_losses_and_writes_loadable_checkpoints(workspace, xray):
    spec = TrainSpec(dataset="xray", epochs=2, class_conditional=True, preview_n=4, preview_steps=2,
                     val_levels=3, **TINY)
    events = run_collect(spec, workspace=workspace)
    res = _done(events)
    assert res["epochs"] == 2 and res["steps"] == 8 and np.isfinite(res["final_loss"])
    rec = workspace.run(res["run"])
    assert rec.state == "done" and rec.kind == "ddpm" and rec.dataset == "xray"
    assert rec.meta["checkpoints"] == ["epoch-0001", "epoch-0002"] and rec.meta["step"] == 8

    scalars = [e for e in events if isinstance(e, Scalar)]
    assert [e.step for e in scalars if e.name == "loss"] == list(range(1, 9))
    per_level = {e.name for e in scalars if e.name.startswith("val_loss/sigma=")}
    assert len(per_level) == 3
    assert [e.step for e in scalars if e.name == "val_loss"] == [4, 8]
    # the same scalars are kept in the run's history file, for the Training panel to draw later
    assert read_history(rec.path)[0] == sorted(((e.name, e.step, e.value) for e in scalars), key=lambda p: p[1])
    grids = [e for e in events if isinstance(e, Image) and e.kind == "grid"]
    assert len(grids) == 2 and np.isfinite(grids[0].array).all()

    ckpts = list_checkpoints(res["run"], workspace)
    assert [c["epoch"] for c in ckpts] == [1, 2]
    model = load_checkpoint(res["run"], workspace)
    assert model.epoch == 2 and model.step == 8 and model.path.name == "epoch-0002"
    assert model.class_names == ["normal", "pneumonia"] and model.image_size == 16 and model.channels == 1
    assert model.sha256 == ckpts[-1]["ema_sha256"] and not model.net.training
    assert model.process.name == "ddpm" and model.spec.epochs == 2 and model.net.num_classes == 2
    first = load_checkpoint(res["run"], workspace, epoch=1, ema=False)
    assert first.path.name == "epoch-0001" and first.sha256 == ckpts[0]["model_sha256"]
    with torch.no_grad():
        x = torch.randn(2, 1, 16, 16)
        pred = model.process.predict(model.net, x, 0.5, torch.tensor([0, 1]), guidance=1.0)
    assert pred.x0.shape == x.shape and torch.isfinite(pred.x0).all()

    # the run's architecture is fixed: resuming with another one is refused before anything runs
    again = run_collect(TrainSpec(resume=res["run"], base_channels=16), workspace=workspace)
    assert isinstance(again[-1], Failed) and "cannot be resumed with different settings" in again[-1].message
    assert "base_channels" in again[-1].message


def test_resume_after_a_stop_reproduces_the_uninterrupted_run_exactly(workspace, xray):
    common = dict(dataset="xray", epochs=2, class_conditional=True, dropout=0.1, preview_every=0,
                  val_every=0, seed=3, **TINY)
    full = run_collect(TrainSpec(**common), workspace=workspace)
    full_res = _done(full)

    calls = {"n": 0}

    def stop_after_five_steps():
        calls["n"] += 1
        return calls["n"] > 5

    stopped = run_collect(TrainSpec(**common), stop_after_five_steps, workspace=workspace)
    assert isinstance(stopped[-1], Cancelled)
    run_id = next(e.path for e in stopped if getattr(e, "kind", "") == "run").rsplit("/", 1)[-1]
    assert workspace.run(run_id).state == "stopped"
    assert [c["name"] for c in list_checkpoints(run_id, workspace)] == ["epoch-0001", "epoch-0001-step-00000005"]

    resumed = run_collect(TrainSpec(resume=run_id), workspace=workspace)
    res = _done(resumed)
    assert res["run"] == run_id and res["steps"] == 8 and workspace.run(run_id).state == "done"

    a = _weights(workspace.run(full_res["run"]).path / "checkpoints" / "epoch-0002")
    b = _weights(workspace.run(run_id).path / "checkpoints" / "epoch-0002")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k  # weights and EMA identical, bit for bit
    full_curve = [(e.step, e.value) for e in full if isinstance(e, Scalar) and e.name == "loss" and e.step > 5]
    resumed_curve = [(e.step, e.value) for e in resumed if isinstance(e, Scalar) and e.name == "loss"]
    assert resumed_curve == full_curve  # the same loss curve after the stop


def test_nonfinite_loss_stops_the_run_with_a_clear_message_and_keeps_the_last_good_checkpoint(workspace, xray):
    spec = TrainSpec(dataset="xray", epochs=1, preview_every=0, val_every=0, **TINY)
    run_id = _done(run_collect(spec, workspace=workspace))["run"]
    good = load_checkpoint(run_id, workspace)
    with h5py.File(xray.cache_path, "r+") as f:  # the cache gets damaged on disk after epoch 1
        f["images"][5] = np.nan

    events = run_collect(TrainSpec(resume=run_id, epochs=2), workspace=workspace)
    assert isinstance(events[-1], Failed)
    msg = events[-1].message
    assert "the loss became nan" in msg and "corrupt" in msg and str(xray.cache_path) in msg
    assert "epoch-0001" in msg and f"--resume {run_id}" in msg
    assert workspace.run(run_id).state == "failed"
    assert [c["name"] for c in list_checkpoints(run_id, workspace)] == ["epoch-0001"]
    kept = load_checkpoint(run_id, workspace)
    assert kept.sha256 == good.sha256


def test_damaged_checkpoint_file_is_named_in_the_error(workspace, xray):
    spec = TrainSpec(dataset="xray", epochs=1, preview_every=0, val_every=0, max_steps=1, **TINY)
    run_id = _done(run_collect(spec, workspace=workspace))["run"]
    folder = workspace.run(run_id).path / "checkpoints" / "epoch-0000-step-00000001"
    (folder / "ema.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(UserError, match="ema.safetensors is corrupt"):
        load_checkpoint(run_id, workspace)
    (folder / "model.safetensors").unlink()
    with pytest.raises(UserError, match="model.safetensors is missing"):
        load_checkpoint(folder, ema=False)


def test_options_are_checked_at_the_boundary(workspace, xray):
    bad_option = run_collect(TrainSpec(dataset="xray", process="ddpm", sigma_max=10.0, **TINY), workspace=workspace)
    assert "process 'ddpm' has no option 'sigma_max'" in bad_option[-1].message
    fp16_cpu = run_collect(TrainSpec(dataset="xray", precision="fp16", device="cpu", **TINY), workspace=workspace)
    assert "fp16 needs a CUDA GPU" in fp16_cpu[-1].message
    no_data = run_collect(TrainSpec(**TINY), workspace=workspace)
    assert "which dataset" in no_data[-1].message


def test_presets_are_complete_training_specs_whose_networks_build():
    from app.engine.nets.unet import UNet, count_parameters
    from app.engine.training.loop import build_net_config, build_process

    names = {p["name"] for p in list_presets()}
    assert {"cpu-quickstart", "ncsn-brain-128", "ddpm-256-cond", "vpsde-cosine"} <= names
    sizes = {}
    for name in names:
        spec = resolve_spec(TrainSpec(dataset="any", preset=name))
        build_process(spec)
        cfg = build_net_config(spec, spec.image_size or 64, 6 if spec.class_conditional else 0)
        with torch.device("meta"):
            sizes[name] = count_parameters(UNet(cfg))
    assert sizes["cpu-quickstart"] < 1e6 < sizes["vpsde-cosine"] < sizes["ddpm-256-cond"] < 60e6
    ddpm = resolve_spec(TrainSpec(dataset="any", preset="ddpm-256-cond"))
    assert ddpm.class_conditional and ddpm.checkpoint_every == 10 and ddpm.preview_every == 5 and ddpm.ema_decay > 0
    assert resolve_spec(TrainSpec(dataset="any", preset="vpsde-cosine")).freq_loss_weight == 0.1


def test_explicit_fields_win_over_the_preset_and_unknown_presets_are_named():
    spec = resolve_spec(TrainSpec(dataset="mine", preset="cpu-quickstart", epochs=7))
    assert spec.epochs == 7 and spec.dataset == "mine"
    assert spec.base_channels == load_preset("cpu-quickstart")["base_channels"]
    with pytest.raises(UserError, match="no training preset named 'nope'.*cpu-quickstart"):
        resolve_spec(TrainSpec(dataset="mine", preset="nope"))


def test_train_through_the_cli_prints_the_run_id_and_final_loss(workspace, xray, capsys):
    from app.cli import main

    code = main(["train", "--dataset", "xray", "--preset", "cpu-quickstart", "--epochs", "1", "--image-size", "16",
                 "--base-channels", "8", "--channel-mults", "1", "2", "--attention-resolutions", "8",
                 "--batch-size", "32", "--preview-every", "0", "--val-every", "0", "--workspace", str(workspace.root),
                 "--json"])
    out = capsys.readouterr().out.strip().splitlines()
    assert code == 0, out
    result = json.loads(out[-1])
    assert workspace.run(result["run"]).state == "done"
    assert np.isfinite(result["final_loss"]) and result["steps"] == 2

    # `radsynth train --dataset NAME --preset NAME --epochs N --resume RUN --json` continues the run
    resume = ["train", "--dataset", "xray", "--preset", "cpu-quickstart", "--epochs", "2", "--resume", result["run"],
              "--workspace", str(workspace.root), "--json"]
    code = main(resume)
    out = capsys.readouterr().out.strip().splitlines()
    assert code == 0, out
    again = json.loads(out[-1])
    assert again["run"] == result["run"] and again["epochs"] == 2 and again["steps"] == 4
    assert np.isfinite(again["final_loss"])
    for argv, needle in ((["--preset", "ddpm-256-cond"], "preset (run: 'cpu-quickstart', given: 'ddpm-256-cond')"),
                         (["--resume", "nope"], "no run 'nope'")):
        bad = resume.copy()
        flag = argv[0]
        bad[bad.index(flag) + 1] = argv[1]
        code = main(bad)
        out = capsys.readouterr().out.strip().splitlines()
        assert code == 1 and needle in json.loads(out[-1])["error"], out


@pytest.mark.parametrize("process,extra", [
    ("ncsn", {"num_levels": 10, "sigma_max": 20.0}),
    ("vpsde", {"prediction_type": "v", "precision": "bf16", "grad_accum": 2, "batch_size": 8}),
    ("flow", {"t_sampling": "logit_normal"}),
])
def test_every_process_trains_through_the_job_and_validates_per_noise_level(workspace, xray, process, extra):
    spec = TrainSpec(dataset="xray", process=process, epochs=1, preview_every=0, val_levels=4,
                     **{**TINY, **extra})
    events = run_collect(spec, workspace=workspace)
    res = _done(events)
    assert res["steps"] == 4 and np.isfinite(res["final_loss"])
    levels = [e for e in events if isinstance(e, Scalar) and e.name.startswith("val_loss/sigma=")]
    assert len(levels) == 4 and all(np.isfinite(e.value) for e in levels)
    sigmas = [float(e.name.split("=")[1]) for e in levels]
    assert sigmas == sorted(sigmas, reverse=True)  # reported from the noisiest level down
    model = load_checkpoint(res["run"], workspace)
    assert model.process.config() == {"name": process, **model.process.options()}
    assert model.process.name == process and model.spec.process == process
