"""The speed switches of the network benchmarks (bench_sampling.py, bench_training.py) and their workers.

A *switch* is one thing torch offers, applied alone on top of a baseline (contiguous layout, float32):

    none            contiguous layout, float32: the layout and precision before the speed work
    default         what the application uses by default (UNet: channels-last in eval mode; training:
                    ``precision="auto"``, i.e. bfloat16 autocast where the device runs it natively)
    channels_last   channels-last activations and convolution weights, float32
    bf16            bfloat16 autocast (the network's matmuls and convolutions), contiguous layout
    bf16_cl         bf16 and channels_last together
    math_attention  the attention through SDPA's math backend instead of the fused kernel (what SDPA saves)
    fused_adam      AdamW(fused=True) (training only)
    compile         torch.compile of the network, float32 contiguous (compile time not in the figure)

Every (network, switch) runs in its own process (a spawned worker that keeps the network built), so
that its peak memory is its own: ``resource.getrusage`` maximum resident set size on the CPU (the whole
process, torch included; its growth over the process with torch imported and nothing built is printed
too: network, optimizer, activations, the anchor's library), ``torch.cuda.max_memory_allocated`` on CUDA. The parent runs the workers in alternating rounds,
so load from other processes on a shared machine hits all of them alike, and keeps each one's best
round. ``--clock cpu`` times with the worker's CPU time instead of the wall clock: on a machine shared
with other jobs it counts only the cycles the worker ran (use it with ``--threads 1``).
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import resource
import statistics
import time

SWITCHES = ("none", "default", "channels_last", "bf16", "bf16_cl", "math_attention", "fused_adam", "compile")


def layout(switch: str) -> bool | None:
    """The UNet's ``channels_last`` attribute for a switch (None: its own default)."""
    if switch == "default":
        return None
    return switch in ("channels_last", "bf16_cl")


def autocast(switch: str, device):
    import torch

    dtype = torch.bfloat16 if switch in ("bf16", "bf16_cl") else None
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)


def attention_backend(switch: str):
    if switch != "math_attention":
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel(SDPBackend.MATH)


def apply_layout(net, switch: str) -> None:
    """Put a network (ours or diffusers') in the switch's memory layout."""
    import torch

    from app.engine.nets.unet import UNet

    if isinstance(net, UNet):
        net.channels_last = layout(switch)
        net.train(net.training)  # re-lays the weights out
    elif layout(switch):
        net.to(memory_format=torch.channels_last)


def peak_memory_mib(device) -> float:
    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def clock(kind: str):
    return time.process_time if kind == "cpu" else time.perf_counter


def _worker(conn, build, args) -> None:
    """Build the work once (``build(**args) -> (work(), device)``), then time it whenever asked."""
    import torch

    torch.set_num_threads(args.pop("threads"))
    tick = clock(args.pop("clock"))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # torch imported, nothing built
    try:
        work, device = build(**args)
        work()  # warm-up: allocator, oneDNN primitive caches, compilation
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
            before = 0.0
        conn.send(("ready", None))
        while conn.recv() == "run":
            t0 = tick()
            work()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            conn.send(("time", tick() - t0))
        peak = peak_memory_mib(device)
        conn.send(("memory", (peak, peak - before)))
    except Exception as exc:  # noqa: BLE001 (any failure is the row's result, the other rows still run)
        conn.send(("error", f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"))


def run_interleaved(configs: dict, build, rounds: int, threads: int, clock_kind: str) -> dict:
    """``configs``: name -> keyword arguments of ``build``. Returns name -> dict(seconds=[...], peak_mib,
    growth_mib) or dict(error=...). Workers are started one after another (building and warming up
    alone), then timed in alternating rounds."""
    ctx = mp.get_context("spawn")
    os.environ.setdefault("PYTHONPATH", os.getcwd())
    workers, results = {}, {}
    for name, kw in configs.items():
        parent, child = ctx.Pipe()
        p = ctx.Process(target=_worker, args=(child, build, dict(kw, threads=threads, clock=clock_kind)), daemon=True)
        p.start()
        kind, value = parent.recv()
        if kind == "error":
            results[name] = {"error": value}
            p.join()
            continue
        workers[name] = (p, parent)
        results[name] = {"seconds": []}
    for _ in range(rounds):
        for name, (_, conn) in workers.items():
            if "error" in results[name]:
                continue
            conn.send("run")
            kind, value = conn.recv()
            if kind == "error":
                results[name] = {"error": value}
            else:
                results[name]["seconds"].append(value)
    for name, (p, conn) in workers.items():
        if "error" not in results[name]:
            conn.send("stop")
            kind, value = conn.recv()
            if kind == "memory":
                results[name]["peak_mib"], results[name]["growth_mib"] = value
            else:
                results[name] = {"error": value}
        p.join(timeout=60)
    return results


def print_rows(res: dict, size: int, per_round: int, rate_width: int = 8) -> None:
    """One line per (net, switch): rate (items per second, best round), ratio to diffusers' "none" run,
    peak and growth of memory, the spread of the rounds and the median rate."""
    anchor = res[("diffusers", "none")]
    anchor_rate = per_round / min(anchor["seconds"]) if "seconds" in anchor else float("nan")
    for (net, switch), r in sorted(res.items(), key=lambda kv: (kv[0][0] != "ours", kv[0][1])):
        if "error" in r:
            print(f"{size:>5} {net:>9} {switch:>15}  failed: {r['error']}")
            continue
        rate = per_round / min(r["seconds"])
        spread = max(r["seconds"]) / min(r["seconds"]) if len(r["seconds"]) > 1 else 1.0
        print(f"{size:>5} {net:>9} {switch:>15} {rate:>{rate_width}.2f} {rate / anchor_rate:>12.2f}x {r['peak_mib']:>9.0f} "
              f"{r['growth_mib']:>+8.0f}   (rounds spread {spread:.2f}, median "
              f"{per_round / statistics.median(r['seconds']):.2f})")
