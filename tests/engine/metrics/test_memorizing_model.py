"""The audit catches what a generator really memorizes: a tiny model trained to copy four chest X-rays.

The small version of ``benchmarks/bench_audit_memorization.py``, through the same product jobs (ingest,
train, sample, audit); copies are decided by a criterion independent of the audit
(``tests/engine/metrics/copies.py``: exhaustive SSIM >= 0.90 to a training image).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from app.engine.data.cache import ImageDataset
from app.engine.jobs import Done, run_collect
from app.engine.specs.data import IngestSpec
from app.engine.specs.evaluate import AuditSpec
from app.engine.specs.generate import SampleSpec
from app.engine.specs.train import TrainSpec
from tests.conftest import shared_file
from tests.engine.metrics.copies import copy_verdict, ssim_to_each

N_TRAIN = 4
#: each training image is its own class and appears 4 times (a batch of 16 per optimizer step): the
#: conditional model only has to learn one image per class, so 300 steps of a 16x16 U-Net memorize
MEMORIZE = {
    "process": "ddpm", "schedule": "cosine", "prediction_type": "v", "image_size": 16, "base_channels": 8,
    "channel_mults": [1, 2], "num_res_blocks": 1, "attention_resolutions": [], "class_conditional": True,
    "label_dropout": 0.0, "batch_size": 4 * N_TRAIN, "epochs": 300, "lr": 5e-3, "lr_schedule": "constant",
    "warmup_steps": 10, "ema_decay": 0.9, "log_every": 100, "preview_every": 0, "val_every": 0,
    "checkpoint_every": 0, "device": "cpu", "seed": 0,
}


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    """Tiny models train fastest (and reproducibly) on one thread; restored afterwards."""
    n = torch.get_num_threads()
    monkeypatch.setenv("RADSYNTH_THREADS", "1")
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _result(spec, ws) -> dict:
    events = run_collect(spec, workspace=ws)
    assert isinstance(events[-1], Done), events[-1]
    return events[-1].result


def labels(n: int) -> np.ndarray:
    return (np.arange(n) % N_TRAIN)[:, None]


def _flags(result: dict) -> np.ndarray:
    flags = np.zeros(result["counts"]["generated"], bool)
    flags[[row["generated_index"] for row in result["flagged"]]] = True
    return flags


@pytest.fixture
def few(workspace, tmp_path):
    """Dataset 'few': 4 training chest X-rays (x4, classes 0..3), 40 val (calibration) and 20 test images, 16x16."""
    d = np.load(shared_file("pneumoniamnist_balanced_28.npz"))
    np.savez(tmp_path / "few.npz", train_images=np.tile(d["train_images"][:N_TRAIN], (4, 1, 1)),
             train_labels=labels(4 * N_TRAIN), val_images=d["val_images"][:40], val_labels=labels(40),
             test_images=d["test_images"][:20], test_labels=labels(20))
    _result(IngestSpec(source=str(tmp_path / "few.npz"), name="few", size=16, normalize="bit-depth"), workspace)
    return ImageDataset.from_workspace(workspace, "few")


def test_copy_criterion_ssim_is_skimages():
    from skimage.metrics import structural_similarity

    rng = np.random.default_rng(0)
    d = np.load(shared_file("pneumoniamnist_balanced_28.npz"))
    imgs = d["train_images"][:6].astype(np.float32) / 127.5 - 1
    query = np.clip(imgs[0] + rng.normal(0, 0.1, imgs[0].shape), -1, 1).astype(np.float32)
    ours = ssim_to_each(torch.from_numpy(query), torch.from_numpy(imgs)).numpy()
    ref = [structural_similarity(query, t, data_range=2.0) for t in imgs]
    np.testing.assert_allclose(ours, ref, atol=1e-5)


def test_copies_from_a_memorizing_model_are_flagged_and_new_real_images_are_not(workspace, few):
    run = _result(TrainSpec(dataset="few", **MEMORIZE), workspace)["run"]
    classes = [i % N_TRAIN for i in range(12)]
    _result(SampleSpec(run=run, n_images=12, class_label=classes, sampler="ddim", steps=20, seed=1, format="npz",
                       dataset="generated", device="cpu", preview_every=0), workspace)
    generated = ImageDataset.from_workspace(workspace, "generated").images()
    train = few.images("train")

    verdict = copy_verdict(generated, train)
    copies = verdict.copy
    # the model did memorize (else this test would prove nothing): copies, each of its own class's image
    assert copies.sum() >= 2, f"no memorization: best SSIM {np.round(verdict.ssim, 3)}"
    assert (few.labels("train")[verdict.ssim_index[copies]] == np.array(classes)[copies]).all()

    audit = _result(AuditSpec(generated="generated", train="few:train", holdout="few:val", extractor="none",
                              device="cpu"), workspace)
    flagged = _flags(audit)
    assert flagged[copies].all(), (f"copies not flagged: {np.flatnonzero(copies & ~flagged)} "
                                   f"(SSIM {np.round(verdict.ssim[copies & ~flagged], 3)})")
    assert not audit["passed"]

    # real images the model never saw: no copies by the criterion, and the audit flags none
    new = few.images("test")
    assert not copy_verdict(new, train).copy.any()
    negatives = _result(AuditSpec(generated="few:test", train="few:train", holdout="few:val", extractor="none",
                                  device="cpu"), workspace)
    assert negatives["n_flagged"] == 0, [r["generated_index"] for r in negatives["flagged"]]
    assert len(new) == 20 and negatives["passed"]
