"""Feature extractors for distribution metrics and the audit, behind one registry.

    radiomics   hand-crafted intensity + texture features (no weights): intensity moments and
                percentiles, GLCM (skimage graycomatrix / graycoprops), LBP histogram, gradients
    inception   InceptionV3 pool3 (2048-d), the FID standard; weights from a local file only
    domain      the penultimate layer of a classifier trained on the user's real images
                (``utility.train_classifier``), i.e. features of this domain

Every metric names its extractor, because FID values are only comparable with the same features.
An extractor is a callable ``images (N, 1, H, W) in [-1, 1] -> float32 (N, F)`` with a ``name``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from app.engine.errors import UserError
from app.engine.specs.options import EXTRACTORS

INCEPTION_ENV = "RADSYNTH_INCEPTION_WEIGHTS"


class Extractor:
    """A named feature function with batching."""

    def __init__(self, name: str, fn: Callable[[np.ndarray], np.ndarray], dim: int | None = None, batch: int = 256):
        self.name, self.fn, self.dim, self.batch = name, fn, dim, batch

    def __call__(self, images: np.ndarray, progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        images = np.asarray(images, np.float32)
        if images.ndim == 3:
            images = images[:, None]
        out = []
        n = len(images)
        for s in range(0, n, self.batch):
            out.append(np.asarray(self.fn(images[s : s + self.batch]), np.float32))
            if progress is not None:
                progress(min(s + self.batch, n), n)
        if not out:
            return np.zeros((0, self.dim or 0), np.float32)
        return np.concatenate(out)


# --------------------------------------------------------------------------------------------
# radiomics-style hand-crafted features
# --------------------------------------------------------------------------------------------

_GLCM_PROPS = ("contrast", "dissimilarity", "homogeneity", "energy", "correlation", "ASM")
_PCTS = (1, 5, 25, 50, 75, 95, 99)


def radiomics_features(images: np.ndarray, levels: int = 32) -> np.ndarray:
    """(N, 1, H, W) in [-1, 1] -> (N, 41): intensity (mean, std, skewness, kurtosis, 7 percentiles,
    histogram entropy, foreground fraction), GLCM at distances 1 and 2 averaged over 4 angles
    (6 Haralick properties each, Haralick et al. 1973), uniform LBP (P=8, R=1) 10-bin histogram
    (Ojala et al. 2002) and Sobel gradient magnitude (mean, std, p90)."""
    from scipy import ndimage, stats
    from skimage.feature import graycomatrix, graycoprops, local_binary_pattern

    x = np.asarray(images, np.float32).reshape(len(images), *images.shape[-2:])
    flat = x.reshape(len(x), -1)
    mean = flat.mean(1)
    std = flat.std(1)
    skew = np.nan_to_num(stats.skew(flat, axis=1))
    kurt = np.nan_to_num(stats.kurtosis(flat, axis=1))
    pct = np.percentile(flat, _PCTS, axis=1).T
    q = np.clip(((x + 1) / 2 * levels).astype(np.int64), 0, levels - 1).astype(np.uint8)
    feats = []
    for i in range(len(x)):
        hist = np.bincount(q[i].ravel(), minlength=levels) / q[i].size
        ent = -np.sum(hist[hist > 0] * np.log2(hist[hist > 0]))
        fg = float((x[i] > -0.9).mean())
        glcm = graycomatrix(q[i], distances=[1, 2], angles=[0, np.pi / 4, np.pi / 2, 3 * np.pi / 4],
                            levels=levels, symmetric=True, normed=True)
        g = [np.nan_to_num(graycoprops(glcm, p)).mean(axis=1) for p in _GLCM_PROPS]  # (distances,) each
        lbp = local_binary_pattern(q[i], P=8, R=1, method="uniform")
        lbp_hist = np.bincount(lbp.astype(np.int64).ravel(), minlength=10)[:10] / lbp.size
        gm = np.hypot(ndimage.sobel(x[i], 0), ndimage.sobel(x[i], 1))
        feats.append(np.concatenate([[ent, fg], np.concatenate(g), lbp_hist, [gm.mean(), gm.std(), np.percentile(gm, 90)]]))
    return np.concatenate([mean[:, None], std[:, None], skew[:, None], kurt[:, None], pct, np.asarray(feats)], axis=1).astype(np.float32)


# --------------------------------------------------------------------------------------------
# InceptionV3 (FID variant)
# --------------------------------------------------------------------------------------------


def inception_v3_fid():
    """InceptionV3 as used for FID (Szegedy et al. 2016; the TF 2015-12-05 graph as ported by
    pytorch-fid / torch-fidelity): BN eps 1e-3, average pools without padded zeros in the Mixed
    blocks, max pool in Mixed_7c's pool branch, 2048-d global average pool output.

    Written by hand because torchvision, which has this network, cannot be imported beside the
    torch build this project pins; layer names follow torchvision / pytorch-fid so their weight
    files load unchanged.
    """
    import torch
    import torch.nn.functional as F
    from torch import nn

    class BC(nn.Module):
        def __init__(self, cin, cout, k, s=1, p=0):
            super().__init__()
            self.conv = nn.Conv2d(cin, cout, k, stride=s, padding=p, bias=False)
            self.bn = nn.BatchNorm2d(cout, eps=0.001)

        def forward(self, x):
            return F.relu(self.bn(self.conv(x)))

    def avgpool(x):
        return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)

    class A(nn.Module):
        def __init__(self, cin, pool):
            super().__init__()
            self.branch1x1 = BC(cin, 64, 1)
            self.branch5x5_1, self.branch5x5_2 = BC(cin, 48, 1), BC(48, 64, 5, p=2)
            self.branch3x3dbl_1, self.branch3x3dbl_2, self.branch3x3dbl_3 = BC(cin, 64, 1), BC(64, 96, 3, p=1), BC(96, 96, 3, p=1)
            self.branch_pool = BC(cin, pool, 1)

        def forward(self, x):
            return torch.cat([self.branch1x1(x), self.branch5x5_2(self.branch5x5_1(x)),
                              self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                              self.branch_pool(avgpool(x))], 1)

    class B(nn.Module):
        def __init__(self, cin):
            super().__init__()
            self.branch3x3 = BC(cin, 384, 3, s=2)
            self.branch3x3dbl_1, self.branch3x3dbl_2, self.branch3x3dbl_3 = BC(cin, 64, 1), BC(64, 96, 3, p=1), BC(96, 96, 3, s=2)

        def forward(self, x):
            return torch.cat([self.branch3x3(x), self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                              F.max_pool2d(x, 3, stride=2)], 1)

    class C(nn.Module):
        def __init__(self, cin, c7):
            super().__init__()
            self.branch1x1 = BC(cin, 192, 1)
            self.branch7x7_1, self.branch7x7_2, self.branch7x7_3 = BC(cin, c7, 1), BC(c7, c7, (1, 7), p=(0, 3)), BC(c7, 192, (7, 1), p=(3, 0))
            self.branch7x7dbl_1 = BC(cin, c7, 1)
            self.branch7x7dbl_2 = BC(c7, c7, (7, 1), p=(3, 0))
            self.branch7x7dbl_3 = BC(c7, c7, (1, 7), p=(0, 3))
            self.branch7x7dbl_4 = BC(c7, c7, (7, 1), p=(3, 0))
            self.branch7x7dbl_5 = BC(c7, 192, (1, 7), p=(0, 3))
            self.branch_pool = BC(cin, 192, 1)

        def forward(self, x):
            d = x
            for layer in (self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
                d = layer(d)
            return torch.cat([self.branch1x1(x), self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x))), d,
                              self.branch_pool(avgpool(x))], 1)

    class D(nn.Module):
        def __init__(self, cin):
            super().__init__()
            self.branch3x3_1, self.branch3x3_2 = BC(cin, 192, 1), BC(192, 320, 3, s=2)
            self.branch7x7x3_1, self.branch7x7x3_2 = BC(cin, 192, 1), BC(192, 192, (1, 7), p=(0, 3))
            self.branch7x7x3_3, self.branch7x7x3_4 = BC(192, 192, (7, 1), p=(3, 0)), BC(192, 192, 3, s=2)

        def forward(self, x):
            b = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
            return torch.cat([self.branch3x3_2(self.branch3x3_1(x)), b, F.max_pool2d(x, 3, stride=2)], 1)

    class E(nn.Module):
        def __init__(self, cin, max_pool: bool):
            super().__init__()
            self.max_pool = max_pool
            self.branch1x1 = BC(cin, 320, 1)
            self.branch3x3_1 = BC(cin, 384, 1)
            self.branch3x3_2a, self.branch3x3_2b = BC(384, 384, (1, 3), p=(0, 1)), BC(384, 384, (3, 1), p=(1, 0))
            self.branch3x3dbl_1, self.branch3x3dbl_2 = BC(cin, 448, 1), BC(448, 384, 3, p=1)
            self.branch3x3dbl_3a, self.branch3x3dbl_3b = BC(384, 384, (1, 3), p=(0, 1)), BC(384, 384, (3, 1), p=(1, 0))
            self.branch_pool = BC(cin, 192, 1)

        def forward(self, x):
            a = self.branch3x3_1(x)
            d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
            pool = F.max_pool2d(x, 3, stride=1, padding=1) if self.max_pool else avgpool(x)
            return torch.cat([self.branch1x1(x), self.branch3x3_2a(a), self.branch3x3_2b(a),
                              self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d), self.branch_pool(pool)], 1)

    class InceptionV3FID(nn.Module):
        def __init__(self):
            super().__init__()
            self.Conv2d_1a_3x3 = BC(3, 32, 3, s=2)
            self.Conv2d_2a_3x3 = BC(32, 32, 3)
            self.Conv2d_2b_3x3 = BC(32, 64, 3, p=1)
            self.Conv2d_3b_1x1 = BC(64, 80, 1)
            self.Conv2d_4a_3x3 = BC(80, 192, 3)
            self.Mixed_5b, self.Mixed_5c, self.Mixed_5d = A(192, 32), A(256, 64), A(288, 64)
            self.Mixed_6a = B(288)
            self.Mixed_6b, self.Mixed_6c, self.Mixed_6d, self.Mixed_6e = C(768, 128), C(768, 160), C(768, 160), C(768, 192)
            self.Mixed_7a = D(768)
            self.Mixed_7b, self.Mixed_7c = E(1280, max_pool=False), E(2048, max_pool=True)

        def forward(self, x):
            """x: (N, 3, H, W) in [-1, 1] -> (N, 2048) pool3 features (input resized to 299)."""
            x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
            x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
            x = F.max_pool2d(x, 3, stride=2)
            x = F.max_pool2d(self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x)), 3, stride=2)
            for name in ("Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e",
                         "Mixed_7a", "Mixed_7b", "Mixed_7c"):
                x = getattr(self, name)(x)
            return F.adaptive_avg_pool2d(x, 1).flatten(1)

    return InceptionV3FID()


def load_inception(weights: str | Path | None = None, device: str = "cpu"):
    """The FID InceptionV3 with weights from a local .pth / .safetensors file (pytorch-fid's
    pt_inception-2015-12-05-*.pth or torch-fidelity's weights-inception-2015-12-05-*.pth).
    Never downloads: without a file it raises a UserError saying where to put one."""
    import torch

    weights = weights or os.environ.get(INCEPTION_ENV)
    if not weights:
        raise UserError(
            "the inception extractor needs the FID InceptionV3 weights as a local file "
            "(e.g. pt_inception-2015-12-05-6726825d.pth from pytorch-fid); point to it with "
            f"--inception-weights or ${INCEPTION_ENV}. Nothing is downloaded. The 'radiomics' extractor needs no weights."
        )
    path = Path(weights)
    if not path.is_file():
        raise UserError(f"InceptionV3 weights file {path} does not exist")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise UserError(f"InceptionV3 weights file {path} is unreadable: {exc}") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    net = inception_v3_fid()
    own = net.state_dict()
    missing = [k for k in own if k not in state]
    if missing:
        raise UserError(f"InceptionV3 weights file {path} lacks {len(missing)} tensors of the FID network (first: {missing[0]})")
    bad = [k for k in own if tuple(state[k].shape) != tuple(own[k].shape)]
    if bad:
        raise UserError(f"InceptionV3 weights file {path}: tensor {bad[0]} has shape {tuple(state[bad[0]].shape)}, expected {tuple(own[bad[0]].shape)}")
    net.load_state_dict({k: state[k] for k in own})
    return net.eval().to(device)


def inception_extractor(weights: str | Path | None = None, device: str = "cpu", batch: int = 32) -> Extractor:
    import torch

    net = load_inception(weights, device)

    def fn(x):
        with torch.no_grad():
            t = torch.from_numpy(np.ascontiguousarray(x)).to(device).expand(-1, 3, -1, -1)
            return net(t).cpu().numpy()

    return Extractor("inception", fn, 2048, batch)


# --------------------------------------------------------------------------------------------
# registry
# --------------------------------------------------------------------------------------------


def get_extractor(name: str, *, weights: str | Path | None = None, model=None, device: str = "cpu") -> Extractor:
    """The extractor called ``name``: "radiomics", "inception" (needs ``weights`` or
    $RADSYNTH_INCEPTION_WEIGHTS) or "domain" (needs ``model``, a classifier from utility.py)."""
    if name == "radiomics":
        return Extractor("radiomics", radiomics_features, 41, 256)
    if name == "inception":
        return inception_extractor(weights, device)
    if name == "domain":
        if model is None:
            raise UserError("the domain extractor needs a classifier trained on the real images (utility.train_classifier)")
        from app.engine.evaluation.utility import penultimate_features

        return Extractor("domain", lambda x: penultimate_features(model, x, device=device), None, 256)
    raise UserError(f"feature extractor {name!r} is not one of {', '.join(EXTRACTORS)}")
