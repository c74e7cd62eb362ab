"""Sampling speed: our U-Net + DDIM (app.engine.sampling) against HF diffusers' UNet2DModel + DDIMScheduler.

Same width (base 64 channels, multipliers 1-2-4-4, 2 residual blocks per level, attention at 16x16
and in the middle, 4 heads, GroupNorm 32), same resolution, same batch and steps; both networks
randomly initialised (speed does not depend on the weights). Each speed switch of ``net_switches.py``
(channels_last, bf16, math_attention, compile, ...) runs alone on our network, each in its own worker
process with its peak memory; the anchor is diffusers as it comes (float32, contiguous), timed in the
same alternating rounds; ``--anchor-switches`` also runs diffusers under the same switches. Prints
image-steps per second, the ratio ours / diffusers (as it comes) and the peak memory beside each.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_sampling.py --sizes 64 128 --batch 4 --steps 10 \\
        --rounds 3 --threads 1 --clock cpu --switches none default channels_last bf16 bf16_cl math_attention

Figures (2026-12-04, torch 2.13.0+cpu, a 2-core AMD EPYC VM (AVX512-BF16) shared with up to 8 other jobs,
load 9-12, so ``--threads 1 --clock cpu``: the other jobs' load is not counted; the command above, one size
at a time, ``--steps 5`` at 64 and ``--steps 3`` at 128; ``default`` = fp32 channels-last in eval mode, what
``generate`` runs; ``bf16_cl`` = ``generate(..., half=True)``; peak = RSS of the worker, (+) over torch
imported; best of 3 rounds, the rounds spread up to 1.3x on this machine):

    size  net        switch          img-steps/s  vs diffusers  peak MiB  (+MiB)
      64  ours       none                   7.11    1.01x          480     +240
      64  ours       default                7.95    1.13x          457     +217
      64  ours       channels_last          8.50    1.21x          466     +226   (the same net as default)
      64  ours       bf16                  12.23    1.74x          433     +193
      64  ours       bf16_cl               12.49    1.77x          433     +193
      64  ours       math_attention         6.71    0.95x          474     +234   (SDPA kept)
      64  diffusers  none                   7.04    1.00x          659     +419
     128  ours       none                   2.06    1.13x          720     +481
     128  ours       default                2.25    1.24x          711     +471
     128  ours       channels_last          2.22    1.22x          667     +427
     128  ours       bf16                   3.81    2.09x          520     +281
     128  ours       bf16_cl                4.31    2.36x          539     +299
     128  diffusers  none                   1.82    1.00x          972     +732

The default ``--threads 2 --clock wall`` gave no figure on this shared machine (rounds spread up to 2.6x).
torch.compile (``--switches compile``) was not kept: at 64x64 it took 36 s of CPU (469 s of wall on the
shared machine) to compile and then ran 0.97x eager. Not measured on CUDA here (no GPU was lent);
``--device cuda`` prints the same table with torch.cuda.max_memory_allocated.
"""

from __future__ import annotations

import argparse

from net_switches import SWITCHES, apply_layout, attention_backend, autocast, print_rows, run_interleaved

SAMPLING_SWITCHES = tuple(s for s in SWITCHES if s != "fused_adam")


def diffusers_unet(size: int):
    from diffusers import UNet2DModel

    levels = [size // 2**i for i in range(4)]
    down = ["AttnDownBlock2D" if r == 16 else "DownBlock2D" for r in levels]
    up = ["AttnUpBlock2D" if r == 16 else "UpBlock2D" for r in reversed(levels)]
    return UNet2DModel(sample_size=size, in_channels=1, out_channels=1, block_out_channels=(64, 128, 256, 256),
                       layers_per_block=2, down_block_types=tuple(down), up_block_types=tuple(up),
                       attention_head_dim=64, norm_num_groups=32)


def our_unet(size: int):
    from app.engine.nets.unet import UNet

    return UNet(image_size=size, in_channels=1, base_channels=64, channel_mults=(1, 2, 4, 4), num_res_blocks=2,
                attention_resolutions=(16,), num_heads=4)


def build(net: str, switch: str, size: int, batch: int, steps: int, device: str):
    """The timed work of one worker: ``steps`` DDIM steps on ``batch`` images."""
    import torch

    dev = torch.device(device)
    torch.manual_seed(0)
    if net == "ours":
        from app.engine.diffusion.base import make_process
        from app.engine.sampling.api import generate

        model = our_unet(size).to(dev).eval()
        apply_layout(model, switch)
        process = make_process("ddpm")
        half = switch in ("bf16", "bf16_cl")
        compiled = switch == "compile"

        def work():
            with attention_backend(switch):
                generate((model, process), batch, "ddim", steps=steps, seed=0, batch_size=batch, device=dev,
                         half=half, compile=compiled)
    else:
        from diffusers import DDIMScheduler

        unet = diffusers_unet(size).to(dev).eval()
        apply_layout(unet, switch)
        run_unet = torch.compile(unet) if switch == "compile" else unet
        sched = DDIMScheduler(num_train_timesteps=1000, beta_schedule="linear", clip_sample=True,
                              timestep_spacing="linspace")

        def work():
            g = torch.Generator().manual_seed(0)
            with torch.inference_mode(), attention_backend(switch):
                x = torch.randn(batch, 1, size, size, generator=g).to(dev)
                sched.set_timesteps(steps)
                for t in sched.timesteps:
                    with autocast(switch, dev):
                        eps = run_unet(x, t).sample
                    x = sched.step(eps.float(), t, x).prev_sample
                x.clamp(-1, 1).cpu()
    return work, dev


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall")
    p.add_argument("--device", default="cpu")
    p.add_argument("--switches", nargs="+", choices=SAMPLING_SWITCHES, default=["none", "default", "bf16_cl"])
    p.add_argument("--anchor-switches", action="store_true", help="also run diffusers under every switch")
    args = p.parse_args()
    import torch

    print(f"torch {torch.__version__}, {args.device}, {args.threads} thread(s), {args.clock} clock, batch "
          f"{args.batch}, {args.steps} DDIM steps, best of {args.rounds} alternating rounds; memory: "
          + ("torch.cuda.max_memory_allocated" if args.device.startswith("cuda") else
             "peak RSS of the worker process (+ growth over the process with torch imported)"))
    print(f"{'size':>5} {'net':>9} {'switch':>15} {'img-steps/s':>12} {'vs diffusers':>13} {'peak MiB':>9} "
          f"{'(+MiB)':>8}")
    for size in args.sizes:
        configs = {("diffusers", "none"): {}}
        for s in args.switches:
            configs[("ours", s)] = {}
            if args.anchor_switches and s not in ("none", "default"):
                configs[("diffusers", s)] = {}
        configs = {k: {"net": k[0], "switch": k[1], "size": size, "batch": args.batch, "steps": args.steps,
                       "device": args.device} for k in configs}
        res = run_interleaved(configs, build, args.rounds, args.threads, args.clock)
        print_rows(res, size, args.batch * args.steps, rate_width=12)


if __name__ == "__main__":
    main()
