"""Sample quality on real chest X-rays: class-conditional DDPM on PneumoniaMNIST, judged by a classifier trained on real images.

1. Ingests ``../shared/data/pneumoniamnist_balanced_28.npz`` (0 = normal, 1 = pneumonia; its own
   train / val / test split) with the product's ``ingest`` job into a workspace, and trains the
   ``ddpm-28-cond-cpu`` preset on its training split with the product's ``train`` job (CPU).
2. Fits a logistic-regression classifier (scikit-learn, settings fixed in advance, never tuned on
   the test set) on the real training images; its accuracy on the real test images is the ceiling.
3. Samples the same number of images per class with 1000-step ancestral, 50-step DDIM and 20-step
   DPM-Solver++(2M) (and 50-step DDIM with guidance 1), and reports for each: how often the
   classifier assigns a generated image to the class it was conditioned on, the nearest-neighbour
   distance of each sample to the training set (against the same figure for real held-out test
   images: samples much closer than that would be copies), and the time per image.

    .venv/bin/python benchmarks/bench_sample_quality.py --workspace /tmp/rsq
    # evaluate again without training: add --run RUN_ID (printed by the first run)

Defaults: 12 epochs (900 optimizer steps; about 23 min on one core of a busy 2-core machine, the
preset's 30 epochs being meant for an unshared core), 50 images per class for DDIM / DPM-Solver
and 20 per class for the 1000-step ancestral sampler (its 1000 network evaluations per image
dominate the run).

A grid of each sampler's images (row 1 normal, row 2 pneumonia) is written next to the workspace
as quality_<sampler>.png for looking at.
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
PRESET = "ddpm-28-cond-cpu"
DATASET = "pneumoniamnist"


def nn_distances(queries: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Per-pixel RMS distance of each query to its nearest reference image ([-1, 1] scale)."""
    q = torch.from_numpy(queries.reshape(len(queries), -1))
    r = torch.from_numpy(reference.reshape(len(reference), -1))
    d = torch.cdist(q, r).min(dim=1).values / np.sqrt(q.shape[1])
    return d.numpy()


def run_job(spec, ws, log_every: int = 0):
    """Run a product job; print its log lines (and every ``log_every``-th loss); return Done.result."""
    from app.engine import jobs as J

    losses = []

    def emit(e):
        if isinstance(e, J.Scalar) and e.name == "loss":
            losses.append(e.value)
            if log_every and len(losses) % log_every == 0:
                print(f"  step {e.step}: loss {e.value:.4f}", flush=True)
        elif isinstance(e, J.Log) and e.level in ("info", "warning", "error"):
            print(f"  [{spec.kind}] {e.text}", flush=True)

    final = J.run(spec, emit, workspace=ws)
    if not isinstance(final, J.Done):
        raise SystemExit(f"{spec.kind} failed: {final}")
    return final.result, losses


def save_grid(images: np.ndarray, ncol: int, path: Path) -> None:
    from PIL import Image

    from app.engine.imaging import make_grid

    g = make_grid(images, ncol=ncol)
    Image.fromarray(np.clip((g + 1) * 127.5, 0, 255).round().astype(np.uint8)).resize(
        (g.shape[1] * 3, g.shape[0] * 3), Image.NEAREST).save(path)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=12, help=f"training epochs (0: the {PRESET} preset's)")
    p.add_argument("--per-class", type=int, default=50, help="samples per class for DDIM / DPM-Solver")
    p.add_argument("--ancestral-per-class", type=int, default=20,
                   help="samples per class for 1000-step ancestral (0: --per-class)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--workspace", type=Path, default=None, help="keep the dataset and run here (default: temporary)")
    p.add_argument("--run", default=None, help="evaluate this existing run of the workspace instead of training")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if not DATA.exists():
        raise SystemExit(f"{DATA} is absent")

    from sklearn.linear_model import LogisticRegression

    from app.engine.training.checkpoints import load_checkpoint
    from app.engine.data.cache import ImageDataset
    from app.engine.data.ingest import IngestSpec
    from app.engine.sampling.api import generate_with_info
    from app.engine.store import Workspace
    from app.engine.training.loop import TrainSpec

    root = args.workspace or Path(tempfile.mkdtemp(prefix="radsynth-quality-"))
    ws = Workspace.open(root)
    if not ws.has_dataset(DATASET):
        res, _ = run_job(IngestSpec(source=str(DATA), name=DATASET, size=28, normalize="bit-depth"), ws)
        print(f"ingested {res['kept']} images, splits {res['splits']}, classes {res['classes']}")
    ds = ImageDataset.from_workspace(ws, DATASET)

    run_id, train_s = args.run, float("nan")
    if run_id is None:
        spec = TrainSpec(dataset=DATASET, preset=PRESET, device="cpu", seed=0,
                         **({"epochs": args.epochs} if args.epochs else {}))
        t0 = time.perf_counter()
        res, losses = run_job(spec, ws, log_every=20)
        train_s = time.perf_counter() - t0
        run_id = res["run"]
        print(f"trained {run_id} ({PRESET}, {res['epochs']} epochs, {res['steps']} steps) in {train_s:.0f} s; "
              f"loss (mean of first / last 5 logged) {np.mean(losses[:5]):.4f} -> {np.mean(losses[-5:]):.4f}")
    model = load_checkpoint(run_id, ws)
    n_params = sum(p.numel() for p in model.net.parameters())

    xtr, ytr = ds.images("train"), ds.labels("train")
    xte, yte = ds.images("test"), ds.labels("test")
    # the classifier's settings are fixed in advance (no search on the test set)
    clf = LogisticRegression(max_iter=2000, C=0.1).fit(xtr.reshape(len(xtr), -1), ytr)
    ceiling = float((clf.predict(xte.reshape(len(xte), -1)) == yte).mean())
    d_test = nn_distances(xte, xtr)

    rows = [("real test images (ceiling)", len(xte), ceiling, float(np.median(d_test)), float(d_test.min()),
             float("nan"))]
    anc = args.ancestral_per_class or args.per_class
    configs = [("ancestral", 1000, 0.0, anc), ("ddim", 50, 0.0, args.per_class),
               ("dpmpp2m", 20, 0.0, args.per_class), ("ddim", 50, 1.0, args.per_class)]
    results = {}
    for sampler, steps, w, k in configs:
        labels = [0] * k + [1] * k
        y = np.array(labels)
        imgs, info = generate_with_info(model, len(labels), sampler, steps=steps, seed=1, class_labels=labels,
                                        guidance=w, batch_size=len(labels))
        acc = float((clf.predict(imgs.reshape(len(imgs), -1)) == y).mean())
        d = nn_distances(imgs, xtr)
        label = f"{sampler} {steps} steps" + (f", guidance {w:g}" if w else "")
        spi = info.seconds / len(imgs)
        rows.append((label, len(imgs), acc, float(np.median(d)), float(d.min()), spi))
        results[label] = {"n": len(imgs), "accuracy": acc, "nn_median": float(np.median(d)), "nn_min": float(d.min()),
                          "seconds_per_image": spi, "network_evals": info.network_evals}
        grid = np.concatenate([imgs[:min(k, 10)], imgs[k:k + min(k, 10)]])
        save_grid(grid, min(k, 10), root / f"quality_{sampler}{steps}{'_g' if w else ''}.png")
        print(f"  {label}: accuracy {acc:.3f}, {spi:.3f} s/image", flush=True)
    save_grid(np.concatenate([xte[yte == 0][:10], xte[yte == 1][:10]]), 10, root / "quality_real_test.png")

    print(f"\nmodel: {PRESET} preset, {n_params / 1e6:.2f} M parameters, run {run_id}"
          + (f", trained in {train_s:.0f} s" if np.isfinite(train_s) else ""))
    print(f"classifier: logistic regression (C=0.1) on {len(xtr)} real training images; "
          f"NN distance = per-pixel RMS to the nearest of the {len(xtr)} training images ([-1, 1] scale)")
    print(f"{'images':30s} {'n':>5s} {'cond. accuracy':>15s} {'NN dist median':>15s} {'NN dist min':>12s} "
          f"{'s / image':>10s}")
    for label, n, acc, med, mn, spi in rows:
        print(f"{label:30s} {n:>5d} {acc:>15.3f} {med:>15.3f} {mn:>12.3f} {spi:>10.4f}")
    print(json.dumps({"run": run_id, "ceiling": ceiling, "test_nn_median": float(np.median(d_test)),
                      "train_seconds": train_s if np.isfinite(train_s) else None, **results}))


if __name__ == "__main__":
    main()
