"""End-to-end proof of the memorization audit: a model made to memorize, a model that does not, judged independently.

Everything goes through the product's jobs (``ingest``, ``train``, ``sample``, ``audit``), so the figures
follow the audit as it improves:

1. Ingests ``../shared/data/pneumoniamnist_balanced_28.npz`` (28x28 chest X-rays, its own train / val /
   test split) twice: whole (``pneumoniamnist``: 2 428 training images) and with only the first
   ``--memorize-per-class`` training images of each class (``pneumoniamnist-few``: 2 x 12 = 24 by default;
   the same val and test splits).
2. Model A (memorizing): the ``ddpm-28-cond-cpu`` preset on the 24 images for ``--epochs-a`` epochs
   (1 200 by default), the batch holding all 24 (one optimizer step per epoch) and the learning rate
   constant at ``--lr-a`` 3e-3 instead of the preset's cosine decay from 1e-3 (with the preset's own
   values, 1 000 steps on 32 images gave 4 copies in 40 samples: too slow to memorize on a CPU).
   Model B: the preset as it is on all 2 428 training images for ``--epochs-b`` epochs (3 by default,
   228 steps: short on purpose; a model that has seen each image three times cannot copy it).
   Augmentation off for both (the preset's: no flips; chest radiographs have a laterality); previews,
   validation and intermediate checkpoints off to save time.
3. Samples ``--n-samples`` images from each with the ``sample`` job (DDIM, 50 steps, seed 1, half of
   each class).
4. Decides "copy" for every image by a criterion independent of the audit, with thresholds fixed
   before any model was trained (``tests/engine/metrics/copies.py``): SSIM >= 0.90 to the nearest
   image of the model's own training set, exhaustive (skimage's SSIM). Beside it, Carlini et al.'s
   ratio (USENIX Security 2023, sec. 5.1): L2 to the nearest of the 2 428 real training images over
   0.5 x the mean L2 to its 50 nearest, a copy when below 1 (against the whole training split, as
   the ratio needs a neighbourhood of 50; a copy of one of model A's 24 images is in it).
5. Runs the ``audit`` job (its defaults; calibrated on the val split, 270 held-out real images) on:
   model A's samples against its 24 training images, model B's samples against the 2 428, the
   seed's baseline (``--n-samples`` real training images plus Gaussian noise sigma 0.3 of the
   [-1, 1] range) against the 2 428, and the real test images (468, never trained on) against
   both training sets as negatives.

Printed: for each set, the copies by the independent criterion (and by Carlini's ratio), the audit's
detections among the copies (detection rate) and its flags among the non-copies (false flags).

    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_audit_memorization.py --workspace /tmp/rsmem
    # again without training: --run-a RUN --run-b RUN (printed by the first run)

Needs the shared data folder; a CPU is enough (training is most of the time; ``--threads`` sets the
torch threads). Figures of 2026-12-04, one thread on a 2-core machine shared with other jobs (load 9-11):
model A 782 s (1 200 steps, final loss 0.025), model B 103 s (225 steps), 100 samples each in 22 s,
each audit 5-18 s:

    set                                n  SSIM copies  detected  false flags  Carlini copies  detected  flagged, neither
    A: memorizing model's samples    100           25     25/25        69/75              72     72/72             22/28
    B: full model's samples          100            0         -        0/100               0         -             0/100
    real + noise 0.3 (seed baseline) 100            0         -        0/100               0         -             0/100
    real test images vs A's 24       468            0         -        0/468               0         -             0/468
    real test images vs B's 2 428    468            0         -        0/468               0         -             0/468

SSIM >= 0.90 is strict: model A's samples have a median SSIM of 0.84 to their nearest training image and
look like it with some residual noise (``memorization_A_pairs.png`` in the workspace: row 1 samples,
row 2 their SSIM-nearest training images). The noise baseline is no copy by either criterion (median
SSIM 0.42, below the real test images' 0.64) although the SSIM-nearest training image is its source for
97 of 100: sigma 0.3 hides an image's pixels but not its identity, which a distance audit does not flag.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DATA = ROOT.parent / "shared" / "data" / "pneumoniamnist_balanced_28.npz"
PRESET = "ddpm-28-cond-cpu"
FULL, FEW = "pneumoniamnist", "pneumoniamnist-few"
NOISE_SIGMA = 0.3  # the seed's baseline: real images plus noise of this sigma ([-1, 1] range)
#: training without previews, validation or intermediate checkpoints (minutes saved, nothing else changed)
QUIET = {"preview_every": 0, "val_every": 0, "checkpoint_every": 0, "device": "cpu", "seed": 0}


def run_job(spec, ws):
    """Run a product job, print its info / warning lines, return Done.result (exit on failure)."""
    from app.engine import jobs as J

    def emit(e):
        if isinstance(e, J.Log) and e.level in ("warning", "error"):
            print(f"  [{spec.kind}] {e.text}", flush=True)

    final = J.run(spec, emit, workspace=ws)
    if not isinstance(final, J.Done):
        raise SystemExit(f"{spec.kind} failed: {final}")
    return final.result


def few_npz(path: Path, per_class: int) -> Path:
    """The data file with only the first ``per_class`` training images of each class (val, test whole)."""
    z = np.load(DATA)
    y = z["train_labels"].ravel()
    keep = np.sort(np.concatenate([np.flatnonzero(y == c)[:per_class] for c in np.unique(y)]))
    arrays = {k: z[k] for k in z.files}
    arrays["train_images"], arrays["train_labels"] = z["train_images"][keep], z["train_labels"][keep]
    np.savez(path, **arrays)
    return path


def ingest(ws, root: Path, per_class: int) -> None:
    from app.engine.specs.data import IngestSpec

    for name, src in ((FULL, DATA), (FEW, None)):
        if ws.has_dataset(name):
            continue
        src = src or few_npz(root / f"pneumoniamnist_few_{per_class}.npz", per_class)
        res = run_job(IngestSpec(source=str(src), name=name, size=28, normalize="bit-depth"), ws)
        print(f"ingested {name}: splits {res['splits']}", flush=True)


def train(ws, dataset: str, epochs: int, label: str, **overrides) -> str:
    from app.engine.specs.train import TrainSpec

    t0 = time.perf_counter()
    res = run_job(TrainSpec(dataset=dataset, preset=PRESET, epochs=epochs, **QUIET, **overrides), ws)
    print(f"model {label}: trained run {res['run']} on {dataset} ({res['epochs']} epochs, {res['steps']} steps, "
          f"final loss {res['final_loss']:.4f}) in {time.perf_counter() - t0:.0f} s", flush=True)
    return res["run"]


def sample(ws, run: str, n: int) -> str:
    from app.engine.specs.generate import SampleSpec

    labels = [i * 2 // n for i in range(n)]  # half normal, half pneumonia
    name = f"{run}-bench-samples-{n}"
    if not ws.has_dataset(name):
        res = run_job(SampleSpec(run=run, n_images=n, sampler="ddim", steps=50, seed=1, class_label=labels,
                                 format="npz", dataset=name, device="cpu", preview_every=0), ws)
        print(f"sampled {n} images from {run} in {res['seconds']:.0f} s", flush=True)
    return name


def audited(ws, generated: str, train: str, holdout: str, out: Path) -> tuple[np.ndarray, dict]:
    """The audit job's flags (N,) bool, and its result."""
    from app.engine.specs.evaluate import AuditSpec

    t0 = time.perf_counter()
    res = run_job(AuditSpec(generated=generated, train=train, holdout=holdout, out=str(out), device="cpu"), ws)
    flags = np.zeros(res["counts"]["generated"], bool)
    flags[[r["generated_index"] for r in res["flagged"]]] = True
    assert flags.sum() == res["n_flagged"]
    res["wall_seconds"] = time.perf_counter() - t0
    return flags, res


def noise_baseline(ws, root: Path, n: int) -> tuple[Path, np.ndarray]:
    """The seed's baseline: ``n`` real training images plus noise sigma 0.3, as an 8-bit NPZ."""
    from app.engine.data.cache import ImageDataset

    train = ImageDataset.from_workspace(ws, FULL).images("train")
    rng = np.random.default_rng(0)
    idx = rng.choice(len(train), n, replace=False)
    noisy = np.clip(train[idx] + rng.normal(0, NOISE_SIGMA, train[idx].shape), -1, 1)
    path = root / f"real_plus_noise_{n}.npz"
    np.savez(path, images=np.round((noisy[:, 0] + 1) * 127.5).astype(np.uint8))
    return path, idx


def save_pairs(images: np.ndarray, nearest: np.ndarray, path: Path) -> None:
    """Row 1: images; row 2: their nearest training images (3x, nearest-neighbour upscaled PNG)."""
    from PIL import Image

    from app.engine.imaging import make_grid

    g = make_grid(np.concatenate([images, nearest]), ncol=len(images))
    Image.fromarray(np.clip((g + 1) * 127.5, 0, 255).round().astype(np.uint8)).resize(
        (g.shape[1] * 3, g.shape[0] * 3), Image.NEAREST).save(path)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workspace", type=Path, default=None, help="keep datasets, runs and reports here (default: temporary)")
    p.add_argument("--epochs-a", "--epochs", dest="epochs_a", type=int, default=1200,
                   help="epochs of the memorizing model A (one optimizer step each: the batch holds all its images)")
    p.add_argument("--epochs-b", type=int, default=3, help="epochs of model B on the whole training split")
    p.add_argument("--memorize-per-class", type=int, default=12, help="training images per class of model A")
    p.add_argument("--lr-a", type=float, default=3e-3, help="model A's learning rate (constant after warm-up)")
    p.add_argument("--n-samples", type=int, default=100, help="images sampled from each model (and noisy copies)")
    p.add_argument("--run-a", default=None, help="reuse this run of the workspace as model A (no training)")
    p.add_argument("--run-b", default=None, help="reuse this run of the workspace as model B (no training)")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    if not DATA.exists():
        raise SystemExit(f"{DATA} is absent")
    import torch

    torch.set_num_threads(args.threads)
    from app.engine.data.cache import ImageDataset
    from app.engine.data.imagesets import load_image_set
    from app.engine.store import Workspace
    from tests.engine.metrics.copies import SSIM_COPY, copy_verdict

    root = args.workspace or Path(tempfile.mkdtemp(prefix="radsynth-memorization-"))
    ws = Workspace.open(root)
    ingest(ws, root, args.memorize_per_class)
    if args.run_a and ws.run(args.run_a).dataset != FEW:
        raise SystemExit(f"--run-a {args.run_a} was trained on {ws.run(args.run_a).dataset}, not {FEW}")
    n_few = 2 * args.memorize_per_class
    run_a = args.run_a or train(ws, FEW, args.epochs_a, "A (memorizing)", batch_size=min(32, n_few), lr=args.lr_a,
                                lr_schedule="constant")
    run_b = args.run_b or train(ws, FULL, args.epochs_b, "B (whole training split)")
    samples_a, samples_b = sample(ws, run_a, args.n_samples), sample(ws, run_b, args.n_samples)
    noise_path, noise_src = noise_baseline(ws, root, args.n_samples)

    full, few = ImageDataset.from_workspace(ws, FULL), ImageDataset.from_workspace(ws, FEW)
    pool = full.images("train")
    sets = [  # label, generated ref, its images, the model's training set (ref, images)
        ("A: memorizing model's samples", samples_a, f"{FEW}:train", few.images("train")),
        ("B: full model's samples", samples_b, f"{FULL}:train", pool),
        (f"real + noise {NOISE_SIGMA:g} (seed baseline)", str(noise_path), f"{FULL}:train", pool),
        ("real test images vs A's training set", f"{FULL}:test", f"{FEW}:train", few.images("train")),
        ("real test images vs B's training set", f"{FULL}:test", f"{FULL}:train", pool),
    ]
    rows, results, audits = [], {}, root / "audits" / time.strftime("%Y%m%d-%H%M%S")
    for k, (label, gen_ref, train_ref, train_imgs) in enumerate(sets):
        gen = load_image_set(gen_ref, workspace=ws).images
        verdict = copy_verdict(gen, train_imgs, pool=pool)
        flags, res = audited(ws, gen_ref, train_ref, f"{FULL}:val", audits / f"set{k}")
        copy = verdict.copy
        row = {"n": len(gen), "copies": int(copy.sum()), "copies_carlini": int(verdict.copy_carlini.sum()),
               "both": int((copy & verdict.copy_carlini).sum()), "detected": int((flags & copy).sum()),
               "false_flags": int((flags & ~copy).sum()), "flagged": int(flags.sum()),
               "detected_carlini": int((flags & verdict.copy_carlini).sum()),
               "flagged_neither": int((flags & ~copy & ~verdict.copy_carlini).sum()),
               "neither": int((~copy & ~verdict.copy_carlini).sum()),
               "ssim_median": float(np.median(verdict.ssim)), "audit_seconds": round(res["wall_seconds"], 1)}
        if gen_ref == str(noise_path):
            row["nearest_ssim_is_source"] = int((verdict.ssim_index == noise_src).sum())
        if k == 0:  # model A's samples over their SSIM-nearest training images, for looking at
            save_pairs(gen[:20], train_imgs[verdict.ssim_index[:20]], root / "memorization_A_pairs.png")
        rows.append((label, row))
        results[label] = row
        print(f"  audited {label}: {row['flagged']} of {row['n']} flagged in {row['audit_seconds']} s", flush=True)

    print(f"\nmodel A: run {run_a} ({PRESET} on {len(few.images('train'))} training images); "
          f"model B: run {run_b} ({PRESET} on {len(pool)}); audit calibrated on {len(full.images('val'))} val images")
    print(f"copy = SSIM >= {SSIM_COPY} to the nearest image of the model's training set (exhaustive); "
          f"Carlini = L2 ratio to the 50 nearest of the {len(pool)} real training images < 1 (alpha 0.5)")
    print("detected: audit flags among the SSIM copies (rate); false flags: among the others; the Carlini "
          "columns the same against Carlini's copies; neither: flags among images that are copies by neither")
    head = (f"{'set':40s} {'n':>4s} {'copies':>7s} {'detected':>9s} {'rate':>5s} {'false flags':>12s} "
            f"{'Carlini':>8s} {'detected':>9s} {'neither':>9s} {'SSIM med':>9s}")
    print(head)
    for label, r in rows:
        rate = f"{r['detected'] / r['copies']:.2f}" if r["copies"] else "-"
        non = r["n"] - r["copies"]
        print(f"{label:40s} {r['n']:>4d} {r['copies']:>7d} {r['detected']:>4d}/{r['copies']:<4d} {rate:>5s} "
              f"{r['false_flags']:>5d}/{non:<6d} {r['copies_carlini']:>8d} "
              f"{r['detected_carlini']:>4d}/{r['copies_carlini']:<4d} {r['flagged_neither']:>4d}/{r['neither']:<4d} "
              f"{r['ssim_median']:>9.3f}")
    noise = results[sets[2][0]]
    print(f"(the noisy set is made of training images by construction: the audit flags {noise['flagged']} of "
          f"{noise['n']}; the SSIM-nearest training image is the source for {noise['nearest_ssim_is_source']})")
    print(json.dumps({"run_a": run_a, "run_b": run_b, "ssim_copy": SSIM_COPY, **results}))


if __name__ == "__main__":
    main()
