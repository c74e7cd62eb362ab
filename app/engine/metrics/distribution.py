"""Distribution metrics on feature vectors: FID, KID, precision / recall (k-NN manifolds).

All functions take features (N, F) from one extractor (``features.py``); a result is only
comparable with results computed with the same extractor and similar image counts.
"""

from __future__ import annotations

import numpy as np
from scipy import linalg

from app.engine.errors import UserError


def _check(f: np.ndarray, what: str, min_n: int = 2) -> np.ndarray:
    f = np.asarray(f, np.float64)
    if f.ndim != 2:
        raise UserError(f"{what}: features must be (N, F), got shape {f.shape}")
    if len(f) < min_n:
        raise UserError(f"{what}: needs at least {min_n} feature vectors, got {len(f)}")
    if not np.isfinite(f).all():
        raise UserError(f"{what}: features contain NaN or infinite values")
    return f


def gaussian_stats(feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (unbiased) covariance of features, float64."""
    f = _check(feats, "features")
    return f.mean(0), np.cov(f, rowvar=False)


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^{1/2})  (Heusel et al. 2017, eq. in sec. 3;
    Dowson & Landau 1982). The square root is scipy's sqrtm; when the product is singular the
    diagonals get ``eps`` added first (the offset used by pytorch-fid / clean-fid), and a
    numerically imaginary part (< 1e-3) is dropped."""
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    s1, s2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    if mu1.shape != mu2.shape or s1.shape != s2.shape:
        raise UserError(f"feature statistics of different sizes: {mu1.shape} vs {mu2.shape}")
    diff = mu1 - mu2
    covmean = linalg.sqrtm(s1.dot(s2))
    if not np.isfinite(covmean).all():
        offset = np.eye(s1.shape[0]) * eps
        covmean = linalg.sqrtm((s1 + offset).dot(s2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise UserError(f"FID: the matrix square root has an imaginary part of {np.max(np.abs(covmean.imag)):.3g}")
        covmean = covmean.real
    return float(diff.dot(diff) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def fid(feats_a: np.ndarray, feats_b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets."""
    return frechet_distance(*gaussian_stats(feats_a), *gaussian_stats(feats_b))


def kid(feats_a: np.ndarray, feats_b: np.ndarray, n_subsets: int = 100, subset_size: int = 1000, seed: int = 0) -> tuple[float, float]:
    """Kernel Inception Distance (Bińkowski et al. 2018): unbiased MMD^2 with the cubic polynomial
    kernel k(x, y) = (x.y / d + 1)^3, averaged over random subsets; returns (mean, std).
    ``subset_size`` is capped by the smaller set (as torch-fidelity does)."""
    a = _check(feats_a, "KID features (first set)")
    b = _check(feats_b, "KID features (second set)")
    d = a.shape[1]
    m = int(min(subset_size, len(a), len(b)))
    rng = np.random.default_rng(seed)
    vals = np.empty(n_subsets)
    for i in range(n_subsets):
        x = a[rng.choice(len(a), m, replace=False)]
        y = b[rng.choice(len(b), m, replace=False)]
        kxx = (x @ x.T / d + 1) ** 3
        kyy = (y @ y.T / d + 1) ** 3
        kxy = (x @ y.T / d + 1) ** 3
        # unbiased MMD^2 (Gretton et al. 2012, eq. 3): diagonal terms excluded
        vals[i] = ((kxx.sum() - np.trace(kxx)) + (kyy.sum() - np.trace(kyy))) / (m * (m - 1)) - 2 * kxy.mean()
    return float(vals.mean()), float(vals.std())


def _kth_nn_radius(f: np.ndarray, k: int) -> np.ndarray:
    from sklearn.metrics import pairwise_distances

    d = pairwise_distances(f, f)
    return np.sort(d, axis=1)[:, k]  # column 0 is the point itself


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019, eq. 1-3): the real manifold is the
    union of balls reaching each real feature's k-th nearest real neighbour; precision is the
    fraction of generated features inside it, recall the fraction of real features inside the
    generated manifold."""
    from sklearn.metrics import pairwise_distances

    r = _check(real, "real features", k + 1)
    f = _check(fake, "generated features", k + 1)
    rr, rf = _kth_nn_radius(r, k), _kth_nn_radius(f, k)
    d = pairwise_distances(f, r)  # (n_fake, n_real)
    precision = float(np.mean((d <= rr[None, :]).any(axis=1)))
    recall = float(np.mean((d.T <= rf[None, :]).any(axis=1)))
    return precision, recall
