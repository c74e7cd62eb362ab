"""The ``eda`` job: the statistics researchers look at first when they open a dataset.

A grid of 16 samples (drawn per class when there are labels), the intensity histogram (overall and
per class), the class distribution, the mean and standard-deviation image per class, and the
pairwise SSIM between class mean images (how different the classes look on average), and the
number of images per value of each subgroup attribute (sex, age group, scanner... where the
dataset carries them; ``attributes.py``). Everything
is emitted as events, written into the job folder (PNG + ``eda.json``) and returned in a result
dict that is easy to plot.
"""

from __future__ import annotations

import json

import numpy as np

from app.engine.data.attributes import value_counts
from app.engine.data.cache import ImageDataset
from app.engine.imaging import make_grid, save_png
from app.engine.jobs import JobContext, UserError, register
from app.engine.specs.data import EdaSpec

CHUNK = 256




def _sample_indices(labels: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """n indices, spread over the classes in turn (round robin) so every class shows up."""
    classes = sorted(set(labels.tolist()))
    pools = {c: list(rng.permutation(np.flatnonzero(labels == c))) for c in classes}
    out: list[int] = []
    while len(out) < min(n, len(labels)):
        for c in classes:
            if pools[c] and len(out) < n:
                out.append(int(pools[c].pop()))
    return np.array(sorted(out), dtype=np.int64)


@register(EdaSpec)
def run_eda(spec: EdaSpec, ctx: JobContext) -> dict:
    from skimage.metrics import structural_similarity

    ds = ImageDataset.from_workspace(ctx.workspace, spec.dataset)
    idx = ds.indices(spec.split)
    if len(idx) == 0:
        raise UserError(f"dataset {spec.dataset!r} has no images in split {spec.split!r}")
    labels = ds._labels[idx]
    names = list(ds.class_names)
    has_classes = bool(names) and bool((labels >= 0).any())
    keys = sorted(set(labels.tolist())) if has_classes else [-1]
    key_name = {k: (names[k] if 0 <= k < len(names) else "unlabelled") for k in keys} if has_classes else {-1: "all"}
    out_dir = ctx.job_dir()
    rng = np.random.default_rng(spec.seed)
    h, w = ds.height, ds.width

    # one streaming pass: histograms, per-class sums for mean / std (float64 accumulators)
    edges = np.linspace(-1.0, 1.0, spec.bins + 1)
    hist = np.zeros(spec.bins, np.int64)
    hist_k = {k: np.zeros(spec.bins, np.int64) for k in keys}
    s1 = {k: np.zeros((h, w)) for k in keys}
    s2 = {k: np.zeros((h, w)) for k in keys}
    cnt = {k: 0 for k in keys}
    total = len(idx)
    for start in range(0, total, CHUNK):
        ctx.check()
        chunk_idx = idx[start : start + CHUNK]
        imgs = ds.images(indices=chunk_idx)[:, 0].astype(np.float64)
        lab = labels[start : start + CHUNK] if has_classes else np.full(len(chunk_idx), -1)
        hist += np.histogram(imgs, bins=edges)[0]
        for k in keys:
            sel = imgs[lab == k]
            if len(sel):
                hist_k[k] += np.histogram(sel, bins=edges)[0]
                s1[k] += sel.sum(0)
                s2[k] += (sel**2).sum(0)
                cnt[k] += len(sel)
        ctx.progress(min(start + CHUNK, total), total, "statistics")

    files: dict[str, str] = {}
    files["histogram"] = str(save_png(out_dir / "histogram.png", _bar_chart(hist), lo=0.0, hi=1.0))
    ctx.artifact("figure", files["histogram"])
    # sample grid
    pick = _sample_indices(labels if has_classes else np.zeros(total, np.int64), spec.n_samples, rng)
    grid = make_grid(ds.images(indices=idx[pick]), ncol=int(np.ceil(np.sqrt(len(pick)))))
    files["grid"] = str(save_png(out_dir / "samples_grid.png", grid))
    ctx.image("samples", grid, "grid")
    ctx.artifact("figure", files["grid"])

    means, stds = {}, {}
    for k in keys:
        if cnt[k] == 0:
            continue
        m = s1[k] / cnt[k]
        sd = np.sqrt(np.maximum(s2[k] / cnt[k] - m**2, 0.0))
        means[k], stds[k] = m.astype(np.float32), sd.astype(np.float32)
        tag = key_name[k]
        files[f"mean:{tag}"] = str(save_png(out_dir / f"mean_{_safe(tag)}.png", m))
        files[f"std:{tag}"] = str(save_png(out_dir / f"std_{_safe(tag)}.png", sd, lo=0.0, hi=None))
        ctx.image(f"mean/{tag}", means[k], "image")
        ctx.image(f"std/{tag}", stds[k], "uncertainty")
        ctx.artifact("figure", files[f"mean:{tag}"])
        ctx.artifact("figure", files[f"std:{tag}"])
    np.savez_compressed(out_dir / "class_means.npz", **{f"mean_{key_name[k]}": v for k, v in means.items()},
                        **{f"std_{key_name[k]}": v for k, v in stds.items()})
    files["arrays"] = str(out_dir / "class_means.npz")

    # pairwise SSIM between class means (Wang et al. 2004, eq. 13; data range 2 for [-1, 1])
    order = [k for k in keys if k in means]
    ssim = np.ones((len(order), len(order)))
    win = min(7, h, w) if min(h, w) >= 3 else 3
    win -= 1 - win % 2  # odd window
    for i, a in enumerate(order):
        for j in range(i + 1, len(order)):
            v = float(structural_similarity(means[a], means[order[j]], data_range=2.0, win_size=win))
            ssim[i, j] = ssim[j, i] = v
            ctx.scalar(f"ssim/{key_name[a]}~{key_name[order[j]]}", 0, v)

    class_counts = {key_name[k]: int(cnt[k]) for k in keys} if has_classes else {}
    for step, (c, n) in enumerate(class_counts.items()):
        ctx.scalar(f"class_count/{c}", step, n)
    all_imgs_mean = sum(s1[k].sum() for k in keys) / (total * h * w)
    all_imgs_sq = sum(s2[k].sum() for k in keys) / (total * h * w)
    result = {
        "dataset": spec.dataset,
        "split": spec.split,
        "n_images": int(total),
        "size": [h, w],
        "histogram": {
            "bins": edges.tolist(),  # bin edges, len(counts) + 1
            "counts": hist.tolist(),
            "per_class": {key_name[k]: hist_k[k].tolist() for k in keys} if has_classes else {},
        },
        "intensity": {"mean": float(all_imgs_mean), "std": float(np.sqrt(max(all_imgs_sq - all_imgs_mean**2, 0.0)))},
        "classes": [key_name[k] for k in order] if has_classes else [],
        "class_counts": class_counts,
        "splits": {s: int(len(ds.indices(s))) for s in ("train", "val", "test")},
        "ssim": {"classes": [key_name[k] for k in order], "matrix": ssim.round(6).tolist()},
        # {attribute: {value: images}} in this split, most frequent first, "unknown" last
        "attributes": value_counts(ds.attributes(indices=idx)),
        "files": files,
    }
    json_path = out_dir / "eda.json"
    json_path.write_text(json.dumps(result, indent=2))
    result["files"]["json"] = str(json_path)
    ctx.artifact("report", json_path)
    return result


def _bar_chart(counts: np.ndarray, height: int = 128, bar: int = 4) -> np.ndarray:
    """A plain bar chart of counts as a float image in [0, 1] (white bars on black), so the
    histogram has a picture without a plotting library; the GUI plots the numbers itself."""
    counts = np.asarray(counts, np.float64)
    tops = np.round(counts / max(counts.max(), 1.0) * (height - 1)).astype(int)
    img = np.zeros((height, len(counts) * bar), np.float32)
    rows = np.arange(height)[:, None]
    img[:] = (rows >= height - 1 - np.repeat(tops, bar)[None, :]) & (np.repeat(tops, bar)[None, :] > 0)
    return img


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name) or "class"
