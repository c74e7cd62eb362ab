"""The "sample" job: checkpoint -> sampler -> synthetic images exported with provenance, with live previews.

    radsynth sample --run RUN --n 16 --sampler ddim --steps 50 --class 1 --guidance 2 --seed 0 \
        --out DIR --format dicom --json
"""

from __future__ import annotations

import math
import time
from pathlib import Path

from app.engine.export import EXPORT_FORMATS, export_images
from app.engine.jobs import JobContext, UserError, register
from app.engine.specs.generate import SampleSpec
from app.engine.specs.options import SamplerName  # noqa: F401


def resolve_class_labels(given: list[int | str] | None, class_names: list[str], n: int) -> list[int] | None:
    """Class indices (one per image) from indices or names; None when none were given.

    A number is an index when it is one (0..K-1), else it may still be a class's name (datasets
    whose labels are numbers such as 3 and 5); anything else must be a name. Unknown classes, and
    any class at all for an unconditional model, raise UserError listing the model's classes."""
    if not given:
        return None
    if not class_names:
        raise UserError(
            f"this model is unconditional (trained without classes): it cannot sample class {given[0]!r}; "
            "leave the class out"
        )
    known = ", ".join(f"{i}={name}" for i, name in enumerate(class_names))
    out = []
    for c in given:
        text = str(c).strip()
        if isinstance(c, int) or text.lstrip("-").isdigit():
            k = int(text)
            if 0 <= k < len(class_names):
                out.append(k)
                continue
        if text in class_names:
            out.append(class_names.index(text))
            continue
        raise UserError(f"class {c!r} is not a class of this model; its classes (index=name): {known}")
    if len(out) == 1:
        out = out * n
    if len(out) != n:
        raise UserError(f"got {len(out)} class labels for {n} images: give one label, or one per image")
    return out


@register(SampleSpec)
def run_sample(spec: SampleSpec, ctx: JobContext) -> dict:
    import numpy as np

    from app.engine.checkpoints import load_checkpoint
    from app.engine.data.preprocess import magnitude_display
    from app.engine.imaging import make_grid, save_png
    from app.engine.sampling.api import generate_with_info, options_for

    if spec.format not in EXPORT_FORMATS:  # Literal already checks; kept for direct callers
        raise UserError(f"format {spec.format!r} is not one of {', '.join(EXPORT_FORMATS)}")
    model = load_checkpoint(spec.run, workspace=ctx.workspace, ema=spec.ema, device=spec.device, epoch=spec.epoch)
    labels = resolve_class_labels(spec.class_label, model.class_names, spec.n_images)
    ctx.log(f"sampling {spec.n_images} images with {spec.sampler} ({spec.steps} steps, seed {spec.seed}) from "
            f"{model.path} ({model.process.name}, {'EMA' if model.ema else 'raw'} weights, epoch {model.epoch})")
    grid_n = min(16, spec.batch_size, spec.n_images)
    # a prior trained on a complex dataset (ingest --complex) keeps its 99th percentile at 1 / headroom
    headroom = float(model.meta.get("complex_headroom") or 1.0)
    last_preview = {"t": 0.0}

    def on_step(step) -> None:
        ctx.progress(step.step, step.total, f"batch {step.batch_index + 1}")
        info = step.info
        if spec.preview_every and step.batch_start == 0 and (
            info.step % spec.preview_every == 0 or info.step == info.total
        ):
            now = time.monotonic()
            if now - last_preview["t"] >= 0.2 or info.step == info.total:  # throttle at the source
                last_preview["t"] = now
                x0 = info.x0[:grid_n].float().clamp(-1, 1).cpu().numpy()
                x0 = magnitude_display(x0, headroom) if x0.shape[1] == 2 else x0
                ctx.image("preview", make_grid(x0, ncol=int(math.ceil(math.sqrt(len(x0))))), "grid")

    images, info = generate_with_info(
        model, spec.n_images, sampler=spec.sampler, steps=spec.steps, seed=spec.seed, class_labels=labels,
        guidance=spec.guidance, batch_size=spec.batch_size, device=next(model.net.parameters()).device,
        **options_for(spec.sampler, {"eta": spec.eta, "snr": spec.snr, "n_steps_each": spec.n_steps_each}),
        half=spec.half, compile=spec.compile, callback=on_step, should_stop=ctx.should_stop,
        log=ctx.log,
    )
    ctx.check()
    out_dir = Path(spec.out) if spec.out else ctx.job_dir() / "samples"
    created = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    provenance = {
        "model": f"{model.process.name} U-Net ({model.run_id or model.path.name})",
        "process": model.process.config(),
        "run": model.run_id,
        "checkpoint": str(model.path),
        "checkpoint_sha256": model.sha256,
        "weights": "ema" if model.ema else "raw",
        "epoch": model.epoch,
        "step": model.step,
        "dataset": getattr(model.spec, "dataset", None),
        "sampler": spec.sampler,
        "sampler_options": info.sampler,
        "steps": spec.steps,
        "seed": spec.seed,
        "guidance": spec.guidance,
        "class_names": model.class_names,
        "image_size": model.image_size,
        "device": info.device,
        "precision": info.dtype,
        "created": created,
        "job": ctx.job_id,
    }
    per_image = [
        {"index": i, "seed": spec.seed,
         "class_label": None if labels is None else labels[i],
         "class_name": None if labels is None or labels[i] >= len(model.class_names) else model.class_names[labels[i]]}
        for i in range(spec.n_images)
    ]
    if images.shape[1] == 2:  # complex (real, imag) models: export the magnitude
        images = magnitude_display(images, headroom)
        provenance["exported_as"] = "magnitude of the complex (real, imag) image"
    files = export_images(images, out_dir, spec.format, provenance, per_image=per_image)
    grid = make_grid(images[: min(64, len(images))], ncol=int(math.ceil(math.sqrt(min(64, len(images))))))
    ctx.image("samples", grid, "grid")
    save_png(ctx.job_dir() / "samples_grid.png", grid)  # beside, not inside, the exported set
    ctx.artifact("samples", out_dir)
    ctx.log(f"wrote {len(files)} file(s) to {out_dir} in {info.seconds:.1f} s ({info.images_per_second:.2f} images/s)")
    return {
        "files": [str(f) for f in files],
        "out": str(out_dir),
        "n": spec.n_images,
        "format": spec.format,
        "images_per_second": round(info.images_per_second, 4),
        "seconds": round(info.seconds, 3),
        "sampler": spec.sampler,
        "steps": spec.steps,
        "network_evals_per_image": info.network_evals,
        "seed": spec.seed,
        "class_labels": None if labels is None else sorted(set(labels)),
        "guidance": spec.guidance,
        "checkpoint": str(model.path),
        "checkpoint_sha256": model.sha256,
        "run": model.run_id,
        "device": info.device,
        "mean": float(np.mean(images)),
    }
