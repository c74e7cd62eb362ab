"""Compute devices: resolve a device name and describe what is in use (for logs and the status bar)."""

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
