"""CS-TV (ours, torch primal-dual) against sigpy.mri.app.TotalVariationRecon: time and SSIM.

    .venv/bin/python benchmarks/bench_cs_vs_sigpy.py [--slices 120 125 130] [--lam 0.005] [--iterations 100]

Same data (SIAT validation slices, 2D Poisson-disc mask R = 4), same objective
1/2||Ax - y||^2 + lam ||Dx||_1 with anisotropic TV (sigpy's form), same lambda and iterations.
Data are scaled to a zero-filled maximum of 1 for both (our tv_recon does this internally).
"""

from __future__ import annotations

import argparse
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--slices", type=int, nargs="+", default=[120, 125, 130])
    ap.add_argument("--lam", type=float, default=0.005)
    ap.add_argument("--iterations", type=int, default=100)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    import sigpy.mri as mr

    with np.load(DATA) as z:
        images = z["images"][args.slices]
    print(f"{'slice':>5} {'ours s':>8} {'sigpy s':>8} {'ratio':>6} {'ours SSIM':>9} {'sigpy SSIM':>10} {'ours PSNR':>9} {'sigpy PSNR':>10}")
    tot = [0.0, 0.0]
    for s, img in zip(args.slices, images):
        mask, _ = make_mask("poisson2d", img.shape, 4, 0.08, seed=s)
        A = MaskedFFT(mask)
        y = A.forward(img)
        scale = float(np.abs(A.adjoint(y)).max())
        t = time.perf_counter()
        ours = tv_recon(A, y, lam=args.lam, iterations=args.iterations, tv="anisotropic")
        t_ours = time.perf_counter() - t
        ksp = (y / scale)[None]  # sigpy: (coils, H, W) with unit maps; its FFT is centred orthonormal too
        t = time.perf_counter()
        ref = mr.app.TotalVariationRecon(ksp, np.ones_like(ksp), args.lam, weights=mask, max_iter=args.iterations,
                                         show_pbar=False).run() * scale
        t_sig = time.perf_counter() - t
        gt = np.abs(img)
        tot[0] += t_ours
        tot[1] += t_sig
        print(f"{s:5d} {t_ours:8.2f} {t_sig:8.2f} {t_sig / t_ours:6.2f} {ssim(gt, np.abs(ours)):9.4f} "
              f"{ssim(gt, np.abs(ref)):10.4f} {psnr(gt, np.abs(ours)):9.2f} {psnr(gt, np.abs(ref)):10.2f}")
    print(f"total: ours {tot[0]:.2f} s, sigpy {tot[1]:.2f} s, sigpy/ours time ratio {tot[1] / tot[0]:.2f} "
          f"(lam {args.lam}, {args.iterations} iterations, torch threads {args.threads}, CPU)")


if __name__ == "__main__":
    main()
