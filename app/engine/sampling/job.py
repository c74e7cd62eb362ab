"""The "sample" job: checkpoint -> sampler -> synthetic images exported with provenance, with live previews,
and registered as a workspace dataset marked synthetic (``DatasetRecord.synthetic``), so that the audit, the
evaluation and reader studies can pick them by name.

    radsynth sample --run RUN --n 16 --sampler ddim --steps 50 --class 1 --guidance 2 --seed 0 \
        --out DIR --format dicom --json

Under ``torchrun --nproc_per_node P -m app.cli -- sample --run RUN ...`` (the ``--`` keeps torchrun from
reading ``--run`` as its own ``--run-path``) the image indices are split across the P ranks (``ranks.DistInfo.share``:
contiguous blocks, one GPU each where there are GPUs) and gathered on rank 0, which alone exports and registers
the one set; since image i depends on (seed, i) only, the set is the one a single process writes.
"""

from __future__ import annotations

import math
import re
import time
from pathlib import Path

from app.engine.export import EXPORT_FORMATS, export_images
from app.engine.jobs import JobContext, UserError, register
from app.engine.ranks import DistInfo, agree, process_group
from app.engine.specs.generate import SampleSpec
from app.engine.specs.options import SamplerName  # noqa: F401
from app.engine.store import GENERATED_META, check_name


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


def samples_dataset_name(run_id: str | None, job_id: str) -> str:
    """The default dataset name of a sample job's images: ``<run>-samples-<last 6 of the job id>``."""
    short = re.sub(r"[^A-Za-z0-9]", "", job_id)[-6:] or "0"
    if not run_id:
        return f"samples-{short}"
    run = re.sub(r"[^A-Za-z0-9_.\-]", "-", str(run_id)).lstrip("-_.")[:64 - len(short) - 9] or "run"
    return f"{run}-samples-{short}"


def register_samples(ws, name: str, images, labels: list[int] | None, class_names: list[str], provenance: dict,
                     modality: str = "OT"):
    """Write ``images`` (N, 1, H, W) in [-1, 1] as the dataset ``name`` (the cache through ``CacheWriter``
    in a staging folder, then ``Workspace.commit_dataset``), every image in the train split and its own
    group, labels where the model was given a class; ``provenance`` goes into the cache attrs and the
    record's ``meta["generated"]``, which marks it synthetic. Returns the DatasetRecord."""
    import numpy as np

    from app.engine.data.cache import CacheWriter

    images = np.clip(np.asarray(images, dtype=np.float32), -1.0, 1.0)
    n, _, h, w = images.shape
    names = list(class_names) if labels is not None else []
    lab = np.asarray(labels if labels is not None else [-1] * n, dtype=np.int64)
    staging = ws.staging_dir()
    writer = None
    try:
        writer = CacheWriter(staging / "cache.h5", h, w, names,
                             attrs={"normalize": "generated in [-1, 1]", "size": int(h), "synthetic": 1,
                                    "source_root": f"sample job {provenance.get('job')}", "provenance": provenance})
        writer.append(images, lab, [f"generated-{i}" for i in range(n)],
                      [f"job {provenance.get('job')} image {i}" for i in range(n)], list(range(n)), modality)
        writer.close()
        meta = {
            GENERATED_META: provenance,
            "modality": modality,
            "normalize": "generated",
            "splits": {"train": int(n), "val": 0, "test": 0},
            "class_counts": {c: int((lab == i).sum()) for i, c in enumerate(names)},
        }
        return ws.commit_dataset(staging, name, n_images=n, height=h, width=w, classes=names,
                                 source=f"generated by run {provenance.get('run') or provenance.get('checkpoint')}",
                                 meta=meta)
    except BaseException:
        if writer is not None:
            writer.abort()
        ws.discard_staging(staging)
        raise


def _training_modality(ws, dataset: str | None) -> str:
    try:
        return str(ws.dataset(dataset).meta.get("modality") or "OT") if dataset else "OT"
    except Exception:  # the run's dataset was deleted or lives in another workspace
        return "OT"


@register(SampleSpec)
def run_sample(spec: SampleSpec, ctx: JobContext) -> dict:
    import numpy as np

    from app.engine.data.preprocess import magnitude_display
    from app.engine.imaging import make_grid, save_png
    from app.engine.sampling.api import generate_with_info, options_for
    from app.engine.training.checkpoints import load_checkpoint

    if spec.format not in EXPORT_FORMATS:  # Literal already checks; kept for direct callers
        raise UserError(f"format {spec.format!r} is not one of {', '.join(EXPORT_FORMATS)}")
    dist = DistInfo.from_env()
    model = load_checkpoint(spec.run, workspace=ctx.workspace, ema=spec.ema, device=_rank_device(spec.device, dist),
                            epoch=spec.epoch)
    labels = resolve_class_labels(spec.class_label, model.class_names, spec.n_images)
    ws = ctx.workspace
    ds_name = spec.dataset or samples_dataset_name(model.run_id, ctx.job_id)
    check_name(ds_name, "dataset name")
    if ws.has_dataset(ds_name):  # before minutes of sampling, not after
        raise UserError(f"a dataset named {ds_name!r} already exists in {ws.root}: choose another dataset name")
    mine = dist.share(spec.n_images)
    ctx.log(f"sampling {spec.n_images} images with {spec.sampler} ({spec.steps} steps, seed {spec.seed}) from "
            f"{model.path} ({model.process.name}, {'EMA' if model.ema else 'raw'} weights, epoch {model.epoch})"
            + (f" on {dist.world} processes (this one: images {mine.start}..{mine.stop - 1})" if dist.active else ""))
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

    device = next(model.net.parameters()).device
    t0 = time.perf_counter()
    with process_group(dist, cuda=device.type == "cuda"):
        parts = agree(dist, lambda: generate_with_info(
            model, spec.n_images, sampler=spec.sampler, steps=spec.steps, seed=spec.seed, class_labels=labels,
            guidance=spec.guidance, batch_size=spec.batch_size, device=device,
            **options_for(spec.sampler, {"eta": spec.eta, "snr": spec.snr, "n_steps_each": spec.n_steps_each}),
            half=spec.half, precision=None if spec.half else spec.precision,
            compile=spec.compile, callback=on_step, should_stop=ctx.should_stop,
            log=ctx.log, indices=mine,
        ))
    if not dist.main:  # rank 0 writes the set and reports; this rank's share went to it
        return {"rank": dist.rank, "images": [mine.start, mine.stop], "seconds": round(parts[dist.rank][1].seconds, 3)}
    images = np.concatenate([part[0] for part in parts])  # the shares in rank order are 0..n-1
    info = parts[0][1]
    if dist.active:  # the job's throughput: all images over the time until the last share arrived
        info.seconds = time.perf_counter() - t0
        info.images_per_second = spec.n_images / max(info.seconds, 1e-9)
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
    files = export_images(images, out_dir, spec.format, provenance, per_image=per_image, workspace_root=ws.root)
    grid = make_grid(images[: min(64, len(images))], ncol=int(math.ceil(math.sqrt(min(64, len(images))))))
    ctx.image("samples", grid, "grid")
    save_png(ctx.job_dir() / "samples_grid.png", grid)  # beside, not inside, the exported set
    ctx.artifact("samples", out_dir)
    generated = {
        "run": model.run_id, "checkpoint_epoch": model.epoch, "checkpoint_step": model.step,
        "checkpoint_sha256": model.sha256, "weights": provenance["weights"], "sampler": spec.sampler,
        "steps": spec.steps, "guidance": spec.guidance, "seed": spec.seed, "job": ctx.job_id,
        "training_dataset": provenance["dataset"], "created": created,
        "class_per_image": None if labels is None else [p["class_name"] for p in per_image],
    }
    rec = register_samples(ws, ds_name, images, labels, model.class_names, generated,
                           _training_modality(ws, provenance["dataset"]))
    ctx.artifact("dataset", rec.cache_path)
    ctx.log(f"wrote {len(files)} file(s) to {out_dir} in {info.seconds:.1f} s ({info.images_per_second:.2f} images/s); "
            f"registered as the synthetic dataset {ds_name}")
    return {
        "dataset": ds_name,
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
        "processes": dist.world,
    }


def _rank_device(device: str, dist: DistInfo) -> str:
    """Under torchrun each rank samples on its own GPU (cuda:LOCAL_RANK) when the job runs on GPUs."""
    if not dist.active or device not in ("auto", "cuda"):
        return device
    import torch

    return f"cuda:{dist.local_rank}" if torch.cuda.is_available() else device
