"""Exact nearest-neighbour search between image sets (pixel L2, NCC, SSIM, feature cosine), chunked.

This is the search behind the privacy audit (``app/engine/audit/memorization.py``). Every measure is reported
as a *distance* (smaller = closer) so that histograms, thresholds and rules treat them alike:

    l2      root-mean-square pixel difference, images in [-1, 1] (0 = identical)
    ncc     1 - normalised cross-correlation (Pearson r over pixels; blind to intensity scale/offset)
    l2_coarse, ncc_coarse  the same on images box-averaged to ~32 px (at least 2x): tolerant of
            slight crops / zooms and of noise, which the averaging suppresses
    ssim    1 - SSIM (skimage's default: 7x7 uniform window, K1=0.01, K2=0.03, data range 2)
    cosine  1 - cosine similarity of feature vectors (any extractor in ``features.py``)

Stage 1 (exhaustive, exact): one matrix product of per-image centred pixels gives both NCC and L2
for every (query, train) pair, because ||a-b||^2 = ||a_c||^2 + ||b_c||^2 - 2 a_c.b_c + D (mean_a -
mean_b)^2. Centring first keeps float32 cancellation small; the top-k candidates per measure are
then re-scored exactly in stage 2.

Stage 2 (on the candidates only): every candidate pair is re-scored under small translations
(|dy|, |dx| <= shift_radius, on the overlapping region), so a copy shifted by a pixel or two has
NCC ~ 1 and L2 ~ 0 at its best shift; SSIM is computed at the best-NCC shift, on the query's central
region (a ``shift_radius`` border left out, so every pair is one batch). SSIM is therefore
evaluated on the union of the L2 and NCC top-k candidates, not exhaustively (an exhaustive SSIM
over 42,000 x 8,000 pairs is ~10^4 times the cost and would find the same neighbours).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from app.engine.errors import UserError
from app.engine.specs.options import MEASURES, PIXEL_MEASURES  # noqa: F401 (the measures named here)


def coarse_factor(h: int, w: int) -> int:
    """Downsampling factor of the coarse scale: images of about 32 px (at least 2x smaller)."""
    return max(2, int(round(min(h, w) / 32)))


def downsample(images: np.ndarray, factor: int) -> np.ndarray:
    """Box-average (N, 1, H, W) by an integer factor (edges cropped to a multiple of it)."""
    n, c, h, w = images.shape
    hh, ww = h // factor, w // factor
    x = images[:, :, : hh * factor, : ww * factor].reshape(n, c, hh, factor, ww, factor)
    return x.mean(axis=(3, 5), dtype=np.float32)


def check_images(images, what: str = "images", min_count: int = 1) -> np.ndarray:
    """float32 (N, 1, H, W) from (N, H, W) / (N, 1, H, W); UserError for empty, NaN or bad shapes."""
    arr = np.asarray(images)
    if arr.ndim == 3:
        arr = arr[:, None]
    if arr.ndim != 4 or arr.shape[1] != 1:
        raise UserError(f"{what}: expected greyscale images (N, 1, H, W) or (N, H, W), got shape {arr.shape}")
    if arr.shape[0] < min_count:
        raise UserError(f"{what}: the set is empty" if arr.shape[0] == 0 else f"{what}: needs at least {min_count} images, got {arr.shape[0]}")
    if arr.shape[2] < 8 or arr.shape[3] < 8:
        raise UserError(f"{what}: images of {arr.shape[2]}x{arr.shape[3]} are too small (at least 8x8)")
    arr = arr.astype(np.float32, copy=False)
    bad = ~np.isfinite(arr).reshape(len(arr), -1).all(axis=1)
    if bad.any():
        raise UserError(f"{what}: {int(bad.sum())} image(s) contain NaN or infinite values (first: index {int(np.flatnonzero(bad)[0])})")
    return arr


def check_same_size(a: np.ndarray, b: np.ndarray, what_a: str, what_b: str) -> None:
    if a.shape[2:] != b.shape[2:]:
        raise UserError(
            f"{what_a} are {a.shape[2]}x{a.shape[3]} but {what_b} are {b.shape[2]}x{b.shape[3]}: "
            "compare sets of one size (resize one of them when loading)"
        )


def _auto_chunk(n_train: int, dim: int, budget_bytes: int = 384 * 2**20) -> int:
    # A query chunk costs its pixels (B x D) plus ~4 (B x M) score matrices in float32.
    per_row = 4 * (dim + 4 * n_train)
    return int(max(16, min(4096, budget_bytes // max(per_row, 1))))


_INT8_FAST: dict[str, bool] = {}


def int8_is_fast(device) -> bool:
    """Whether exact int8 x int8 -> int32 matrix products (``torch._int_mm``) beat float32 ones on ``device``
    (probed once: CPUs with AVX512-VNNI / AMX run them ~5x faster; elsewhere, or where the kernel is
    missing, the float32 path is used)."""
    import time

    import torch

    dev = torch.device(device or "cpu")
    key = str(dev)
    if key not in _INT8_FAST:
        if dev.type != "cpu":
            _INT8_FAST[key] = False  # GPUs: the float32 GEMM path (fast there, no shape rules)
        else:
            try:
                # big enough for the kernels' real speed (small products are overhead-bound): ~0.5 s once
                a, b = torch.randn(512, 8192), torch.randn(1024, 8192)
                ai, bi = a.clamp(-1, 1).mul(127).to(torch.int8), b.clamp(-1, 1).mul(127).to(torch.int8)
                best = {"f32": float("inf"), "int8": float("inf")}
                for _ in range(3):  # interleaved, best of three: robust to a busy machine
                    for name, f in (("f32", lambda: a @ b.T), ("int8", lambda: torch._int_mm(ai, bi.T))):
                        t0 = time.perf_counter()
                        f()
                        best[name] = min(best[name], time.perf_counter() - t0)
                _INT8_FAST[key] = best["int8"] * 1.5 < best["f32"]
            except (RuntimeError, AttributeError):
                _INT8_FAST[key] = False
    return _INT8_FAST[key]


def _quantize(x):
    """x (B, D) float32 = s q + d, q int8 per-row symmetric, s = max|x| / 127: (q, s (B,), d)."""
    import torch

    s = torch.maximum(x.amax(1), -x.amin(1)).clamp_min(1e-30) / 127
    qf = torch.mul(x, (1 / s)[:, None]).round_()
    d = torch.addcmul(x, qf, s[:, None], value=-1)
    return qf.to(torch.int8), s, d


class _Int8Split:
    """x = s1 q1 + d (one int8 level; what the screen needs) and, on demand, d = s2 q2 + r (the second).

    Rows are done in blocks (``BLOCK``) so that the temporaries stay small: on two cores the elementwise
    passes over fresh full-size buffers, not the GEMM, would cost most; only q1 (int8) and per-row numbers
    are kept, d is recomputed blockwise for the second level."""

    BLOCK = 256

    def __init__(self, x):
        import torch

        n = len(x)
        self.x = x
        self.q1 = torch.empty(x.shape, dtype=torch.int8, device=x.device)
        self.s1 = torch.empty(n, device=x.device)
        self.n_d = torch.empty(n, device=x.device)
        self.n_hat = torch.empty(n, device=x.device)
        for s in range(0, n, self.BLOCK):
            xb = x[s : s + self.BLOCK]
            q, sc, d = _quantize(xb)
            self.q1[s : s + self.BLOCK], self.s1[s : s + self.BLOCK] = q, sc
            self.n_d[s : s + self.BLOCK] = d.norm(dim=1)
            # |s q| <= |x| + |d| (triangle inequality: a safe bound)
            self.n_hat[s : s + self.BLOCK] = xb.norm(dim=1) + self.n_d[s : s + self.BLOCK]
        self._second = None

    def second(self):
        import torch

        if self._second is None:
            x, n = self.x, len(self.x)
            q2 = torch.empty(x.shape, dtype=torch.int8, device=x.device)
            s2, n_r = torch.empty(n, device=x.device), torch.empty(n, device=x.device)
            for s in range(0, n, self.BLOCK):
                xb = x[s : s + self.BLOCK]
                d = torch.addcmul(xb, self.q1[s : s + self.BLOCK].float(), self.s1[s : s + self.BLOCK, None], value=-1)
                q, sc, r = _quantize(d)
                q2[s : s + self.BLOCK], s2[s : s + self.BLOCK], n_r[s : s + self.BLOCK] = q, sc, r.norm(dim=1)
            self._second = (q2, s2, n_r)
        return self._second


def _exact_pairs(qc, q_mean, tc, t_mean, rows, cols, block: int = 2048):
    """Squared L2 (means included) and centred dot products of the (rows[i], cols[i]) pairs, computed
    directly from the pixels in float64 (differences first: no cancellation)."""
    import torch

    d2 = torch.empty(len(rows), dtype=torch.float64, device=qc.device)
    dot = torch.empty(len(rows), dtype=torch.float64, device=qc.device)
    for s in range(0, len(rows), block):
        r, c = rows[s : s + block], cols[s : s + block]
        qv, tv = qc[r].double(), tc[c].double()
        dot[s : s + block] = torch.einsum("ij,ij->i", qv, tv)
        tv.sub_(qv).sub_((q_mean[r] - t_mean[c]).double()[:, None])  # train - query, means included
        d2[s : s + block] = torch.einsum("ij,ij->i", tv, tv)
    return d2, dot


def pixel_candidates(
    query: np.ndarray,
    train: np.ndarray,
    k: int = 3,
    device: str | None = None,
    chunk: int | None = None,
    on_chunk: Callable[[int, int], None] | None = None,
    precision: str = "f32",
    stats: dict | None = None,
) -> dict[str, np.ndarray]:
    """Exhaustive stage: the k nearest training images of every query under L2 and under NCC, exactly.

    Returns ``l2_idx`` / ``ncc_idx`` (N, k) int64 and ``l2`` / ``ncc`` (N, k) float32 distances
    (unshifted). ``on_chunk(done, total)`` is called after every query chunk (progress + cancel).

    ``precision="int8"`` (or ``"auto"``: int8 where its products are fast, ``int8_is_fast``): an int8 screen with a
    proven error bound, then exact re-scoring of the survivors. Every centred image is split x = s q + d
    (q int8, per-image scale s); one int8 GEMM gives q_a.q_b exactly (int32), and by Cauchy-Schwarz
    |a.b - s_a s_b q_a.q_b| <= |x^_a||d_b| + |d_a||x^_b| + |d_a||d_b| (x^ = s q), so every pair's distance
    lies in a known interval. A training image whose lower bound exceeds the k-th smallest upper bound of
    its query cannot be among the k nearest and is dropped. If many pairs survive (images nearly
    equidistant, e.g. white noise), d is itself split into int8 (d = s2 q2 + r) and two more int8 GEMMs
    (q_a.q2_b, q2_a.q_b) shrink the intervals ~100-fold. The survivors' distances are then
    computed directly (sums of squared differences, float64 accumulation), so the returned
    neighbours and distances are those of an exact search (float64 sums of the differences, no
    cancellation; ``_SLACK`` widens the intervals for the float32 rounding of scales and norms). ``precision="f32"``: the single
    float32 GEMM of before. ``stats`` (a dict) receives the survivor counts.

    ``precision="proj"``: an exact search with far fewer flops where the images have structure. An orthogonal
    projection P (the training set's 256 leading principal directions, ``projection_basis``) splits
    ||x - y||^2 = ||P(x - y)||^2 + ||P_perp(x - y)||^2 >= ||Px - Py||^2 + (||P_perp x|| - ||P_perp y||)^2, a squared
    distance in 258 dimensions (``_augmented``; NCC likewise on unit vectors), so one small GEMM bounds every
    pair from below. The 2k pairs of lowest bound per query are scored exactly, their k-th distance is an
    upper bound of the true k-th, and only pairs whose lower bound is below it are scored exactly (float32
    differences, no cancellation), the final k in float64. A chunk with more than ``_PROJ_MAX_SURVIVORS``
    survivors per query (white noise) is re-screened in full dimension. Measured on 2 busy cores
    (benchmarks/bench_audit_speed.py): SLOWER than the float32 GEMM on augmented SIAT slices (rotated,
    zoomed, shifted, noisy: 225 survivors per query at 256 dimensions, 54 at 1024, and scoring one pair
    exactly costs ~100 us of memory traffic here, ~100 GEMM pairs), so it is not the default.
    """
    import time

    import torch

    dev = torch.device(device or "cpu")
    if precision not in ("f32", "int8", "auto", "proj"):
        raise UserError(f"search precision {precision!r} is not one of proj, f32, int8, auto")
    if precision == "proj":
        return _pixel_candidates_proj(query, train, k, device, chunk, on_chunk, stats)
    if precision == "f32" or (precision == "auto" and not int8_is_fast(dev)):
        return _pixel_candidates_f32(query, train, k=k, device=device, chunk=chunk, on_chunk=on_chunk)
    n, m = len(query), len(train)
    k = int(min(k, m))
    d = int(np.prod(query.shape[1:]))
    t = torch.from_numpy(np.ascontiguousarray(train.reshape(m, d)))
    t_prep = time.perf_counter()
    t_mean = t.mean(1)
    tc = (t - t_mean[:, None]).to(dev)
    t_mean = t_mean.to(dev)
    t_norm = tc.norm(dim=1).double().clamp_min(1e-12)
    t_sq = t_norm**2
    ts = _Int8Split(tc)
    t1T = ts.q1.T.contiguous()
    counts_prep = time.perf_counter() - t_prep
    t2T = None
    chunk = int(chunk or _auto_chunk(m, d, budget_bytes=256 * 2**20) // 2)
    chunk = max(16, chunk)
    out = {name: np.empty((n, k), dtype) for name, dtype in
           (("l2_idx", np.int64), ("ncc_idx", np.int64), ("l2", np.float32), ("ncc", np.float32))}
    n_chunks = max(1, math.ceil(n / chunk))
    counts = {"pairs": 0, "survivors": 0, "tightened_chunks": 0, "train_prep_seconds": counts_prep}
    with torch.no_grad():
        for ci, s in enumerate(range(0, n, chunk)):
            q = torch.from_numpy(np.ascontiguousarray(query[s : s + chunk].reshape(-1, d)))
            b = len(q)
            q_mean = q.mean(1)
            qc = (q - q_mean[:, None]).to(dev)
            q_mean = q_mean.to(dev)
            q_norm = qc.norm(dim=1).double().clamp_min(1e-12)
            q_sq = q_norm**2
            qs = _Int8Split(qc)
            g = torch._int_mm(qs.q1, t1T).float().mul_(qs.s1[:, None] * ts.s1[None, :])
            err = qs.n_hat[:, None] * ts.n_d[None, :] + qs.n_d[:, None] * (ts.n_hat + ts.n_d)[None, :]
            # ||a-b||^2 = ||a_c||^2 + ||b_c||^2 - 2 a_c.b_c + D (mean_a - mean_b)^2
            # float32 is enough here: its rounding (~1e-7 of |a||b|) is far inside _SLACK
            base = (q_sq.float()[:, None] + t_sq.float()[None, :]).add_(
                (q_mean[:, None] - t_mean[None, :]).square_().mul_(d))
            qt_norm = q_norm.float()[:, None] * t_norm.float()[None, :]
            slack = _SLACK * qt_norm

            def survivors(g, err, base, slack, qt_norm, b=b):
                e = err + slack
                l2_lo, l2_hi = base - 2 * (g + e), base - 2 * (g - e)
                nc_lo, nc_hi = -(g + e) / qt_norm, -(g - e) / qt_norm
                keep = torch.zeros((b, m), dtype=torch.bool, device=dev)
                for lo, hi in ((l2_lo, l2_hi), (nc_lo, nc_hi)):
                    tau = torch.topk(hi, k, dim=1, largest=False).values[:, -1:]
                    keep |= lo <= tau
                return keep

            keep = survivors(g, err, base, slack, qt_norm)
            if keep.sum().item() > 8 * k * b:  # many near-equidistant pairs: tighten the intervals
                nd_q, nd_t = qs.n_d, ts.n_d
                (q2, s2q, nr_q), (t2, s2t, nr_t) = qs.second(), ts.second()
                if t2T is None:
                    t2T = t2.T.contiguous()
                g += torch._int_mm(qs.q1, t2T).float().mul_(qs.s1[:, None] * s2t[None, :])
                g += torch._int_mm(q2, t1T).float().mul_(s2q[:, None] * ts.s1[None, :])
                err = qs.n_hat[:, None] * nr_t[None, :] + nr_q[:, None] * ts.n_hat[None, :] + nd_q[:, None] * nd_t[None, :]
                keep = survivors(g, err, base, slack, qt_norm)
                counts["tightened_chunks"] += 1
            del g, err, base, slack
            rows, cols = keep.nonzero(as_tuple=True)
            counts["pairs"] += b * m
            counts["survivors"] += len(rows)
            d2, dot = _exact_pairs(qc, q_mean, tc, t_mean, rows, cols)
            # the survivors of each row into a padded (B, S) table (rows come sorted from nonzero)
            per_row = torch.bincount(rows, minlength=b)
            start = torch.cumsum(per_row, 0) - per_row
            pos = torch.arange(len(rows), device=dev) - start[rows]
            width = max(int(per_row.max()), k)
            col_tab = torch.zeros((b, width), dtype=torch.int64, device=dev)
            col_tab[rows, pos] = cols
            for name, vals in (("l2", (d2.clamp_min(0) / d).sqrt()), ("ncc", 1 - dot / (q_norm[rows] * t_norm[cols]))):
                tab = torch.full((b, width), float("inf"), dtype=torch.float64, device=dev)
                tab[rows, pos] = vals
                val, j = torch.topk(tab, k, dim=1, largest=False, sorted=True)
                out[name][s : s + b] = val.float().cpu().numpy()
                out[f"{name}_idx"][s : s + b] = col_tab.gather(1, j).cpu().numpy()
            if on_chunk is not None:
                on_chunk(ci + 1, n_chunks)
    if stats is not None:
        stats.update(counts)
    return out


#: relative widening of the int8 screen's intervals (of |a||b|), for the float32 rounding of the scales,
#: norms and residuals (~1e-7 each; the int32 products themselves are exact)
_SLACK = 5e-6


def _pixel_candidates_f32(
    query: np.ndarray,
    train: np.ndarray,
    k: int = 3,
    device: str | None = None,
    chunk: int | None = None,
    on_chunk: Callable[[int, int], None] | None = None,
) -> dict[str, np.ndarray]:
    """The single-GEMM float32 search (GPUs, and CPUs without fast int8 products).

    Returns ``l2_idx`` / ``ncc_idx`` (N, k) int64 and ``l2`` / ``ncc`` (N, k) float32 distances
    (unshifted). ``on_chunk(done, total)`` is called after every query chunk (progress + cancel).
    """
    import torch

    dev = torch.device(device or "cpu")
    n, m = len(query), len(train)
    k = int(min(k, m))
    d = int(np.prod(query.shape[1:]))
    # per-image centring (float64 means, float32 data): NCC and the L2 identity need centred pixels
    t = torch.from_numpy(np.ascontiguousarray(train.reshape(m, d)))
    t_mean = t.double().mean(1)
    tc = (t - t_mean.float()[:, None]).to(dev)
    t_sq = (tc.double() ** 2).sum(1).to(dev)
    t_norm = t_sq.sqrt().clamp_min(1e-12).float()
    t_sq = t_sq.float()
    t_mean = t_mean.float().to(dev)
    chunk = int(chunk or _auto_chunk(m, d))
    out = {name: np.empty((n, k), dtype) for name, dtype in
           (("l2_idx", np.int64), ("ncc_idx", np.int64), ("l2", np.float32), ("ncc", np.float32))}
    n_chunks = max(1, math.ceil(n / chunk))
    with torch.no_grad():
        for ci, s in enumerate(range(0, n, chunk)):
            q = torch.from_numpy(np.ascontiguousarray(query[s : s + chunk].reshape(-1, d)))
            q_mean = q.double().mean(1)
            qc = (q - q_mean.float()[:, None]).to(dev)
            q_sq = (qc.double() ** 2).sum(1).float().to(dev)
            q_norm = q_sq.sqrt().clamp_min(1e-12)
            q_mean = q_mean.float().to(dev)
            g = qc @ tc.T  # (B, M) centred inner products, the one expensive step
            # ||a-b||^2 = ||a_c||^2 + ||b_c||^2 - 2 a_c.b_c + D (mean_a - mean_b)^2
            d2 = q_sq[:, None] + t_sq[None, :] - 2 * g + d * (q_mean[:, None] - t_mean[None, :]) ** 2
            l2 = (d2.clamp_min(0) / d).sqrt()
            # NCC = a_c.b_c / (||a_c|| ||b_c||) (Pearson correlation over pixels)
            ncc = 1 - g / (q_norm[:, None] * t_norm[None, :])
            for name, score in (("l2", l2), ("ncc", ncc)):
                val, idx = torch.topk(score, k, dim=1, largest=False, sorted=True)
                out[name][s : s + chunk] = val.cpu().numpy()
                out[f"{name}_idx"][s : s + chunk] = idx.cpu().numpy()
            if on_chunk is not None:
                on_chunk(ci + 1, n_chunks)
    return out


#: relative widening (of ||a||^2 + ||b||^2, or of 2 for NCC) of the projected search's lower bounds, for the float32
#: rounding of the projection, the norms and the (p + 2)-term products: their errors are ~1e-6 of that, so the
#: bound stays a bound with a 50x margin
_PROJ_SLACK = 5e-5
#: a chunk whose pairs survive the projected bound more than this many per query (nearly equidistant images,
#: e.g. white noise, where no low-dimensional basis captures the images) is re-screened in full dimension
_PROJ_MAX_SURVIVORS = 48


def projection_basis(tc, p: int = 256, n_basis: int = 1024):
    """Orthonormal (p, D) float32 basis of the leading principal directions of the centred training
    images ``tc`` (M, D) (uncentred PCA of at most ``n_basis`` of them, picked with a fixed seed: the basis
    only decides the speed of the exact search, never its result), orthonormalised in float64."""
    import torch

    m, d = tc.shape
    p = int(min(p, m, d))
    sel = torch.randperm(m, generator=torch.Generator().manual_seed(0))[: min(m, max(n_basis, p))].sort().values
    x = tc[sel.to(tc.device)]
    gram = (x @ x.T).double()
    vecs = torch.linalg.eigh(gram).eigenvectors  # ascending eigenvalues
    top = vecs[:, -p:].flip(1).to(x.dtype)
    v = (top.T @ x).double()  # (p, D), rows along the principal directions
    q, _ = torch.linalg.qr(v.T)  # float64 orthonormal columns
    return q.T.contiguous().to(tc.dtype)


def _augmented(xc, x_mean, x_sq, basis, d: int):
    """Per image: ([P x, sqrt(D) mean, ||P_perp x||], ||x||^2 incl. mean) for L2 and ([P x, ||P_perp x||] / ||x||)
    for NCC, so that for any two images ||a - b||^2 >= n_a + n_b - 2 a~.b~ and 1 - ncc >= 1 - a^.b^ (the
    orthogonal split ||x - y||^2 = ||P(x - y)||^2 + ||P_perp(x - y)||^2 and ||P_perp(x - y)|| >= | ||P_perp x|| -
    ||P_perp y|| |). ``basis`` None: the full dimension (no residual)."""
    import torch

    px = xc if basis is None else xc @ basis.T
    res = torch.zeros(len(xc), dtype=torch.float64, device=xc.device) if basis is None else \
        (x_sq - (px.double() ** 2).sum(1)).clamp_min(0).sqrt()
    norm = x_sq.sqrt().clamp_min(1e-12)
    l2 = torch.cat([px, (math.sqrt(d) * x_mean)[:, None].to(px.dtype), res[:, None].to(px.dtype)], 1)
    ncc = torch.cat([px, res[:, None].to(px.dtype)], 1) / norm[:, None].to(px.dtype)
    return l2, ncc, x_sq + d * x_mean.double() ** 2


def _pixel_candidates_proj(query, train, k, device, chunk, on_chunk, stats, p: int = 256):
    """The projected exact search (``pixel_candidates(precision="proj")``)."""
    import time

    import torch

    dev = torch.device(device or "cpu")
    n, m = len(query), len(train)
    k = int(min(k, m))
    d = int(np.prod(query.shape[1:]))
    t0 = time.perf_counter()
    t = torch.from_numpy(np.ascontiguousarray(train.reshape(m, d))).to(dev)
    t_mean = t.double().mean(1)
    tc = t - t_mean.float()[:, None]
    t_sq = (tc.double() ** 2).sum(1)
    t_norm = t_sq.sqrt().clamp_min(1e-12)
    t_mean = t_mean.float()
    tn = tc / t_norm.float()[:, None]  # centred, unit norm: NCC distance = ||a^ - b^||^2 / 2
    basis = projection_basis(tc, p) if 4 * p < d else None
    full_t = None  # the full-dimension augmented vectors, made on the first chunk that needs them

    def prepare(xc, x_mean, x_sq, b):
        l2, nc, nfull = _augmented(xc, x_mean, x_sq, b, d)
        return l2, nc, nfull

    t_l2, t_nc, t_full = prepare(tc, t_mean, t_sq, basis)
    t_l2T, t_ncT = t_l2.T.contiguous(), t_nc.T.contiguous()
    counts = {"pairs": 0, "survivors": 0, "full_dimension_chunks": 0, "train_prep_seconds": time.perf_counter() - t0,
              "dim": d if basis is None else len(basis)}
    chunk = int(chunk or _auto_chunk(m, p + 2, budget_bytes=256 * 2**20))
    k1 = int(min(m, 2 * k))  # first guesses per query and measure: their exact distances bound the k-th
    out = {name: np.empty((n, k), dtype) for name, dtype in
           (("l2_idx", np.int64), ("ncc_idx", np.int64), ("l2", np.float32), ("ncc", np.float32))}
    n_chunks = max(1, math.ceil(n / chunk))
    sticky_full = False
    with torch.no_grad():
        for ci, s in enumerate(range(0, n, chunk)):
            q = torch.from_numpy(np.ascontiguousarray(query[s : s + chunk].reshape(-1, d))).to(dev)
            b = len(q)
            q_mean = q.double().mean(1)
            qc = q - q_mean.float()[:, None]
            q_sq = (qc.double() ** 2).sum(1)
            q_norm = q_sq.sqrt().clamp_min(1e-12)
            q_mean = q_mean.float()
            qn = qc / q_norm.float()[:, None]
            for full in ((True,) if sticky_full else (False, True)):
                if full:
                    if full_t is None:
                        f_l2, f_nc, _ = prepare(tc, t_mean, t_sq, None)
                        full_t = (f_l2.T.contiguous(), f_nc.T.contiguous())
                        del f_l2, f_nc
                    a_l2, a_nc, q_full = prepare(qc, q_mean, q_sq, None)
                    tl2T, tncT = full_t
                else:
                    a_l2, a_nc, q_full = prepare(qc, q_mean, q_sq, basis)
                    tl2T, tncT = t_l2T, t_ncT
                keep = torch.zeros((b, m), dtype=torch.bool, device=dev)
                for name, aq, tT in (("l2", a_l2, tl2T), ("ncc", a_nc, tncT)):
                    g = aq @ tT  # (B, M): the one matrix product, in p + 2 dimensions
                    if name == "l2":
                        nsum = q_full.float()[:, None] + t_full.float()[None, :]
                        lb = nsum.mul_(1 - _PROJ_SLACK).sub_(g, alpha=2)  # lower bound of ||a - b||^2
                    else:
                        lb = g.neg_().add_(1 - 2 * _PROJ_SLACK)  # lower bound of 1 - ncc
                    del g
                    guess = torch.topk(lb, k1, dim=1, largest=False).indices
                    rows = torch.arange(b, device=dev)[:, None].expand(b, k1).reshape(-1)
                    exact = _diff_pairs(q, t, rows, guess.reshape(-1)) if name == "l2" else \
                        _diff_pairs(qn, tn, rows, guess.reshape(-1)) / 2
                    tau = torch.topk(exact.view(b, k1), k, dim=1, largest=False).values[:, -1:]
                    keep |= lb <= tau.float() * (1 + 1e-6) + 1e-30  # every pair that can be among the k nearest
                    del lb
                n_keep = int(keep.sum())
                if full or n_keep <= _PROJ_MAX_SURVIVORS * b:
                    break
                sticky_full = True  # the images are of a kind the basis does not capture
            counts["full_dimension_chunks"] += int(full)
            rows, cols = keep.nonzero(as_tuple=True)
            del keep
            counts["pairs"] += b * m
            counts["survivors"] += len(rows)
            d2, nc = _diff_pairs(q, t, rows, cols), _diff_pairs(qn, tn, rows, cols) / 2
            per_row = torch.bincount(rows, minlength=b)
            start = torch.cumsum(per_row, 0) - per_row
            pos = torch.arange(len(rows), device=dev) - start[rows]
            width = max(int(per_row.max()), k)
            col_tab = torch.zeros((b, width), dtype=torch.int64, device=dev)
            col_tab[rows, pos] = cols
            for name, vals in (("l2", d2), ("ncc", nc)):
                tab = torch.full((b, width), float("inf"), dtype=vals.dtype, device=dev)
                tab[rows, pos] = vals
                j = torch.topk(tab, k, dim=1, largest=False, sorted=True).indices
                idx = col_tab.gather(1, j)
                # the final k in float64 (differences first), re-sorted by those values
                r64 = torch.arange(b, device=dev)[:, None].expand(b, k).reshape(-1)
                x64 = _exact_pairs(qc, q_mean, tc, t_mean, r64, idx.reshape(-1))
                v64 = ((x64[0].clamp_min(0) / d).sqrt() if name == "l2" else
                       1 - x64[1] / (q_norm[r64] * t_norm[idx.reshape(-1)])).view(b, k)
                v64, o = torch.sort(v64, dim=1, stable=True)
                out[name][s : s + b] = v64.float().cpu().numpy()
                out[f"{name}_idx"][s : s + b] = idx.gather(1, o).cpu().numpy()
            if on_chunk is not None:
                on_chunk(ci + 1, n_chunks)
    if stats is not None:
        stats.update(counts)
    return out


def _diff_pairs(x, y, rows, cols, block: int = 1024):
    """||y[cols[i]] - x[rows[i]]||^2 for pairs, float32 differences first (relative error ~1e-7 of the result
    itself, no cancellation), summed in float64."""
    import torch

    out = torch.empty(len(rows), dtype=torch.float64, device=x.device)
    for s in range(0, len(rows), block):
        diff = y.index_select(0, cols[s : s + block]).sub_(x.index_select(0, rows[s : s + block]))
        out[s : s + block] = torch.linalg.vector_norm(diff, dim=1, dtype=torch.float64) ** 2
    return out


def feature_candidates(
    query_feats: np.ndarray,
    train_feats: np.ndarray,
    k: int = 2,
    device: str | None = None,
    chunk: int = 4096,
    on_chunk: Callable[[int, int], None] | None = None,
) -> dict[str, np.ndarray]:
    """Exhaustive cosine search in feature space: ``cosine_idx`` (N, k), ``cosine`` (N, k) = 1 - cos."""
    import torch

    dev = torch.device(device or "cpu")
    k = int(min(k, len(train_feats)))
    t = torch.nn.functional.normalize(torch.as_tensor(np.asarray(train_feats, np.float32)), dim=1).to(dev)
    n = len(query_feats)
    dist = np.empty((n, k), np.float32)
    idx = np.empty((n, k), np.int64)
    n_chunks = max(1, math.ceil(n / chunk))
    with torch.no_grad():
        for ci, s in enumerate(range(0, n, chunk)):
            q = torch.nn.functional.normalize(torch.as_tensor(np.asarray(query_feats[s : s + chunk], np.float32)), dim=1).to(dev)
            val, ix = torch.topk(1 - q @ t.T, k, dim=1, largest=False, sorted=True)
            dist[s : s + chunk] = val.clamp_min(0).cpu().numpy()
            idx[s : s + chunk] = ix.cpu().numpy()
            if on_chunk is not None:
                on_chunk(ci + 1, n_chunks)
    return {"cosine": dist, "cosine_idx": idx}


def _box_mean(x, win: int):
    import torch.nn.functional as F

    # valid (unpadded) 'win' x 'win' mean, as skimage's uniform filter after cropping its border; separable
    # (win x 1 then 1 x win: 2 win adds per pixel instead of win^2, the same mean up to float rounding)
    return F.avg_pool2d(F.avg_pool2d(x, (win, 1), stride=1), (1, win), stride=1)


def ssim_pairs(a, b, data_range: float = 2.0, win: int = 7):
    """SSIM of image pairs (B, H, W) torch tensors -> (B,), matching skimage.metrics.structural_similarity
    with its defaults (7x7 uniform window, K1=0.01, K2=0.03, sample covariance).

    Written here (not skimage) because the audit scores hundreds of thousands of pairs in batches;
    Wang et al. 2004, IEEE TIP 13(4), eq. 13. tests/engine/metrics checks it against skimage.
    """
    a = a[:, None].float()
    b = b[:, None].float()
    win = int(min(win, a.shape[-1], a.shape[-2]))
    win -= 1 - win % 2  # odd
    np_ = win * win
    cov_norm = np_ / (np_ - 1)
    ux, uy = _box_mean(a, win), _box_mean(b, win)
    uxx, uyy, uxy = _box_mean(a * a, win), _box_mean(b * b, win), _box_mean(a * b, win)
    vx, vy, vxy = cov_norm * (uxx - ux * ux), cov_norm * (uyy - uy * uy), cov_norm * (uxy - ux * uy)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return s.mean(dim=(1, 2, 3)).float()


def _shifts(radius: int):
    return [(dy, dx) for dy in range(-radius, radius + 1) for dx in range(-radius, radius + 1)]


def _overlap(h: int, w: int, dy: int, dx: int):
    """Slices (query, train) of the overlap when the query is the train image moved by (dy, dx)."""
    qs = (slice(max(dy, 0), h + min(dy, 0)), slice(max(dx, 0), w + min(dx, 0)))
    ts = (slice(max(-dy, 0), h + min(-dy, 0)), slice(max(-dx, 0), w + min(-dx, 0)))
    return qs, ts


def _box_sums(x, hh: int, ww: int, r: int):
    """Sums of x (B, C, H, W) over the hh x ww windows at offsets 0..2r, float64: the k = 2r+1 row-range
    sums of every column, then the k column ranges of those (no full-size float64 integral image)."""
    import torch

    k = 2 * r + 1
    xd = x.double()
    col = torch.stack([xd[..., y : y + hh, :].sum(-2) for y in range(k)], -2)  # (B, C, k, W)
    return torch.stack([col[..., x0 : x0 + ww].sum(-1) for x0 in range(k)], -1).flatten(-2)  # (B, C, k*k)


def _shift_search(q, t, r: int):
    """Best NCC (and its shift index) and least RMS difference over translations, per pair.

    q: (B, H, W) queries, t: (B, C, H, W) candidates. The query's central (H-2r) x (W-2r) region
    is the template; it is correlated with every window of the candidate at offsets up to r px
    (one grouped convolution, which is ~5x faster than looping over shifted crops), and the
    candidate's window sums come from integral images. Shift index j maps to (dy, dx) =
    _shifts(r)[j], meaning query[i + dy, k + dx] ~ candidate[i, k].
    """
    import torch
    import torch.nn.functional as F

    b, c, h, w = t.shape
    hh, ww = h - 2 * r, w - 2 * r
    n = float(hh * ww)
    qt = q[:, r : h - r, r : w - r]
    mu = qt.mean(dim=(1, 2), keepdim=True)
    qt = qt - mu  # centre by the query's mean (same constant for both: L2 and NCC unchanged)
    tt = t - mu[:, None]
    s_q = qt.double().sum(dim=(1, 2))[:, None, None]
    s_qq = (qt.double() ** 2).sum(dim=(1, 2))[:, None, None]
    weight = qt[:, None].expand(b, c, hh, ww).reshape(b * c, 1, hh, ww).contiguous()
    s_qt = F.conv2d(tt.reshape(1, b * c, h, w), weight, groups=b * c).view(b, c, -1).double()
    s_t = _box_sums(tt, hh, ww, r)
    s_tt = _box_sums(tt * tt, hh, ww, r)
    cov = s_qt - s_q * s_t / n
    var = ((s_qq - s_q**2 / n) * (s_tt - s_t**2 / n)).clamp_min(1e-24)
    ncc = (cov / var.sqrt()).clamp(-1, 1)
    l2 = ((s_qq - 2 * s_qt + s_tt).clamp_min(0) / n).sqrt()
    # window offset (y, x) pairs template pixel (r + i) with candidate pixel (y + i): dy = r - y
    k = 2 * r + 1
    order = torch.tensor([(r - dy) * k + (r - dx) for dy, dx in _shifts(r)], device=t.device)
    ncc, l2 = ncc[..., order], l2[..., order]
    best_ncc, best_shift = ncc.max(dim=-1)
    return best_ncc.float(), l2.min(dim=-1).values.float(), best_shift


def _zoom(x, factor: float):
    """(B, H, W) images magnified by ``factor`` about the centre (bilinear), same size, edges replicated."""
    import torch.nn.functional as F

    h, w = x.shape[-2:]
    nh, nw = max(2, int(round(h * factor))), max(2, int(round(w * factor)))
    y = F.interpolate(x[:, None], size=(nh, nw), mode="bilinear", align_corners=False)
    if nh >= h:
        top, left = (nh - h) // 2, (nw - w) // 2
        return y[:, 0, top : top + h, left : left + w]
    top, left = (h - nh) // 2, (w - nw) // 2
    return F.pad(y, (left, w - nw - left, top, h - nh - top), mode="replicate")[:, 0]


def refine_pairs(
    query: np.ndarray,
    train: np.ndarray,
    cand: np.ndarray,
    shift_radius: int = 2,
    with_ssim: bool = True,
    zooms: tuple[float, ...] = (1 / 1.07, 1 / 1.035, 1.035, 1.07),
    ssim_k: int = 2,
    device: str | None = None,
    chunk: int = 128,
    on_chunk: Callable[[int, int], None] | None = None,
) -> dict[str, np.ndarray]:
    """Score every (query i, train cand[i, j]) pair under small translations.

    Returns (N, C) arrays: ``l2`` (min RMS difference over shifts), ``ncc`` (1 - max NCC over
    shifts), ``l2_coarse`` / ``ncc_coarse`` (the same at the coarse scale, shifts of up to 1
    coarse pixel),
    ``ssim`` (1 - SSIM at the best-NCC shift, for the ``ssim_k`` best candidates by NCC; NaN
    elsewhere and when ``with_ssim`` is false) and ``shift``
    (N, C, 2) the best-NCC shift (dy, dx). Shifts are scored on the overlapping region.

    ``zooms``: the best candidate of each query is also rescaled about its centre by these factors
    (then shift-searched again), which catches slightly cropped-and-resized copies; L2 and NCC of
    that candidate keep the best over zooms.
    """
    import torch

    dev = torch.device(device or "cpu")
    n, c = cand.shape
    h, w = query.shape[-2:]
    f = coarse_factor(h, w)
    shifts = _shifts(int(shift_radius))
    out = {name: np.full((n, c), np.nan, np.float32) for name in ("l2", "ncc", "l2_coarse", "ncc_coarse", "ssim")}
    out_shift = np.zeros((n, c, 2), np.int16)
    n_chunks = max(1, math.ceil(n / chunk))
    with torch.no_grad():
        for ci, s in enumerate(range(0, n, chunk)):
            qn = query[s : s + chunk]
            ids = cand[s : s + chunk]
            b = len(qn)
            # every distinct (query, training image) pair once: the candidate lists of the three searches
            # overlap (about half are repeats on real images); the (B, C) tables are filled back from them
            key = np.arange(b)[:, None] * len(train) + ids
            ukey, inv = np.unique(key.reshape(-1), return_inverse=True)
            urow, ucol = ukey // len(train), ukey % len(train)
            inv_t = torch.from_numpy(inv.reshape(b, c)).to(dev)
            tn = train[ucol]  # (U, 1, H, W)
            q = torch.from_numpy(np.ascontiguousarray(qn[:, 0])).to(dev)  # (B, H, W)
            tu = torch.from_numpy(np.ascontiguousarray(tn[:, 0])).to(dev)  # (U, H, W)
            urow_t = torch.from_numpy(urow).to(dev)
            u_ncc, u_l2, u_shift = _shift_search(q[urow_t], tu[:, None], int(shift_radius))
            best_ncc, best_l2, best_shift = u_ncc[inv_t, 0], u_l2[inv_t, 0], u_shift[inv_t, 0]
            if zooms:
                jb = best_ncc.argmax(1)
                rows = torch.arange(b, device=dev)
                tb = tu[inv_t[rows, jb]]  # (B, H, W)
                zn, zl = best_ncc[rows, jb], best_l2[rows, jb]
                for zf in zooms:
                    zn_f, zl_f, _ = _shift_search(q, _zoom(tb, zf)[:, None], int(shift_radius))
                    zn, zl = torch.maximum(zn, zn_f[:, 0]), torch.minimum(zl, zl_f[:, 0])
                best_ncc[rows, jb] = zn
                best_l2[rows, jb] = zl
            out["ncc"][s : s + b] = (1 - best_ncc).clamp_min(0).cpu().numpy()
            out["l2"][s : s + b] = best_l2.cpu().numpy()
            out_shift[s : s + b] = torch.tensor(shifts, device=dev)[best_shift].cpu().numpy()
            qd = torch.from_numpy(downsample(qn, f)[:, 0]).to(dev)
            td = torch.from_numpy(downsample(tn, f)[:, 0]).to(dev)
            cn, cl, _ = _shift_search(qd[urow_t], td[:, None], 1)
            out["ncc_coarse"][s : s + b] = (1 - cn[inv_t, 0]).clamp_min(0).cpu().numpy()
            out["l2_coarse"][s : s + b] = cl[inv_t, 0].cpu().numpy()
            if with_ssim:
                # SSIM only for the ssim_k best candidates by shift-tolerant NCC (the rest stay NaN)
                kk = int(min(ssim_k, c))
                top = best_ncc.topk(kk, dim=1).indices  # (B, kk)
                rows = torch.arange(b, device=dev)[:, None].expand(b, kk).reshape(-1)
                cols = top.reshape(-1)
                sh = best_shift[rows, cols]
                # one batched SSIM for every pair: the query's central (H-2r) x (W-2r) region against the
                # training image's window at the pair's best shift (the same region size for all shifts)
                r = int(shift_radius)
                qa = q[rows][:, r : h - r, r : w - r]
                ta = torch.empty_like(qa)
                for si in torch.unique(sh).tolist():
                    sel = (sh == si).nonzero().squeeze(1)
                    dy, dx = shifts[si]
                    ta[sel] = tu[inv_t[rows[sel], cols[sel]]][:, r - dy : h - r - dy, r - dx : w - r - dx]
                vals = ssim_pairs(qa.contiguous(), ta)
                ssim = torch.full((b, c), float("nan"), device=dev)
                ssim[rows, cols] = vals
                out["ssim"][s : s + b] = (1 - ssim).clamp_min(0).cpu().numpy()
            if on_chunk is not None:
                on_chunk(ci + 1, n_chunks)
    out["shift"] = out_shift
    return out


def aligned_difference(q: np.ndarray, t: np.ndarray, shift) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(query crop, train crop, query - train) on the overlap at ``shift`` (dy, dx), for figures."""
    h, w = q.shape[-2:]
    qs, ts = _overlap(h, w, int(shift[0]), int(shift[1]))
    qq, tt = q[..., qs[0], qs[1]], t[..., ts[0], ts[1]]
    return qq, tt, qq - tt
