"""Generate images from a trained model: the one entry point the sample job, the GUI and the benchmarks call.

    images = generate(model, n=16, sampler="ddim", steps=50, seed=0, class_labels=1, guidance=2.0)

``model`` is a LoadedModel (``app.engine.training.checkpoints.load_checkpoint``) or a ``(net, process)``
pair. Images come back as float32 (N, C, H, W) clipped to [-1, 1]. The same seed gives the same
images whatever the batch size and device: image i's noise comes from its own CPU generator
(``base.ImageNoise``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from app.engine.errors import UserError
from app.engine.sampling.ancestral import AncestralSampler
from app.engine.sampling.base import (
    SAMPLER_PROCESS_SUPPORT,
    Denoiser,
    ImageNoise,
    Monitor,
    Sampler,
    StepInfo,
    samplers_for,
)
from app.engine.sampling.ddim import DDIMSampler
from app.engine.sampling.langevin import LangevinSampler
from app.engine.sampling.ode import DPMSolverPP2MSampler, DPMSolverPP3MSampler, EulerFlowSampler, HeunSampler
from app.engine.sampling.pc import PredictorCorrectorSampler
from app.engine.sampling.unipc import UniPCSampler

#: sampler name -> class; each class states the processes it supports (``cls.processes``)
SAMPLERS: dict[str, type[Sampler]] = {
    cls.name: cls
    for cls in (LangevinSampler, AncestralSampler, DDIMSampler, PredictorCorrectorSampler, HeunSampler,
                DPMSolverPP2MSampler, DPMSolverPP3MSampler, UniPCSampler, EulerFlowSampler)
}
SAMPLER_NAMES = tuple(SAMPLERS)
SAMPLER_PROCESS_SUPPORT.update({name: cls.processes for name, cls in SAMPLERS.items()})

__all__ = ["SAMPLERS", "SAMPLER_NAMES", "GenerationStep", "make_sampler", "samplers_for", "generate",
           "generate_with_info", "GenerationInfo", "StepInfo"]


def options_for(name: str, values: dict[str, Any]) -> dict[str, Any]:
    """Of ``values`` (a form's or a spec's sampler fields: eta, snr, n_steps_each...), the ones the sampler
    ``name`` takes (its class's ``options``): the sampler's options come from its class, not from branches."""
    cls = SAMPLERS.get(name)
    if cls is None:
        raise UserError(f"sampler {name!r} is not one of {', '.join(SAMPLERS)}")
    return {k: v for k, v in values.items() if k in cls.options}


def make_sampler(name: str, steps: int = 50, **options: Any) -> Sampler:
    """Build a sampler by name. Options a sampler does not take are ignored only when None;
    any other unknown option raises UserError naming the ones it accepts."""
    cls = SAMPLERS.get(name)
    if cls is None:
        raise UserError(f"sampler {name!r} is not one of {', '.join(SAMPLERS)}")
    given = {k: v for k, v in options.items() if v is not None}
    unknown = [k for k in given if k not in cls.options]
    if unknown:
        raise UserError(
            f"sampler {name!r} takes no option {', '.join(map(repr, unknown))}; "
            f"its options are {', '.join(cls.options) or 'none besides steps'}"
        )
    return cls(steps=steps, **given)


@dataclass
class GenerationStep:
    """What ``generate``'s callback receives: the sampler step of one batch, with global progress."""

    step: int  # 1-based over the whole run (all batches)
    total: int
    batch_index: int  # 0-based
    batch_start: int  # position of the batch's first image among those generated (0: the first batch)
    info: StepInfo  # the sampler's own step (x, x0 on the device, float32)


@dataclass
class GenerationInfo:
    seconds: float
    images_per_second: float
    network_evals: int  # per image
    sampler: dict = field(default_factory=dict)
    device: str = "cpu"
    dtype: str = "float32"
    compiled: bool = False


def _unpack_model(model) -> tuple[torch.nn.Module, Any, int, int]:
    if isinstance(model, tuple | list) and len(model) == 2:
        net, process = model
        size = getattr(net, "image_size", None)
        channels = getattr(net, "in_channels", None)
    else:
        net, process = getattr(model, "net", None), getattr(model, "process", None)
        size = getattr(model, "image_size", None) or getattr(net, "image_size", None)
        channels = getattr(model, "channels", None) or getattr(net, "in_channels", None)
    if net is None or process is None:
        raise UserError("generate needs a loaded model (net and process) or a (net, process) pair")
    if not size or not channels:
        raise UserError("the model does not say its image size and channels (net.image_size, net.in_channels)")
    return net, process, int(size), int(channels)


def _class_labels(class_labels, n: int, num_classes: int) -> list[int] | None:
    if class_labels is None:
        return None
    if isinstance(class_labels, int | np.integer):
        labels = [int(class_labels)] * n
    else:
        labels = [int(c) for c in class_labels]
        if len(labels) == 1:
            labels = labels * n
        if len(labels) != n:
            raise UserError(f"got {len(labels)} class labels for {n} images: give one label, or one per image")
    if num_classes <= 0:
        raise UserError("this model is unconditional (trained without classes): class labels cannot be used")
    bad = sorted({c for c in labels if not 0 <= c < num_classes})
    if bad:
        raise UserError(f"class label(s) {bad} out of range: this model has classes 0..{num_classes - 1}")
    return labels


def _autocast_dtype(half: bool, precision: str | None, device: torch.device) -> torch.dtype | None:
    """The network's autocast dtype: ``precision`` through ``devices.autocast_dtype`` ("auto" | "fp32" | "bf16" |
    "fp16"); without one, the old ``half`` switch (float16 on CUDA, bfloat16 elsewhere; float32 when off)."""
    if precision is not None:
        from app.engine.devices import autocast_dtype

        if half:
            raise UserError(f"give either half or precision ({precision!r}), not both")
        return autocast_dtype(str(precision), device)
    if not half:
        return None
    return torch.float16 if device.type == "cuda" else torch.bfloat16


#: below this U-Net width, half-precision sampling on the CPU runs contiguous instead of channels-last
CHANNELS_LAST_MIN_WIDTH_HALF = 64


def _half_layout(net: torch.nn.Module, autocast_dtype: torch.dtype | None, dev: torch.device) -> bool | None:
    """The U-Net layout to sample in: None (the net's own rule: channels-last in eval mode) except for a
    narrow U-Net under bfloat16 / float16 autocast on the CPU, which runs contiguous (False). Measured with
    one thread (docs/ARCHITECTURE.md, "Network speed"): bf16 + channels-last is 0.5-0.6x fp32 at width 16 and
    32 (28x28), bf16 contiguous 1.6-1.8x; at width 64 channels-last is the faster bf16 layout (1.9x, 64x64)."""
    cfg = getattr(net, "config", None)
    if (autocast_dtype is None or dev.type != "cpu" or getattr(net, "channels_last", True) is not None
            or getattr(cfg, "base_channels", CHANNELS_LAST_MIN_WIDTH_HALF) >= CHANNELS_LAST_MIN_WIDTH_HALF):
        return None
    return False


def _compiled(net: torch.nn.Module, dev: torch.device):
    """``torch.compile(net)``, or UserError saying why it cannot run here.

    torch.compile is lazy: a missing tool-chain would otherwise surface at the first network call,
    deep inside the sampler, as an inductor traceback. On the CPU inductor needs a C++ compiler, so
    that is checked up front; later compile failures are turned into a UserError in the loop."""
    if dev.type == "cpu":
        try:
            from torch._inductor.cpp_builder import get_cpp_compiler
        except ImportError:  # a torch without this helper: the loop's check still applies
            get_cpp_compiler = None
        if get_cpp_compiler is not None:
            try:
                get_cpp_compiler()
            except Exception as exc:
                raise UserError(
                    f"compile: torch.compile on the CPU needs a working C++ compiler and none was found ({exc}); "
                    "run without compile"
                ) from None
    try:
        return torch.compile(net)
    except Exception as exc:
        raise UserError(f"compile: torch.compile is not available here ({exc}); run without compile") from exc


def generate(model, n: int, sampler: str = "ddim", steps: int = 50, seed: int = 0,
             class_labels: int | Sequence[int] | None = None, guidance: float = 0.0, batch_size: int = 64,
             device: str | torch.device = "cpu", eta: float | None = None, snr: float | None = None,
             n_steps_each: int | None = None, half: bool = False, compile: bool = False,
             callback: Callable[[GenerationStep], None] | None = None,
             should_stop: Callable[[], bool] | None = None, precision: str | None = None,
             **sampler_options: Any) -> np.ndarray:
    """Sample ``n`` images; returns float32 (N, C, H, W) clipped to [-1, 1].

    - ``sampler``: one of SAMPLERS ("langevin", "ancestral", "ddim", "pc", "heun", "dpmpp2m", "dpmpp3m",
      "unipc", "euler"); a sampler that does not support the model's process raises UserError.
    - ``class_labels``: an int for every image, or one per image; ``guidance`` w > 0 applies
      classifier-free guidance (Ho & Salimans 2022), which needs class labels.
    - ``eta`` (ddim), ``snr`` and ``n_steps_each`` (pc; n_steps_each also langevin) and further
      ``sampler_options`` (``clip_x0``, ``step_lr``, ``final_denoise``, ``variance``, ``spacing``,
      unipc's ``order`` / ``variant`` / ``corrector``) go to the
      sampler; None means its default.
    - ``precision``: the network's precision, "auto" | "fp32" | "bf16" | "fp16" (``devices.autocast_dtype``:
      "auto" is bfloat16 where the device runs it natively); the sampler's state stays float32. None: the
      old ``half`` switch decides (float16 on CUDA / bfloat16 on CPU under autocast; float32 when off).
    - ``compile``: torch.compile.
    - ``callback(GenerationStep)`` after every sampler step (its ``info.x0`` is the live preview);
      ``should_stop()`` is checked at every step and raises JobCancelled when it returns True.
    """
    images, _ = generate_with_info(model, n, sampler, steps, seed, class_labels, guidance, batch_size, device,
                                   eta, snr, n_steps_each, half, compile, callback, should_stop,
                                   precision=precision, **sampler_options)
    return images


def generate_with_info(model, n: int, sampler: str = "ddim", steps: int = 50, seed: int = 0,
                       class_labels=None, guidance: float = 0.0, batch_size: int = 64,
                       device: str | torch.device = "cpu", eta=None, snr=None, n_steps_each=None,
                       half: bool = False, compile: bool = False, callback=None, should_stop=None,
                       log: Callable[[str], None] | None = None, indices: Sequence[int] | None = None,
                       precision: str | None = None, **sampler_options: Any) -> tuple[np.ndarray, GenerationInfo]:
    """``generate`` that also returns timing and what ran (GenerationInfo).

    ``indices`` (default all of 0..n-1): only those images of the ``n``, in that order (one rank's share
    under torchrun); image i is the same as in the whole run, since its noise depends on (seed, i) only."""
    from app.engine.devices import resolve_device

    if int(n) < 1:
        raise UserError(f"the number of images must be at least 1, got {n}")
    if int(batch_size) < 1:
        raise UserError(f"batch size must be at least 1, got {batch_size}")
    n, batch_size = int(n), int(batch_size)
    net, process, size, channels = _unpack_model(model)
    smp = make_sampler(sampler, steps, eta=eta, snr=snr, n_steps_each=n_steps_each, **sampler_options)
    smp.check_process(process)
    num_classes = int(getattr(net, "num_classes", 0) or 0)
    labels = _class_labels(class_labels, n, num_classes)
    if guidance and num_classes <= 0:
        raise UserError(
            f"guidance {guidance:g}: classifier-free guidance needs a class-conditional model and this one is "
            "unconditional (trained without classes); use guidance 0"
        )
    if guidance and labels is None:
        raise UserError("classifier-free guidance needs class labels (give a class, or guidance 0)")
    if guidance < 0:
        raise UserError(f"guidance scale must be >= 0, got {guidance}")

    dev = device if isinstance(device, torch.device) else resolve_device(str(device))
    was_training = net.training
    autocast_dtype = _autocast_dtype(half, precision, dev)
    layout = _half_layout(net, autocast_dtype, dev)
    if layout is not None:
        net.channels_last = layout  # put back (None) in the finally below
    net = net.to(dev).eval()
    run_net = _compiled(net, dev) if compile else net

    wanted = list(range(n)) if indices is None else [int(i) for i in indices]
    if any(not 0 <= i < n for i in wanted):
        raise UserError(f"image indices must lie in 0..{n - 1}")
    shape = (channels, size, size)
    per_batch = smp.progress_steps(process)
    n_batches = (len(wanted) + batch_size - 1) // batch_size
    total = per_batch * n_batches
    out = np.empty((len(wanted), *shape), dtype=np.float32)
    t0 = time.perf_counter()
    try:
        with torch.inference_mode():
            for b in range(n_batches):
                start, stop = b * batch_size, min(len(wanted), (b + 1) * batch_size)
                batch = wanted[start:stop]
                noise = ImageNoise(seed, batch, dev)
                y = None if labels is None else torch.tensor([labels[i] for i in batch], dtype=torch.long, device=dev)
                denoiser = Denoiser(run_net, process, y, guidance, autocast_dtype)

                def on_step(info: StepInfo, _b=b, _start=start):
                    if callback is not None:
                        callback(GenerationStep(_b * per_batch + info.step, total, _b, _start, info))

                monitor = Monitor(per_batch, on_step, should_stop)
                monitor.check()
                x = noise.prior(process, shape)
                try:
                    x = smp.sample(denoiser, x, noise, monitor)
                except Exception as exc:
                    if compile and type(exc).__module__.startswith(("torch._dynamo", "torch._inductor")):
                        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                        raise UserError(
                            f"compile: torch.compile failed on this machine ({type(exc).__name__}: {first}); "
                            "run without compile"
                        ) from exc
                    raise
                x = x.float()
                if not bool(torch.isfinite(x).all()):
                    raise UserError(
                        f"sampler {smp.name!r} diverged (non-finite values) in images {batch[0]}..{batch[-1]}: "
                        "the model may be undertrained for this sampler; try another sampler or more steps"
                    )
                x = x.clamp_(-1.0, 1.0)
                out[start:stop] = x.cpu().numpy()
                if log is not None and n_batches > 1:
                    log(f"batch {b + 1}/{n_batches} done ({stop} of {len(wanted)} images)")
    finally:
        if layout is not None:
            net.channels_last = None
        net.train(was_training)  # leave the caller's module as it was (and its weights' layout)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    seconds = time.perf_counter() - t0
    info = GenerationInfo(
        seconds=seconds, images_per_second=len(wanted) / max(seconds, 1e-9), network_evals=smp.network_evals(process),
        sampler=smp.describe(), device=str(dev), dtype=str(autocast_dtype or torch.float32).replace("torch.", ""),
        compiled=bool(compile),
    )
    return out, info
