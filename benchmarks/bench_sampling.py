"""Sampling speed: our U-Net + DDIM (app.engine.sampling) against HF diffusers' UNet2DModel + DDIMScheduler.

Same width (base 64 channels, multipliers 1-2-4-4, 2 residual blocks per level, attention at 16x16
and in the middle, 4 heads, GroupNorm 32), same resolution, same batch and steps; both networks
randomly initialised (speed does not depend on the weights). Prints image-steps per second side
by side and the ratio ours / diffusers. Runs are interleaved and the best of ``--repeats`` is kept,
which makes the comparison fair on a shared machine.

    .venv/bin/python benchmarks/bench_sampling.py --sizes 64 128 --batch 4 --steps 10 --repeats 3
"""

from __future__ import annotations

import argparse
import time

import torch


def our_pipeline(size: int, device: torch.device):
    from app.engine.diffusion.base import make_process
    from app.engine.nets.unet import UNet

    net = UNet(image_size=size, in_channels=1, base_channels=64, channel_mults=(1, 2, 4, 4), num_res_blocks=2,
               attention_resolutions=(16,), num_heads=4).to(device).eval()
    return net, make_process("ddpm")


def diffusers_pipeline(size: int, device: torch.device):
    from diffusers import DDIMScheduler, UNet2DModel

    levels = [size // 2**i for i in range(4)]
    down = ["AttnDownBlock2D" if r == 16 else "DownBlock2D" for r in levels]
    up = ["AttnUpBlock2D" if r == 16 else "UpBlock2D" for r in reversed(levels)]
    unet = UNet2DModel(sample_size=size, in_channels=1, out_channels=1, block_out_channels=(64, 128, 256, 256),
                       layers_per_block=2, down_block_types=tuple(down), up_block_types=tuple(up),
                       attention_head_dim=64, norm_num_groups=32).to(device).eval()
    sched = DDIMScheduler(num_train_timesteps=1000, beta_schedule="linear", clip_sample=True,
                          timestep_spacing="linspace")
    return unet, sched


def run_ours(net, process, batch: int, steps: int, device) -> float:
    from app.engine.sampling.api import generate

    t0 = time.perf_counter()
    generate((net, process), batch, "ddim", steps=steps, seed=0, batch_size=batch, device=device)
    return time.perf_counter() - t0


def run_diffusers(unet, sched, batch: int, steps: int, device, size: int) -> float:
    g = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    with torch.inference_mode():
        x = torch.randn(batch, 1, size, size, generator=g).to(device)
        sched.set_timesteps(steps)
        for t in sched.timesteps:
            eps = unet(x, t).sample
            x = sched.step(eps, t, x).prev_sample
        x.clamp(-1, 1).cpu()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"torch {torch.__version__}, {device}, {torch.get_num_threads()} threads, batch {args.batch}, "
          f"{args.steps} DDIM steps, best of {args.repeats}")
    print(f"{'size':>5} {'ours params':>12} {'diffusers params':>17} {'ours img-steps/s':>17} "
          f"{'diffusers img-steps/s':>22} {'ratio':>6}")
    for size in args.sizes:
        net, process = our_pipeline(size, device)
        unet, sched = diffusers_pipeline(size, device)
        n_ours = sum(p.numel() for p in net.parameters())
        n_diff = sum(p.numel() for p in unet.parameters())
        # warm-up (allocator, oneDNN primitive caches)
        run_ours(net, process, args.batch, 2, device)
        run_diffusers(unet, sched, args.batch, 2, device, size)
        ours, theirs = [], []
        for _ in range(args.repeats):
            ours.append(run_ours(net, process, args.batch, args.steps, device))
            theirs.append(run_diffusers(unet, sched, args.batch, args.steps, device, size))
        r_ours = args.batch * args.steps / min(ours)
        r_diff = args.batch * args.steps / min(theirs)
        print(f"{size:>5} {n_ours / 1e6:>11.2f}M {n_diff / 1e6:>16.2f}M {r_ours:>17.2f} {r_diff:>22.2f} "
              f"{r_ours / r_diff:>6.2f}")


if __name__ == "__main__":
    main()
