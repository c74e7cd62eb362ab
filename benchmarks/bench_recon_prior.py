"""Train a small complex-valued (2-channel) score prior on the SIAT training series, on the CPU.

    .venv/bin/python benchmarks/bench_recon_prior.py --minutes 15 --out /tmp/siat_prior.pt

Benchmark-only helper of bench_recon_siat.py (the product trains through the generative engine's
train job): random 64x64 crops of the full-resolution complex images of series 0-11, normalised by
``score.complex_training_images``, a small U-Net (fully convolutional, so it is applied to whole
256x256 slices at reconstruction time), the VP-SDE process (v prediction by default: with epsilon
prediction the x0 estimate at high noise multiplies the network's error by 1 / alpha, which is what
made the generative engine's few-step samplers noisy), Adam with a warm-up and a cosine decay of the
learning rate over the time budget (a short CPU budget gains more from a high then falling rate than
from a constant one), EMA. Augmentation: left-right flips and a random global phase e^{i phi} (the
global phase of an MR image is arbitrary, so the prior should not learn one). Prints the loss curve
and how long it trained. ``--resume`` continues a saved prior (its raw and EMA weights, its step
count and CPU seconds) with a fresh warm-up and cosine cycle: a warm restart, since Adam's moments
are not saved.
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import numpy as np
import torch

from app.engine.diffusion.base import make_process
from app.engine.nets.unet import NetConfig, UNet
from app.engine.recon.mri.score import complex_training_images

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "siat_brain_t2_complex_dev.npz"
NET = dict(image_size=64, in_channels=2, base_channels=32, channel_mults=(1, 2, 2), num_res_blocks=1,
           attention_resolutions=())
PROCESS = "vpsde"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=15.0)
    ap.add_argument("--out", type=Path, default=Path("/tmp/siat_prior.pt"))
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--crop", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--prediction-type", default="v", choices=["epsilon", "v"])
    ap.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (cosine decay to 5 %% of it)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--resume", type=Path, help="a prior saved by this script to continue training")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with np.load(DATA) as z:
        images, series = z["images"], z["series"]
    train = complex_training_images(images[series <= 11])  # (120, 2, 256, 256)
    net = UNet(NetConfig(**NET))
    ema = copy.deepcopy(net).eval()
    step0, seconds0 = 0, 0.0
    if args.resume is not None:
        ck = torch.load(args.resume, map_location="cpu")
        kind = ck.get("prediction_type", "epsilon")  # priors saved before v prediction was an option: epsilon
        if ck["net"] != NET or ck["process"] != PROCESS or kind != args.prediction_type:
            raise SystemExit(f"{args.resume}: saved with another network, process or prediction type ({kind}); "
                             f"cannot resume with --prediction-type {args.prediction_type}")
        if "raw_state" not in ck:
            raise SystemExit(f"{args.resume}: has only EMA weights (saved before raw weights were kept); cannot resume")
        net.load_state_dict(ck["raw_state"])
        ema.load_state_dict(ck["state"])
        step0, seconds0 = int(ck["steps"]), float(ck["seconds"])
        print(f"resuming {args.resume}: {step0} steps, {seconds0:.0f} s, loss {ck['loss']:.4f}")
    seed = args.seed + step0  # a continued run draws other crops, noise and phases than the first one
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    proc = make_process(PROCESS, prediction_type=args.prediction_type)
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    budget = args.minutes * 60

    def save(final: bool = False) -> None:
        torch.save({"net": NET, "process": PROCESS, "prediction_type": args.prediction_type,
                    "state": ema.state_dict(), "raw_state": net.state_dict(), "steps": step0 + step,
                    "seconds": seconds0 + time.time() - t0, "loss": float(np.mean(losses[-100:])),
                    "final": final}, args.out)

    t0 = time.time()
    step = 0
    losses = []
    n, _, h, w = train.shape
    c = args.crop
    while (elapsed := time.time() - t0) < budget:
        frac = elapsed / budget
        lr = args.lr * min(1.0, (step + 1) / 100) * (0.05 + 0.95 * 0.5 * (1 + np.cos(np.pi * frac)))
        for group in opt.param_groups:
            group["lr"] = lr
        idx = rng.integers(0, n, args.batch)
        ys = rng.integers(0, h - c + 1, args.batch)
        xs = rng.integers(0, w - c + 1, args.batch)
        batch = np.stack([train[i, :, y : y + c, x : x + c] for i, y, x in zip(idx, ys, xs)])
        flip = rng.random(args.batch) < 0.5
        batch[flip] = batch[flip, :, :, ::-1]
        phi = rng.uniform(0, 2 * np.pi, args.batch).astype(np.float32)
        co, si = np.cos(phi)[:, None, None], np.sin(phi)[:, None, None]
        re, im = batch[:, 0].copy(), batch[:, 1].copy()
        batch[:, 0], batch[:, 1] = co * re - si * im, si * re + co * im
        loss = proc.loss(net, torch.as_tensor(batch.copy()), generator=g).loss
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            d = min(0.998, (1 + step0 + step) / (10 + step0 + step))
            for pe, p in zip(ema.parameters(), net.parameters()):
                pe.mul_(d).add_(p.detach(), alpha=1 - d)
        losses.append(float(loss.detach()))
        step += 1
        if step % 100 == 0:
            print(f"step {step0 + step:6d}  {time.time() - t0:7.0f} s  lr {lr:.2e}  "
                  f"loss(100) {np.mean(losses[-100:]):.4f}", flush=True)
            save()
    save(final=True)
    print(f"trained {step} steps in {time.time() - t0:.0f} s; final loss {np.mean(losses[-100:]):.4f}; saved {args.out}")


if __name__ == "__main__":
    main()
