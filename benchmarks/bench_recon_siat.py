"""SIAT validation benchmark: zero-filled vs CS-TV vs score-based posterior sampling, R = 4 and 8.

    .venv/bin/python benchmarks/bench_recon_siat.py [--slices 120 123 ...] [--prior /tmp/siat_prior.pt]
        [--score-slices 2] [--score-methods score-dds score-dds-warm score-pc score-ald] [--steps 20] [--dds-steps 30]
        [--warm-start 0.1] [--warm-steps 5 10]
        [--samples 4] [--sample-curve 1 2 4 8] [--accelerations 4 8] [--threads 2] [--run RUN --workspace WS]
        [--coils 8] [--device cuda]

Masks: random 1D (centre 0.08) and 2D Poisson-disc, seed = slice index. Metrics (fastMRI): NMSE,
PSNR, SSIM on magnitudes, data range = the max of the slice's volume (its whole series, 10 slices);
also the SSIM map's mean inside the head (``head_ssim``). The score-based prior comes
from bench_recon_prior.py (a small 2-channel U-Net trained on series 0-11); without it the score
rows are skipped; the score methods run on the first ``--score-slices`` slices only, and every
method is also scored on that subset (the "subset" table) so the rows compare like with like. Also
prints each score method's seconds per slice and the Pearson correlation between its per-pixel std
and absolute error. Targets at R = 4: SSIM > 0.92, PSNR > 33, NMSE < 0.02. ``--sample-curve K ...``
adds rows "METHOD/K" for the mean of the first K of the ``--samples`` samples (what averaging buys).

The "noise floor" row (single-coil) is the reference with its thermal noise redrawn in the k-space the
mask leaves out: the error a perfect prior would still make there, since that noise is not measured
(sigma from the signal-free corners of k-space). It shows how far the targets are from the data's limit.

``--coils N`` simulates N-coil data instead of single-coil: each slice times N known smooth coil
sensitivities (``coils.simulated_coil_maps``), undersampled, then reconstructed the way ``radsynth
recon`` does multi-coil data: SENSE with ESPIRiT maps estimated from the undersampled k-space.

``--run RUN --workspace WS`` takes the prior from a training run of the product instead, the way the
Reconstruction panel and ``radsynth recon --run`` load it. Series 0-11 for training, 12-14 for
validation, 80 minutes on 2 CPU cores (800 epochs):

    python -c "import numpy as np; z = np.load('../shared/data/siat_brain_t2_complex_dev.npz'); \
        np.savez('/tmp/siat_split.npz', train_images=z['images'][:120], val_images=z['images'][120:])"
    radsynth ingest /tmp/siat_split.npz --complex --size 256 --name siat-complex --workspace WS
    radsynth train --dataset siat-complex --preset mri-prior-complex --workspace WS
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from app.engine.metrics.image import aggregate, slice_metrics
from app.engine.recon.mri.masks import make_mask
from app.engine.recon.mri.methods import reconstruct
from app.engine.recon.mri.coils import espirit_maps, simulated_coil_maps
from app.engine.recon.mri.fft import fft2c, ifft2c
from app.engine.recon.mri.operators import MaskedFFT, SenseOp

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "siat_brain_t2_complex_dev.npz"


def head_ssim(gt: np.ndarray, pred: np.ndarray, data_range: float | None = None) -> list[float]:
    """Per slice: the mean of the SSIM map (fastMRI settings, volume data range) inside the head,
    |reference| > 10 % of the volume's maximum. The fastMRI SSIM also scores the background, where
    the reference's noise at unsampled frequencies cannot be recovered by any method."""
    from skimage.metrics import structural_similarity

    dr = float(gt.max()) if data_range is None else data_range
    out = []
    for g, p in zip(gt, pred):
        _, smap = structural_similarity(g.astype(np.float64), p.astype(np.float64), data_range=dr, full=True)
        out.append(float(smap[g > 0.1 * dr].mean()))
    return out


def noise_floor(img: np.ndarray, mask: np.ndarray, seed: int, corner: int = 8) -> np.ndarray:
    """What a perfect prior would still get wrong: the reference's thermal noise in the k-space the mask
    leaves out cannot be predicted from anything measured. Returns the reference with that noise
    redrawn (same statistics, so the same expected metrics as the true noise's error). The noise sigma
    comes from the outer ``corner`` x ``corner`` corners of k-space, where there is no signal."""
    k = fft2c(img)
    c = corner
    corners = np.concatenate([k[:c, :c].ravel(), k[:c, -c:].ravel(), k[-c:, :c].ravel(), k[-c:, -c:].ravel()])
    sigma = np.sqrt(np.mean(np.abs(corners) ** 2) / 2)
    rng = np.random.default_rng(seed)
    noise = sigma * (rng.standard_normal(k.shape) + 1j * rng.standard_normal(k.shape))
    return np.abs(ifft2c(k + (1 - mask) * noise))


def load_prior(path: Path, raw: bool = False):
    from app.engine.diffusion.base import make_process
    from app.engine.nets.unet import NetConfig, UNet
    from app.engine.recon.mri.score import ScorePrior

    ck = torch.load(path, map_location="cpu")
    if raw and "raw_state" in ck:
        ck["state"] = ck["raw_state"]
    net = UNet(NetConfig(**ck["net"]))
    own = net.state_dict()
    # the U-Net's attention moved from 1x1 convs to linear layers after the prior was saved: same weights
    state = {k: (v.reshape(own[k].shape) if k in own and v.numel() == own[k].numel() else v) for k, v in ck["state"].items()}
    net.load_state_dict(state)
    kind = ck.get("prediction_type", "epsilon")  # priors saved before v prediction was an option: epsilon
    print(f"prior: {path} ({ck['steps']} steps, {ck['seconds']:.0f} s of CPU training, {kind} prediction, "
          f"final loss {ck['loss']:.4f}{', raw weights' if raw else ', EMA weights'})")
    return ScorePrior(net.eval(), make_process(ck["process"], prediction_type=kind))


def run_prior(run: str, workspace: Path | None, raw: bool = False, device: str = "cpu"):
    """The prior of a product training run, loaded as the reconstruction job loads it."""
    from app.engine.recon.mri.score import load_prior as load_run_prior
    from app.engine.store import Workspace

    ws = Workspace.open(workspace) if workspace else None
    prior = load_run_prior(run, workspace=ws, device=device, ema=not raw)
    meta = next((r.meta for r in ws.runs() if r.id == run), {}) if ws is not None else {}
    print(f"prior: run {run} ({meta.get('step', '?')} steps, last loss {meta.get('loss')}, unit {prior.unit:g} x p99, "
          f"{'raw weights' if raw else 'EMA weights'})")
    return prior


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--slices", type=int, nargs="+", default=list(range(120, 150, 3)))
    ap.add_argument("--prior", type=Path, default=Path("/tmp/siat_prior.pt"))
    ap.add_argument("--score-slices", type=int, default=2, help="how many of the slices get the score method")
    ap.add_argument("--score-methods", nargs="+", default=["score-dds", "score-pc"],
                    choices=["score-dds", "score-dds-warm", "score-pc", "score-ald"],
                    help="score-dds-warm: score-dds started from the CS-TV image at --warm-start (--warm-steps steps)")
    ap.add_argument("--warm-start", type=float, default=0.1, help="level sigma / alpha of score-dds-warm's start")
    ap.add_argument("--warm-steps", type=int, nargs="+", default=[5],
                    help="network evaluations per sample of score-dds-warm; several values: one row each "
                         "(score-dds-warm:N), side by side in one run")
    ap.add_argument("--raw", action="store_true", help="the prior's raw weights instead of its EMA")
    ap.add_argument("--run", help="a training run (id or checkpoint folder) of the workspace as the prior")
    ap.add_argument("--workspace", type=Path, help="the workspace of --run")
    ap.add_argument("--masks", nargs="+", default=["random", "poisson2d"])
    ap.add_argument("--accelerations", type=int, nargs="+", default=[4, 8])
    ap.add_argument("--lam", type=float, default=0.005, help="CS-TV lambda")
    ap.add_argument("--steps", type=int, default=20, help="noise levels of score-pc / score-ald")
    ap.add_argument("--dds-steps", type=int, default=30, help="network evaluations per sample of score-dds")
    ap.add_argument("--samples", type=int, default=4, help="posterior samples; their mean is the reconstruction")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu", help="where the --run prior samples: cpu, cuda, cuda:N, mps or auto")
    ap.add_argument("--coils", type=int, default=1, help="simulate this many receive coils (1: single-coil)")
    ap.add_argument("--per-slice", action="store_true",
                    help="print each slice's metrics as it is done (data range: the max of the slice's volume)")
    ap.add_argument("--sample-curve", type=int, nargs="+", default=[],
                    help="also score the mean of the first K of the --samples posterior samples, for each K given "
                         "(how much averaging more samples buys)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with np.load(DATA) as z:
        images, series = z["images"][args.slices], z["series"][args.slices]
        all_series = z["series"]
        volume_max = {int(v): float(np.abs(z["images"][all_series == v]).max()) for v in np.unique(series)}
    assert (series >= 12).all(), "validation slices are series 12-14 (120-149)"
    gt = np.abs(images)
    ranges = np.array([volume_max[int(v)] for v in series])  # fastMRI: each slice scored with its volume's max

    def metrics(n: int, preds: list) -> tuple[list[dict], list[float]]:
        rows = [slice_metrics(gt[j], preds[j], data_range=ranges[j])[0] for j in range(n)]
        return rows, [head_ssim(gt[j:j + 1], preds[j][None], ranges[j])[0] for j in range(n)]
    if args.run:
        prior = run_prior(args.run, args.workspace, args.raw, args.device)
    else:
        prior = load_prior(args.prior, args.raw) if args.prior.exists() else None
    rows, sub_rows = [], []
    # one row per (method, steps): score-dds-warm once for each --warm-steps value
    labels, method_of, steps_of = [], {}, {}
    for m in args.score_methods:
        for k in (args.warm_steps if m == "score-dds-warm" else [{"score-dds": args.dds_steps}.get(m, args.steps)]):
            label = f"{m}:{k}" if m == "score-dds-warm" and len(args.warm_steps) > 1 else m
            labels.append(label)
            method_of[label], steps_of[label] = m, k
    corr: dict[str, list] = {m: [] for m in labels}
    score_secs: dict[str, list] = {m: [] for m in labels}
    score_cpu: dict[str, list] = {m: [] for m in labels}
    n_sub = min(args.score_slices, len(args.slices)) if prior is not None else 0
    curve = [k for k in args.sample_curve if k < args.samples]
    for mask_kind in args.masks:
        for R in args.accelerations:
            recs: dict[str, list] = {"noise floor": [], "zero-filled": [], "cs-tv": [],
                                     **{m: [] for m in labels},
                                     **{f"{m}/{k}": [] for m in labels for k in curve}}
            achieved = []
            for i, (s, img) in enumerate(zip(args.slices, images)):
                mask, acc = make_mask(mask_kind, img.shape, R, 0.08, seed=s)
                achieved.append(float(acc))
                if args.coils > 1:  # multi-coil: SENSE with ESPIRiT maps of the undersampled data
                    y = mask * fft2c(simulated_coil_maps(*img.shape, args.coils) * img)
                    A = SenseOp(espirit_maps(y), mask)
                else:
                    A = MaskedFFT(mask)
                    y = A.forward(img)
                if args.coils == 1:
                    recs["noise floor"].append(noise_floor(img, mask, seed=s))
                recs["zero-filled"].append(np.abs(reconstruct("zero-filled", A, y).image))
                recs["cs-tv"].append(np.abs(reconstruct("cs-tv", A, y, lam=args.lam, iterations=100).image))
                if i < n_sub:
                    for m in labels:
                        t, c = time.perf_counter(), time.process_time()
                        warm = {"warm_start": args.warm_start, "lam": args.lam} if method_of[m] == "score-dds-warm" \
                            else {}
                        r = reconstruct(method_of[m].removesuffix("-warm"), A, y, model=prior, samples=args.samples,
                                        steps=steps_of[m], seed=s, **warm)
                        score_secs[m].append(time.perf_counter() - t)
                        score_cpu[m].append(time.process_time() - c)
                        recs[m].append(np.abs(r.image))
                        for k in curve:  # "METHOD/K": the mean of its first K samples
                            recs[f"{m}/{k}"].append(np.abs(r.samples[:k].mean(0)))
                        err = np.abs(np.abs(r.image) - gt[i])
                        corr[m].append(float(np.corrcoef(r.std.ravel(), err.ravel())[0, 1]))
                        print(f"  {mask_kind} R={R} slice {s} {m}: {score_secs[m][-1]:.0f} s, corr(std, |err|) "
                              f"{corr[m][-1]:.3f}", flush=True)
                if args.per_slice:
                    for method, lst in recs.items():
                        if len(lst) == i + 1:
                            r = slice_metrics(gt[i], lst[-1], data_range=ranges[i])[0]
                            print(f"  {mask_kind} R={R} slice {s} {method:>17}: NMSE {r['nmse']:.4f} PSNR {r['psnr']:.2f} "
                                  f"SSIM {r['ssim']:.4f} head SSIM {head_ssim(gt[i:i + 1], lst[-1][None], ranges[i])[0]:.4f}",
                                  flush=True)
            print(f"{mask_kind} R={R}: achieved acceleration {np.mean(achieved):.2f}", flush=True)
            for method, lst in recs.items():
                if not lst:
                    continue
                n = len(lst)
                per, head = metrics(n, lst)
                rows.append((mask_kind, R, method, n, aggregate(per), head))
                if n_sub and n >= n_sub:
                    sub_rows.append((mask_kind, R, method, n_sub, aggregate(per[:n_sub]), head[:n_sub]))
    if args.coils > 1:
        print(f"\n{args.coils} simulated coils, SENSE with ESPIRiT maps")
    for title, table in (("all slices", rows), (f"subset: the first {n_sub} slice(s), where the score methods ran", sub_rows)):
        if not table:
            continue
        print(f"\n{title}")
        print(f"{'mask':>10} {'R':>2} {'method':>17} {'n':>3} {'NMSE':>16} {'PSNR dB':>14} {'SSIM':>16} "
              f"{'SSIM in head':>16}")
        for mask_kind, R, method, n, a, head in table:
            print(f"{mask_kind:>10} {R:2d} {method:>17} {n:3d} {a['nmse']['mean']:8.4f}±{a['nmse']['std']:.4f} "
                  f"{a['psnr']['mean']:7.2f}±{a['psnr']['std']:.2f} {a['ssim']['mean']:8.4f}±{a['ssim']['std']:.4f} "
                  f"{np.mean(head):8.4f}±{np.std(head):.4f}")
    for m in labels:
        if score_secs[m]:
            where = "CPU" if prior.device.type == "cpu" else str(prior.device)
            print(f"{m}: {np.mean(score_secs[m]):.1f} s per slice (median {np.median(score_secs[m]):.1f} s; the first "
                  f"includes warm-up; {np.mean(score_cpu[m]):.1f} CPU seconds of the process) on {where} "
                  f"({args.samples} samples, {steps_of[m]} steps = {args.samples * steps_of[m]} network evaluations, "
                  f"{torch.get_num_threads()} CPU thread(s)); corr(std, |error|) = {np.mean(corr[m]):.3f} ± "
                  f"{np.std(corr[m]):.3f} over {len(corr[m])} reconstructions")

if __name__ == "__main__":
    main()
