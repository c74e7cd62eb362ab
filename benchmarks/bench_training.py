"""Training throughput (images/s) of our U-Net against diffusers' UNet2DModel at the same width and resolution.

Both networks are trained the same way (DDPM epsilon loss from app.engine.diffusion, AdamW, one
optimizer step per batch) on the same random batches. Each speed switch of ``net_switches.py``
(channels_last, bf16, fused_adam, math_attention, compile, ...) runs alone on our network, each in its
own worker process with its peak memory; the anchor is diffusers as it comes (float32, contiguous,
AdamW's default foreach implementation), timed in the same alternating rounds; ``--anchor-switches``
also runs diffusers under the same switches. Prints the best round's images/s, the ratio ours /
diffusers (as it comes) and the peak memory beside each.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_training.py --sizes 64 128 --batch 8 --steps 3 \\
        --rounds 3 --threads 1 --clock cpu --switches none default channels_last bf16 bf16_cl fused_adam

``default`` is what the training job runs: ``precision="auto"`` (bfloat16 autocast where the device
runs it natively, else float32; devices.autocast_dtype) in the contiguous layout (training mode).

Figures (2026-12-04, torch 2.13.0+cpu, a 2-core AMD EPYC VM (AVX512-BF16) shared with up to 8 other jobs,
load 9-12, so ``--threads 1 --clock cpu``; the command above, sizes run one at a time, ``--switches none
default channels_last bf16 fused_adam math_attention`` at 64, without math_attention at 128; best of 3
rounds, the rounds spread up to 1.7x on this machine; peak = RSS of the worker, (+) over torch imported):

    size  net        switch          img/s  vs diffusers  peak MiB  (+MiB)
      64  ours       none            12.07    1.13x          862     +622
      64  ours       default         17.52    1.63x          644     +404   (bf16 autocast, contiguous)
      64  ours       bf16            15.87    1.48x          641     +401
      64  ours       channels_last   10.94    1.02x          869     +629   not kept for training
      64  ours       fused_adam       9.51    0.89x          866     +626   not kept
      64  ours       math_attention  11.14    1.04x          887     +647   (SDPA kept)
      64  diffusers  none            10.72    1.00x          955     +715
     128  ours       none             3.14    1.11x         2177    +1937
     128  ours       default          5.47    1.94x         1302    +1062
     128  ours       bf16             5.14    1.82x         1285    +1045
     128  ours       channels_last    2.48    0.88x         2261    +2021
     128  ours       fused_adam       2.96    1.05x         2154    +1914
     128  diffusers  none             2.82    1.00x         2187    +1947

Not measured on CUDA here (no GPU was lent); ``--device cuda`` prints the same table with
torch.cuda.max_memory_allocated.

Needs the bench extra (``pip install -e ".[bench]"``: diffusers).
"""

from __future__ import annotations

import argparse

from net_switches import SWITCHES, apply_layout, attention_backend, print_rows, run_interleaved


def ours(size: int, width: int, mults: tuple[int, ...], attn_res: int):
    from app.engine.nets.unet import NetConfig, UNet

    return UNet(NetConfig(image_size=size, base_channels=width, channel_mults=mults, num_res_blocks=2,
                          attention_resolutions=(attn_res,), num_heads=1))


def theirs(size: int, width: int, mults: tuple[int, ...], attn_res: int):
    from diffusers import UNet2DModel

    down, up = [], []
    for i in range(len(mults)):
        res = size // 2**i
        down.append("AttnDownBlock2D" if res == attn_res else "DownBlock2D")
    for i in reversed(range(len(mults))):
        res = size // 2**i
        up.append("AttnUpBlock2D" if res == attn_res else "UpBlock2D")
    return UNet2DModel(sample_size=size, in_channels=1, out_channels=1, layers_per_block=2,
                       block_out_channels=tuple(width * m for m in mults), down_block_types=tuple(down),
                       up_block_types=tuple(up), norm_num_groups=min(32, width), attention_head_dim=None)


def _diffusers_adapter():
    import torch

    class DiffusersAdapter(torch.nn.Module):
        """Gives UNet2DModel our net contract net(x, level, y) -> tensor (timestep = level)."""

        num_classes = 0

        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, x, level, y=None):
            return self.m(x, level).sample

    return DiffusersAdapter


def build(net: str, switch: str, size: int, width: int, batch: int, steps: int, device: str):
    """The timed work of one worker: ``steps`` optimizer steps on a fixed batch."""
    import torch

    from app.engine.devices import autocast_dtype
    from app.engine.diffusion.base import make_process

    dev = torch.device(device)
    torch.manual_seed(0)
    mults = (1, 2, 2, 2)
    model = ours(size, width, mults, 16) if net == "ours" else _diffusers_adapter()(theirs(size, width, mults, 16))
    model = model.to(dev).train()
    apply_layout(model if net == "ours" else model.m, switch)
    run_model = torch.compile(model) if switch == "compile" else model
    if switch == "default":
        dtype = autocast_dtype("auto", dev) if net == "ours" else None
    else:
        dtype = torch.bfloat16 if switch in ("bf16", "bf16_cl") else None
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, **({"fused": True} if switch == "fused_adam" else {}))
    process = make_process("ddpm")
    g = torch.Generator(device=dev).manual_seed(0)
    x0 = torch.rand(batch, 1, size, size, generator=g, device=dev) * 2 - 1

    def work():
        for _ in range(steps):
            with attention_backend(switch), torch.autocast(dev.type, dtype=dtype, enabled=dtype is not None):
                loss = process.loss(run_model, x0, generator=g).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    return work, dev


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--switches", nargs="+", choices=SWITCHES, default=["none", "default"])
    ap.add_argument("--anchor-switches", action="store_true", help="also run diffusers under every switch")
    args = ap.parse_args()
    import torch

    print(f"torch {torch.__version__}, {args.device} training, DDPM loss + AdamW, batch {args.batch}, {args.steps} "
          f"steps x best of {args.rounds} alternating rounds, {args.threads} thread(s), {args.clock} clock, width "
          f"{args.width}, mults (1, 2, 2, 2), 2 res blocks/level, attention at 16x16; memory: "
          + ("torch.cuda.max_memory_allocated" if args.device.startswith("cuda") else
             "peak RSS of the worker process (+ growth over the process with torch imported)"))
    print(f"{'size':>5} {'net':>9} {'switch':>15} {'img/s':>8} {'vs diffusers':>13} {'peak MiB':>9} {'(+MiB)':>8}")
    for size in args.sizes:
        keys = [("diffusers", "none")] + [("ours", s) for s in args.switches]
        if args.anchor_switches:
            keys += [("diffusers", s) for s in args.switches if s not in ("none", "default")]
        configs = {k: {"net": k[0], "switch": k[1], "size": size, "width": args.width, "batch": args.batch,
                       "steps": args.steps, "device": args.device} for k in keys}
        res = run_interleaved(configs, build, args.rounds, args.threads, args.clock)
        print_rows(res, size, args.batch * args.steps, rate_width=8)


if __name__ == "__main__":
    main()
