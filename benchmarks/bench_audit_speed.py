"""Audit search speed: 42,000 generated x 8,000 training images at 128x128, ours vs scikit-learn.

    .venv/bin/python benchmarks/bench_audit_speed.py [--n-gen 42000] [--n-train 8000] [--size 128] [--subset 500] [--data siat]

Anchor: sklearn.neighbors.NearestNeighbors(algorithm="brute") (exact L2, k=3), under the same thread
limit (threadpoolctl) as ours (torch.set_num_threads). Both are timed on the same data (below) on a subset
of generated images (identical sizes for both) and extrapolated linearly in the number of generated images
(the training set's one-time preparation is not scaled); ours (stage 1: L2 and NCC top-k together) with
the float32 GEMM, the exact projected search (``precision="proj"``) and the exact int8-screened search
(``precision="int8"``), checked against sklearn's neighbours. Then every other stage of the whole audit
(coarse search, shift/zoom scoring with SSIM, the copy descriptor, the transform-invariant scoring, the
held-out set's searches) is timed on the subset and extrapolated, and with ``--full`` stage 1 is also run
at full size. Peak memory (RSS) is printed: every stage is chunked, so it does not grow with the number
of generated images.

Data (``--data``): "siat" (default), realistic images: SIAT T2 magnitude slices (/work/shared/data) at
``--size``, each drawn under a random rotation (+-10 deg), zoom (+-10 %), shift (+-5 %), intensity gain
(0.8-1.2) and noise (sigma 0.01-0.05), so that all training and generated images are distinct; "noise":
uniform white noise, the worst case of the screened searches (no structure for a basis to capture, all
pairs nearly equidistant). Stage 1 is always timed on both, the rest of the audit on ``--data``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def siat_like(n: int, size: int, seed: int) -> np.ndarray:
    """n distinct realistic (N, 1, size, size) images in [-1, 1] from the SIAT slices (see the module doc)."""
    import torch
    import torch.nn.functional as F

    d = np.load(ROOT.parent / "shared" / "data" / "siat_brain_t2_complex_dev.npz")
    m = torch.from_numpy(np.abs(d["images"]).astype(np.float32))[:, None]
    m = F.interpolate(m, size=(size, size), mode="area")
    p = torch.quantile(m.flatten(1), 0.995, dim=1)[:, None, None, None]
    base = (m / p).clamp(0, 1) * 2 - 1
    g = torch.Generator().manual_seed(seed)
    out = np.empty((n, 1, size, size), np.float32)
    for s in range(0, n, 1000):
        b = min(1000, n - s)
        src = base[torch.randint(0, len(base), (b,), generator=g)]
        ang = (torch.rand(b, generator=g) - 0.5) * np.deg2rad(20)
        sc = 1 + (torch.rand(b, generator=g) - 0.5) * 0.2
        tr = (torch.rand(b, 2, generator=g) - 0.5) * 0.1
        th = torch.stack([torch.stack([torch.cos(ang) / sc, -torch.sin(ang) / sc, tr[:, 0]], 1),
                          torch.stack([torch.sin(ang) / sc, torch.cos(ang) / sc, tr[:, 1]], 1)], 1)
        x = F.grid_sample(src + 1, F.affine_grid(th, src.shape, align_corners=False), align_corners=False) - 1
        gain = 0.8 + 0.4 * torch.rand(b, 1, 1, 1, generator=g)
        sigma = 0.01 + 0.04 * torch.rand(b, 1, 1, 1, generator=g)
        out[s : s + b] = ((x + 1) * gain - 1 + torch.randn(x.shape, generator=g) * sigma).clamp(-1, 1).numpy()
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n-gen", type=int, default=42000)
    ap.add_argument("--n-train", type=int, default=8000)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--subset", type=int, default=500)
    ap.add_argument("--data", choices=("siat", "noise"), default="siat")
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--threads", type=int, default=int(os.environ.get("RADSYNTH_THREADS", "2")))
    ap.add_argument("--full", action="store_true", help="also run stage 1 on all --n-gen images (measured, not extrapolated)")
    ap.add_argument("--end-to-end", action="store_true",
                    help="instead: the product's audit job (radsynth audit with its defaults) on the full sizes, "
                         "from NPZ files to the HTML report, in one piece")
    ap.add_argument("--n-holdout", type=int, default=1000, help="held-out images of --end-to-end")
    a = ap.parse_args()
    if a.end_to_end:
        return end_to_end(a)
    import resource

    import torch
    from sklearn.neighbors import NearestNeighbors
    from threadpoolctl import threadpool_limits

    from app.engine.audit.invariant import CopyDescriptor, invariant_pairs
    from app.engine.audit.nn import coarse_factor, downsample, int8_is_fast, pixel_candidates, refine_pairs

    torch.set_num_threads(a.threads)
    rng = np.random.default_rng(0)
    s = a.size
    scale = a.n_gen / a.subset
    print(f"{a.n_gen} x {a.n_train} images at {s}x{s}, {a.threads} threads, device cpu; int8 products fast here: "
          f"{int8_is_fast('cpu')}; timed on {a.subset} generated images, extrapolated x{scale:.1f}", flush=True)

    def timed(f):
        t0 = time.perf_counter()
        r = f()
        return r, time.perf_counter() - t0

    sets = {}
    for kind in ("siat", "noise"):
        if kind == "siat":
            tr_k, sub_k = siat_like(a.n_train, s, 1), siat_like(a.subset, s, 2)
        else:
            tr_k = rng.uniform(-1, 1, (a.n_train, 1, s, s)).astype(np.float32)
            sub_k = rng.uniform(-1, 1, (a.subset, 1, s, s)).astype(np.float32)
        sets[kind] = (tr_k, sub_k)
        res = {}
        for prec in ("f32", "proj", "int8"):
            st = {}
            res[prec] = (*timed(lambda q=sub_k, t=tr_k, st=st, prec=prec: pixel_candidates(q, t, k=a.k, stats=st, precision=prec)), st)
        with threadpool_limits(a.threads):
            (_, idx), t_sk = timed(lambda q=sub_k, t=tr_k: NearestNeighbors(n_neighbors=a.k, algorithm="brute")
                                   .fit(t.reshape(a.n_train, -1)).kneighbors(q.reshape(a.subset, -1)))
        print(f"stage 1 (exhaustive, L2 + NCC top-{a.k}), {kind} images, {a.subset} x {a.n_train}; sklearn "
              f"NearestNeighbors(brute, L2 top-{a.k}) {t_sk:.1f} s -> {t_sk * scale / 60:.1f} min at {a.n_gen}:")
        for prec, (r, t, st) in res.items():
            prep = st.get("train_prep_seconds", 0.0)  # once per audit, not per query
            full = prep + (t - prep) * scale
            agree = float(np.mean(r["l2_idx"] == idx))
            extra = (f"survivors {st['survivors'] / max(st['pairs'], 1):.1e} of pairs"
                     + (f", full-dimension chunks {st['full_dimension_chunks']}" if "full_dimension_chunks" in st else "")
                     if "survivors" in st else "")
            print(f"  ours {prec:4s} {t:7.1f} s -> {full / 60:5.1f} min   sklearn/ours {t_sk * scale / full:5.2f}   "
                  f"L2 neighbours = sklearn's {agree:.4f}   {extra}", flush=True)
    train, sub = sets[a.data]
    ours, t_stage1 = timed(lambda: pixel_candidates(sub, train, k=a.k, precision="auto"))  # as the audit runs it

    # the rest of the audit, stage by stage, on the same subset (the audit's defaults: k=5, SSIM, invariant)
    f = coarse_factor(s, s)
    times = {f"stage 1 (full res., {'int8' if int8_is_fast('cpu') else 'f32'}, auto)": t_stage1}
    cs, times["coarse search"] = timed(lambda: pixel_candidates(downsample(sub, f), downsample(train, f), k=5))
    cand = np.sort(np.concatenate([ours["l2_idx"], ours["ncc_idx"], cs["ncc_idx"]], 1), 1)
    _, times["shift/zoom scoring + SSIM"] = timed(lambda: refine_pairs(sub, train, cand))
    desc, t_desc_fit = timed(lambda: CopyDescriptor(train))
    (_, di), times["descriptor search"] = timed(lambda: desc.search(sub, k=2))
    mir, t_mir = timed(lambda: desc.mirrored_better(sub, di))
    times["descriptor search"] += t_mir
    inv_cand = np.concatenate([di, ours["ncc_idx"][:, :1]], 1)
    inv_mir = np.concatenate([mir, np.zeros((a.subset, 1), bool)], 1)
    _, times["transform-invariant scoring"] = timed(lambda: invariant_pairs(sub, train, inv_cand, inv_mir))
    per_image = sum(times.values()) / a.subset
    n_hold = a.n_holdout
    total = per_image * (a.n_gen + n_hold) + t_desc_fit
    print(f"whole audit on {a.data} images, stage by stage on {a.subset} generated images (s), extrapolated to {a.n_gen} generated + "
          f"{n_hold} held-out (min):")
    for name, t in times.items():
        print(f"  {name:32s} {t:7.1f} s   -> {t / a.subset * (a.n_gen + n_hold) / 60:6.2f} min")
    print(f"  {'copy descriptor fit (once)':32s} {t_desc_fit:7.1f} s")
    print(f"  total extrapolated: {total / 60:.1f} min (naming the transformations of flagged images comes on top: "
          f"~0.5 s each, at most 500)")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2:.2f} GiB "
          f"(training set {train.nbytes / 2**30:.2f} GiB float32; query chunks bounded by nn._auto_chunk)", flush=True)
    if a.full:
        gen = siat_like(a.n_gen, s, 3) if a.data == "siat" else rng.uniform(-1, 1, (a.n_gen, 1, s, s)).astype(np.float32)
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
