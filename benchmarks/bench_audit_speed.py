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
    ap.add_argument("--end-to-end", action="store_true",
                    help="instead: the product's audit job (radsynth audit with its defaults) on the full sizes, "
                         "from NPZ files to the HTML report, in one piece")
    ap.add_argument("--n-holdout", type=int, default=1000, help="held-out images of --end-to-end")
    a = ap.parse_args()
    if a.end_to_end:
        return end_to_end(a)
    import torch
    from sklearn.neighbors import NearestNeighbors

    from app.engine.audit.nn import pixel_candidates, refine_pairs

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


def end_to_end(a) -> None:
    """``radsynth audit`` on random uint8 NPZ sets of the full sizes: wall time per stage (from the
    job's own log lines) and in total, and the peak memory of the process."""
    import resource
    import tempfile

    import torch

    from app.engine import jobs as J
    from app.engine.audit.memorization import AuditSpec

    torch.set_num_threads(a.threads)
    os.environ["RADSYNTH_THREADS"] = str(a.threads)
    rng = np.random.default_rng(0)
    tmp = Path(tempfile.mkdtemp(prefix="radsynth-audit-e2e-"))
    s = a.size
    for name, n in (("generated", a.n_gen), ("train", a.n_train), ("holdout", a.n_holdout)):
        np.savez(tmp / f"{name}.npz", images=rng.integers(0, 256, (n, s, s), dtype=np.uint8))
    print(f"end to end: radsynth audit, {a.n_gen} generated x {a.n_train} training images (+ {a.n_holdout} held out) "
          f"at {s}x{s}, {a.threads} threads; files in {tmp}", flush=True)
    spec = AuditSpec(generated=str(tmp / "generated.npz"), train=str(tmp / "train.npz"),
                     holdout=str(tmp / "holdout.npz"), out=str(tmp / "report"), device="cpu")
    t0 = time.perf_counter()
    last = [t0]

    def emit(e):
        now = time.perf_counter()
        if isinstance(e, J.Log):
            print(f"  [{now - t0:7.1f} s] {e.text}", flush=True)
        elif isinstance(e, J.Progress) and now - last[0] > 120:
            print(f"  [{now - t0:7.1f} s] progress {e.step}/{e.total} {e.label}", flush=True)
            last[0] = now

    final = J.run(spec, emit, workspace=tmp / "ws")
    wall = time.perf_counter() - t0
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    state = type(final).__name__
    print(f"audit job {state} in {wall / 60:.1f} min wall, peak RSS {peak_gb:.1f} GiB"
          + ("" if state == "Done" else f": {getattr(final, 'message', final)}"))


if __name__ == "__main__":
    main()
