"""Memorization audit of synthetic images: nearest training images, a calibrated copy rule, a gate.

For every generated image the audit finds its nearest training images under several measures
(``app/engine/audit/nn.py``: pixel L2, NCC, coarse-scale NCC, SSIM, feature cosine; exact,
chunked, shift-tolerant), does the same for held-out real images (real images the model never
saw), and flags generated images that are closer to a training image than genuinely new images
of the same population are.

The default rule ("calibrated") is built for small held-out sets that differ from the generated
set by chance (other patients, other series): a bare percentile of a few dozen distances is a
noisy, optimistic floor and flags new images. Instead, per measure:

    floor_m = exp(median(log h_m) - z * 1.4826 * MAD(log h_m))      (robust log-normal lower bound)
    flag if   d_m < margin * floor_m   for ANY measure m in the rule

with h_m the held-out nearest distances, z = 3 and margin = 0.5 by default. Median and MAD ignore
the odd held-out image that is itself a duplicate of a training image (PneumoniaMNIST has some),
z extrapolates the lower tail beyond what a small held-out set shows, and the margin covers the
shift between held-out and generated populations (SIAT: series 13-14 sit up to 0.7x the floor of
series 12). Near-copies sit far below (shift 1 px: 0; noise sigma 0.05: NCC distance < 0.04;
intensity rescale: NCC distance 0), see benchmarks/bench_audit_power.py.

Overrides: "percentile" (threshold = margin * P-th percentile of the held-out distances) and
"absolute" (a distance threshold per measure). ``flag`` applies any rule to stored distances
without re-running the search, so a panel can move a threshold live.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import time
from dataclasses import dataclass, field
from html import escape as html_escape
from pathlib import Path

import numpy as np

from app.engine.audit.nn import (
    MEASURES,
    PIXEL_MEASURES,
    aligned_difference,
    check_images,
    check_same_size,
    coarse_factor,
    downsample,
    feature_candidates,
    pixel_candidates,
    refine_pairs,
)
from app.engine.jobs import JobContext, UserError, register
from app.engine.specs.evaluate import AuditSpec
from app.engine.specs.options import DEFAULT_RULE_MEASURES, INVARIANT_MEASURES, RULE_MODES, RuleMode  # noqa: F401

#: used only when no held-out set exists (uncalibrated; the report says so). Distance units.
DEFAULT_ABSOLUTE = {"l2": 0.03, "ncc": 0.02, "l2_coarse": 0.02, "ncc_coarse": 0.01, "ssim": 0.05, "invariant": 0.02}
#: the transformation is fitted and named for at most this many flagged images (closest first)
MAX_DESCRIBED = 500
TRANSFORM_KEYS = ("mirrored", "rotation", "zoom", "dy", "dx")


# --------------------------------------------------------------------------------------------
# rules
# --------------------------------------------------------------------------------------------


@dataclass
class FlagRule:
    """How distances become flags. All thresholds are distances: flag when distance < threshold."""

    mode: str = "calibrated"
    measures: tuple[str, ...] = DEFAULT_RULE_MEASURES
    margin: float = 0.5
    z: float = 3.0
    percentile: float = 1.0
    thresholds: dict[str, float] = field(default_factory=dict)
    #: second route (calibrated / percentile modes): also flag when the distance is below the
    #: floor itself (no margin) AND the nearest is < ratio x the second-nearest distinct training
    #: image: a lone, much closer neighbour is the signature of a copy (Lowe's ratio test, IJCV
    #: 2004, sec. 7.1); a new image has several neighbours at similar distances. 0 disables. The
    #: transform-invariant measures (invariant, descriptor) use the margin route only.
    ratio: float = 0.5

    def __post_init__(self):
        if self.mode not in RULE_MODES:
            raise UserError(f"flag rule mode {self.mode!r} is not one of {', '.join(RULE_MODES)}")
        self.measures = tuple(self.thresholds) if self.mode == "absolute" and self.thresholds else tuple(self.measures)
        bad = [m for m in self.measures if m not in MEASURES]
        if bad:
            raise UserError(f"flag rule measure(s) {', '.join(bad)} not among {', '.join(MEASURES)}")
        if not self.measures:
            raise UserError("a flag rule needs at least one measure")
        if not 0 <= self.percentile <= 100:
            raise UserError(f"percentile {self.percentile} is outside 0..100")
        if self.margin <= 0:
            raise UserError(f"margin {self.margin} must be positive")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def robust_floor(holdout: np.ndarray, z: float = 3.0) -> float:
    """exp(median(log h) - z * 1.4826 * MAD(log h)): a lower bound of new-image distances that
    a few duplicates in the held-out set do not drag to zero (robust log-normal tail)."""
    h = np.asarray(holdout, np.float64)
    h = h[np.isfinite(h)]
    if len(h) == 0:
        raise UserError("no held-out distances to calibrate the threshold with")
    lh = np.log(np.maximum(h, 1e-6))
    med = float(np.median(lh))
    mad = 1.4826 * float(np.median(np.abs(lh - med)))
    return float(np.exp(med - z * mad))


def thresholds_for(holdout_distances: dict[str, np.ndarray] | None, rule: FlagRule) -> dict[str, float]:
    """The distance threshold of each of the rule's measures."""
    if rule.mode == "absolute":
        missing = [m for m in rule.measures if m not in rule.thresholds]
        if missing:
            raise UserError(f"absolute rule has no threshold for {', '.join(missing)}")
        return {m: float(rule.thresholds[m]) for m in rule.measures}
    if not holdout_distances:
        raise UserError(f"the {rule.mode} rule needs held-out real images (give --holdout) or use absolute thresholds")
    out = {}
    for m in rule.measures:
        if m not in holdout_distances:
            raise UserError(f"no held-out distances for measure {m!r}")
        h = np.asarray(holdout_distances[m], np.float64)
        if rule.mode == "calibrated":
            out[m] = rule.margin * robust_floor(h, rule.z)
        else:
            out[m] = rule.margin * float(np.percentile(h[np.isfinite(h)], rule.percentile))
    return out


def flag(distances: dict[str, np.ndarray], holdout_distances: dict[str, np.ndarray] | None, rule: FlagRule | dict | float | None = None, measure: str = "ncc") -> np.ndarray:
    """Boolean mask (N,) of flagged images: any measure's distance below its threshold.

    ``rule``: a FlagRule, its dict, None (the default calibrated rule) or a bare float (an
    absolute threshold on ``measure``). Cheap: no search; a panel can call it on every drag.
    """
    if rule is None:
        rule = FlagRule()
    elif isinstance(rule, (int, float)):
        rule = FlagRule(mode="absolute", thresholds={measure: float(rule)})
    elif isinstance(rule, dict):
        rule = FlagRule(**rule)
    th = thresholds_for(holdout_distances, rule)
    n = len(next(iter(distances.values())))
    mask = np.zeros(n, bool)
    for m, t in th.items():
        if m not in distances:
            raise UserError(f"no distances for measure {m!r} (have {', '.join(distances)})")
        d = np.asarray(distances[m])
        mask |= np.isfinite(d) & (d < t)
        second = distances.get(f"{m}@2")
        # not for the invariant measures: searching many transforms makes a lone close neighbour common
        # among new images too (PneumoniaMNIST: a new X-ray at 0.014 whose next neighbour is at 0.06)
        if rule.mode != "absolute" and rule.ratio > 0 and second is not None and m not in INVARIANT_MEASURES:
            second = np.asarray(second)
            # no second distinct candidate scored (inf / NaN): the ratio route does not apply
            mask |= np.isfinite(d) & np.isfinite(second) & (d < t / rule.margin) & (d < rule.ratio * second)
    return mask


def holdout_rank(distances: dict[str, np.ndarray], holdout_distances: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Where each generated image falls in the held-out distribution: the fraction (0..1) of
    held-out images whose nearest training image is closer (0 = closer than every new image)."""
    out = {}
    for m, d in distances.items():
        if "@" in m:
            continue
        h = np.sort(np.asarray(holdout_distances.get(m, []), np.float64))
        h = h[np.isfinite(h)]
        if len(h):
            out[m] = (np.searchsorted(h, np.asarray(d, np.float64), side="left") / len(h)).astype(np.float32)
    return out


# --------------------------------------------------------------------------------------------
# the search
# --------------------------------------------------------------------------------------------


@dataclass
class Matches:
    """Nearest training image of each query under each measure."""

    distances: dict[str, np.ndarray]  # measure -> (N,) float32 distance to the nearest; "m@2": second nearest
    index: dict[str, np.ndarray]  # measure -> (N,) int64 training index of the nearest
    shift: np.ndarray  # (N, 2) best-NCC shift (dy, dx) towards the NCC-nearest training image
    #: the invariant search's coarse transform towards the invariant-nearest training image, per query:
    #: mirrored / rotation / zoom / dy / dx (N,) (``invariant.py``'s convention); None without it
    transform: dict[str, np.ndarray] | None = None


def nearest_training_matches(
    query: np.ndarray,
    train: np.ndarray,
    query_features: np.ndarray | None = None,
    train_features: np.ndarray | None = None,
    k: int = 5,
    shift_radius: int = 2,
    with_ssim: bool = True,
    device: str | None = None,
    progress=None,
    label: str = "",
    descriptor=None,
) -> Matches:
    """For each query image its nearest training image under every measure (see nn.py).

    Candidates: the top-k under full-resolution L2, NCC and coarse NCC (exhaustive); these are
    re-scored with shifts up to ``shift_radius`` px; SSIM is computed on these candidates only.
    ``progress(done, total, label)`` is called per chunk and may raise to cancel. ``descriptor`` (an
    ``invariant.CopyDescriptor`` of the training images) adds the transform-invariant measures: the
    descriptor's nearest (mirrored or not) and the NCC-nearest are re-scored under fitted transforms.
    """
    h, w = query.shape[-2:]
    f = coarse_factor(h, w)
    n = len(query)

    def stage(name):
        return (lambda d, t: progress(d, t, f"{label}{name}")) if progress else None

    # the exact int8-screened search where int8 products are fast (nn.int8_is_fast; ~2x sklearn's brute force on
    # augmented real slices on 2 cores, benchmarks/bench_audit_speed.py), else the float32 GEMM
    full = pixel_candidates(query, train, k=k, device=device, on_chunk=stage("search"), precision="auto")
    coarse = pixel_candidates(downsample(query, f), downsample(train, f), k=k, device=device, on_chunk=stage("coarse search"))
    cand = np.concatenate([full["l2_idx"], full["ncc_idx"], coarse["ncc_idx"]], axis=1)
    cand = np.sort(cand, axis=1)  # sorted so duplicates are adjacent; duplicates cost a little, change nothing
    ref = refine_pairs(query, train, cand, shift_radius=shift_radius, with_ssim=with_ssim, device=device, on_chunk=stage("shift-tolerant scoring"))
    rows = np.arange(n)
    distances, index = {}, {}
    for m in PIXEL_MEASURES:
        if m == "ssim" and not with_ssim:
            continue
        dm = np.where(np.isfinite(ref[m]), ref[m], np.inf)
        j = np.argmin(dm, axis=1)
        distances[m] = ref[m][rows, j]
        index[m] = cand[rows, j]
        # the second-nearest *distinct* training image among the candidates (for the ratio route)
        other = np.where(cand != cand[rows, j][:, None], dm, np.inf)
        distances[f"{m}@2"] = other.min(axis=1).astype(np.float32)
    jn = np.argmin(ref["ncc"], axis=1)
    shift = ref["shift"][rows, jn].astype(np.int64)
    transform = None
    if descriptor is not None:
        from app.engine.audit.invariant import invariant_pairs

        dd, di = descriptor.search(query, k=2)
        distances["descriptor"], index["descriptor"] = dd[:, 0], di[:, 0]
        distances["descriptor@2"] = dd[:, 1] if dd.shape[1] > 1 else np.full(n, np.inf, np.float32)
        inv_cand = np.concatenate([di, index["ncc"][:, None]], axis=1)
        inv_mir = np.concatenate([descriptor.mirrored_better(query, di), np.zeros((n, 1), bool)], axis=1)
        inv = invariant_pairs(query, train, inv_cand, inv_mir, on_chunk=stage("transform-invariant scoring"))
        distances["invariant"], index["invariant"] = inv["invariant"], inv["index"]
        distances["invariant@2"] = inv["second"]
        transform = {key: inv[key] for key in TRANSFORM_KEYS}
    if query_features is not None and train_features is not None:
        fc = feature_candidates(query_features, train_features, k=1, device=device, on_chunk=stage("feature search"))
        distances["cosine"] = fc["cosine"][:, 0]
        index["cosine"] = fc["cosine_idx"][:, 0]
    return Matches(distances, index, shift, transform)


# --------------------------------------------------------------------------------------------
# the report
# --------------------------------------------------------------------------------------------


def _summary(d: np.ndarray) -> dict:
    d = np.asarray(d, np.float64)
    d = d[np.isfinite(d)]
    if len(d) == 0:
        return {"n": 0}
    return {"n": int(len(d)), "min": float(d.min()), "mean": float(d.mean()), "median": float(np.median(d)),
            "p5": float(np.percentile(d, 5)), "max": float(d.max())}


@dataclass
class AuditReport:
    """Everything the audit found; ``to_json`` is the CLI's answer, the arrays feed the panel."""

    generated: Matches
    holdout: Matches | None
    rule: FlagRule
    thresholds: dict[str, float]
    flagged: np.ndarray  # (N,) bool
    max_memorization_rate: float = 0.0
    counts: dict = field(default_factory=dict)  # generated / train / holdout image counts
    extractor: str = ""
    notes: list[str] = field(default_factory=list)
    #: generated index -> the fitted, named transformation (``invariant.describe_transform``) and its
    #: training image (``training_index``), for the flagged images
    transforms: dict[int, dict] = field(default_factory=dict)
    descriptor: str = ""  # the feature space of the descriptor measure, by name ("" without it)

    @property
    def memorization_rate(self) -> float:
        return float(self.flagged.mean()) if len(self.flagged) else 0.0

    @property
    def passed(self) -> bool:
        return self.memorization_rate <= self.max_memorization_rate

    def holdout_rank(self) -> dict[str, np.ndarray]:
        return holdout_rank(self.generated.distances, self.holdout.distances) if self.holdout else {}

    def flagged_rows(self) -> list[dict]:
        """One row per flagged image: generated index, and per measure the training index and distance."""
        rows = []
        g = self.generated
        for i in np.flatnonzero(self.flagged):
            rows.append({
                "generated_index": int(i),
                "training_index": int(g.index["ncc"][i]),
                "shift": [int(v) for v in g.shift[i]],
                "distance": {m: float(g.distances[m][i]) for m in g.index},
                "nearest": {m: int(g.index[m][i]) for m in g.index},
                "measures_below_threshold": [m for m, t in self.thresholds.items() if g.distances[m][i] < t],
                "ratio_to_second": {m: float(g.distances[m][i] / max(g.distances[f"{m}@2"][i], 1e-12))
                                    for m in g.index if f"{m}@2" in g.distances},
                **({"transformation": self.transforms[int(i)]} if int(i) in self.transforms else {}),
            })
        return rows

    def to_json(self) -> dict:
        ranks = self.holdout_rank()
        return {
            "passed": self.passed,
            "memorization_rate": self.memorization_rate,
            "max_memorization_rate": self.max_memorization_rate,
            "n_flagged": int(self.flagged.sum()),
            "counts": self.counts,
            "rule": self.rule.to_dict(),
            "thresholds": self.thresholds,
            "extractor": self.extractor,
            "descriptor": self.descriptor or None,
            "measures": {
                m: {
                    "generated": _summary(self.generated.distances[m]),
                    "holdout": _summary(self.holdout.distances[m]) if self.holdout and m in self.holdout.distances else None,
                    "threshold": self.thresholds.get(m),
                    "generated_below_holdout_min": float(np.mean(ranks[m] == 0)) if m in ranks else None,
                }
                for m in self.generated.index
            },
            "flagged": self.flagged_rows(),
            "notes": self.notes,
        }

    def save_arrays(self, path: Path) -> Path:
        """All raw arrays (distances, indices, shifts, flags, held-out distances) as one NPZ."""
        arrays = {"flagged": self.flagged, "shift": self.generated.shift}
        for key, v in (self.generated.transform or {}).items():
            arrays[f"transform_{key}"] = v
        for m, d in self.generated.distances.items():
            arrays[f"gen_{m}"] = d
        for m, i in self.generated.index.items():
            arrays[f"gen_{m}_index"] = i
        if self.holdout:
            for m, d in self.holdout.distances.items():
                arrays[f"holdout_{m}"] = d
            for m, i in self.holdout.index.items():
                arrays[f"holdout_{m}_index"] = i
            arrays["holdout_shift"] = self.holdout.shift
        np.savez_compressed(path, **arrays)
        return Path(path)


def load_report(out_dir: str | Path) -> AuditReport:
    """Read back an audit written by ``write_report`` (audit.json + audit_arrays.npz)."""
    out_dir = Path(out_dir)
    try:
        meta = json.loads((out_dir / "audit.json").read_text())
        z = np.load(out_dir / "audit_arrays.npz")
    except FileNotFoundError as exc:
        raise UserError(f"no audit report in {out_dir}: {exc.filename} is missing") from None

    def matches(prefix):
        ms = [k[len(prefix):] for k in z.files if k.startswith(prefix) and not k.endswith("_index") and k != "holdout_shift"]
        if not ms:
            return None
        shift = z["shift"] if prefix == "gen_" else z["holdout_shift"]
        transform = None
        if prefix == "gen_" and "transform_zoom" in z.files:
            transform = {key: z[f"transform_{key}"] for key in TRANSFORM_KEYS}
        return Matches({m: z[prefix + m] for m in ms}, {m: z[prefix + m + "_index"] for m in ms if "@" not in m}, shift, transform)

    return AuditReport(
        generated=matches("gen_"), holdout=matches("holdout_"), rule=FlagRule(**{**meta["rule"], "measures": tuple(meta["rule"]["measures"])}),
        thresholds=meta["thresholds"], flagged=z["flagged"].astype(bool), max_memorization_rate=meta["max_memorization_rate"],
        counts=meta["counts"], extractor=meta.get("extractor", ""), notes=meta.get("notes", []),
        transforms={int(r["generated_index"]): r["transformation"] for r in meta.get("flagged", []) if "transformation" in r},
        descriptor=meta.get("descriptor") or "",
    )


# --------------------------------------------------------------------------------------------
# audit as a function
# --------------------------------------------------------------------------------------------


def audit(
    generated: np.ndarray,
    train: np.ndarray,
    holdout: np.ndarray | None = None,
    rule: FlagRule | None = None,
    extractor: str | None = "radiomics",
    max_memorization_rate: float = 0.0,
    k: int = 5,
    shift_radius: int = 2,
    with_ssim: bool = True,
    device: str | None = None,
    progress=None,
    invariant: bool = True,
) -> AuditReport:
    """Run the memorization audit on arrays (N, 1, H, W) in [-1, 1] and apply ``rule``.

    ``invariant``: also the transform-invariant measures (``invariant.py``: mirrored, rotated, zoomed,
    shifted, intensity-mapped, blurred copies) and, for every flagged image (up to ``MAX_DESCRIBED``), the
    fitted transformation by name. Without it the rule's invariant measures are left out (the notes say so).
    """
    generated = check_images(generated, "generated images")
    train = check_images(train, "training images")
    check_same_size(generated, train, "generated images", "training images")
    if holdout is not None:
        holdout = check_images(holdout, "held-out images")
        check_same_size(holdout, train, "held-out images", "training images")
    notes = []
    if rule is None:
        rule = FlagRule() if holdout is not None else FlagRule(mode="absolute", thresholds={
            m: v for m, v in DEFAULT_ABSOLUTE.items() if invariant or m not in INVARIANT_MEASURES})
        if holdout is None:
            notes.append("no held-out real images: the default absolute thresholds were used (not calibrated)")
    feats = {}
    if extractor and extractor != "none":
        from app.engine.metrics.features import get_extractor

        ext = get_extractor(extractor)
        feats["train"] = ext(train)
        mu, sd = feats["train"].mean(0), feats["train"].std(0) + 1e-8  # standardise by the training set
        feats = {"train": (feats["train"] - mu) / sd, "gen": (ext(generated) - mu) / sd}
        if holdout is not None:
            feats["holdout"] = (ext(holdout) - mu) / sd
    if not invariant and any(m in INVARIANT_MEASURES for m in rule.measures) and rule.mode != "absolute":
        rule = dataclasses.replace(rule, measures=tuple(m for m in rule.measures if m not in INVARIANT_MEASURES))
        notes.append("the transform-invariant measures were switched off: mirrored, rotated, zoomed or shifted copies are not searched")
    if "ssim" in rule.measures and not with_ssim:
        raise UserError("the rule uses SSIM but SSIM scoring is switched off")
    if "cosine" in rule.measures and not feats:
        raise UserError("the rule uses feature cosine but no extractor was chosen")
    desc = None
    if invariant:
        from app.engine.audit.invariant import CopyDescriptor

        desc = CopyDescriptor(train)
    kw = dict(k=k, shift_radius=shift_radius, with_ssim=with_ssim, device=device, progress=progress, descriptor=desc)
    hm = None
    if holdout is not None:
        hm = nearest_training_matches(holdout, train, feats.get("holdout"), feats.get("train"), label="held-out: ", **kw)
    gm = nearest_training_matches(generated, train, feats.get("gen"), feats.get("train"), label="generated: ", **kw)
    th = thresholds_for(hm.distances if hm else None, rule)
    flagged = flag(gm.distances, hm.distances if hm else None, rule)
    counts = {"generated": len(generated), "train": len(train), "holdout": 0 if holdout is None else len(holdout),
              "size": list(generated.shape[-2:])}
    notes.append(f"SSIM is evaluated on the top-{k} candidates under L2, NCC and coarse NCC (not exhaustively); "
                 f"pixel measures are the best over shifts of up to {shift_radius} px")
    transforms = {}
    if desc is not None:
        transforms = describe_flagged(generated, train, gm, flagged, progress=progress)
        notes.append("invariant: 1 - rank correlation at ~32 px under the best mirror / rotation / zoom / translation of the "
                     "descriptor's and NCC's nearest training images; descriptor: 1 - cosine in the " + desc.name)
        if flagged.sum() > len(transforms):
            notes.append(f"the transformation is named for the {len(transforms)} closest flagged images only")
    return AuditReport(gm, hm, rule, th, flagged, max_memorization_rate, counts, extractor or "none", notes,
                       transforms, desc.name if desc is not None else "")


def describe_flagged(generated: np.ndarray, train: np.ndarray, gm: Matches, flagged: np.ndarray, limit: int = MAX_DESCRIBED,
                     progress=None) -> dict[int, dict]:
    """The fitted, named transformation of every flagged image (closest first, at most ``limit``) towards its
    invariant-nearest training image (``training_index``)."""
    from app.engine.audit.invariant import describe_transform

    if gm.transform is None:
        return {}
    idx = np.flatnonzero(flagged)
    idx = idx[np.argsort(gm.distances["invariant"][idx], kind="stable")][:limit]
    out = {}
    for c, i in enumerate(idx):
        j = int(gm.index["invariant"][i])
        fit = {key: gm.transform[key][i] for key in TRANSFORM_KEYS}
        out[int(i)] = {"training_index": j, **describe_transform(generated[i], train[j], fit)}
        if progress is not None and ((c + 1) % 16 == 0 or c + 1 == len(idx)):
            progress(c + 1, len(idx), "naming the transformations")
    return out


def apply_gate(generated_set, report: AuditReport) -> np.ndarray:
    """Keep mask (N,) for ``export_images(..., keep=mask)``: False for every flagged image."""
    n = len(generated_set.images if hasattr(generated_set, "images") else generated_set)
    if len(report.flagged) != n:
        raise UserError(f"the audit report covers {len(report.flagged)} images but the set has {n}: audit this set first")
    return ~np.asarray(report.flagged, bool)


def write_cleaned_set(generated_set, report: AuditReport, out_dir: str | Path, format: str = "npz", provenance: dict | None = None) -> list[Path]:
    """Write the set without its flagged images through the exporter (provenance says how many were withheld)."""
    from app.engine.export import export_images

    images = generated_set.images if hasattr(generated_set, "images") else np.asarray(generated_set)
    prov = {"privacy_audit": {"rule": report.rule.to_dict(), "thresholds": report.thresholds,
                              "n_flagged": int(report.flagged.sum())}, **(provenance or {})}
    return export_images(images, out_dir, format=format, provenance=prov, keep=apply_gate(generated_set, report))


# --------------------------------------------------------------------------------------------
# figures and HTML
# --------------------------------------------------------------------------------------------


def histogram_png(gen: np.ndarray, hold: np.ndarray | None, threshold: float | None, title: str, path: Path, bins: int = 40) -> Path:
    """Overlaid histograms (generated in orange, held-out in blue, densities) with the threshold
    as a red line. Drawn with PIL so the engine needs no plotting library."""
    from PIL import Image as PILImage
    from PIL import ImageDraw

    W, H, L, B, T, R = 640, 360, 50, 40, 30, 15
    g = np.asarray(gen, np.float64)[np.isfinite(gen)]
    hd = np.asarray(hold, np.float64)[np.isfinite(hold)] if hold is not None else np.zeros(0)
    allv = np.concatenate([g, hd, [threshold] if threshold is not None else []])
    lo, hi = float(allv.min()), float(allv.max())
    hi = hi if hi > lo else lo + 1e-3
    edges = np.linspace(lo, hi + 1e-12, bins + 1)
    img = PILImage.new("RGB", (W, H), "white")
    dr = ImageDraw.Draw(img)
    pw, ph = W - L - R, H - T - B
    dens = [np.histogram(v, edges)[0] / max(len(v), 1) for v in (g, hd)]
    top = max(float(max(d.max() for d in dens)), 1e-9)
    for d, colour, off in ((dens[1], (70, 120, 220), 0), (dens[0], (240, 140, 40), 0.5)):
        for b in range(bins):
            if d[b] <= 0:
                continue
            x0 = L + pw * (b + off * 0.5) / bins
            x1 = L + pw * (b + 0.5 + off * 0.5) / bins
            dr.rectangle([x0, T + ph * (1 - d[b] / top), x1, T + ph], fill=colour)
    dr.line([L, T + ph, L + pw, T + ph], fill="black")
    dr.line([L, T, L, T + ph], fill="black")
    for j in range(5):
        v = lo + (hi - lo) * j / 4
        x = L + pw * j / 4
        dr.line([x, T + ph, x, T + ph + 4], fill="black")
        dr.text((x - 14, T + ph + 8), f"{v:.3g}", fill="black")
    if threshold is not None:
        x = L + pw * (threshold - lo) / (hi - lo)
        dr.line([x, T, x, T + ph], fill=(220, 0, 0), width=2)
        dr.text((x + 4, T + 2), f"threshold {threshold:.3g}", fill=(220, 0, 0))
    dr.text((L, 8), f"{title}   orange: generated (n={len(g)})   blue: held-out real (n={len(hd)})", fill="black")
    img.save(path)
    return path


def pair_figure(gen_img: np.ndarray, train_img: np.ndarray, shift, transformation: dict | None = None) -> np.ndarray:
    """[generated | nearest training | difference] at the best alignment, as one float image in [-1, 1].
    With a ``transformation`` (``invariant.describe_transform``) the training image is shown under its fitted
    geometry (mirrored, rotated, zoomed, moved) and the difference is taken after it, full size."""
    if transformation is not None:
        from app.engine.audit.invariant import aligned_training

        t = aligned_training(train_img, transformation)[0]
        q = gen_img[0]
        sep = np.full((q.shape[0], 2), 1.0, np.float32)
        return np.concatenate([q, sep, t, sep, np.clip(q - t, -1, 1)], axis=1).astype(np.float32)
    q, t, d = aligned_difference(gen_img[0], train_img[0], shift)
    sep = np.full((q.shape[0], 2), 1.0, np.float32)
    return np.concatenate([q, sep, t, sep, np.clip(d, -1, 1)], axis=1)


def _png_b64(path: Path) -> str:
    return base64.b64encode(Path(path).read_bytes()).decode("ascii")


def write_report(report: AuditReport, generated: np.ndarray, train: np.ndarray, out_dir: str | Path, max_pairs: int = 48,
                 emit_image=None, sizes: dict | None = None) -> dict:
    """audit.json, audit_arrays.npz, one histogram PNG per measure, one PNG per flagged pair (up
    to ``max_pairs``) and a self-contained audit.html (images inlined). Returns the paths. ``sizes``
    (``metrics.sets.load_at_one_size``'s record) says at which size the sets were compared."""
    from app.engine.imaging import save_png
    from app.engine.metrics.sets import size_sentence

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    js = report.to_json()
    if sizes is not None:
        js["image_size"] = sizes
    h, w = generated.shape[-2:]
    size_line = size_sentence(sizes) if sizes is not None else f"Compared at {h}x{w} (as given)."
    paths: dict = {"json": out / "audit.json", "arrays": out / "audit_arrays.npz", "histograms": {}, "pairs": []}
    paths["json"].write_text(json.dumps(js, indent=2))
    report.save_arrays(paths["arrays"])
    for m in report.generated.index:
        d = report.generated.distances[m]
        hold = report.holdout.distances.get(m) if report.holdout else None
        p = histogram_png(d, hold, report.thresholds.get(m), f"nearest-training distance: {m}", out / f"hist_{m}.png")
        paths["histograms"][m] = p
    for row in js["flagged"][:max_pairs]:
        i, j = row["generated_index"], row["training_index"]
        tf = row.get("transformation")
        if tf is not None:
            j = tf["training_index"]
        fig = pair_figure(generated[i], train[j], row["shift"], tf)
        p = save_png(out / f"pair_gen{i:06d}_train{j:06d}.png", fig)
        paths["pairs"].append(p)
        if emit_image is not None:
            emit_image(f"flagged {i} vs training {j}" + (f": {tf['text']}" if tf else ""), fig)
    verdict = "PASSED" if js["passed"] else "FAILED"
    rows = "".join(
        f"<tr><td>{m}</td><td>{s['generated'].get('min', float('nan')):.4g}</td><td>{s['generated'].get('mean', float('nan')):.4g}</td>"
        f"<td>{(s['holdout'] or {}).get('min', float('nan')):.4g}</td><td>{(s['holdout'] or {}).get('median', float('nan')):.4g}</td>"
        f"<td>{s['threshold'] if s['threshold'] is not None else '-'}</td></tr>"
        for m, s in js["measures"].items()
    )
    hists = "".join(f"<div><img src='data:image/png;base64,{_png_b64(p)}'></div>" for p in paths["histograms"].values())
    pairs = "".join(
        f"<div class='pair'><img src='data:image/png;base64,{_png_b64(p)}' style='image-rendering:pixelated;height:160px'>"
        f"<br>generated {r['generated_index']} / training "
        f"{r['transformation']['training_index'] if 'transformation' in r else r['training_index']}: "
        + (f"<b>{html_escape(r['transformation']['text'])}</b><br>" if "transformation" in r else "")
        + ", ".join(f"{m} {v:.3g}" for m, v in r["distance"].items()) + "</div>"
        for p, r in zip(paths["pairs"], js["flagged"])
    )
    html = f"""<!doctype html><html><head><meta charset="utf-8"><title>Memorization audit</title>
<style>body{{font-family:sans-serif;margin:2em}} td,th{{padding:2px 8px;border-bottom:1px solid #ddd}}
.pair{{display:inline-block;margin:6px;font-size:12px}}</style></head><body>
<h1>Memorization audit: {verdict}</h1>
<p>{js['n_flagged']} of {js['counts']['generated']} generated images flagged (rate {js['memorization_rate']:.4f},
allowed {js['max_memorization_rate']}); {js['counts']['train']} training images, {js['counts']['holdout']} held-out real images;
rule {report.rule.mode} (margin {report.rule.margin}, z {report.rule.z}, ratio {report.rule.ratio}); feature extractor: {js['extractor']}.</p>
<p>Feature space of the descriptor measure: {html_escape(js['descriptor'] or 'none (the invariant search was off)')}.</p>
<p>{size_line}</p>
<p>Distances: smaller is closer. l2 = RMS pixel difference; ncc / ncc_coarse / ssim / cosine / descriptor = 1 - similarity;
invariant = 1 - rank correlation under the best-fitting mirror, rotation, zoom and translation.</p>
<table><tr><th>measure</th><th>generated min</th><th>generated mean</th><th>held-out min</th><th>held-out median</th><th>threshold</th></tr>{rows}</table>
<h2>Distributions</h2>{hists}
<h2>Flagged images (generated | nearest training, under the fitted transformation | difference)</h2>{pairs or '<p>none</p>'}
<h2>Notes</h2><ul>{''.join(f'<li>{n}</li>' for n in js['notes'])}</ul>
<p style="color:#888">RadSynth Studio, {time.strftime('%Y-%m-%d %H:%M')}</p></body></html>"""
    paths["html"] = out / "audit.html"
    paths["html"].write_text(html)
    return paths


# --------------------------------------------------------------------------------------------
# the job
# --------------------------------------------------------------------------------------------




def _resolve_sets(spec: AuditSpec, ctx: JobContext):
    """(generated, training, held-out or None, size record): every set at one size, the training set's
    unless ``spec.size`` states one (``metrics.sets.load_at_one_size``)."""
    from app.engine.metrics.sets import load_at_one_size, size_sentence

    train_ref, hold_ref = spec.train, spec.holdout
    ws = None
    try:
        ws = ctx.workspace
    except Exception:
        ws = None
    is_dataset = ws is not None and ":" not in train_ref and not Path(train_ref).exists() and ws.has_dataset(train_ref)
    if hold_ref is None and is_dataset:
        from app.engine.data.cache import ImageDataset

        ds = ImageDataset.from_workspace(ws, train_ref)
        for split in ("val", "test"):
            if len(ds.indices(split)):
                hold_ref = f"{train_ref}:{split}"
                train_ref = f"{train_ref}:train"
                ctx.log(f"held-out images: the {split} split of {spec.train}; training images: its train split")
                break
    sets, sizes = load_at_one_size(
        {"generated": (spec.generated, "generated images"), "train": (train_ref, "training images"),
         "holdout": (hold_ref, "held-out images")}, ws, size=spec.size, reference="train")
    if sizes["resampled"]:
        ctx.log(size_sentence(sizes))
    return sets["generated"], sets["train"], sets["holdout"], sizes


def rule_from_spec(spec: AuditSpec, has_holdout: bool) -> FlagRule | None:
    mode = spec.rule
    if mode is None:
        mode = "absolute" if (spec.threshold is not None or spec.thresholds) else "percentile" if spec.percentile is not None else None
    if mode is None:
        if not has_holdout:
            return None  # audit() uses the uncalibrated defaults and says so
        mode = "calibrated"
    if mode == "absolute":
        th = dict(spec.thresholds or {})
        if spec.threshold is not None:
            th[spec.measure] = spec.threshold
        if not th:
            raise UserError("rule 'absolute' needs --threshold (with --measure) or --thresholds")
        return FlagRule(mode="absolute", thresholds=th)
    if not has_holdout:
        raise UserError(f"rule {mode!r} needs held-out real images: give --holdout")
    margin = spec.margin if spec.margin is not None else (1.0 if mode == "percentile" else 0.5)
    return FlagRule(mode=mode, measures=tuple(spec.measures), margin=margin, z=spec.z, ratio=spec.ratio,
                    percentile=spec.percentile if spec.percentile is not None else 1.0)


@register(AuditSpec)
def run_audit(spec: AuditSpec, ctx: JobContext) -> dict:
    from app.engine.devices import resolve_device

    device = str(resolve_device(spec.device))
    gen, train, hold, sizes = _resolve_sets(spec, ctx)
    rule = rule_from_spec(spec, hold is not None)
    ctx.log(f"audit: {len(gen.images)} generated vs {len(train.images)} training images"
            + (f", {len(hold.images)} held-out" if hold else ", no held-out set") + f" on {device}")

    def progress(done, total, label):
        ctx.check()
        ctx.progress(done, total, label)

    t0 = time.perf_counter()
    report = audit(gen.images, train.images, hold.images if hold else None, rule=rule,
                   extractor=None if spec.extractor == "none" else spec.extractor,
                   max_memorization_rate=spec.max_memorization_rate, k=spec.k, shift_radius=spec.shift_radius,
                   with_ssim=spec.ssim, device=device, progress=progress, invariant=spec.invariant)
    seconds = time.perf_counter() - t0
    out = Path(spec.out) if spec.out else ctx.job_dir()
    paths = write_report(report, gen.images, train.images, out, max_pairs=spec.max_pairs,
                         emit_image=lambda name, img: ctx.image(name, img, "difference"), sizes=sizes)
    for p in paths["histograms"].values():
        ctx.artifact("figure", p)
    ctx.artifact("report", paths["json"])
    ctx.artifact("report", paths["html"])
    ctx.artifact("array", paths["arrays"])
    flagged_idx = np.flatnonzero(report.flagged)
    if len(flagged_idx):
        from app.engine.imaging import make_grid

        ctx.image("flagged generated images", make_grid(gen.images[flagged_idx[:64]]), "grid")
    result = {**report.to_json(), "image_size": sizes}
    if spec.clean_out:
        files = write_cleaned_set(gen, report, spec.clean_out, format="npz", provenance={"source": gen.source})
        result["cleaned"] = {"path": str(spec.clean_out), "kept": int((~report.flagged).sum()), "files": [str(f) for f in files]}
    result.update({"out": str(out), "html": str(paths["html"]), "seconds": round(seconds, 2), "device": device,
                   "generated": gen.source, "train": train.source, "holdout": hold.source if hold else None})
    ctx.log(f"audit {'passed' if report.passed else 'FAILED'}: {int(report.flagged.sum())} of {len(report.flagged)} flagged")
    return result
