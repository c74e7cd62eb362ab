"""torchrun on two CPU processes (gloo): data-parallel training keeps identical weights, and ``radsynth train`` /
``radsynth sample`` under torchrun report once (rank 0) and sample the one set a single process writes.

This file is also the worker torchrun starts (``python test_ddp.py WORKSPACE SPEC_JSON OUT``).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[3]


def _worker(workspace: str, spec_json: str, out: str) -> None:
    import torch
    import torch.distributed as dist

    from app.engine.jobs import JobContext
    from app.engine.store import Workspace
    from app.engine.training.loop import DistInfo, Trainer, TrainSpec

    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    info = DistInfo.from_env()
    events: list = []
    ctx = JobContext(events.append, lambda: False, Workspace.open(workspace))
    trainer = Trainer(TrainSpec.model_validate_json(spec_json), ctx, info)
    result = trainer.run()
    h = hashlib.sha256()
    for name, module in (("net", trainer.objs["net"]), ("ema", trainer.objs["ema"].net)):
        for k, v in sorted(module.state_dict().items()):
            h.update(f"{name}.{k}".encode())
            h.update(v.detach().cpu().numpy().tobytes())
    Path(out, f"rank{info.rank}.json").write_text(json.dumps(
        {"rank": info.rank, "world": info.world, "weights_sha256": h.hexdigest(), "result": result,
         "n_events": len(events), "backend": dist.get_backend()}))
    dist.destroy_process_group()


def _xray_dataset(workspace, n: int = 64) -> None:
    """The first ``n`` PneumoniaMNIST training images as the workspace dataset "xray"."""
    from app.engine.data.cache import CacheWriter
    from tests.conftest import shared_file

    d = np.load(shared_file("pneumoniamnist_balanced_28.npz"))
    imgs = d["train_images"][:n].astype(np.float32) / 127.5 - 1
    staging = workspace.staging_dir()
    w = CacheWriter(staging / "cache.h5", 28, 28, ["normal", "pneumonia"])
    w.append(imgs, d["train_labels"][:n].reshape(-1), "g", "pneumoniamnist", list(range(n)), "CR")
    w.close()
    workspace.commit_dataset(staging, "xray", n_images=n, height=28, width=28, classes=["normal", "pneumonia"],
                             source="test", meta={})


def _torchrun_cli(argv: list[str]) -> subprocess.CompletedProcess:
    """``torchrun --nproc_per_node 2 -m app.cli -- ARGV`` on the CPU (gloo), one thread per rank (``--``: torchrun's
    own parser would take ``--run`` for an abbreviation of its ``--run-path``)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", RADSYNTH_THREADS="1", PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "-m", "app.cli", "--", *argv], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)


@pytest.mark.slow
def test_two_gloo_processes_under_torchrun_keep_identical_weights(workspace, tmp_path):
    from app.engine.training.loop import TrainSpec

    _xray_dataset(workspace)
    # 64 images / 2 ranks / (8 x 2 accumulated) = 2 optimizer steps per epoch, 4 in all
    spec = TrainSpec(dataset="xray", epochs=2, image_size=16, base_channels=8, channel_mults=[1, 2],
                     num_res_blocks=1, attention_resolutions=[], batch_size=8, grad_accum=2, dropout=0.1,
                     class_conditional=True, warmup_steps=1, lr=1e-3, preview_every=0, val_every=1, val_levels=2,
                     device="cpu", num_gpus=2)
    out = tmp_path / "ranks"
    out.mkdir()
    env = dict(os.environ, OMP_NUM_THREADS="1", RADSYNTH_THREADS="1", PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         __file__, str(workspace.root), spec.model_dump_json(), str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r0, r1 = (json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r0["world"] == r1["world"] == 2 and r0["backend"] == "gloo"
    assert r0["weights_sha256"] == r1["weights_sha256"]  # DDP kept the replicas identical
    assert r0["result"]["steps"] == r1["result"]["steps"] == 4 and r0["result"]["run"] == r1["result"]["run"]
    assert r1["n_events"] == 0 < r0["n_events"]  # only rank 0 reports
    run = workspace.run(r0["result"]["run"])
    assert run.state == "done" and run.meta["checkpoints"] == ["epoch-0001", "epoch-0002"]
    meta = json.loads((run.path / "checkpoints" / "epoch-0002" / "meta.json").read_text())
    assert meta["world_size"] == 2

    import torch

    state = torch.load(run.path / "checkpoints" / "epoch-0002" / "state.pt", weights_only=True)
    gens = state["noise_generators"]
    assert len(gens) == 2 and not torch.equal(gens[0], gens[1])  # each rank draws its own noise


@pytest.mark.slow
def test_radsynth_train_under_torchrun_prints_one_result_and_the_log_lines_once(workspace):
    """Every rank trains; rank 0 alone prints the log lines and the JSON result (its loss is the one of the
    run it registered) and records the job: one job row, one run."""
    _xray_dataset(workspace, 32)
    proc = _torchrun_cli(["train", "--workspace", str(workspace.root), "--dataset", "xray", "--epochs", "1",
                          "--image-size", "16", "--base-channels", "8", "--channel-mults", "1", "2",
                          "--num-res-blocks", "1", "--attention-resolutions", "--batch-size", "8",
                          "--preview-every", "0", "--device", "cpu", "--num-gpus", "2", "--json"])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert len(results) == 1 and results[0]["steps"] == 2  # 32 images / 2 ranks / batch 8
    assert sum(line.startswith("run ") for line in proc.stderr.splitlines()) == 1  # "run ID: ..." once
    assert "[rank 1]" not in proc.stderr
    assert [j.kind for j in workspace.jobs()] == ["train"]
    assert [r.id for r in workspace.runs()] == [results[0]["run"]]


@pytest.mark.slow
def test_radsynth_sample_under_torchrun_splits_the_images_and_writes_the_single_process_set(workspace, tmp_path,
                                                                                            capsys):
    """5 images on 2 ranks (images 0..2 and 3..4, batches of 2): rank 0 gathers them and writes one set, the
    images (with their per-image classes) of a single-process run with the same seed; one JSON result."""
    from app.cli import main
    from app.engine.data.cache import ImageDataset
    from tests.engine.gen.test_sampling import make_checkpoint

    run_id = make_checkpoint(workspace)
    args = ["sample", "--workspace", str(workspace.root), "--run", run_id, "--n", "5", "--sampler", "ddim",
            "--steps", "3", "--seed", "7", "--class", "0", "1", "1", "0", "1", "--batch-size", "2",
            "--format", "npz", "--json"]
    proc = _torchrun_cli([*args, "--dataset", "two-ranks", "--out", str(tmp_path / "two")])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert len(results) == 1 and results[0]["processes"] == 2 and results[0]["n"] == 5
    assert sum(line.startswith("sampling 5 images") for line in proc.stderr.splitlines()) == 1
    assert "images 0..2" in proc.stderr and "[rank 1]" not in proc.stderr

    assert main([*args, "-q", "--dataset", "one-process", "--out", str(tmp_path / "one")]) == 0
    single = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert single["processes"] == 1
    with np.load(results[0]["files"][0]) as a, np.load(single["files"][0]) as b:
        two, one = a["images"], b["images"]
    assert two.shape == one.shape == (5, 1, 16, 16)
    assert np.abs(one[:-1] - one[1:]).max() > 1e-2  # distinct images: a misplaced share would show
    np.testing.assert_allclose(two, one, atol=1e-4)  # batching changes only float rounding in the network
    sets = {name: ImageDataset.from_workspace(workspace, name) for name in ("two-ranks", "one-process")}
    np.testing.assert_allclose(sets["two-ranks"].images(), sets["one-process"].images(), atol=1e-4)
    np.testing.assert_array_equal(sets["two-ranks"].labels(), [0, 1, 1, 0, 1])
    assert sorted(j.kind for j in workspace.jobs()) == ["sample", "sample"]  # rank 1 recorded nothing


if __name__ == "__main__":
    _worker(*sys.argv[1:4])
