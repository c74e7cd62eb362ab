"""Training throughput (images/s) of our U-Net against diffusers' UNet2DModel at the same width and resolution.

Both networks are trained the same way (DDPM epsilon loss from app.engine.diffusion, AdamW, one
optimizer step per batch) on the same random batches; the two are timed in alternating rounds and
the median per-round throughput is printed with the ratio ours / diffusers.

    .venv/bin/python benchmarks/bench_training.py --sizes 32 64 --batch 16 --steps 10 --rounds 3 --threads 2

Needs the bench extra (``pip install -e ".[bench]"``: diffusers).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


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


class DiffusersAdapter(torch.nn.Module):
    """Gives UNet2DModel our net contract net(x, level, y) -> tensor (timestep = level)."""

    num_classes = 0

    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, x, level, y=None):
        return self.m(x, level).sample


def throughput(net, process, size: int, batch: int, steps: int, seed: int) -> float:
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
    g = torch.Generator().manual_seed(seed)
    x0 = torch.rand(batch, 1, size, size, generator=g) * 2 - 1
    net.train()
    process.loss(net, x0, generator=g).loss.backward()  # warm-up step, not timed
    opt.zero_grad(set_to_none=True)
    t0 = time.perf_counter()
    for _ in range(steps):
        loss = process.loss(net, x0, generator=g).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return steps * batch / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[32, 64])
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from app.engine.diffusion.base import make_process
    from app.engine.nets.unet import count_parameters

    process = make_process("ddpm")
    mults = (1, 2, 2, 2)
    print(f"CPU training throughput, DDPM loss + AdamW, batch {args.batch}, {args.steps} steps x {args.rounds} rounds, "
          f"{args.threads} threads, width {args.width}, mults {mults}, 2 res blocks/level, attention at 16x16")
    print(f"{'size':>5} {'ours M params':>14} {'diffusers M params':>19} {'ours img/s':>11} {'diffusers img/s':>16} "
          f"{'ratio':>6}")
    for size in args.sizes:
        torch.manual_seed(0)
        a = ours(size, args.width, mults, 16)
        b = DiffusersAdapter(theirs(size, args.width, mults, 16))
        ra, rb = [], []
        for r in range(args.rounds):
            ra.append(throughput(a, process, size, args.batch, args.steps, r))
            rb.append(throughput(b, process, size, args.batch, args.steps, r))
        ma, mb = statistics.median(ra), statistics.median(rb)
        print(f"{size:>5} {count_parameters(a) / 1e6:>14.2f} {count_parameters(b) / 1e6:>19.2f} {ma:>11.1f} "
              f"{mb:>16.1f} {ma / mb:>6.2f}")


if __name__ == "__main__":
    main()
