"""The "evaluate" job: how close, how diverse and how plausible a generated set is, against real data.

Every table has three rows compared with the same real reference set: the generated set, real
held-out images (the floor: what a perfect generator would score with this many images) and the
pixel-noise baseline (held-out images + Gaussian noise sigma 0.3: a naive generator to beat).
Every number names its extractor and image counts.

With ``--utility`` the job also measures downstream utility (``utility.py``): a ResNet-18-style
classifier trained on the real images only and on real + generated images, both tested on the
held-out real images (AUC with bootstrap CIs, accuracy, F1, confusion matrix, McNemar; per class,
and per subgroup where the test set carries attributes: a workspace dataset's stored ones, e.g. sex
and age group from DICOM headers, or an NPZ's ``attr_<name>`` arrays). Results go to
evaluation.json and a self-contained evaluation.html (``report.py``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from app.engine.audit.nn import check_same_size
from app.engine.jobs import JobContext, UserError, register
from app.engine.specs.evaluate import EvaluateSpec


def evaluate_sets(ref: np.ndarray, rows: dict[str, np.ndarray], extractor, *, kid_subsets: int = 50,
                  kid_subset_size: int = 1000, pr_k: int = 3, ms_pairs: int = 200, clusters: int = 20,
                  seed: int = 0, check=lambda: None) -> dict:
    """Metrics of each set in ``rows`` against the real reference ``ref`` with one extractor."""
    from app.engine.metrics.collapse import mode_collapse
    from app.engine.metrics.distribution import fid, kid, precision_recall
    from app.engine.metrics.diversity import ms_ssim_diversity
    from app.engine.metrics.spectra import histogram_distances, spectrum_distance

    fr = extractor(ref)
    # hand-crafted features come in mixed units: standardise by the real reference's statistics
    # (an affine map fixed by the reference, the same for every row, so rows stay comparable)
    mu, sd = (fr.mean(0), fr.std(0) + 1e-8) if extractor.name == "radiomics" else (0.0, 1.0)
    fr = (fr - mu) / sd
    out = {}
    for name, imgs in rows.items():
        check()
        fg = (extractor(imgs) - mu) / sd
        km, ks = kid(fr, fg, n_subsets=kid_subsets, subset_size=kid_subset_size, seed=seed)
        p, r = precision_recall(fr, fg, k=pr_k) if min(len(fr), len(fg)) > pr_k else (float("nan"), float("nan"))
        out[name] = {
            "n_real": len(ref), "n": len(imgs), "extractor": extractor.name,
            "fid": fid(fr, fg), "kid_mean": km, "kid_std": ks, "precision": p, "recall": r,
            "histogram": histogram_distances(ref, imgs), "spectrum_log_distance": spectrum_distance(ref, imgs),
            "diversity": ms_ssim_diversity(imgs, ms_pairs, seed) if len(imgs) >= 2 else None,
            "mode_collapse": mode_collapse(fr, fg, clusters, seed) if min(len(fr), len(fg)) >= 2 else None,
        }
    return out




def _split_holdout(spec: EvaluateSpec, ctx: JobContext):
    """(real, generated, held-out, size record): every set at one size, the real set's unless
    ``spec.size`` states one (``metrics.sets.load_at_one_size``)."""
    from app.engine.metrics.sets import load_at_one_size, size_sentence, subset

    try:
        ws = ctx.workspace
    except Exception:
        ws = None
    real_ref, hold_ref = spec.real, spec.holdout
    if hold_ref is None and ws is not None and ":" not in real_ref and not Path(real_ref).exists() and ws.has_dataset(real_ref):
        from app.engine.data.cache import ImageDataset

        ds = ImageDataset.from_workspace(ws, real_ref)
        for split in ("val", "test"):
            if len(ds.indices(split)):
                real_ref, hold_ref = f"{spec.real}:train", f"{spec.real}:{split}"
                break
    sets, sizes = load_at_one_size(
        {"real": (real_ref, "real images"), "generated": (spec.generated, "generated images"),
         "holdout": (hold_ref, "held-out images")}, ws, size=spec.size, reference="real", limit=spec.limit)
    real, gen, hold = sets["real"], sets["generated"], sets["holdout"]
    if sizes["resampled"]:
        ctx.log(size_sentence(sizes))
    if hold is None:
        if len(real.images) < 8:
            raise UserError(f"real images {spec.real}: {len(real.images)} images cannot be split into reference and held-out halves")
        perm = np.random.default_rng(spec.seed).permutation(len(real.images))
        a, b = perm[: len(perm) // 2], perm[len(perm) // 2 :]
        hold = subset(real, b, real.source + " (held-out half)")  # attributes follow their images
        real = subset(real, a, real.source + " (reference half)")
        ctx.log("no held-out set: --real split in two seeded halves (reference / held-out floor)")
    for s, what in ((gen, "generated images"), (hold, "held-out images")):
        check_same_size(s.images, real.images, what, "real images")
    from app.engine.metrics.sets import align_labels

    return real, align_labels(real, gen), align_labels(real, hold), sizes


@register(EvaluateSpec)
def run_evaluate(spec: EvaluateSpec, ctx: JobContext) -> dict:
    from app.engine.devices import resolve_device
    from app.engine.imaging import make_grid
    from app.engine.metrics.features import get_extractor
    from app.engine.metrics.plausibility import rank_implausible
    from app.engine.metrics.spectra import radial_power_spectrum

    device = str(resolve_device(spec.device))
    real, gen, hold, sizes = _split_holdout(spec, ctx)
    test = _utility_test_set(spec, ctx, real, gen, hold, sizes) if spec.utility else None  # labels checked before any work
    model = None
    if spec.extractor == "domain":
        from app.engine.evaluation.utility import train_classifier

        if real.labels is None:
            raise UserError(f"the domain extractor trains a classifier on labelled real images; {spec.real} has no labels")
        model = train_classifier(real.images, real.labels, seed=spec.seed, device=device, check=ctx.check)
    ext = get_extractor(spec.extractor, weights=spec.inception_weights, model=model, device=device)
    rng = np.random.default_rng(spec.seed)
    noise = np.clip(hold.images + rng.normal(0, spec.noise_sigma, hold.images.shape), -1, 1).astype(np.float32)
    rows = {"generated": gen.images, "real_holdout_floor": hold.images, f"noise_baseline_sigma{spec.noise_sigma:g}": noise}
    kw = dict(kid_subsets=spec.kid_subsets, kid_subset_size=spec.kid_subset_size, ms_pairs=spec.ms_ssim_pairs,
              clusters=spec.clusters, seed=spec.seed, check=ctx.check)
    ctx.log(f"evaluate with {ext.name} features: {len(real.images)} real reference, {len(gen.images)} generated, {len(hold.images)} held-out")
    groups = [("overall", None)]
    if spec.per_class and real.labels is not None and gen.labels is not None:
        groups += [(real.class_names[c] if c < len(real.class_names) else str(c), c) for c in np.unique(real.labels)]
    tables = {}
    for gi, (gname, c) in enumerate(groups):
        ctx.check()
        ctx.progress(gi, len(groups), f"metrics: {gname}")
        if c is None:
            ref, sets = real.images, rows
        else:
            ref = real.images[real.labels == c]
            sel = {"generated": gen.labels == c}
            if hold.labels is not None:
                sel.update({k: hold.labels == c for k in rows if k != "generated"})
            sets = {k: v[sel[k]] for k, v in rows.items() if k in sel}
            if len(ref) < 4 or any(len(v) < 4 for v in sets.values()):
                ctx.log(f"class {gname}: fewer than 4 images in a set, skipped", "warning")
                continue
        tables[gname] = evaluate_sets(ref, sets, ext, **kw)
    ctx.progress(len(groups), len(groups), "metrics")
    plaus = rank_implausible(real.images, gen.images)
    least = [r["index"] for r in plaus["least_plausible"]]
    ctx.image("least plausible generated images", make_grid(gen.images[least]), "grid")
    freqs, p_real = radial_power_spectrum(real.images)
    _, p_gen = radial_power_spectrum(gen.images)
    result = {
        "extractor": ext.name, "counts": {"real": len(real.images), "generated": len(gen.images), "holdout": len(hold.images)},
        "tables": tables, "least_plausible": plaus["least_plausible"],
        "spectrum": {"frequency": freqs.round(5).tolist(), "real_log10_power": p_real.round(4).tolist(),
                     "generated_log10_power": p_gen.round(4).tolist()},
        "sources": {"real": real.source, "generated": gen.source, "holdout": hold.source},
        "image_size": sizes,
    }
    if test is not None:
        from app.engine.evaluation.utility import downstream_utility

        ctx.progress(0, 1, "downstream utility")
        subgroups = _subgroup_attributes(test, ctx.log)
        result["utility"] = downstream_utility(
            real.images, real.labels, gen.images, gen.labels, test.images, test.labels, epochs=spec.utility_epochs,
            seed=spec.seed, device=device, width=spec.utility_width, check=ctx.check, n_boot=spec.utility_bootstrap,
            test_attributes=subgroups or None, class_names=real.class_names or None, log=ctx.log)
        result["utility"]["sources"] = {"real_train": real.source, "synthetic": gen.source, "test": test.source}
        u = result["utility"]
        for key in ("real_only", "real_plus_synthetic"):
            if "auc" in u[key]:
                a = u[key]["auc"]
                ctx.scalar(f"utility AUC {key}", 0, a["auc"])
                ctx.log(f"utility {key}: AUC {a['auc']:.3f} (95% CI {a['ci95'][0]:.3f}-{a['ci95'][1]:.3f}), "
                        f"accuracy {u[key]['accuracy']:.3f}, F1 {u[key]['f1_macro']:.3f} on {u['counts']['test']} held-out real")
        ctx.log(f"utility McNemar p = {u['mcnemar']['p_value']:.4g}")
        ctx.progress(1, 1, "downstream utility")
    out = Path(spec.out) if spec.out else ctx.job_dir()
    out.mkdir(parents=True, exist_ok=True)
    from app.engine.evaluation.report import write_evaluation_report
    from app.engine.jobs import to_jsonable

    result["noise_sigma"] = spec.noise_sigma
    result["per_class_counts"] = _class_counts(real, gen, hold)
    (out / "evaluation.json").write_text(json.dumps(to_jsonable(result), indent=2))
    ctx.artifact("report", out / "evaluation.json")
    html = write_evaluation_report(to_jsonable(result), real, gen, out)
    ctx.artifact("report", html)
    o = tables.get("overall", {})
    for name, row in o.items():
        ctx.log(f"{name}: FID({ext.name}) {row['fid']:.3f}  KID {row['kid_mean']:.4f}±{row['kid_std']:.4f}  "
                f"P {row['precision']:.3f} R {row['recall']:.3f}  (n={row['n']} vs {row['n_real']} real)")
    result["out"] = str(out)
    result["html"] = str(html)
    return result


def _class_counts(real, gen, hold) -> dict:
    """Images per class of each set (by the real set's class names), for the report."""
    out = {}
    for name, s in (("real", real), ("generated", gen), ("holdout", hold)):
        if s.labels is not None:
            lab = np.asarray(s.labels)
            names = real.class_names or [str(c) for c in range(int(lab.max(initial=0)) + 1)]
            out[name] = {names[c] if c < len(names) else str(c): int((lab == c).sum()) for c in np.unique(lab[lab >= 0])}
    return out


def _subgroup_attributes(test, log) -> dict:
    """The test set's attributes that split it into subgroups: one with a single value everywhere
    (all "ACME", all "CR") only repeats the overall result and is left out, with a log line."""
    out = {}
    for name, values in (test.attributes or {}).items():
        distinct = set(np.asarray(values).astype(str).tolist())
        if len(distinct) > 1:
            out[name] = values
        else:
            log(f"utility subgroups: attribute {name!r} has one value ({', '.join(distinct)}) on the test images; "
                "no per-subgroup rows for it")
    if out:
        log(f"utility subgroups by {', '.join(out)} (from {test.source})")
    return out


def _utility_test_set(spec: EvaluateSpec, ctx: JobContext, real, gen, hold, sizes: dict):
    """The held-out real test set of the utility classifier, labels aligned to the real classes and
    resampled to the size of the other sets (noted in ``sizes``); every set's labels checked up front,
    so a missing label fails before minutes of metrics."""
    from app.engine.evaluation.utility import check_labelled
    from app.engine.metrics.sets import align_labels, load_set, resample

    test = hold
    if spec.utility_test:
        try:
            ws = ctx.workspace
        except Exception:
            ws = None
        test = load_set(spec.utility_test, ws, size=spec.size, what="utility test images")
        sizes["names"]["utility_test"] = "utility test images"
        if test.images.shape[2:] != real.images.shape[2:]:
            sizes["stored"]["utility_test"] = [int(v) for v in test.images.shape[2:]]
            sizes["resampled"].append("utility_test")
            test = resample(test, int(sizes["size"]))
        test = align_labels(real, test)
        check_same_size(test.images, real.images, "utility test images", "real images")
    check_labelled(real.labels, len(real.images), f"the real training images ({spec.real})")
    n_cls = int(np.max(real.labels)) + 1
    check_labelled(gen.labels, len(gen.images), f"the generated images ({spec.generated})", n_cls)
    check_labelled(test.labels, len(test.images), f"the held-out real test images ({spec.utility_test or test.source})", n_cls)
    return test
