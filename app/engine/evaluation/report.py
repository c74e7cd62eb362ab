"""The evaluation report: evaluation.html (self-contained, figures inlined) beside evaluation.json.

Every number names what it was computed with: distribution metrics (FID, KID, precision, recall,
mode collapse) the feature extractor, pixel metrics (histograms, spectra, MS-SSIM) "pixels", and
every row its image counts. Each table carries the two reference rows: real held-out images (the
floor a perfect generator would score with this many images) and the pixel-noise baseline (held-out
images + Gaussian noise: a naive generator to beat). Figures are drawn with PIL, as the audit's
are, so the engine needs no plotting library.
"""

from __future__ import annotations

import base64
import html
import time
from pathlib import Path

import numpy as np

from app.engine.metrics.sets import size_sentence

ROW_LABELS = {"generated": "generated", "real_holdout_floor": "real held-out (floor)"}
COLOURS = {"real": (70, 120, 220), "generated": (240, 140, 40), "real_only": (70, 120, 220),
           "real_plus_synthetic": (240, 140, 40)}


def row_label(key: str, sigma: float | None = None) -> str:
    if key.startswith("noise_baseline"):
        return f"pixel-noise baseline (σ={sigma:g})" if sigma is not None else "pixel-noise baseline"
    return ROW_LABELS.get(key, key)


def _fmt(v, fmt: str = "{:.4g}") -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "–"
    return fmt.format(v)


def _b64(path: Path) -> str:
    return base64.b64encode(Path(path).read_bytes()).decode("ascii")


# --------------------------------------------------------------------------------------------
# figures (PIL)
# --------------------------------------------------------------------------------------------


def _axes(dr, box, xlim, ylim, xlabel, ylabel, xticks=None):
    from PIL import ImageDraw  # noqa: F401  (dr is an ImageDraw)

    L, T, R, B = box
    dr.line([L, B, R, B], fill="black")
    dr.line([L, T, L, B], fill="black")
    for j in range(5):
        y = ylim[0] + (ylim[1] - ylim[0]) * j / 4
        py = B - (B - T) * j / 4
        dr.line([L - 4, py, L, py], fill="black")
        dr.line([L + 1, py, R, py], fill=(230, 230, 230))
        dr.text((4, py - 6), f"{y:.3g}", fill="black")
    if xticks is None:
        for j in range(5):
            x = xlim[0] + (xlim[1] - xlim[0]) * j / 4
            px = L + (R - L) * j / 4
            dr.line([px, B, px, B + 4], fill="black")
            dr.text((px - 12, B + 7), f"{x:.3g}", fill="black")
    else:
        for px, text in xticks:
            dr.text((px - 3 * len(text), B + 7), text, fill="black")
    dr.text(((L + R) // 2 - 3 * len(xlabel), B + 22), xlabel, fill="black")
    dr.text((L + 4, T - 16), ylabel, fill="black")


def spectrum_png(spectrum: dict, path: Path) -> Path:
    """Radial power spectra (log10) of real and generated images, the DC bin left out."""
    from PIL import Image as PILImage
    from PIL import ImageDraw

    f = np.asarray(spectrum["frequency"], float)
    # the DC bin (mean removed: power 0, stored at the log floor -12) would squash the plot
    keep = (f > 0) & np.all([np.asarray(spectrum[f"{k}_log10_power"], float) > -11 for k in ("real", "generated")], axis=0)
    curves = {k: np.asarray(spectrum[f"{k}_log10_power"], float)[keep] for k in ("real", "generated")}
    f = f[keep]
    W, H = 560, 340
    box = (60, 40, W - 20, H - 50)
    img = PILImage.new("RGB", (W, H), "white")
    dr = ImageDraw.Draw(img)
    allv = np.concatenate(list(curves.values()))
    lo, hi = float(allv.min()), float(allv.max())
    hi = hi if hi > lo else lo + 1
    x0, x1 = 0.0, 0.5
    _axes(dr, box, (x0, x1), (lo, hi), "frequency (cycles / pixel)", "log10 power")
    L, T, R, B = box
    for name, v in curves.items():
        pts = [(L + (R - L) * (fx - x0) / (x1 - x0), B - (B - T) * (vy - lo) / (hi - lo)) for fx, vy in zip(f, v)]
        if len(pts) > 1:
            dr.line(pts, fill=COLOURS[name], width=2)
    dr.text((L + 10, 8), "radial power spectrum (pixels)   blue: real   orange: generated", fill="black")
    img.save(path)
    return path


def auc_png(utility: dict, path: Path) -> Path:
    """AUC with 95 % bootstrap intervals, real-only (blue) vs real + synthetic (orange): the headline
    AUC and each class's one-vs-rest AUC."""
    from PIL import Image as PILImage
    from PIL import ImageDraw

    names = utility.get("class_names") or []
    cats = [("overall", "auc", None)]
    rr = utility["real_only"]
    if len(rr.get("per_class_auc", {})) > 2 or (len(names) > 2):
        cats += [(names[int(c)] if int(c) < len(names) else str(c), "per_class_auc", c) for c in rr.get("per_class_auc", {})]

    def get(model, key, c):
        r = utility[model]
        v = r.get(key) if c is None else r.get(key, {}).get(c, r.get(key, {}).get(str(c)))
        return v

    vals = [get(m, k, c) for _, k, c in cats for m in ("real_only", "real_plus_synthetic")]
    vals = [v for v in vals if v]
    lows = [v["ci95"][0] for v in vals if np.isfinite(v["ci95"][0])] + [v["auc"] for v in vals]
    lo = max(0.0, np.floor(min(lows) * 20) / 20 - 0.05) if lows else 0.0
    hi = 1.0
    W, H = max(560, 120 + 110 * len(cats)), 320
    box = (60, 40, W - 20, H - 50)
    img = PILImage.new("RGB", (W, H), "white")
    dr = ImageDraw.Draw(img)
    L, T, R, B = box
    step = (R - L) / len(cats)
    xticks = [(L + step * (i + 0.5), name) for i, (name, _, _) in enumerate(cats)]
    _axes(dr, box, (0, 1), (lo, hi), "", "AUC (95% CI)", xticks)

    def py(v):
        return B - (B - T) * (min(max(v, lo), hi) - lo) / (hi - lo)

    for i, (_, key, c) in enumerate(cats):
        for j, model in enumerate(("real_only", "real_plus_synthetic")):
            v = get(model, key, c)
            if not v:
                continue
            x = L + step * (i + 0.5) + (j - 0.5) * min(36, step / 3)
            col = COLOURS[model]
            if np.isfinite(v["ci95"][0]):
                dr.line([x, py(v["ci95"][0]), x, py(v["ci95"][1])], fill=col, width=2)
                for e in v["ci95"]:
                    dr.line([x - 5, py(e), x + 5, py(e)], fill=col, width=2)
            dr.ellipse([x - 5, py(v["auc"]) - 5, x + 5, py(v["auc"]) + 5], fill=col)
            dr.text((x + 7, py(v["auc"]) - 6), f"{v['auc']:.3f}", fill=col)
    dr.text((L, 8), "downstream AUC on held-out real   blue: real only   orange: real + synthetic", fill="black")
    img.save(path)
    return path


def _grid_png(images: np.ndarray, path: Path, n: int = 16) -> Path | None:
    from app.engine.imaging import make_grid, save_png

    if len(images) == 0:
        return None
    return save_png(path, make_grid(images[:n], ncol=min(8, max(1, min(n, len(images)))), pad_value=1.0))


# --------------------------------------------------------------------------------------------
# HTML
# --------------------------------------------------------------------------------------------


def _metrics_table(rows: dict, extractor: str, sigma: float | None) -> str:
    head = ("<tr><th>set</th><th>n</th><th>n real</th>"
            f"<th>FID<br><small>{extractor}</small></th><th>KID ± std<br><small>{extractor}</small></th>"
            f"<th>precision<br><small>{extractor}, k=3</small></th><th>recall<br><small>{extractor}, k=3</small></th>"
            "<th>histogram W1<br><small>pixels</small></th><th>histogram JS<br><small>pixels</small></th>"
            "<th>spectrum dist.<br><small>pixels, log10</small></th><th>MS-SSIM within set<br><small>pixels; &lt;0.5 diverse</small></th>"
            f"<th>clusters w/o this set<br><small>{extractor} k-means</small></th></tr>")
    body = ""
    for key, r in rows.items():
        div = r.get("diversity") or {}
        mc = r.get("mode_collapse") or {}
        body += (f"<tr><td>{html.escape(row_label(key, sigma))}</td><td>{r.get('n')}</td><td>{r.get('n_real')}</td>"
                 f"<td>{_fmt(r.get('fid'))}</td><td>{_fmt(r.get('kid_mean'))} ± {_fmt(r.get('kid_std'), '{:.2g}')}</td>"
                 f"<td>{_fmt(r.get('precision'), '{:.3f}')}</td><td>{_fmt(r.get('recall'), '{:.3f}')}</td>"
                 f"<td>{_fmt((r.get('histogram') or {}).get('wasserstein'))}</td><td>{_fmt((r.get('histogram') or {}).get('js'))}</td>"
                 f"<td>{_fmt(r.get('spectrum_log_distance'))}</td>"
                 f"<td>{_fmt(div.get('ms_ssim_mean'), '{:.3f}')}"
                 + (f" <small>({div.get('pairs')} pairs, {div.get('scales')} scales)</small>" if div else "") + "</td>"
                 f"<td>{mc.get('real_clusters_without_generated', '–')}"
                 + (f" of {mc.get('clusters')} <small>(JS {mc.get('js', 0):.3f})</small>" if mc else "") + "</td></tr>")
    return f"<table>{head}{body}</table>"


def _auc_cell(v: dict | None) -> str:
    if not v:
        return "–"
    return f"{v['auc']:.3f} <small>[{v['ci95'][0]:.3f}, {v['ci95'][1]:.3f}]</small>"


def _utility_html(u: dict, fig: Path | None) -> str:
    names = u.get("class_names") or []
    c = u["counts"]
    models = (("real_only", f"real only ({c['real_train']} real)"),
              ("real_plus_synthetic", f"real + synthetic ({c['real_train']} real + {c['synthetic']} synthetic)"))
    rows = ""
    for key, label in models:
        r = u[key]
        cm = r["confusion_matrix"]
        cm_html = "<table class='cm'>" + "".join("<tr>" + "".join(f"<td>{x}</td>" for x in row) + "</tr>" for row in cm) + "</table>"
        per = ", ".join(f"{html.escape(names[int(k)] if int(k) < len(names) else str(k))}: {_auc_cell(v)}"
                        for k, v in r.get("per_class_auc", {}).items())
        rows += (f"<tr><td>{label}</td><td>{_auc_cell(r.get('auc'))}</td><td>{r['accuracy']:.3f}</td><td>{r['f1_macro']:.3f}</td>"
                 f"<td>{cm_html}</td><td>{per}</td></tr>")
    mc = u["mcnemar"]
    d = u.get("auc_difference")
    sub = ""
    for attr, groups in (u.get("per_subgroup") or {}).items():
        sub += f"<h3>Subgroups by {html.escape(attr)}</h3><table><tr><th>{html.escape(attr)}</th><th>n test</th>" \
               "<th>AUC real only</th><th>AUC real + synthetic</th><th>accuracy real only</th><th>accuracy real + synthetic</th></tr>"
        for v, g in groups.items():
            ro, rs = g.get("real_only", {}), g.get("real_plus_synthetic", {})
            sub += (f"<tr><td>{html.escape(str(v))}</td><td>{g['n']}</td><td>{_auc_cell(ro.get('auc'))}</td><td>{_auc_cell(rs.get('auc'))}</td>"
                    f"<td>{_fmt(ro.get('accuracy'), '{:.3f}')}</td><td>{_fmt(rs.get('accuracy'), '{:.3f}')}</td></tr>")
        sub += "</table>"
    img = f"<div><img src='data:image/png;base64,{_b64(fig)}'></div>" if fig else ""
    per_class_test = ", ".join(f"{html.escape(names[i] if i < len(names) else str(i))}: {n}" for i, n in enumerate(c.get("test_per_class", [])))
    return f"""<h2>Downstream utility</h2>
<p>Classifier: {html.escape(u.get('classifier', ''))}; {u['epochs']} epochs, seed {u.get('seed')}; the same
seed, schedule and augmentation (flips, rotations ±10°, brightness/contrast ±10 %, elastic) for both. Tested on
{c['test']} held-out real images ({per_class_test}). AUC: ROC AUC of the held-out real test images with a
percentile bootstrap 95 % interval ({u.get('n_boot')} resamples){'; two classes: AUC of class ' + html.escape(names[1]) if len(names) == 2 else '; macro one-vs-rest'}.
Confusion matrices: rows true class, columns predicted ({', '.join(html.escape(n) for n in names)}).</p>
<table><tr><th>trained on</th><th>AUC [95% CI]</th><th>accuracy</th><th>macro F1</th><th>confusion matrix</th><th>per-class AUC (one vs rest)</th></tr>{rows}</table>
<p>AUC difference (real + synthetic − real only): {('%.3f <small>[%.3f, %.3f] paired bootstrap</small>' % (d['difference'], *d['ci95'])) if d else '–'}.
McNemar's exact test on the {c['test']} paired test decisions: only real-only correct {mc['only_first_correct']},
only real + synthetic correct {mc['only_second_correct']}, p = {mc['p_value']:.4g}.</p>
{img}{sub}"""


def write_evaluation_report(result: dict, real, gen, out_dir: str | Path) -> Path:
    """evaluation.html plus its figures (spectrum.png, grid_*.png, utility_auc.png) in ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ext = result.get("extractor", "")
    sigma = result.get("noise_sigma")
    c = result.get("counts", {})
    src = result.get("sources", {})
    parts = []
    for group, rows in (result.get("tables") or {}).items():
        title = "All images" if group == "overall" else f"Class {html.escape(str(group))}"
        parts.append(f"<h3>{title}</h3>{_metrics_table(rows, ext, sigma)}")
    spec_png = spectrum_png(result["spectrum"], out / "spectrum.png") if result.get("spectrum") else None
    # real vs generated side by side, per class when both carry labels
    grids = []
    groups = [("all images", None)]
    if real.labels is not None and gen.labels is not None:
        groups += [(real.class_names[k] if k < len(real.class_names) else str(k), k) for k in np.unique(real.labels)]
    for name, k in groups:
        r = real.images if k is None else real.images[real.labels == k]
        g = gen.images if k is None else gen.images[np.asarray(gen.labels) == k]
        safe = "".join(ch if ch.isalnum() else "_" for ch in str(name))
        pr, pg = _grid_png(r, out / f"grid_real_{safe}.png"), _grid_png(g, out / f"grid_generated_{safe}.png")
        cell = "".join(
            f"<div class='pair'><b>{lab}</b> ({n} images; first 16)<br>"
            + (f"<img src='data:image/png;base64,{_b64(p)}' style='image-rendering:pixelated;width:320px'>" if p else "none")
            + "</div>" for lab, p, n in (("real", pr, len(r)), ("generated", pg, len(g))))
        grids.append(f"<h3>{html.escape(str(name))}</h3>{cell}")
    least = result.get("least_plausible") or []
    lp_png = _grid_png(gen.images[[r["index"] for r in least]], out / "least_plausible.png") if least else None
    lp_rows = "".join(f"<tr><td>{r['index']}</td><td>{r['score']:.2f}</td><td>{html.escape(r['worst'])}</td></tr>" for r in least)
    u = result.get("utility")
    util_html = _utility_html(u, auc_png(u, out / "utility_auc.png")) if u else \
        "<h2>Downstream utility</h2><p>Not run (radsynth evaluate --utility; needs class labels on all sets).</p>"
    counts = (f"{c.get('real')} real reference images ({html.escape(str(src.get('real', '')))}), {c.get('generated')} generated "
              f"({html.escape(str(src.get('generated', '')))}), {c.get('holdout')} real held-out ({html.escape(str(src.get('holdout', '')))})")
    pcc = result.get("per_class_counts") or {}
    if pcc:
        counts += "; per class: " + "; ".join(f"{k} " + ", ".join(f"{n}: {v}" for n, v in d.items()) for k, d in pcc.items())
    doc = f"""<!doctype html><html><head><meta charset="utf-8"><title>Evaluation of generated images</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1400px}} td,th{{padding:3px 8px;border-bottom:1px solid #ddd;text-align:right;vertical-align:top}}
td:first-child,th:first-child{{text-align:left}} th{{background:#f3f3f3}} small{{color:#666;font-weight:normal}}
.pair{{display:inline-block;margin:6px 18px 6px 0;font-size:13px;vertical-align:top}} table.cm td{{border:1px solid #ccc;text-align:center}}</style></head><body>
<h1>Evaluation of generated images</h1>
<p>{counts}.</p>
<p>{html.escape(size_sentence(result["image_size"])) if result.get("image_size") else ""}</p>
<p>Feature extractor of FID, KID, precision / recall and the mode-collapse clusters: <b>{html.escape(ext)}</b> (values are comparable
only with the same extractor and similar image counts). Histogram, spectrum and MS-SSIM are computed on pixels.
Reference rows: <i>real held-out (floor)</i> is what a perfect generator would score with this many images;
<i>pixel-noise baseline</i> is the held-out images plus Gaussian noise σ={_fmt(sigma, '{:g}')} (of the [-1, 1] range), a naive generator to beat.</p>
<h2>Distribution metrics</h2>{''.join(parts)}
<h2>Power spectrum</h2>{f"<img src='data:image/png;base64,{_b64(spec_png)}'>" if spec_png else '<p>–</p>'}
<h2>Real vs generated</h2>{''.join(grids)}
<h2>Least plausible generated images</h2>
<p>Robust z-score of symmetry, foreground area and intensity statistics against the real images (largest |z|).</p>
{f"<img src='data:image/png;base64,{_b64(lp_png)}' style='image-rendering:pixelated;width:320px'>" if lp_png else ''}
<table><tr><th>generated index</th><th>score</th><th>worst heuristic</th></tr>{lp_rows}</table>
{util_html}
<p style="color:#888">RadSynth Studio, {time.strftime('%Y-%m-%d %H:%M')}</p></body></html>"""
    path = out / "evaluation.html"
    path.write_text(doc, encoding="utf-8")
    return path
