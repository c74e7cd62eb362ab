"""Audit search speed: 42,000 generated x 8,000 training images at 128x128, ours vs scikit-learn.

    .venv/bin/python benchmarks/bench_audit_speed.py [--n-gen 42000] [--n-train 8000] [--size 128] [--subset 2000]

Anchor: sklearn.neighbors.NearestNeighbors(algorithm="brute") (exact L2, k=3). Both are timed on
the same random data: on a subset of generated images (identical sizes for both) and extrapolated
linearly in the number of generated images, and ours also at full size (stage 1, the exhaustive
search giving L2 and NCC top-k together). The full audit adds the shift/zoom-tolerant scoring of
the candidates (stage 2), timed on the subset and extrapolated.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n-gen", type=int, default=42000)
    ap.add_argument("--n-train", type=int, default=8000)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--subset", type=int, default=2000)
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--threads", type=int, default=int(os.environ.get("RADSYNTH_THREADS", "2")))
    ap.add_argument("--skip-full", action="store_true")
    a = ap.parse_args()
    import torch
    from sklearn.neighbors import NearestNeighbors

    from app.engine.metrics.nn import pixel_candidates, refine_pairs

    torch.set_num_threads(a.threads)
    rng = np.random.default_rng(0)
    s = a.size
    train = rng.uniform(-1, 1, (a.n_train, 1, s, s)).astype(np.float32)
    sub = rng.uniform(-1, 1, (a.subset, 1, s, s)).astype(np.float32)
    scale = a.n_gen / a.subset
    print(f"{a.n_gen} x {a.n_train} images at {s}x{s}, {a.threads} threads, device cpu")

    t0 = time.perf_counter()
    ours = pixel_candidates(sub, train, k=a.k)
    t_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    nn = NearestNeighbors(n_neighbors=a.k, algorithm="brute").fit(train.reshape(a.n_train, -1))
    dist, idx = nn.kneighbors(sub.reshape(a.subset, -1))
    t_sk = time.perf_counter() - t0
    agree = float(np.mean(ours["l2_idx"][:, 0] == idx[:, 0]))
    rms_err = float(np.max(np.abs(ours["l2"][:, 0] - dist[:, 0] / s)))
    print(f"subset {a.subset} x {a.n_train}:  ours (L2 + NCC top-{a.k}) {t_ours:8.1f} s   sklearn brute (L2 top-{a.k}) {t_sk:8.1f} s   "
          f"ratio sklearn/ours {t_sk / t_ours:5.2f}   nearest agree {agree:.4f}  max |RMS diff| {rms_err:.2e}")
    print(f"extrapolated to {a.n_gen}:  ours {t_ours * scale / 60:6.1f} min   sklearn {t_sk * scale / 60:6.1f} min")

    cand = np.concatenate([ours["l2_idx"], ours["ncc_idx"]], 1)[: min(500, a.subset)]
    t0 = time.perf_counter()
    refine_pairs(sub[: len(cand)], train, cand)
    t_ref = time.perf_counter() - t0
    print(f"stage 2 (shift/zoom-tolerant L2/NCC/SSIM on {cand.shape[1]} candidates): {t_ref:.1f} s for {len(cand)} "
          f"-> extrapolated {t_ref * a.n_gen / len(cand) / 60:.1f} min for {a.n_gen}")
    if not a.skip_full:
        gen = rng.uniform(-1, 1, (a.n_gen, 1, s, s)).astype(np.float32)
        t0 = time.perf_counter()
        last = [0.0]

        def on_chunk(done, total):
            now = time.perf_counter()
            if now - last[0] > 60:
                print(f"  chunk {done}/{total} after {now - t0:.0f} s", flush=True)
                last[0] = now

        pixel_candidates(gen, train, k=a.k, on_chunk=on_chunk)
        print(f"full size, ours stage 1: {a.n_gen} x {a.n_train}: {(time.perf_counter() - t0) / 60:.1f} min (measured)")


if __name__ == "__main__":
    main()
