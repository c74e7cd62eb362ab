"""Transform-invariant copy search: mirrored, rotated, zoomed / cropped, translated, intensity-mapped, blurred copies.

What training with ``--hflip`` and memorization produce is rarely a pixel copy: a generated image can be a
training image mirrored, rotated by a few degrees, zoomed or cropped by ~10 %, moved by many pixels, under a
monotone intensity change (gamma, window), blurred or resampled, noisy, or all of these at once. Two
measures catch them; both are distances (smaller = closer) calibrated on held-out real images like the
pixel measures (``memorization.py``):

    descriptor  1 - cosine of a copy descriptor, the feature-space measure: the image at ~32 px, its
                intensities replaced by their ranks (blind to any monotone intensity map), moved so that
                its bright-tissue centroid is at the centre (blind to translation), box-averaged to 16x16,
                then projected on the principal axes of the *training* images' descriptors and whitened
                (the feature space is learned from the user's own real images; nothing is downloaded).
                Training images enter the index twice, as they are and mirrored.
    invariant   1 - the best rank correlation (Spearman-type NCC) at ~32 px between the generated image
                and a candidate training image under a fitted transform: mirror (from the candidate),
                rotation, zoom, translation (centroids made to coincide, then +-2 coarse px), searched coarse to
                fine, on rank images smoothed at the coarse pixel scale. The
                candidates are the descriptor's nearest (mirrored or not) and the pixel search's nearest.

For the images the audit flags, ``describe_transform`` fits the transformation at full resolution (mirror,
rotation, zoom, shift, then intensity map - gamma, window or linear -, blur and noise on the aligned pair)
and names it: "mirrored, shifted 5 px (+5, +0), gamma 0.8".

Geometry convention (the one ``warp`` applies and ``describe_transform`` reports): the copy is the training
image mirrored left-right (if ``mirrored``), then rotated by ``rotation`` degrees counter-clockwise as
displayed (row 0 at the top) and zoomed by ``zoom`` (> 1 magnifies) about the image centre, then moved by
(``dx``, ``dy``) pixels (right, down).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

COARSE = 32  # size of the coarse images of the invariant search
DESC = 16  # descriptor grid
DESC_DIM = 64  # principal axes kept in the whitened descriptor
#: coarse-to-fine search: level 0 on every candidate, then two refinements around the best
ROTATIONS = (-5.0, 0.0, 5.0)
ZOOMS = (0.9, 1.0, 1.1)
REFINE = ((2.5, 0.05), (1.25, 0.025), (0.625, 0.0125))
#: Gaussian smoothing (coarse px) of both images before the search: bilinear warps of a 32 px image are
#: only accurate on images smooth at the pixel scale (a 10 % zoom: rank NCC 0.96 unsmoothed, 0.994 at 0.8)
SMOOTH = 1.0
#: residual translation searched (coarse px) once the centroids are made to coincide
SHIFT_RADIUS = 3
#: start the translation from the bright-tissue centroids (else from none: the shift search alone)
CENTROIDS = False


# --------------------------------------------------------------------------------------------
# coarse images: ranks, centroids, warps
# --------------------------------------------------------------------------------------------


def coarse(images: np.ndarray, size: int = COARSE):
    """(N, 1, H, W) -> torch (N, s, s) box-averaged to ~``size`` px (never upsampled)."""
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(np.ascontiguousarray(images[:, 0], np.float32))
    h = x.shape[-1]
    f = max(1, round(min(x.shape[-2:]) / size))
    if f > 1:
        x = F.avg_pool2d(x[:, None], f)[:, 0]
    return x, h / x.shape[-1]


def rank_normalise(x):
    """(N, s, s) -> average ranks scaled to [0, 1] per image (ties share their mean rank)."""
    import torch

    n, h, w = x.shape
    flat = x.reshape(n, -1).contiguous()
    srt = torch.sort(flat, dim=1).values
    lo = torch.searchsorted(srt, flat, right=False).float()
    hi = torch.searchsorted(srt, flat, right=True).float()
    return ((lo + hi - 1) / 2 / max(h * w - 1, 1)).view(n, h, w)


def centroid(r):
    """Bright-tissue centroid (cy, cx) of rank images (N, s, s), in pixels from the image centre."""
    import torch

    _, h, w = r.shape
    wgt = (r - r.mean(dim=(1, 2), keepdim=True)).clamp_min(0)
    tot = wgt.sum(dim=(1, 2)).clamp_min(1e-6)
    ys = torch.arange(h, dtype=r.dtype) - (h - 1) / 2
    xs = torch.arange(w, dtype=r.dtype) - (w - 1) / 2
    cy = (wgt.sum(2) * ys).sum(1) / tot
    cx = (wgt.sum(1) * xs).sum(1) / tot
    return torch.stack([cy, cx], 1)


def warp(x, mirrored=None, rotation=None, zoom=None, dy=None, dx=None, padding: str = "border"):
    """Images (N, h, w) under the module's geometry convention (per-image parameters, tensors or None)."""
    import torch
    import torch.nn.functional as F

    n, h, w = x.shape
    dev = x.device
    z = torch.ones(n, device=dev) if zoom is None else torch.as_tensor(zoom, dtype=torch.float32, device=dev).expand(n)
    th = torch.zeros(n, device=dev) if rotation is None else torch.as_tensor(rotation, dtype=torch.float32, device=dev).expand(n)
    ty = torch.zeros(n, device=dev) if dy is None else torch.as_tensor(dy, dtype=torch.float32, device=dev).expand(n)
    tx = torch.zeros(n, device=dev) if dx is None else torch.as_tensor(dx, dtype=torch.float32, device=dev).expand(n)
    if mirrored is not None:
        m = torch.as_tensor(mirrored, dtype=torch.bool, device=dev).expand(n)
        x = torch.where(m[:, None, None], x.flip(-1), x)
    a = torch.deg2rad(th)
    c, s = torch.cos(a), torch.sin(a)
    # output (x, y) (normalised, y down) -> input: inverse of "rotate counter-clockwise as displayed, zoom,
    # then move"; counter-clockwise on screen with y down is the matrix [[c, s], [-s, c]] on (x, y)
    ux, uy = 2 * tx / w, 2 * ty / h
    inv = torch.stack([torch.stack([c, -s], 1), torch.stack([s, c], 1)], 1) / z[:, None, None]  # (N, 2, 2)
    off = -(inv @ torch.stack([ux, uy], 1)[:, :, None])[:, :, 0]
    theta = torch.cat([inv, off[:, :, None]], 2)
    grid = F.affine_grid(theta, (n, 1, h, w), align_corners=False)
    return F.grid_sample(x[:, None], grid, mode="bilinear", padding_mode=padding, align_corners=False)[:, 0]


def _centred(r, cen):
    """Rank images moved so that their centroid is at the centre."""
    return warp(r, dy=-cen[:, 0], dx=-cen[:, 1])


# --------------------------------------------------------------------------------------------
# the descriptor (feature-space measure) and its index
# --------------------------------------------------------------------------------------------


class CopyDescriptor:
    """Rank / centroid-normalised 16x16 layouts, whitened on the principal axes of the training images."""

    def __init__(self, train: np.ndarray, dim: int = DESC_DIM):
        import torch

        raw = torch.cat([self._raw(train), self._raw(train, mirrored=True)])
        self.mean = raw.mean(0)
        _, s, v = torch.linalg.svd(raw - self.mean, full_matrices=False)
        k = int(min(dim, len(s), int((s > 1e-6 * s[0]).sum())))
        self.axes = v[:k].T  # (D, k)
        self.scale = (s[:k] / math.sqrt(max(len(raw) - 1, 1))).clamp_min(1e-6)
        self.n_train = len(train)
        self.dim = k
        self.train = self.project(raw)  # (2 M, k): rows M.. are the mirrored training images

    @property
    def name(self) -> str:
        return (f"copy descriptor: rank-normalised, centroid-aligned {DESC}x{DESC} layout, training images "
                f"indexed as they are and mirrored, whitened on the {self.dim} principal axes of the "
                f"{self.n_train} training images (learned from them, nothing downloaded)")

    @staticmethod
    def _raw(images: np.ndarray, mirrored: bool = False):
        import torch
        import torch.nn.functional as F

        out = []
        for s in range(0, len(images), 2048):
            x, _ = coarse(images[s : s + 2048])
            if mirrored:
                x = x.flip(-1)
            r = rank_normalise(x)
            r = _centred(r, centroid(r))
            d = F.adaptive_avg_pool2d(r[:, None], DESC).flatten(1)
            out.append(d - d.mean(1, keepdim=True))
        return torch.cat(out)

    def project(self, raw):
        import torch

        z = ((raw - self.mean) @ self.axes) / self.scale
        return torch.nn.functional.normalize(z, dim=1)

    def __call__(self, images: np.ndarray):
        return self.project(self._raw(images))

    def search(self, images: np.ndarray, k: int = 2, chunk: int = 4096):
        """Nearest training images in descriptor space: (distance (N, k) 1 - cos, index (N, k), mirrored (N, k))."""
        import torch

        n = len(images)
        dist, idx = np.empty((n, k), np.float32), np.empty((n, k), np.int64)
        for s in range(0, n, chunk):
            q = self(images[s : s + chunk])
            sim = q @ self.train.T  # (B, 2M)
            # one entry per training image: the better of it and its mirror
            m = self.n_train
            best = torch.maximum(sim[:, :m], sim[:, m:])
            val, ix = torch.topk(best, min(k, m), dim=1)
            dist[s : s + chunk] = (1 - val).clamp_min(0).numpy()
            idx[s : s + chunk] = ix.numpy()
        return dist, idx

    def mirrored_better(self, images: np.ndarray, idx: np.ndarray) -> np.ndarray:
        """(N, C) bool: is the mirrored training image idx[i, j] the closer of the two in descriptor space."""
        import torch

        q = self(images)
        tr = self.train[torch.from_numpy(idx)]  # (N, C, k)
        trm = self.train[torch.from_numpy(idx + self.n_train)]
        return ((trm * q[:, None]).sum(-1) > (tr * q[:, None]).sum(-1)).numpy()


# --------------------------------------------------------------------------------------------
# the invariant measure: coarse-to-fine transform search per candidate pair
# --------------------------------------------------------------------------------------------


def _ncc_search(a, b, radius: int = 1):
    """Best NCC over shifts of up to ``radius`` px between a (P, s, s) and b (P, W, s, s): (ncc (P, W), shift (P, W, 2))."""
    import torch

    from app.engine.audit.nn import _shift_search, _shifts

    ncc, _, si = _shift_search(a, b, radius)
    sh = torch.tensor(_shifts(radius), dtype=torch.float32)[si]
    return ncc, sh


def invariant_pairs(
    query: np.ndarray,
    train: np.ndarray,
    cand: np.ndarray,
    mirrored: np.ndarray,
    chunk: int = 512,
    on_chunk: Callable[[int, int], None] | None = None,
) -> dict[str, np.ndarray]:
    """The invariant distance of every (query i, train cand[i, j], mirrored[i, j]) pair; per query the best
    candidate and its coarse transform. Returns ``invariant`` (N,), ``index`` (N,), ``second`` (N,) (the
    best distance over the other distinct candidates), and the transform ``mirrored`` / ``rotation`` /
    ``zoom`` / ``dy`` / ``dx`` (N,) in full-resolution pixels."""
    import torch

    n, c = cand.shape
    out = {k: np.zeros(n, np.float32) for k in ("invariant", "second", "rotation", "zoom", "dy", "dx")}
    out["index"] = np.zeros(n, np.int64)
    out["mirrored"] = np.zeros(n, bool)
    grid = [(r, z) for r in ROTATIONS for z in ZOOMS]
    n_chunks = max(1, math.ceil(n / chunk))

    def rz_move(rot, zoom, cen):
        # forward map of "counter-clockwise as displayed" on (x, y down): x' = c x + s y, y' = -s x + c y
        a = torch.deg2rad(rot)
        cs, sn = torch.cos(a), torch.sin(a)
        cy, cx = cen[:, 0], cen[:, 1]
        return zoom * (-sn * cx + cs * cy), zoom * (cs * cx + sn * cy)

    def fit(qs, ts, tcen, qcen, rot, zoom, r=SHIFT_RADIUS):
        """NCC of each query (P, s, s) with its candidates (P, W, s, s) warped by rot / zoom (P, W) and moved
        so that the centroids coincide; returns ncc (P, W) and the total translation (P, W, 2) in coarse px."""
        p, wn = rot.shape
        ry, rx = rz_move(rot.reshape(-1), zoom.reshape(-1), tcen)  # tcen: (P W, 2), one per warp
        ty = qcen[:, 0].repeat_interleave(wn) - ry
        tx = qcen[:, 1].repeat_interleave(wn) - rx
        tw = warp(ts.reshape(p * wn, *ts.shape[-2:]), rotation=rot.reshape(-1), zoom=zoom.reshape(-1), dy=ty, dx=tx)
        ncc, sh = _ncc_search(qs, tw.view(p, wn, *ts.shape[-2:]), r)
        return ncc, torch.stack([ty.view(p, wn), tx.view(p, wn)], -1) + sh

    with torch.no_grad():
        for ci, s in enumerate(range(0, n, chunk)):
            qx, f = coarse(query[s : s + chunk])
            b = len(qx)
            qr = rank_normalise(qx)
            qcen = centroid(qr) if CENTROIDS else torch.zeros(b, 2)
            qa = _gauss_batch(qr, SMOOTH)
            ids = cand[s : s + b]
            mir = torch.from_numpy(mirrored[s : s + b].reshape(-1))
            tx, _ = coarse(train[ids.reshape(-1)])
            tx = torch.where(mir[:, None, None], tx.flip(-1), tx)
            tr = rank_normalise(tx)
            tcen = centroid(tr) if CENTROIDS else torch.zeros(len(tr), 2)  # (B C, 2)
            ta = _gauss_batch(tr, SMOOTH)
            # level 0: every candidate under the rotation x zoom grid
            ng = len(grid)
            rot = torch.tensor([g[0] for g in grid]).repeat(b * c).view(b, c * ng)
            zm = torch.tensor([g[1] for g in grid]).repeat(b * c).view(b, c * ng)
            ncc, mv = fit(qa, ta.view(b, c, *ta.shape[-2:]).repeat_interleave(ng, 1), tcen.repeat_interleave(ng, 0), qcen, rot, zm)
            per_cand = ncc.view(b, c, ng).max(2).values  # (B, C)
            flat = ncc.argmax(1)
            jc = flat // ng
            rows = torch.arange(b)
            best = ncc[rows, flat]
            b_rot, b_zoom, b_mv = rot[rows, flat], zm[rows, flat], mv[rows, flat]
            tb = ta.view(b, c, *ta.shape[-2:])[rows, jc]
            tcb = tcen.view(b, c, 2)[rows, jc]
            # refinements around the best (rotation, zoom) of the best candidate
            for dr, dz in REFINE:
                steps = [(i * dr, j * dz) for i in (-1, 0, 1) for j in (-1, 0, 1) if (i, j) != (0, 0)]
                r2 = b_rot[:, None] + torch.tensor([p[0] for p in steps])[None]
                z2 = b_zoom[:, None] + torch.tensor([p[1] for p in steps])[None]
                n2, m2 = fit(qa, tb[:, None].expand(b, len(steps), *tb.shape[-2:]), tcb.repeat_interleave(len(steps), 0), qcen, r2, z2)
                v, j = n2.max(1)
                better = v > best
                best = torch.where(better, v, best)
                b_rot = torch.where(better, r2[rows, j], b_rot)
                b_zoom = torch.where(better, z2[rows, j], b_zoom)
                b_mv = torch.where(better[:, None], m2[rows, j], b_mv)
            per_cand[rows, jc] = torch.maximum(per_cand[rows, jc], best)
            dist = (1 - per_cand).clamp_min(0).numpy()
            jbest = jc.numpy()
            out["invariant"][s : s + b] = (1 - best).clamp_min(0).numpy()
            ib = ids[np.arange(b), jbest]
            out["index"][s : s + b] = ib
            other = np.where(ids != ib[:, None], dist, np.inf)
            out["second"][s : s + b] = other.min(1)
            out["mirrored"][s : s + b] = mir.view(b, c)[rows, jc].numpy()
            out["rotation"][s : s + b] = b_rot.numpy()
            out["zoom"][s : s + b] = b_zoom.numpy()
            out["dy"][s : s + b] = (b_mv[:, 0] * f).numpy()
            out["dx"][s : s + b] = (b_mv[:, 1] * f).numpy()
            if on_chunk is not None:
                on_chunk(ci + 1, n_chunks)
    return out


# --------------------------------------------------------------------------------------------
# naming the transformation of a flagged pair (full resolution)
# --------------------------------------------------------------------------------------------

GAMMAS = np.geomspace(0.4, 2.5, 41)
BLURS = (0.0, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)


def _gauss_batch(x, sigma: float):
    """Gaussian blur of (N, h, w) images (separable, edges replicated)."""
    import torch
    import torch.nn.functional as F

    if sigma <= 0:
        return x
    r = math.ceil(3 * sigma)
    k = torch.exp(-(torch.arange(-r, r + 1, dtype=torch.float32) ** 2) / (2 * sigma**2))
    k = (k / k.sum()).to(x.device)
    y = F.pad(x[:, None], (r, r, r, r), mode="replicate")
    y = F.conv2d(y, k.view(1, 1, 1, -1))
    return F.conv2d(y, k.view(1, 1, -1, 1))[:, 0]


def _gauss(x, sigma: float):
    import torch
    import torch.nn.functional as F

    if sigma <= 0:
        return x
    r = math.ceil(3 * sigma)
    k = torch.exp(-(torch.arange(-r, r + 1, dtype=torch.float32) ** 2) / (2 * sigma**2))
    k = k / k.sum()
    y = F.pad(x[None, None], (r, r, r, r), mode="replicate")
    y = F.conv2d(y, k.view(1, 1, 1, -1))
    return F.conv2d(y, k.view(1, 1, -1, 1))[0, 0]


def _fit_intensity(u, v):
    """Best monotone map v ~ f(u) on [0, 1] values: (name, params, predicted v, mean squared residual)."""
    a = np.vstack([u, np.ones_like(u)]).T
    coef, *_ = np.linalg.lstsq(a, v, rcond=None)
    pred = a @ coef
    best = ("linear", {"scale": float(coef[0]), "offset": float(coef[1])}, pred, float(np.mean((v - pred) ** 2)))
    for g in GAMMAS:
        ug = np.power(np.clip(u, 0, 1), g)
        ag = np.vstack([ug, np.ones_like(u)]).T
        cg, *_ = np.linalg.lstsq(ag, v, rcond=None)
        p = ag @ cg
        r = float(np.mean((v - p) ** 2))
        if r < best[3] * 0.98:
            best = ("gamma", {"gamma": float(g), "scale": float(cg[0]), "offset": float(cg[1])}, p, r)
    # window: a linear map clipped to [0, 1] (fitted on the unsaturated pixels)
    inner = (v > 0.01) & (v < 0.99)
    sat = 1 - inner.mean()
    if inner.sum() > 16 and sat > 0.02:
        ai = np.vstack([u[inner], np.ones(inner.sum())]).T
        cw, *_ = np.linalg.lstsq(ai, v[inner], rcond=None)
        p = np.clip(cw[0] * u + cw[1], 0, 1)
        r = float(np.mean((v - p) ** 2))
        if r < best[3] * 0.7 and cw[0] > 0:
            lo, hi = -cw[1] / cw[0], (1 - cw[1]) / cw[0]
            best = ("window", {"low": float(lo), "high": float(hi)}, p, r)
    return best


def describe_transform(gen_img: np.ndarray, train_img: np.ndarray, coarse_fit: dict) -> dict:
    """Fit and name the transformation taking ``train_img`` to ``gen_img`` (each (1, H, W) or (H, W) in
    [-1, 1]), starting from the invariant search's coarse estimate (``mirrored``, ``rotation``, ``zoom``,
    ``dy``, ``dx``). Returns the parameters and ``text`` ("mirrored, rotated 3°, gamma 0.8")."""
    import torch

    q = torch.from_numpy(np.asarray(gen_img, np.float32).reshape(gen_img.shape[-2:]))
    t = torch.from_numpy(np.asarray(train_img, np.float32).reshape(train_img.shape[-2:]))
    h, w = q.shape
    mir = bool(coarse_fit.get("mirrored", False))
    rot0, zoom0 = float(coarse_fit.get("rotation", 0.0)), float(coarse_fit.get("zoom", 1.0))
    dy0, dx0 = float(coarse_fit.get("dy", 0.0)), float(coarse_fit.get("dx", 0.0))
    qr = rank_normalise(q[None])
    tr = rank_normalise(t[None])
    # geometry on ranks (blind to the intensity map): rotation / zoom grid around the estimate, shifts by search
    best = (-2.0, rot0, zoom0, dy0, dx0)
    for step_r, step_z, step_t in ((1.0, 0.02, 2.0), (1.0, 0.02, 2.0), (0.5, 0.01, 1.0), (0.25, 0.005, 0.5),
                                   (0.25, 0.005, 0.25), (0.125, 0.0025, 0.125)):
        _, r0, z0, y0, x0 = best
        cands = [(r0 + i * step_r, z0 + j * step_z, y0 + a * step_t, x0 + b * step_t)
                 for i in (-1, 0, 1) for j in (-1, 0, 1) for a in (-1, 0, 1) for b in (-1, 0, 1)]
        par = torch.tensor(cands)
        tw = warp(tr.expand(len(cands), h, w), mirrored=torch.tensor(mir), rotation=par[:, 0], zoom=par[:, 1],
                  dy=par[:, 2], dx=par[:, 3])
        m = max(2, h // 16)
        a_ = qr[0, m : h - m, m : w - m].reshape(-1)
        b_ = tw[:, m : h - m, m : w - m].reshape(len(cands), -1)
        a_ = a_ - a_.mean()
        b_ = b_ - b_.mean(1, keepdim=True)
        ncc = (b_ @ a_) / (b_.norm(dim=1) * a_.norm()).clamp_min(1e-12)
        j = int(ncc.argmax())
        if float(ncc[j]) > best[0]:
            best = (float(ncc[j]), *cands[j])
    ncc_rank, rot, zoom, dy, dx = best
    tw = warp(t[None], mirrored=torch.tensor(mir), rotation=torch.tensor([rot]), zoom=torch.tensor([zoom]),
              dy=torch.tensor([dy]), dx=torch.tensor([dx]))[0]
    valid = warp(torch.ones(1, h, w), rotation=torch.tensor([rot]), zoom=torch.tensor([zoom]), dy=torch.tensor([dy]),
                 dx=torch.tensor([dx]), padding="zeros")[0] > 0.999
    m = max(2, h // 32)
    valid[:m], valid[-m:], valid[:, :m], valid[:, -m:] = False, False, False, False
    v = ((q + 1) / 2)[valid].numpy().astype(np.float64)
    def linear_res(u):
        a_ = np.vstack([u, np.ones_like(u)]).T
        coef, *_ = np.linalg.lstsq(a_, v, rcond=None)
        return float(np.mean((v - a_ @ coef) ** 2))

    us = {sigma: ((_gauss(tw, sigma) + 1) / 2)[valid].numpy().astype(np.float64) for sigma in BLURS}
    res_lin = {sigma: linear_res(u) for sigma, u in us.items()}
    sigma = min(res_lin, key=res_lin.get)
    if sigma > 0 and res_lin[sigma] > 0.85 * res_lin[0.0]:  # blur must explain the pair clearly better
        sigma = 0.0
    kind, params, pred, res = _fit_intensity(us[sigma], v)
    if kind != "linear":  # a non-linear map can make a blur unnecessary: compare once more without blur
        k0 = _fit_intensity(us[0.0], v)
        if sigma > 0 and res > 0.85 * k0[3]:
            sigma, (kind, params, pred, res) = 0.0, k0
    resid = (v - pred) * 2  # back to [-1, 1] units
    noise = float(1.4826 * np.median(np.abs(resid - np.median(resid))))
    shift = math.hypot(dx, dy)
    parts = []
    if mir:
        parts.append("mirrored")
    if abs(rot) >= 0.75:
        parts.append(f"rotated {rot:+.1f}°")
    if abs(zoom - 1) >= 0.02:
        parts.append(f"zoomed {zoom:.2f}x")
    if shift >= 2.5 or (shift >= 0.75 and not parts):
        parts.append(f"shifted {shift:.0f} px ({dx:+.0f}, {dy:+.0f})")
    if kind == "gamma" and abs(params["gamma"] - 1) >= 0.08:
        parts.append(f"gamma {params['gamma']:.2f}")
    elif kind == "window":
        parts.append(f"window {params['low']:.2f}-{params['high']:.2f}")
    elif kind == "linear" and (abs(params["scale"] - 1) >= 0.05 or abs(params["offset"]) >= 0.03):
        parts.append(f"intensity x{params['scale']:.2f} {params['offset'] * 2 + params['scale'] - 1:+.2f}")
    if sigma >= 0.75:
        parts.append(f"blurred {sigma:.1f} px")
    if noise >= 0.025:
        parts.append(f"noise {noise:.2f}")
    return {
        "mirrored": mir, "rotation": round(rot, 2), "zoom": round(zoom, 4), "dx": round(dx, 2), "dy": round(dy, 2),
        "intensity": {"kind": kind, **{k: round(val, 4) for k, val in params.items()}},
        "blur_sigma": float(sigma), "noise_sigma": round(noise, 4), "rank_ncc": round(ncc_rank, 4),
        "text": ", ".join(parts) if parts else "pixel copy",
    }


def aligned_training(train_img: np.ndarray, fit: dict) -> np.ndarray:
    """The training image (1, H, W) under a fitted geometry, for the figures (the report's and the panel's
    gallery). numpy / scipy only, so the panel draws it without torch; the same convention as ``warp``."""
    from scipy import ndimage

    t = np.asarray(train_img, np.float32).reshape(train_img.shape[-2:])
    if fit.get("mirrored", False):
        t = t[:, ::-1]
    h, w = t.shape
    a = math.radians(float(fit.get("rotation", 0.0)))
    z = float(fit.get("zoom", 1.0))
    c, s = math.cos(a), math.sin(a)
    # output (y, x) -> input: inverse of "rotate counter-clockwise as displayed, zoom, move" (see ``warp``)
    mat = np.array([[c, s], [-s, c]]) / z
    centre = np.array([(h - 1) / 2, (w - 1) / 2])
    off = centre - mat @ (centre + np.array([float(fit.get("dy", 0.0)), float(fit.get("dx", 0.0))]))
    out = ndimage.affine_transform(t, mat, offset=off, order=1, mode="nearest")
    return out[None].astype(np.float32)
