"""Sampling precision on a trained model: float32 against bfloat16 autocast, quality and speed in one run.

The model, labels, seeds, classifier and domain-FID of ``bench_sampler_nfe.py`` (the ``ddpm-28-cond-cpu``
preset on PneumoniaMNIST; an existing run with ``--run``): 50 images per class, seed 1 (image i starts
from the same prior draw, and ancestral's fresh noise is the same, under both precisions). Each sampler
runs in float32 (``precision="fp32"``) and in bfloat16 autocast (``"bf16"``, channels-last as in float32),
one after the other, so machine contention falls on both alike. Per sampler:

- class agreement (the classifier trained on the real training images assigns the conditioned class)
  and domain-FID against the real training images, for both precisions;
- the per-image RMS difference float32 vs bfloat16 ([-1, 1] scale, median and 90th percentile) beside the
  natural sample-to-sample scale: the RMS difference of two float32 images of the same class from
  different prior draws (images 2j and 2j + 1: image i's noise depends on (seed, i) only, so these are
  two different seeds' samples);
- images per second of each precision.

The rule, fixed before the run: bfloat16 keeps a sampler's samples within tolerance when its class
agreement is within one binomial standard error of float32's (sqrt(p (1 - p) / n)) AND its domain-FID
within one bootstrap standard deviation of float32's FID (200 resamples of the float32 images, the
real side fixed): the same bars ``bench_sampler_nfe.py`` uses for "reaching the reference", i.e. the
float32 figure's own sampling noise at n images.

    RADSYNTH_THREADS=1 .venv/bin/python benchmarks/bench_sampling_precision.py --workspace /tmp/nfe-ws --run RUN

The classifier is the one ``bench_sampler_nfe.py`` kept in WORKSPACE/bench_sampler_nfe/RUN (trained here
when absent, same settings). Images are not cached: the point is timing both precisions in one run.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_sample_quality as BSQ  # the dataset and the preset
from bench_sampler_nfe import fid_bootstrap_sd

#: (label, sampler, steps, options): the samplers users use, at their usual step counts
SAMPLERS = [
    ("dpmpp2m 10", "dpmpp2m", 10, {}),
    ("unipc 10", "unipc", 10, {}),
    ("ddim 50", "ddim", 50, {}),
    ("ancestral 100", "ancestral", 100, {}),
]


def rms(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-image RMS difference of two (N, C, H, W) stacks."""
    return np.sqrt(((a.astype(np.float64) - b) ** 2).reshape(len(a), -1).mean(1))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workspace", type=Path, required=True, help="workspace holding the dataset and the run")
    p.add_argument("--run", required=True, help="a trained run of the workspace (ddpm-28-cond-cpu preset)")
    p.add_argument("--per-class", type=int, default=50)
    p.add_argument("--bootstrap", type=int, default=200)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--only", default="", help="comma-separated substrings of the sampler labels to run")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    p.add_argument("--save", type=Path, default=None, help="also keep every cell's images here (.npz)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    from app.engine.data.cache import ImageDataset
    from app.engine.devices import bf16_native
    from app.engine.evaluation.utility import predict_proba, resnet18_small, train_classifier
    from app.engine.metrics.distribution import frechet_distance, gaussian_stats
    from app.engine.metrics.features import get_extractor
    from app.engine.sampling.api import generate_with_info
    from app.engine.store import Workspace
    from app.engine.training.checkpoints import load_checkpoint

    ws = Workspace.open(args.workspace)
    ds = ImageDataset.from_workspace(ws, BSQ.DATASET)
    model = load_checkpoint(args.run, ws)
    print(f"model: run {args.run} ({BSQ.PRESET}, {model.process}); bfloat16 native on this CPU: "
          f"{bf16_native(torch.device('cpu'))}; threads {torch.get_num_threads()}", flush=True)
    k = args.per_class
    labels = [0] * k + [1] * k
    y = np.array(labels)

    xtr, ytr = ds.images("train"), ds.labels("train")
    clf_file = args.workspace / "bench_sampler_nfe" / args.run / "classifier.pt"
    if clf_file.exists():
        clf = resnet18_small(2)
        clf.load_state_dict(torch.load(clf_file))
        clf.eval()
    else:
        clf = train_classifier(xtr, ytr, seed=0)
        clf_file.parent.mkdir(parents=True, exist_ok=True)
        torch.save(clf.state_dict(), clf_file)
    ext = get_extractor("domain", model=clf)
    ref_stats = gaussian_stats(ext(xtr))

    def score(imgs: np.ndarray) -> tuple[float, float, np.ndarray]:
        f = ext(imgs)
        return float((predict_proba(clf, imgs).argmax(1) == y).mean()), frechet_distance(*gaussian_stats(f), *ref_stats), f

    samplers = SAMPLERS
    if args.only:
        keys = [s.strip() for s in args.only.split(",") if s.strip()]
        samplers = [s for s in samplers if any(key in s[0] for key in keys)]
    rows = {}
    for lbl, name, steps, opts in samplers:
        out = {}
        for precision in ("fp32", "bf16"):
            imgs, info = generate_with_info(model, len(labels), name, steps=steps, seed=1, class_labels=labels,
                                            batch_size=len(labels), precision=precision, **opts)
            out[precision] = (imgs, info)
            if args.save:
                args.save.mkdir(parents=True, exist_ok=True)
                np.savez(args.save / f"{lbl.replace(' ', '_')}_{precision}.npz", images=imgs)
            print(f"  {lbl} {precision}: {info.seconds:.0f} s, {info.images_per_second:.2f} images/s ({info.dtype})",
                  flush=True)
        a32, f32, feats32 = score(out["fp32"][0])
        a16, f16, _ = score(out["bf16"][0])
        se = float(np.sqrt(a32 * (1 - a32) / len(labels)))
        fid_sd = fid_bootstrap_sd(feats32, ref_stats, args.bootstrap, seed=0)
        d_prec = rms(out["fp32"][0], out["bf16"][0])
        x32 = out["fp32"][0]
        d_seed = rms(x32[0::2], x32[1::2])  # pairs 2j, 2j + 1: same class (k even), different prior draws
        rows[lbl] = {
            "agreement_fp32": a32, "agreement_bf16": a16, "agreement_se": se,
            "fid_fp32": f32, "fid_bf16": f16, "fid_bootstrap_sd": fid_sd,
            "rms_fp32_bf16_median": float(np.median(d_prec)), "rms_fp32_bf16_p90": float(np.quantile(d_prec, 0.9)),
            "rms_seed_median": float(np.median(d_seed)), "rms_seed_p10": float(np.quantile(d_seed, 0.1)),
            "ips_fp32": out["fp32"][1].images_per_second, "ips_bf16": out["bf16"][1].images_per_second,
            "within": bool(abs(a16 - a32) <= se and abs(f16 - f32) <= fid_sd),
        }

    print(f"\nmodel {args.run}; {len(labels)} images per cell ({k} per class, seed 1: the same prior draws and noise)")
    print("rule: bf16 within tolerance when |agreement - fp32's| <= 1 binomial SE AND |FID - fp32's| <= 1 bootstrap SD")
    print(f"{'sampler':14s} {'agreement fp32/bf16 (SE)':>26s} {'domain-FID fp32/bf16 (SD)':>27s} "
          f"{'RMS fp32-bf16 med/p90':>22s} {'RMS seed-seed med/p10':>22s} {'images/s fp32/bf16':>19s} "
          f"{'speed-up':>8s} {'within':>6s}")
    for lbl, r in rows.items():
        print(f"{lbl:14s} {r['agreement_fp32']:>10.3f}/{r['agreement_bf16']:.3f} ({r['agreement_se']:.3f}) "
              f"{r['fid_fp32']:>12.2f}/{r['fid_bf16']:6.2f} ({r['fid_bootstrap_sd']:.2f}) "
              f"{r['rms_fp32_bf16_median']:>14.4f}/{r['rms_fp32_bf16_p90']:.4f} "
              f"{r['rms_seed_median']:>15.4f}/{r['rms_seed_p10']:.4f} "
              f"{r['ips_fp32']:>11.2f}/{r['ips_bf16']:.2f} {r['ips_bf16'] / r['ips_fp32']:>7.2f}x "
              f"{'yes' if r['within'] else 'NO':>6s}")
    if args.json:
        args.json.write_text(json.dumps({"run": args.run, "n": len(labels), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
