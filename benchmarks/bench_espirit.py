"""ESPIRiT coil maps (ours, ``recon.mri.coils.espirit_maps``) against sigpy.mri.app.EspiritCalib.

    .venv/bin/python benchmarks/bench_espirit.py [--threads 2] [--repeat 3]

Same calibration settings for both (the fully sampled part of the 24x24 centre, 6x6 kernels,
threshold 0.02, crop 0.95); sigpy's power iteration runs its default 100 iterations. Cases:

- the real undersampled 8-coil brain k-space of ``shared/data/bart_brain_8coil_kspace.npz`` (no
  ground truth: the two sets of maps are compared with each other);
- a fastMRI-brain-sized slice, 16 coils at 640x320 (readout oversampling 2): a real SIAT brain slice
  zero-padded to 640x320 times 16 known smooth coil sensitivities, so both are scored against the truth
  (phase relative to coil 0, as both implementations normalise it).

Printed: time per slice (best of ``--repeat``), ratio sigpy / ours, and the relative L2 difference
of the maps inside the head (|image| > 10 % of its maximum).
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from app.engine.recon.mri.coils import calibration_width, espirit_maps, simulated_coil_maps
from app.engine.recon.mri.fft import fft2c, ifft2c

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def _best(fn, repeat: int):
    best, out = np.inf, None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def _rel(a: np.ndarray, b: np.ndarray, inside: np.ndarray) -> float:
    return float(np.linalg.norm((a - b)[:, inside]) / np.linalg.norm(b[:, inside]))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    import sigpy.mri as mr

    def sigpy_maps(k):
        # the same calibration block as ours: the fully sampled part of the 24x24 centre (sigpy would
        # take the whole 24x24 block, unsampled zeros included)
        cw = calibration_width((np.abs(k) > 0).any(axis=0), 24)
        return mr.app.EspiritCalib(k, calib_width=cw, thresh=0.02, kernel_width=6, crop=0.95, show_pbar=False).run()

    cases = []
    with np.load(DATA / "bart_brain_8coil_kspace.npz") as z:
        cases.append(("bart 8-coil 180x230 (real, R~8)", z["kspace"].astype(np.complex64), None, None))
    with np.load(DATA / "siat_brain_t2_complex_dev.npz") as z:
        img = z["images"][125].astype(np.complex64)
    big = np.zeros((640, 320), np.complex64)
    big[192:448, 32:288] = img
    truth = simulated_coil_maps(640, 320, 16)
    cases.append(("16-coil 640x320 (SIAT slice, known maps)", fft2c(truth * big).astype(np.complex64), truth, big))

    print(f"{'case':44} {'ours s':>7} {'sigpy s':>8} {'ratio':>6} {'ours vs sigpy':>13} {'ours vs truth':>13} "
          f"{'sigpy vs truth':>14}")
    for name, k, true_maps, image in cases:
        t_ours, ours = _best(lambda: espirit_maps(k), args.repeat)
        t_sig, ref = _best(lambda: sigpy_maps(k), args.repeat)
        combined = np.sqrt((np.abs(ifft2c(k)) ** 2).sum(0)) if image is None else np.abs(image)
        inside = combined > 0.1 * combined.max()
        vs_truth = ["-", "-"]
        if true_maps is not None:
            want = true_maps * np.exp(-1j * np.angle(true_maps[0]))
            vs_truth = [f"{_rel(ours, want, inside):.4f}", f"{_rel(ref, want, inside):.4f}"]
        print(f"{name:44} {t_ours:7.2f} {t_sig:8.2f} {t_sig / t_ours:6.2f} {_rel(ours, ref, inside):13.4f} "
              f"{vs_truth[0]:>13} {vs_truth[1]:>14}")


if __name__ == "__main__":
    main()
