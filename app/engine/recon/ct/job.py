"""The "ct-recon" job: sparse-view CT reconstruction or denoising of one slice, scored against it.

    radsynth ct-recon --input ct_head_hu.npz --slice 54 --task sparse-view --views 60 \
        --method fbp backprojection --out DIR --json

Input: an NPZ with ``volume_hu`` (S, H, W) or ``image_hu`` (H, W) in Hounsfield units, or a CT DICOM
file (rescaled to HU; another modality, e.g. MR, is refused). The slice is mapped to mu units (``radon.hu_to_unit``) inside the scanner's
circle; ``sparse-view`` simulates a parallel-beam sinogram of ``views`` angles, ``denoise`` adds
Gaussian noise of ``noise_hu`` HU (seeded). Methods: fbp, backprojection (sparse view), noisy
(denoise: the input itself), score (a 1-channel CT prior: ``--run``). PSNR / SSIM / NMSE against
the clean slice (data range = its max), NPZ and PNG outputs.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from app.engine.jobs import JobContext, UserError, register
from app.engine.specs.recon import CTReconSpec

CT_METHODS = ("fbp", "backprojection", "noisy", "score")




def load_ct_slice(path: str | Path, index: int) -> np.ndarray:
    """One slice in HU (H, W) float32 from an NPZ (volume_hu / image_hu) or a DICOM file."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: file does not exist")
    if path.suffix.lower() == ".npz":
        from app.engine.data.files import open_npz

        with open_npz(path) as z:
            key = "volume_hu" if "volume_hu" in z.files else ("image_hu" if "image_hu" in z.files else None)
            if key is None:
                raise UserError(f"{path}: NPZ has no 'volume_hu' or 'image_hu' array (found: {', '.join(z.files)})")
            arr = z[key]
        if arr.ndim == 2:
            arr = arr[None]
        if arr.ndim != 3:
            raise UserError(f"{path}: {key} must be (S, H, W) or (H, W), got shape {arr.shape}")
        if not 0 <= index < arr.shape[0]:
            raise UserError(f"{path}: slice {index} is out of range (0..{arr.shape[0] - 1})")
        img = arr[index].astype(np.float32)
    else:
        from app.engine.data.files import read_dicom_dataset

        ds = read_dicom_dataset(path)
        try:
            modality = str(getattr(ds, "Modality", "") or "")
            img = ds.pixel_array.astype(np.float32) * float(getattr(ds, "RescaleSlope", 1)) + float(
                getattr(ds, "RescaleIntercept", 0))
        except Exception as exc:
            raise UserError(f"{path}: the DICOM pixel data cannot be read ({exc})") from None
        if modality != "CT":  # HU and a CT geometry are assumed below: an MR or X-ray image is not one
            raise UserError(f"{path}: the DICOM modality is {modality or 'not given'}, not CT; CT reconstruction "
                            "needs a CT slice in Hounsfield units (MR images go to the MRI tab)")
    if img.shape[0] != img.shape[1]:
        raise UserError(f"{path}: CT slices must be square for the parallel-beam projector, got {img.shape}")
    if not np.all(np.isfinite(img)):
        raise UserError(f"{path}: slice {index} contains NaN or infinite values")
    return img


@register(CTReconSpec)
def run_ct_recon(spec: CTReconSpec, ctx: JobContext) -> dict:
    from app.engine.imaging import save_png
    from app.engine.metrics.image import image_metrics
    from app.engine.recon.ct import radon as R

    hu = load_ct_slice(spec.input, spec.slice)
    n = hu.shape[0]
    support = R.circle_mask(n)
    clean = R.hu_to_unit(hu) * support
    out = Path(spec.out) if spec.out else ctx.job_dir()
    out.mkdir(parents=True, exist_ok=True)
    prior = None
    if "score" in spec.method:
        if not spec.run:
            raise UserError("the score method needs a CT prior checkpoint: give --run RUN")
        from app.engine.recon.prior import load_prior

        prior = load_prior(spec.run, workspace=ctx.workspace, device=spec.device, channels=1)
    bad = [m for m in spec.method if (spec.task == "sparse-view" and m == "noisy") or (spec.task == "denoise" and m in ("fbp", "backprojection"))]
    if bad:
        raise UserError(f"method(s) {', '.join(bad)} do not apply to task {spec.task!r}")
    ctx.image("reference", clean, "image")
    angles = R.view_angles(spec.views)
    if spec.task == "sparse-view":
        sino = R.sinogram(clean, angles)
        ctx.image("sinogram", sino, "image")
        measured = {"views": spec.views}
    else:
        rng = np.random.default_rng(spec.seed)
        noisy = (clean + (spec.noise_hu / 4096.0) * rng.standard_normal(clean.shape).astype(np.float32)) * support
        ctx.image("noisy", noisy, "image")
        measured = {"noise_hu": spec.noise_hu}
    results: dict = {}
    files: list[str] = []
    for mi, method in enumerate(spec.method):
        ctx.check()
        std = None
        t0 = time.perf_counter()

        def cb(step, total, img, mi=mi, method=method):
            ctx.check()
            ctx.progress(mi * 1000 + int(1000 * step / total), 1000 * len(spec.method), method)
            if step == total or step % 10 == 0:
                ctx.image(method, img, "image")

        if method == "fbp":
            rec = R.fbp(sino, angles)
        elif method == "backprojection":
            bp = R.backprojection(sino, angles)
            rec = bp * (clean.mean() / max(float(bp.mean()), 1e-12))  # naive: scaled to the right mean
        elif method == "noisy":
            rec = noisy
        else:
            from app.engine.recon.ct.methods import score_denoise, score_sparse_view

            if spec.task == "sparse-view":
                A = R.RadonOp(n, angles, prior.device)
                rec, std, _ = score_sparse_view(prior, A, sino.T, spec.samples, spec.steps, seed=spec.seed, callback=cb)
            else:
                rec, std, _ = score_denoise(prior, noisy, spec.noise_hu / 4096.0, spec.samples, spec.steps,
                                            seed=spec.seed, callback=cb)
        rec = np.clip(np.asarray(rec, np.float32), 0.0, None) * support
        seconds = time.perf_counter() - t0
        metrics = image_metrics(clean, rec)
        err = np.abs(rec - clean)
        ctx.image(method, rec, "image")
        ctx.image(f"{method} error", err, "difference")
        arrays = {"recon_mu": rec, "recon_hu": R.unit_to_hu(rec), "error_mu": err, "reference_mu": clean}
        entry_files = {"npz": str(out / f"{method}_ct.npz")}
        if std is not None:
            arrays["std_mu"] = std.astype(np.float32)
            ctx.image(f"{method} uncertainty", std, "uncertainty")
            entry_files["uncertainty_png"] = str(save_png(out / f"{method}_uncertainty.png", std, 0.0, float(std.max()) or 1.0))
        np.savez_compressed(entry_files["npz"], **arrays)
        entry_files["recon_png"] = str(save_png(out / f"{method}_ct.png", rec, 0.0, float(clean.max())))
        entry_files["error_png"] = str(save_png(out / f"{method}_error.png", err, 0.0, 0.1 * float(clean.max())))
        for k, p in entry_files.items():
            ctx.artifact("array" if k == "npz" else "figure", p)
            files.append(p)
        results[method] = {"metrics": metrics, "seconds": round(seconds, 3), "files": entry_files}
        ctx.log(f"{method}: PSNR {metrics['psnr']:.2f} dB, SSIM {metrics['ssim']:.4f}")
    return {"input": str(spec.input), "slice": spec.slice, "task": spec.task, **measured, "methods": results,
            "out": str(out), "files": files}
