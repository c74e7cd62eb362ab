"""Undersampling masks for retrospective MRI experiments, deterministic for a seed.

Every mask function takes the k-space shape ``(H, W)``, the target acceleration R and a seed, and
returns ``(mask, achieved_acceleration)``: ``mask`` is float32 ``(H, W)`` of 0/1 (1D Cartesian
masks select whole phase-encode columns, i.e. the last axis, and are broadcast over H), and the
achieved acceleration is ``H * W / mask.sum()``. Randomness comes only from
``np.random.default_rng(seed)``; the global numpy state is never touched (fastMRI ``MaskFunc``
style). Every mask keeps a fully sampled centre (``center_fraction`` of the phase-encode lines for
1D masks, a centred ``center_fraction * H`` by ``center_fraction * W`` block for 2D masks): the
calibration region that sensitivity estimation and the learned methods need.
"""

from __future__ import annotations

import functools

import numpy as np

from app.engine.errors import UserError
from app.engine.specs.options import MASK_KINDS, MaskKind  # noqa: F401

#: golden angle for radial spokes, 180 deg / golden ratio (Winkelmann et al., IEEE TMI 2007, eq. 1)
GOLDEN_ANGLE = np.pi * (np.sqrt(5) - 1) / 2 * 1.0  # 111.246 deg expressed on [0, pi)






def _check(shape, acceleration: float, center_fraction: float) -> tuple[int, int]:
    if len(shape) != 2 or min(shape) < 4:
        raise UserError(f"mask shape must be (H, W) with H, W >= 4, got {tuple(shape)}")
    if not (1.0 <= acceleration <= 64.0):
        raise UserError(f"acceleration must be between 1 and 64, got {acceleration}")
    if not (0.0 < center_fraction < 1.0):
        raise UserError(f"center fraction must be in (0, 1), got {center_fraction}")
    if acceleration * center_fraction > 1.0:
        raise UserError(
            f"a centre fraction of {center_fraction} alone samples more than 1/{acceleration} of k-space; "
            "lower the centre fraction or the acceleration"
        )
    return int(shape[0]), int(shape[1])


def _center_lines(w: int, center_fraction: float) -> np.ndarray:
    n_low = max(1, int(round(w * center_fraction)))
    start = (w - n_low + 1) // 2
    sel = np.zeros(w, bool)
    sel[start : start + n_low] = True
    return sel


def _center_block(h: int, w: int, center_fraction: float) -> np.ndarray:
    ch, cw = _center_lines(h, center_fraction), _center_lines(w, center_fraction)
    return ch[:, None] & cw[None, :]


def _finish(mask: np.ndarray) -> tuple[np.ndarray, float]:
    mask = mask.astype(np.float32)
    return mask, float(mask.size / max(mask.sum(), 1.0))


def _lines_to_mask(h: int, lines: np.ndarray) -> tuple[np.ndarray, float]:
    return _finish(np.broadcast_to(lines[None, :], (h, lines.shape[0])).copy())


def random_1d(shape, acceleration: float, center_fraction: float = 0.08, seed: int = 0):
    """Random Cartesian phase-encode lines plus a fully sampled centre (fastMRI RandomMaskFunc).

    Unlike fastMRI's Bernoulli draw, exactly ``round(W / R)`` lines are kept so the achieved
    acceleration is R up to rounding.
    """
    h, w = _check(shape, acceleration, center_fraction)
    rng = np.random.default_rng(seed)
    lines = _center_lines(w, center_fraction)
    n_more = max(0, int(round(w / acceleration)) - int(lines.sum()))
    outer = np.flatnonzero(~lines)
    lines[rng.choice(outer, size=min(n_more, outer.size), replace=False)] = True
    return _lines_to_mask(h, lines)


def equispaced_1d(shape, acceleration: float, center_fraction: float = 0.08, seed: int = 0):
    """Equally spaced phase-encode lines (random offset from the seed) plus the fully sampled centre.

    The spacing is adjusted so that centre + outer lines give W / R lines in total (fastMRI
    EquispacedMaskFractionFunc).
    """
    h, w = _check(shape, acceleration, center_fraction)
    rng = np.random.default_rng(seed)
    lines = _center_lines(w, center_fraction)
    n_low = int(lines.sum())
    n_target = max(int(round(w / acceleration)), n_low)
    if n_target > n_low:
        spacing = (w - n_low) / max(n_target - n_low, 1)
        offset = rng.uniform(0, spacing)
        outer = np.flatnonzero(~lines)
        idx = np.round(offset + np.arange(0, outer.size, spacing)).astype(int)
        lines[outer[np.unique(idx[idx < outer.size])]] = True
    return _lines_to_mask(h, lines)


def gaussian_1d(shape, acceleration: float, center_fraction: float = 0.08, seed: int = 0, sigma: float = 0.25):
    """Phase-encode lines drawn without replacement with a Gaussian density (std ``sigma * W``)."""
    h, w = _check(shape, acceleration, center_fraction)
    rng = np.random.default_rng(seed)
    lines = _center_lines(w, center_fraction)
    n_more = max(0, int(round(w / acceleration)) - int(lines.sum()))
    outer = np.flatnonzero(~lines)
    p = np.exp(-0.5 * ((outer - w // 2) / (sigma * w)) ** 2)
    lines[rng.choice(outer, size=min(n_more, outer.size), replace=False, p=p / p.sum())] = True
    return _lines_to_mask(h, lines)


def _dart_throw(h: int, w: int, radius: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Poisson-disc dart throwing on the grid: visit points in ``order``, keep a point when no kept
    point lies closer than the local ``radius`` (Cook 1986; variable density as in Lustig et al.,
    MRM 2007 sec. "Variable density"). Hand-written: sigpy's version needs numba at run time."""
    taken = np.zeros((h, w), bool)
    rmax = int(np.ceil(radius.max()))
    oy, ox = np.mgrid[-rmax : rmax + 1, -rmax : rmax + 1]
    dist2 = (oy**2 + ox**2).astype(np.float32)
    pad = np.zeros((h + 2 * rmax, w + 2 * rmax), bool)
    rflat = radius.ravel()
    for p in order:
        y, x = divmod(int(p), w)
        r = rflat[p]
        if r <= 1.0:  # the closest other grid point is 1 away: always compatible
            taken[y, x] = True
            pad[y + rmax, x + rmax] = True
            continue
        ri = int(np.ceil(r))
        win = pad[y + rmax - ri : y + rmax + ri + 1, x + rmax - ri : x + rmax + ri + 1]
        near = dist2[rmax - ri : rmax + ri + 1, rmax - ri : rmax + ri + 1] < r * r
        if not (win & near).any():
            taken[y, x] = True
            pad[y + rmax, x + rmax] = True
    return taken


@functools.lru_cache(maxsize=64)
def _poisson_cached(h: int, w: int, acceleration: float, center_fraction: float, seed: int):
    rng = np.random.default_rng(seed)
    order = rng.permutation(h * w)
    ky = (np.arange(h) - h // 2) / (h / 2)
    kx = (np.arange(w) - w // 2) / (w / 2)
    kr = np.sqrt(ky[:, None] ** 2 + kx[None, :] ** 2)
    calib = _center_block(h, w, center_fraction)
    target = h * w / acceleration

    def build(slope: float) -> np.ndarray:
        # minimum distance grows linearly with |k| (density ~ 1 / r^2 falls off from the centre)
        radius = np.maximum(1.0, 0.7 + slope * kr)
        return _dart_throw(h, w, radius, order) | calib

    def predicted(slope: float, c: float) -> float:
        # random sequential adsorption fills ~0.55 of the plane with discs of diameter r, i.e.
        # ~0.7 / r^2 points per pixel (Feder, J. Theor. Biol. 1980); the constant c is refined below
        radius = np.maximum(1.0, 0.7 + slope * kr)
        return float(np.where(radius <= 1.0, 1.0, np.minimum(1.0, c / radius**2)).sum())

    def solve(c: float) -> float:
        lo, hi = 0.0, 16.0 * np.sqrt(acceleration)
        for _ in range(40):
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if predicted(mid, c) > target else (lo, mid)
        return 0.5 * (lo + hi)

    c = 0.7
    best = None
    for _ in range(6):  # build, measure, re-fit the density constant: 2-3 passes in practice
        m = build(solve(c))
        n = float(m.sum())
        if best is None or abs(n - target) < abs(float(best.sum()) - target):
            best = m
        if abs(n - target) / target < 0.02:
            break
        c *= n / target  # fewer points than predicted: the true constant is smaller
    return best


def poisson_2d(shape, acceleration: float, center_fraction: float = 0.08, seed: int = 0):
    """2D variable-density Poisson-disc mask (for 3D Cartesian phase encoding / 2D CS experiments).

    Hand-written dart throwing (see ``_dart_throw``); the density slope is found by bisection so the
    achieved acceleration is within ~2 % of R. Results are cached per (shape, R, centre, seed).
    """
    h, w = _check(shape, acceleration, center_fraction)
    return _finish(_poisson_cached(h, w, float(acceleration), float(center_fraction), int(seed)).copy())


def _radial_spokes(h: int, w: int, n_spokes: int, angle0: float) -> np.ndarray:
    m = np.zeros((h, w), bool)
    t = np.arange(-max(h, w), max(h, w) + 1) * 0.5  # half-pixel steps along each spoke
    ang = angle0 + GOLDEN_ANGLE * np.arange(n_spokes)
    ys = np.round(h // 2 + t[None, :] * np.sin(ang)[:, None]).astype(int).ravel()
    xs = np.round(w // 2 + t[None, :] * np.cos(ang)[:, None]).astype(int).ravel()
    ok = (ys >= 0) & (ys < h) & (xs >= 0) & (xs < w)
    m[ys[ok], xs[ok]] = True
    return m


def radial(shape, acceleration: float, center_fraction: float = 0.08, seed: int = 0):
    """Golden-angle radial spokes rasterised onto the Cartesian grid (nearest neighbour), plus the
    fully sampled centre block. The seed sets the first spoke's angle; the spoke count is the
    smallest that reaches the target acceleration."""
    h, w = _check(shape, acceleration, center_fraction)
    rng = np.random.default_rng(seed)
    angle0 = rng.uniform(0, np.pi)
    calib = _center_block(h, w, center_fraction)
    target = h * w / acceleration
    lo, hi = 1, 4 * max(h, w)
    while lo < hi:  # smallest spoke count whose mask has >= target samples
        mid = (lo + hi) // 2
        if (_radial_spokes(h, w, mid, angle0) | calib).sum() >= target:
            hi = mid
        else:
            lo = mid + 1
    return _finish(_radial_spokes(h, w, lo, angle0) | calib)


_MAKERS = {
    "random": random_1d,
    "equispaced": equispaced_1d,
    "gaussian1d": gaussian_1d,
    "poisson2d": poisson_2d,
    "radial": radial,
}


def make_mask(kind: str, shape, acceleration: float, center_fraction: float = 0.08, seed: int = 0):
    """``(mask (H, W) float32, achieved acceleration)`` for a named mask kind (see ``MASK_KINDS``)."""
    kind = str(getattr(kind, "value", kind))
    if kind not in _MAKERS:
        raise UserError(f"mask {kind!r} is not one of {', '.join(MASK_KINDS)}")
    if kind == "random" and acceleration == 1:
        return _finish(np.ones(tuple(shape), bool))
    return _MAKERS[kind](shape, acceleration, center_fraction, seed)


def center_is_sampled(mask: np.ndarray, center_fraction: float = 0.04) -> bool:
    """True when the centred block covering ``center_fraction`` of each axis is fully sampled."""
    mask = np.asarray(mask)
    if mask.ndim == 1:
        return bool(mask[_center_lines(mask.shape[0], center_fraction)].all())
    h, w = mask.shape[-2:]
    m = mask.reshape(-1, h, w).astype(bool).any(axis=0) if mask.ndim > 2 else mask.astype(bool)
    return bool(m[_center_block(h, w, center_fraction)].all())
