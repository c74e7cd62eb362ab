"""Compute devices: resolve a device name, describe what is in use (for logs and the status bar) and pick
the autocast precision a device runs fast (``autocast_dtype``)."""

from __future__ import annotations

from app.engine.errors import UserError

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


def resolve_device(name: str = "auto"):
    """A torch.device for "auto" | "cpu" | "cuda" | "cuda:N" | "mps", with a clear error if absent."""
    import torch

    name = (name or "auto").lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError(f"device {name!r} was asked for but no CUDA GPU is available here; use 'cpu' or 'auto'")
        dev = torch.device(name)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise UserError(f"device {name!r}: only {torch.cuda.device_count()} GPU(s) present")
        return dev
    if name == "mps":
        if not (getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()):
            raise UserError("device 'mps' was asked for but Apple Metal is not available here")
        return torch.device("mps")
    raise UserError(f"device {name!r} is not one of {', '.join(DEVICE_CHOICES)} (or cuda:N)")


PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def bf16_native(device) -> bool:
    """Whether ``device`` computes bfloat16 matmuls and convolutions in hardware: a CUDA GPU that says
    so without emulation (compute capability 8.0 and later), a CPU whose oneDNN has bfloat16 kernels
    (AVX512-BF16 or AMX). Elsewhere bfloat16 is emulated and slower than float32."""
    import torch

    if device.type == "cuda":
        try:
            return bool(torch.cuda.is_bf16_supported(including_emulation=False))
        except TypeError:  # older torch: no including_emulation
            return torch.cuda.get_device_capability(device)[0] >= 8
    if device.type == "cpu":
        try:
            return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):
            return False
    return False


def autocast_dtype(precision: str, device):
    """The autocast dtype of a precision name on ``device`` (None: float32, no autocast).

    "auto" is bfloat16 where the device runs it natively (``bf16_native``) and float32 elsewhere: on this
    project's CPU benchmarks it trains the U-Net 1.5-1.8x faster with the training loss within 1 % of
    float32's (docs/ARCHITECTURE.md, "Network speed")."""
    import torch

    if precision not in PRECISIONS:
        raise UserError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        return torch.bfloat16 if bf16_native(device) else None
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)


def compute_info() -> dict:
    """What compute this process has: {"device": "cpu"|"cuda", "name": ..., "memory_gb": ..., "gpus": [...]}."""
    import torch

    info: dict = {"torch": torch.__version__, "threads": torch.get_num_threads(), "gpus": []}
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            free, total = torch.cuda.mem_get_info(i)
            info["gpus"].append(
                {"index": i, "name": p.name, "memory_gb": round(total / 2**30, 1), "free_gb": round(free / 2**30, 1)}
            )
        info["device"] = "cuda"
        info["name"] = info["gpus"][0]["name"]
        info["memory_gb"] = info["gpus"][0]["memory_gb"]
    else:
        import os
        import platform

        info["device"] = "cpu"
        info["name"] = platform.processor() or platform.machine() or "CPU"
        info["cores"] = os.cpu_count()
    return info
