"""The "recon-sweep" job: error analysis over accelerations x methods on a set of slices.

    radsynth recon-sweep --input siat.npz --slices 120 125 130 --accelerations 2 4 6 8 \
        --method zero-filled cs-tv --mask random --out DIR --json

Per image: NMSE / PSNR / SSIM; per (method, R): mean and std; the best and worst slice with their
error maps; the error as a function of k-space radius (the relative spectral error in rings of
normalised |k|: which frequencies fail); per subgroup when the input NPZ carries per-slice
attributes (arrays named ``series``, ``anatomy``, ``scanner``, ``sex``, ``age_group`` or
``attr_<name>``, of length S),
with a flag on any subgroup whose mean SSIM is more than ``flag_ssim_drop`` below the rest. Writes
``sweep.json`` (the table), ``sweep_arrays.npz`` (radial error curves, best/worst error maps) and
simple PNG plots drawn with PIL.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from app.engine.data.attributes import npz_attribute_arrays
from app.engine.jobs import JobContext, UserError, register
from app.engine.specs.options import SCORE_METHODS
from app.engine.specs.recon import ReconSweepSpec

SUBGROUP_KEYS = ("series", "anatomy", "scanner", "sex", "age_group")
N_RINGS = 16




def radial_error(reference: np.ndarray, recon: np.ndarray, n_rings: int = N_RINGS) -> np.ndarray:
    """Relative spectral error per ring of normalised |k| in [0, 1]: ||F(rec - ref)||^2 / ||F ref||^2."""
    from app.engine.recon.mri.fft import fft2c, kspace_radius

    e = np.abs(fft2c(recon.astype(np.complex64) - reference)) ** 2
    r = np.abs(fft2c(reference.astype(np.complex64))) ** 2
    rad = np.minimum(kspace_radius(reference.shape), 0.9999)
    ring = (rad * n_rings).astype(int)
    num = np.bincount(ring.ravel(), e.ravel(), n_rings)
    den = np.bincount(ring.ravel(), r.ravel(), n_rings)
    return (num / np.maximum(den, 1e-30)).astype(np.float32)


def subgroup_report(rows: list[dict], key: str, drop: float) -> list[dict]:
    """Mean SSIM per value of ``key`` vs the rest, flagged when it is ``drop`` or more below."""
    out = []
    for (method, acc) in sorted({(r["method"], r["acceleration"]) for r in rows}):
        sel = [r for r in rows if r["method"] == method and r["acceleration"] == acc and key in r]
        for v in sorted({r[key] for r in sel}):
            inside = [r["ssim"] for r in sel if r[key] == v]
            rest = [r["ssim"] for r in sel if r[key] != v]
            if not rest:
                continue
            gap = float(np.mean(rest) - np.mean(inside))
            out.append({"attribute": key, "value": v, "method": method, "acceleration": acc, "n": len(inside),
                        "mean_ssim": float(np.mean(inside)), "rest_mean_ssim": float(np.mean(rest)),
                        "flagged": gap >= drop})
    return out


def _plot_lines(path: Path, curves: dict[str, np.ndarray], title: str, size=(520, 320)) -> Path:
    """A minimal line plot with PIL (matplotlib is not a dependency)."""
    from PIL import Image, ImageDraw

    w, h = size
    im = Image.new("RGB", size, "white")
    d = ImageDraw.Draw(im)
    x0, y0, x1, y1 = 50, 30, w - 140, h - 30
    d.rectangle([x0, y0, x1, y1], outline="black")
    d.text((x0, 8), title, fill="black")
    vals = np.concatenate([np.log10(np.maximum(c, 1e-8)) for c in curves.values()])
    lo, hi = float(vals.min()), float(vals.max()) or 1.0
    hi = hi if hi > lo else lo + 1
    d.text((4, y0), f"1e{hi:.1f}", fill="black")
    d.text((4, y1 - 10), f"1e{lo:.1f}", fill="black")
    d.text((x0, y1 + 8), "|k| 0", fill="black")
    d.text((x1 - 20, y1 + 8), "1", fill="black")
    colours = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]
    for i, (name, c) in enumerate(curves.items()):
        lc = np.log10(np.maximum(c, 1e-8))
        pts = [(x0 + (x1 - x0) * j / max(len(c) - 1, 1), y1 - (y1 - y0) * (v - lo) / (hi - lo)) for j, v in enumerate(lc)]
        col = colours[i % len(colours)]
        d.line(pts, fill=col, width=2)
        d.text((x1 + 8, y0 + 14 * i), name[:20], fill=col)
    im.save(path)
    return path


@register(ReconSweepSpec)
def run_recon_sweep(spec: ReconSweepSpec, ctx: JobContext) -> dict:
    from app.engine.imaging import save_png
    from app.engine.metrics.image import aggregate, image_metrics
    from app.engine.recon.job import build_operator, prepare_measurements
    from app.engine.recon.mri.io import load_recon_input
    from app.engine.recon.mri.methods import reconstruct
    from app.engine.recon.mri.warm import resolve_warm_start

    methods = [str(getattr(m, "value", m)) for m in spec.method]
    model = None
    if any(m in SCORE_METHODS for m in methods):
        if not spec.run:
            raise UserError("score-based methods need a checkpoint: give --run RUN")
        from app.engine.recon.prior import load_prior

        model = load_prior(spec.run, workspace=ctx.workspace, device=spec.device)
    attrs = {}
    if spec.input.lower().endswith(".npz"):
        from app.engine.data.files import open_npz

        with open_npz(spec.input) as z:
            arrays = {key: (key, z[key]) for key in SUBGROUP_KEYS if key in z.files}
        # and attr_<name> arrays, read as ingest and evaluation read them
        arrays.update({name: (f"attr_{name}", v) for (split, name), v in npz_attribute_arrays(spec.input).items()
                       if split is None})
        for key, (field, vals) in arrays.items():
            if vals.ndim != 1:
                continue
            too_short = [s for s in spec.slices if not -len(vals) <= s < len(vals)]
            if too_short:
                raise UserError(f"{spec.input}: attribute array {field!r} has {len(vals)} values, "
                                f"too few for slice(s) {too_short}; give one value per slice")
            attrs[key] = vals
    out = Path(spec.out) if spec.out else ctx.job_dir()
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    ring: dict[str, list[np.ndarray]] = {}
    maps_keep: dict[tuple, tuple] = {}
    total = len(spec.slices) * len(spec.accelerations) * len(methods)
    step = 0
    for s in spec.slices:
        inp = load_recon_input(spec.input, s)
        if not inp.fully_sampled or inp.reference is None:
            raise UserError(f"{spec.input}: slice {s} is not fully sampled; the sweep needs a reference")
        ref = np.asarray(inp.reference)
        ref_c = ref if np.iscomplexobj(ref) else ref.astype(np.complex64)
        ref_mag = np.abs(ref).astype(np.float32)
        for acc in spec.accelerations:
            y, mask, achieved, _ = prepare_measurements(inp, spec.mask.value, acc, spec.center_fraction, spec.seed + s)
            A, _ = build_operator(inp, y, mask)
            for method in methods:
                ctx.check()
                # "auto": each acceleration gets the warm start's level and steps for it (warm.warm_default)
                warm, steps = resolve_warm_start(spec.warm_start if method == "score-dds" else None, spec.steps,
                                                 "steps" in spec.model_fields_set, spec.mask.value, acc)
                rec = reconstruct(method, A, y, lam=spec.lam, iterations=spec.iterations, model=model,
                                  samples=spec.samples, steps=steps, seed=spec.seed, warm_start=warm,
                                  check=ctx.check)
                img = np.asarray(rec.image)
                mag = np.abs(img)
                m = image_metrics(ref_mag, mag)
                row = {"slice": s, "method": method, "acceleration": acc, "achieved": round(achieved, 4), **m,
                       "seconds": round(rec.seconds, 3)}
                if method in SCORE_METHODS:
                    row.update(steps=steps, warm_start=warm)
                for key, vals in attrs.items():
                    row[key] = vals[s].item() if hasattr(vals[s], "item") else vals[s]
                rows.append(row)
                key = f"{method} R={acc:g}"
                ring.setdefault(key, []).append(radial_error(ref_c if not inp.multicoil else ref_mag, img if not inp.multicoil else mag))
                for which in ("best", "worst"):
                    cur = maps_keep.get((key, which))
                    better = cur is None or (m["ssim"] > cur[0] if which == "best" else m["ssim"] < cur[0])
                    if better:
                        maps_keep[(key, which)] = (m["ssim"], s, np.abs(mag - ref_mag).astype(np.float32))
                step += 1
                ctx.progress(step, total, key)
                ctx.scalar(f"{key}/ssim", s, m["ssim"])
    table = []
    for method in methods:
        for acc in spec.accelerations:
            sel = [r for r in rows if r["method"] == method and r["acceleration"] == acc]
            key = f"{method} R={acc:g}"
            best, worst = maps_keep[(key, "best")], maps_keep[(key, "worst")]
            entry = {"method": method, "acceleration": acc, **aggregate(sel),
                     "best_slice": best[1], "worst_slice": worst[1],
                     "radial_error": np.mean(ring[key], axis=0).tolist()}
            if method in SCORE_METHODS:  # the same for every slice of one (method, R)
                entry.update(steps=sel[0]["steps"], warm_start=sel[0]["warm_start"])
            table.append(entry)
    subgroups = [g for key in attrs for g in subgroup_report(rows, key, spec.flag_ssim_drop)]
    flagged = [g for g in subgroups if g["flagged"]]
    for g in flagged:
        ctx.log(f"subgroup {g['attribute']}={g['value']} ({g['method']}, R={g['acceleration']:g}): mean SSIM "
                f"{g['mean_ssim']:.3f} vs {g['rest_mean_ssim']:.3f} for the rest", "warning")
    files = []
    arrays = {f"radial_error/{k}": np.mean(v, axis=0) for k, v in ring.items()}
    vmax = max(float(v[2].max()) for v in maps_keep.values()) or 1.0
    for (key, which), (ssim_v, s, err) in maps_keep.items():
        arrays[f"{which}_error/{key}"] = err
        safe = key.replace(" ", "_").replace("=", "")
        p = save_png(out / f"{safe}_{which}_error_slice{s}.png", err, 0.0, 0.5 * vmax)
        files.append(str(p))
        ctx.image(f"{key} {which} (slice {s})", err, "difference")
    np.savez_compressed(out / "sweep_arrays.npz", **arrays)
    files.append(str(out / "sweep_arrays.npz"))
    plot = _plot_lines(out / "radial_error.png", {k: np.mean(v, axis=0) for k, v in ring.items()},
                       "relative k-space error per |k| ring")
    files.append(str(plot))
    result = {"input": spec.input, "mask": spec.mask.value, "table": table, "rows": rows, "subgroups": subgroups,
              "flagged_subgroups": flagged, "out": str(out), "files": files}
    (out / "sweep.json").write_text(json.dumps(result, indent=1, default=float))
    files.append(str(out / "sweep.json"))
    for f in files:
        ctx.artifact("report" if f.endswith(".json") else ("array" if f.endswith(".npz") else "figure"), f)
    return result
