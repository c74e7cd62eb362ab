"""Mode-collapse check: cluster real and generated features together, compare cluster occupancy."""

from __future__ import annotations

import numpy as np


def mode_collapse(real_feats: np.ndarray, gen_feats: np.ndarray, n_clusters: int = 20, seed: int = 0) -> dict:
    """k-means (scikit-learn) on standardised real + generated features; per cluster the share of
    real and of generated images. Reports the Jensen-Shannon distance of the two occupancy
    histograms, a chi-square test of homogeneity (scipy), and how many clusters that hold real
    images hold no generated image (modes the generator dropped)."""
    from scipy.spatial.distance import jensenshannon
    from scipy.stats import chi2_contingency
    from sklearn.cluster import KMeans

    r, g = np.asarray(real_feats, np.float64), np.asarray(gen_feats, np.float64)
    allf = np.concatenate([r, g])
    mu, sd = allf.mean(0), allf.std(0) + 1e-8
    allf = (allf - mu) / sd
    k = int(min(n_clusters, len(r), len(g)))
    lab = KMeans(k, n_init=4, random_state=seed).fit_predict(allf)
    cr = np.bincount(lab[: len(r)], minlength=k)
    cg = np.bincount(lab[len(r):], minlength=k)
    table = np.stack([cr, cg])
    table = table[:, table.sum(0) > 0]
    chi2, p, _, _ = chi2_contingency(table)
    return {"clusters": k, "js": float(jensenshannon(cr / cr.sum(), cg / cg.sum(), base=2)), "chi2": float(chi2),
            "p_value": float(p), "real_clusters_without_generated": int(((cr > 0) & (cg == 0)).sum()),
            "real_share": (cr / cr.sum()).round(4).tolist(), "generated_share": (cg / cg.sum()).round(4).tolist()}
