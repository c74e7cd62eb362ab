"""CS-TV (ours, torch primal-dual) against sigpy.mri.app.TotalVariationRecon: time and SSIM, in one run.

    .venv/bin/python benchmarks/bench_cs_vs_sigpy.py [--slices 120 125 130] [--lam 0.005] [--iterations 100]

Same data (SIAT validation slices, 2D Poisson-disc mask R = 4), same objective
1/2||Ax - y||^2 + lam ||Dx||_1 with anisotropic TV (sigpy's form), same lambda and iterations.
Data are scaled to a zero-filled maximum of 1 for both (our tv_recon does this internally).

Two of our runs per slice:
- "sigpy's steps": ``tv_recon(..., sigma=1)``, sigpy's step rule (dual step 1, primal step 1 / ||K||^2), so both
  run the same iterations of the same algorithm and reach the same SSIM (the column dSSIM): the time ratio is
  the cost of an iteration, at equal SSIM;
- "our steps": the default (tau = sigma = 0.99 / ||K||), which moves further towards the minimiser in as many
  iterations; its SSIM differs from sigpy's at 100 iterations because the two are at other points of the path
  (at 1,000 iterations both reach the minimiser and the same SSIM).
Each time is the best of ``--repeat`` runs, after one untimed warm-up of each (sigpy compiles with numba at
its first call); torch and numpy run on one thread. Wall seconds and, on the last line, the CPU seconds of the
process (on a shared machine the wall clock also counts the time spent waiting for a core).
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from app.engine.metrics.image import psnr, ssim
from app.engine.recon.mri.cs import tv_recon
from app.engine.recon.mri.masks import make_mask
from app.engine.recon.mri.operators import MaskedFFT

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "siat_brain_t2_complex_dev.npz"


def best_time(fn, repeat: int):
    """(result, best wall seconds, best CPU seconds of this process) over ``repeat`` runs."""
    out, wall, cpu = None, float("inf"), float("inf")
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        out = fn()
        wall, cpu = min(wall, time.perf_counter() - t), min(cpu, time.process_time() - c)
    return out, wall, cpu


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--slices", type=int, nargs="+", default=[120, 125, 130])
    ap.add_argument("--lam", type=float, default=0.005)
    ap.add_argument("--iterations", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    warnings.filterwarnings("ignore")
    import sigpy.mri as mr

    with np.load(DATA) as z:
        images = z["images"][args.slices]
    print(f"{'slice':>5} | {'ours s':>7} {'sigpy s':>7} {'ratio':>6} {'ours SSIM':>9} {'sigpy SSIM':>10} {'dSSIM':>7} "
          f"{'ours PSNR':>9} {'sigpy PSNR':>10} | our steps: {'s':>5} {'ratio':>6} {'SSIM':>6}")
    tot = {"same": 0.0, "sigpy": 0.0, "ours": 0.0}
    cpu_tot = dict(tot)
    warmed = False
    for s, img in zip(args.slices, images):
        mask, _ = make_mask("poisson2d", img.shape, 4, 0.08, seed=s)
        A = MaskedFFT(mask)
        y = A.forward(img)
        scale = float(np.abs(A.adjoint(y)).max())
        ksp = (y / scale)[None]  # sigpy: (coils, H, W) with unit maps; its FFT is centred orthonormal too

        def sigpy_run(iterations=args.iterations, ksp=ksp, mask=mask, scale=scale):
            return mr.app.TotalVariationRecon(ksp, np.ones_like(ksp), args.lam, weights=mask, max_iter=iterations,
                                              show_pbar=False).run() * scale

        def ours_run(sigma=None, iterations=args.iterations, A=A, y=y):
            return tv_recon(A, y, lam=args.lam, iterations=iterations, tv="anisotropic", sigma=sigma)

        if not warmed:
            sigpy_run(3), ours_run(1.0, 3)
            warmed = True
        same, t_same, c_same = best_time(lambda: ours_run(1.0), args.repeat)
        ref, t_sig, c_sig = best_time(sigpy_run, args.repeat)
        ours, t_ours, c_ours = best_time(ours_run, args.repeat)
        gt = np.abs(img)
        for key, wall, cpu in (("same", t_same, c_same), ("sigpy", t_sig, c_sig), ("ours", t_ours, c_ours)):
            tot[key] += wall
            cpu_tot[key] += cpu
        s_same, s_ref = ssim(gt, np.abs(same)), ssim(gt, np.abs(ref))
        print(f"{s:5d} | {t_same:7.2f} {t_sig:7.2f} {t_sig / t_same:6.2f} {s_same:9.4f} {s_ref:10.4f} "
              f"{s_same - s_ref:+7.4f} {psnr(gt, np.abs(same)):9.2f} {psnr(gt, np.abs(ref)):10.2f} | "
              f"{'':11}{t_ours:5.2f} {t_sig / t_ours:6.2f} {ssim(gt, np.abs(ours)):6.4f}")
    print(f"total: sigpy {tot['sigpy']:.2f} s; ours with sigpy's steps (equal SSIM) {tot['same']:.2f} s, "
          f"sigpy/ours time ratio {tot['sigpy'] / tot['same']:.2f}; ours with our steps {tot['ours']:.2f} s, "
          f"ratio {tot['sigpy'] / tot['ours']:.2f} (lam {args.lam}, {args.iterations} iterations, best of "
          f"{args.repeat}, torch threads {args.threads}, CPU)")
    print(f"CPU seconds of the process (what a shared machine's waiting does not count): sigpy {cpu_tot['sigpy']:.2f}, "
          f"ours with sigpy's steps {cpu_tot['same']:.2f} (ratio {cpu_tot['sigpy'] / cpu_tot['same']:.2f}), ours with "
          f"our steps {cpu_tot['ours']:.2f} (ratio {cpu_tot['sigpy'] / cpu_tot['ours']:.2f})")


if __name__ == "__main__":
    main()
