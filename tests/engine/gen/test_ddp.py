"""Data-parallel training: two CPU processes under torchrun with gloo keep identical weights.

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


@pytest.mark.slow
def test_two_gloo_processes_under_torchrun_keep_identical_weights(workspace, tmp_path):
    from app.engine.data.cache import CacheWriter
    from app.engine.training.loop import TrainSpec
    from tests.conftest import shared_file

    d = np.load(shared_file("pneumoniamnist_balanced_28.npz"))
    imgs = d["train_images"][:64].astype(np.float32) / 127.5 - 1
    staging = workspace.staging_dir()
    w = CacheWriter(staging / "cache.h5", 28, 28, ["normal", "pneumonia"])
    w.append(imgs, d["train_labels"][:64].reshape(-1), "g", "pneumoniamnist", list(range(64)), "CR")
    w.close()
    workspace.commit_dataset(staging, "xray", n_images=64, height=28, width=28, classes=["normal", "pneumonia"],
                             source="test", meta={})
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


if __name__ == "__main__":
    _worker(*sys.argv[1:4])
