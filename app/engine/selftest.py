"""A diagnostic job: checks the compute device with a timed matrix product loop.

It exercises every event type, so it is also what the transports' own tests run: it can be told
to fail at a step (``fail_at``) to show how a failing job is reported.
"""

from __future__ import annotations

import time

import numpy as np

from app.engine.jobs import JobContext, UserError, register
from app.engine.specs.selftest import SelfTestSpec


@register(SelfTestSpec)
def run_selftest(spec: SelfTestSpec, ctx: JobContext) -> dict:
    import torch

    from app.engine.devices import compute_info, resolve_device

    device = resolve_device(spec.device)
    ctx.log(f"self-test on {device} ({spec.steps} steps of {spec.size}x{spec.size} products)")
    g = torch.Generator().manual_seed(spec.seed)
    a = torch.randn(spec.size, spec.size, generator=g).to(device)
    t0 = time.perf_counter()
    norm = 0.0
    for step in range(1, spec.steps + 1):
        ctx.check()
        if step == spec.fail_at:
            raise UserError(f"self-test asked to fail at step {step}")
        b = a @ a.T / spec.size
        norm = float(b.norm())
        ctx.scalar("norm", step, norm)
        ctx.progress(step, spec.steps)
        if spec.delay:
            time.sleep(spec.delay)
    seconds = time.perf_counter() - t0
    img = np.asarray(a[:32, :32].float().cpu())
    ctx.image("matrix", img, "image")
    gflops = 2 * spec.size**3 * spec.steps / max(seconds, 1e-9) / 1e9
    return {"device": str(device), "seconds": round(seconds, 4), "gflops": round(gflops, 3), "norm": norm,
            "compute": compute_info()}
