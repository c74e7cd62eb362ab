"""Copy criteria independent of the audit: exhaustive SSIM and Carlini's ratio to the training set.

The memorization audit (``app/engine/audit``) is judged against these, so they share none of its code,
candidates or calibration: every query is compared with every training image, at the given alignment,
and a copy is decided by fixed thresholds stated in advance.

- SSIM to the nearest training image (Wang et al. 2004, IEEE TIP 13(4), eq. 13; skimage's defaults:
  7x7 uniform window, K1 = 0.01, K2 = 0.03, sample covariance, data range 2 for [-1, 1] images).
  A copy: ``max SSIM >= SSIM_COPY``.
- Carlini et al. 2023 ("Extracting training data from diffusion models", USENIX Security, sec. 5.1):
  ``l2(x, nearest) / (alpha * mean l2 to the n nearest real images)`` with alpha = 0.5 and n = 50, over
  a pool of real images that holds the training set; a copy: ratio < 1. A copy is much closer to one training image
  than to the rest of its neighbourhood; a new image is about as close to several.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

#: fixed before any model was trained: a generated image this similar to a training image is a copy
SSIM_COPY = 0.90
#: Carlini et al. 2023: alpha = 0.5, n = 50
CARLINI_ALPHA = 0.5
CARLINI_N = 50


def _box(x: torch.Tensor, win: int) -> torch.Tensor:
    return F.avg_pool2d(x, win, stride=1)


def ssim_to_each(query: torch.Tensor, train: torch.Tensor, win: int = 7, data_range: float = 2.0,
                 train_stats=None) -> torch.Tensor:
    """SSIM of one query (H, W) with every training image (N, H, W) -> (N,) (skimage's defaults)."""
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    cov_norm = win * win / (win * win - 1)
    t = train[:, None]
    ut, utt = train_stats if train_stats is not None else (_box(t, win), _box(t * t, win))
    q = query[None, None].expand_as(t)
    uq, uqq, uqt = _box(q[:1], win), _box(q[:1] * q[:1], win), _box(q * t, win)
    vq, vt, vqt = cov_norm * (uqq - uq * uq), cov_norm * (utt - ut * ut), cov_norm * (uqt - uq * ut)
    s = ((2 * uq * ut + c1) * (2 * vqt + c2)) / ((uq * uq + ut * ut + c1) * (vq + vt + c2))
    return s.mean(dim=(1, 2, 3))


@dataclass
class CopyVerdict:
    """Per query: nearest training image and score under each criterion, and the copy decisions."""

    ssim: np.ndarray          # (Q,) highest SSIM to any training image
    ssim_index: np.ndarray    # (Q,) which training image
    carlini: np.ndarray       # (Q,) Carlini's ratio (copy when < 1)
    l2_index: np.ndarray      # (Q,) the L2-nearest image of the pool

    @property
    def copy_ssim(self) -> np.ndarray:
        return self.ssim >= SSIM_COPY

    @property
    def copy_carlini(self) -> np.ndarray:
        return self.carlini < 1.0

    @property
    def copy(self) -> np.ndarray:
        """The verdict: a copy under the SSIM criterion (the Carlini ratio is reported beside it)."""
        return self.copy_ssim


def copy_verdict(queries: np.ndarray, train: np.ndarray, pool: np.ndarray | None = None, n: int = CARLINI_N,
                 alpha: float = CARLINI_ALPHA, win: int = 7) -> CopyVerdict:
    """Judge every query (Q, 1, H, W) in [-1, 1] against every training image (N, 1, H, W): SSIM against
    ``train``; Carlini's ratio against ``pool`` (default ``train``), real images that hold the training set,
    since the ratio needs a neighbourhood of ``n`` images (a training set of a few dozen has none)."""
    q = torch.from_numpy(np.ascontiguousarray(queries[:, 0], np.float32))
    t = torch.from_numpy(np.ascontiguousarray(train[:, 0], np.float32))
    stats = (_box(t[:, None], win), _box(t[:, None] ** 2, win))
    best, best_i = np.empty(len(q)), np.empty(len(q), np.int64)
    with torch.no_grad():
        for i in range(len(q)):
            s = ssim_to_each(q[i], t, win, train_stats=stats)
            j = int(torch.argmax(s))
            best[i], best_i[i] = float(s[j]), j
        r = t if pool is None else torch.from_numpy(np.ascontiguousarray(pool[:, 0], np.float32))
        d = torch.cdist(q.reshape(len(q), -1).double(), r.reshape(len(r), -1).double())
        k = min(n, len(r))
        near = torch.topk(d, k, dim=1, largest=False).values
    ratio = (near[:, 0] / (alpha * near.mean(dim=1))).numpy()
    return CopyVerdict(best, best_i, ratio, torch.argmin(d, dim=1).numpy())
