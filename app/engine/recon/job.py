"""The "recon" job: reconstruct one MRI slice from (retrospectively) undersampled k-space.

    radsynth recon --input siat.npz --slice 125 --mask poisson2d --acceleration 4 \
        --method zero-filled cs-tv --seed 0 --out DIR --json

Reads the input (``mri.io``), undersamples it with the chosen mask unless it is already
undersampled, estimates ESPIRiT maps for multi-coil data, runs each method, and writes per method
the reconstruction (NPZ: complex image, magnitude, std, error, mask, reference; PNG), the error map
and, for score-based methods, the uncertainty map. The result lists metrics per method against the
reference (when there is one) and every file written.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from app.engine.jobs import JobContext, UserError, register
from app.engine.specs.options import SCORE_METHODS
from app.engine.specs.recon import ReconSpec

PREVIEW_EVERY_S = 0.5




def display_range(reference, recon) -> float:
    """Upper window for PNGs: the reference max, else the 99.5th percentile of the recon."""
    if reference is not None:
        return float(np.abs(reference).max())
    return float(np.percentile(np.abs(recon), 99.5)) or 1.0


def prepare_measurements(inp, mask_kind: str, acceleration: float, center_fraction: float, seed: int,
                         noise_sigma: float = 0.0):
    """(y, mask (H, W), achieved R, measured?) for a ReconInput: the measured pattern if the data are
    already undersampled, else a retrospective mask; optional seeded complex Gaussian noise."""
    from app.engine.recon.mri.masks import make_mask

    if not inp.fully_sampled:
        mask = inp.measured_mask
        achieved = float(mask.size / mask.sum())
        return inp.kspace, mask, achieved, True
    mask, achieved = make_mask(mask_kind, inp.shape, acceleration, center_fraction, seed)
    k = inp.kspace
    if noise_sigma > 0:
        rng = np.random.default_rng(seed + 7919)
        k = k + (noise_sigma / np.sqrt(2)) * (rng.standard_normal(k.shape) + 1j * rng.standard_normal(k.shape))
    return (k * mask).astype(np.complex64), mask, achieved, False


def build_operator(inp, y, mask, device="cpu"):
    """MaskedFFT for single-coil, SENSE with ESPIRiT maps for multi-coil. Returns (A, maps|None)."""
    from app.engine.recon.mri.coils import espirit_maps
    from app.engine.recon.mri.operators import MaskedFFT, SenseOp

    if not inp.multicoil:
        return MaskedFFT(mask, device), None
    try:
        maps = espirit_maps(y)
    except ValueError as exc:
        raise UserError(f"{inp.source}: cannot estimate coil sensitivities: {exc}") from None
    return SenseOp(maps, mask, device), maps


def reference_for(inp, maps=None):
    """The magnitude reference to score against (None if the input has none)."""
    if inp.reference is None:
        return None
    return np.abs(inp.reference).astype(np.float32)


def write_outputs(out: Path, name: str, recon, mask, reference, std=None, dicom=False, source="") -> dict:
    """Write NPZ + PNGs (+ DICOM) of one reconstruction; returns {what: path}."""
    from app.engine.imaging import save_png
    from app.engine.metrics.image import center_crop

    mag = np.abs(recon).astype(np.float32)
    files: dict[str, str] = {}
    arrays = {"recon": np.asarray(recon, np.complex64), "magnitude": mag, "mask": np.asarray(mask, np.float32)}
    hi = display_range(reference, mag)
    if reference is not None:
        ref = reference
        mag_c = center_crop(mag, ref.shape) if ref.shape != mag.shape else mag
        err = np.abs(mag_c - ref).astype(np.float32)
        arrays["reference"] = ref
        arrays["error"] = err
        files["error_png"] = str(save_png(out / f"{name}_error.png", err, 0.0, 0.2 * hi))
    if std is not None:
        arrays["std"] = np.asarray(std, np.float32)
        files["uncertainty_png"] = str(save_png(out / f"{name}_uncertainty.png", std, 0.0, float(np.percentile(std, 99.5)) or 1.0))
    npz = out / f"{name}_recon.npz"
    np.savez_compressed(npz, **arrays)
    files["npz"] = str(npz)
    files["recon_png"] = str(save_png(out / f"{name}_recon.png", mag, 0.0, hi))
    if dicom:
        from app.engine.recon.dicom import write_derived_mr

        files["dicom"] = str(write_derived_mr(out / f"{name}_recon.dcm", mag, description=f"RadSynth {name} reconstruction", source=source))
    return files


@register(ReconSpec)
def run_recon(spec: ReconSpec, ctx: JobContext) -> dict:
    from app.engine.devices import resolve_device
    from app.engine.metrics.image import center_crop, image_metrics
    from app.engine.recon.mri.fft import fft2c
    from app.engine.recon.mri.io import load_recon_input
    from app.engine.recon.mri.methods import reconstruct
    from app.engine.recon.mri.warm import resolve_warm_start

    methods = [str(getattr(m, "value", m)) for m in spec.method]
    model = None
    if any(m in SCORE_METHODS for m in methods):
        if not spec.run:
            raise UserError(f"methods {', '.join(m for m in methods if m in SCORE_METHODS)} need a checkpoint: give --run RUN")
        from app.engine.recon.prior import load_prior

        # a run id is looked up in the job's workspace (--workspace), also when --out sends the files elsewhere
        model = load_prior(spec.run, workspace=ctx.workspace, device=spec.device)
    device = resolve_device(spec.device) if model is None else model.device
    inp = load_recon_input(spec.input, spec.slice)
    out = Path(spec.out) if spec.out else ctx.job_dir()
    out.mkdir(parents=True, exist_ok=True)
    y, mask, achieved, measured = prepare_measurements(
        inp, str(spec.mask.value), spec.acceleration, spec.center_fraction, spec.seed, spec.noise_sigma
    )
    ctx.log(
        f"{Path(inp.source).name} slice {inp.slice_index}/{inp.n_slices}: {'x'.join(map(str, y.shape))} "
        f"{'multi' if inp.multicoil else 'single'}-coil, "
        + (f"measured sampling pattern (R = {achieved:.2f})" if measured else f"{spec.mask.value} mask, R = {achieved:.2f}")
    )
    ctx.image("mask", mask, "mask")
    ctx.image("kspace", np.log1p(np.abs(y if y.ndim == 2 else np.sqrt((np.abs(y) ** 2).sum(0)))), "kspace")
    A, maps = build_operator(inp, y, mask, device)
    reference = reference_for(inp, maps)
    if reference is not None:
        ctx.image("reference", reference, "image")
    results: dict = {}
    files: list[str] = []
    for mi, method in enumerate(methods):
        ctx.check()
        last = [0.0]

        def stream(step, total, img, method=method, mi=mi):
            ctx.check()
            ctx.progress(mi * 1000 + int(1000 * step / max(total, 1)), 1000 * len(methods), method)
            now = time.monotonic()
            if now - last[0] >= PREVIEW_EVERY_S or step == total:
                last[0] = now
                ctx.image(method, np.abs(img), "image")

        # "auto": the level and steps that follow the mask and R; a measured pattern's kind is unknown
        warm, steps = resolve_warm_start(spec.warm_start if method == "score-dds" else None, spec.steps,
                                         "steps" in spec.model_fields_set,
                                         "measured" if measured else str(spec.mask.value),
                                         achieved if measured else spec.acceleration)
        rec = reconstruct(
            method, A, y, lam=spec.lam, iterations=spec.iterations, model=model, samples=spec.samples,
            steps=steps, noise_sigma=spec.noise_sigma, seed=spec.seed, callback=stream, warm_start=warm,
            check=ctx.check,
        )
        image = np.asarray(rec.image)
        if image.ndim == 3:  # several ESPIRiT map sets: combine by root-sum-of-squares
            image = np.sqrt((np.abs(image) ** 2).sum(0))
        ctx.image(method, np.abs(image), "image")  # the final reconstruction (score methods: the posterior mean)
        entry: dict = {"seconds": round(rec.seconds, 3), **rec.info}
        if reference is not None:
            mag = np.abs(image)
            if mag.shape != reference.shape:
                mag = center_crop(mag, reference.shape)
            crop = (spec.crop, spec.crop) if spec.crop else None
            entry["metrics"] = image_metrics(reference, mag, crop)
            ctx.image(f"{method} error", np.abs(mag - reference), "difference")
            for k, v in entry["metrics"].items():
                ctx.scalar(f"{method}/{k}", 0, v)
        if rec.std is not None:
            ctx.image(f"{method} uncertainty", rec.std, "uncertainty")
            # one sample has no spread (std 0 everywhere): no correlation to report then
            if reference is not None and rec.std.shape == reference.shape and np.ptp(rec.std) > 0:
                err = np.abs(np.abs(image) - reference).ravel()
                entry["std_error_correlation"] = float(np.corrcoef(rec.std.ravel(), err)[0, 1])
        if inp.kspace.ndim == 2 and method in ("zero-filled", *SCORE_METHODS) and spec.noise_sigma == 0:
            entry["dc_error"] = float(np.abs(mask * (fft2c(image) - y)).max() / max(np.abs(y).max(), 1e-12))
        entry["files"] = write_outputs(out, method, image, mask, reference, rec.std, spec.dicom, inp.source)
        for kind_, path in entry["files"].items():
            ctx.artifact("array" if kind_ == "npz" else ("dicom" if kind_ == "dicom" else "figure"), path)
            files.append(path)
        results[method] = entry
        if "metrics" in entry:
            m = entry["metrics"]
            ctx.log(f"{method}: PSNR {m['psnr']:.2f} dB, SSIM {m['ssim']:.4f}, NMSE {m['nmse']:.4f} ({rec.seconds:.1f} s)")
        else:
            ctx.log(f"{method}: done in {rec.seconds:.1f} s (no reference to score against)")
    return {
        "input": inp.source,
        "slice": inp.slice_index,
        "shape": list(y.shape),
        "coils": int(y.shape[0]) if inp.multicoil else 1,
        "mask": {"kind": "measured" if measured else spec.mask.value, "acceleration": round(achieved, 4),
                 "center_fraction": spec.center_fraction},
        "methods": results,
        "out": str(out),
        "files": files,
    }
