"""Sample quality on real chest X-rays: class-conditional DDPM on PneumoniaMNIST, judged by a classifier trained on real images.

1. Trains a small class-conditional DDPM (the product's ``train`` job, CPU) on the training split
   of ``../shared/data/pneumoniamnist_balanced_28.npz`` (0 = normal, 1 = pneumonia).
2. Fits a logistic-regression classifier (scikit-learn) on the real training images; its accuracy
   on the real test images is the ceiling.
3. Samples the same number of images per class with 1000-step ancestral, 50-step DDIM and 20-step
   DPM-Solver++(2M) (and 50-step DDIM with guidance), and reports for each: how often the
   classifier assigns a generated image to the class it was conditioned on, the nearest-neighbour
   L2 distance of each sample to the training set (against the same figure for real held-out test
   images: samples much closer than that would be copies), and the time per image.

    .venv/bin/python benchmarks/bench_sample_quality.py --epochs 8 --per-class 100
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "pneumoniamnist_balanced_28.npz"


def to_float(images: np.ndarray) -> np.ndarray:
    return images.astype(np.float32)[:, None] / 127.5 - 1.0


def make_dataset(ws, data) -> str:
    from app.engine.data.cache import CacheWriter

    staging = ws.staging_dir()
    train, val = to_float(data["train_images"]), to_float(data["val_images"])
    ytr, yva = data["train_labels"].reshape(-1), data["val_labels"].reshape(-1)
    w = CacheWriter(staging / "cache.h5", 28, 28, ["normal", "pneumonia"], attrs={"source_root": str(DATA)})
    try:
        w.append(train, ytr, [f"train{i}" for i in range(len(train))], "pneumoniamnist", 0, "CR")
        w.append(val, yva, [f"val{i}" for i in range(len(val))], "pneumoniamnist", 0, "CR")
        w.set_splits(np.r_[np.zeros(len(train)), np.ones(len(val))].astype(np.uint8))
    finally:
        w.close()
    ws.commit_dataset(staging, "pneumoniamnist", n_images=len(train) + len(val), height=28, width=28,
                      classes=["normal", "pneumonia"], source=str(DATA), meta={"splits": {"train": len(train)}})
    return "pneumoniamnist"


def nn_distances(queries: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Per-pixel RMS distance of each query to its nearest reference image ([-1, 1] scale)."""
    q = torch.from_numpy(queries.reshape(len(queries), -1))
    r = torch.from_numpy(reference.reshape(len(reference), -1))
    d = torch.cdist(q, r).min(dim=1).values / np.sqrt(q.shape[1])
    return d.numpy()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--per-class", type=int, default=100)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--workspace", type=Path, default=None, help="keep the trained run here (default: temporary)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if not DATA.exists():
        raise SystemExit(f"{DATA} is absent")
    data = np.load(DATA)

    from sklearn.linear_model import LogisticRegression

    from app.engine import jobs as J
    from app.engine.checkpoints import load_checkpoint
    from app.engine.sampling.api import generate_with_info
    from app.engine.store import Workspace
    from app.engine.training import TrainSpec

    root = args.workspace or Path(tempfile.mkdtemp(prefix="radsynth-quality-"))
    ws = Workspace.open(root)
    name = make_dataset(ws, data) if not ws.has_dataset("pneumoniamnist") else "pneumoniamnist"
    spec = TrainSpec(dataset=name, process="ddpm", schedule="cosine", image_size=28, base_channels=32,
                     channel_mults=[1, 2, 2], num_res_blocks=1, attention_resolutions=[7], num_heads=4,
                     class_conditional=True, label_dropout=0.1, epochs=args.epochs, batch_size=64, lr=1e-3,
                     warmup_steps=50, ema_decay=0.995, preview_every=0, val_every=0, checkpoint_every=0,
                     seed=0, device="cpu", log_every=50)
    t0 = time.perf_counter()
    losses = []
    final = J.run(spec, lambda e: losses.append(e.value) if isinstance(e, J.Scalar) and e.name == "loss" else None,
                  workspace=ws)
    if not isinstance(final, J.Done):
        raise SystemExit(f"training failed: {final}")
    train_s = time.perf_counter() - t0
    run_id = final.result.get("run") or final.result.get("run_id")
    model = load_checkpoint(run_id, ws)
    print(f"trained {run_id} for {args.epochs} epochs in {train_s:.0f} s; loss {losses[0]:.3f} -> {losses[-1]:.3f}"
          if losses else f"trained {run_id} in {train_s:.0f} s")

    xtr, ytr = to_float(data["train_images"]), data["train_labels"].reshape(-1)
    xte, yte = to_float(data["test_images"]), data["test_labels"].reshape(-1)
    clf = LogisticRegression(max_iter=2000, C=0.1).fit(xtr.reshape(len(xtr), -1), ytr)
    ceiling = float((clf.predict(xte.reshape(len(xte), -1)) == yte).mean())
    d_test = nn_distances(xte, xtr)

    labels = [0] * args.per_class + [1] * args.per_class
    y = np.array(labels)
    rows = [("real test images (ceiling)", ceiling, float(np.median(d_test)), float(d_test.min()), float("nan"))]
    configs = [("ancestral", 1000, 0.0), ("ddim", 50, 0.0), ("dpmpp2m", 20, 0.0), ("ddim", 50, 1.0)]
    results = {}
    for sampler, steps, w in configs:
        imgs, info = generate_with_info(model, len(labels), sampler, steps=steps, seed=1, class_labels=labels,
                                        guidance=w, batch_size=100)
        acc = float((clf.predict(imgs.reshape(len(imgs), -1)) == y).mean())
        d = nn_distances(imgs, xtr)
        label = f"{sampler} {steps} steps" + (f", guidance {w:g}" if w else "")
        rows.append((label, acc, float(np.median(d)), float(d.min()), info.seconds / len(imgs)))
        results[label] = {"accuracy": acc, "nn_median": float(np.median(d)), "nn_min": float(d.min()),
                          "seconds_per_image": info.seconds / len(imgs)}
    print(f"\nclassifier: logistic regression on {len(xtr)} real training images; {args.per_class} samples per class")
    print(f"{'images':34s} {'cond. accuracy':>15s} {'NN dist median':>15s} {'NN dist min':>12s} {'s / image':>10s}")
    for label, acc, med, mn, spi in rows:
        print(f"{label:34s} {acc:>15.3f} {med:>15.3f} {mn:>12.3f} {spi:>10.4f}")
    print(json.dumps({"ceiling": ceiling, "train_seconds": train_s, **results}))


if __name__ == "__main__":
    main()
