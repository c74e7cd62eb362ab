"""Downstream utility: a classifier trained on real vs real + synthetic images, tested on held-out real.

The network is a small ResNet-18-style model (He et al. 2016: basic blocks, [2, 2, 2, 2], widths
scaled by ``width``), written here because torchvision cannot be imported beside this project's
torch build; no pretrained weights. Its penultimate layer is the "domain" feature extractor.

``downstream_utility`` trains it twice with the same seed and schedule (real only; real +
synthetic) and compares both on the same held-out real images: AUC with a percentile bootstrap CI
(scikit-learn's roc_auc_score), the paired bootstrap CI of the AUC difference, accuracy, macro F1,
confusion matrix, per-class and per-subgroup AUC, and McNemar's exact test (scipy) on the paired
decisions. The evaluate job runs it with ``--utility``.
"""

from __future__ import annotations

import numpy as np

from app.engine.errors import UserError


def resnet18_small(num_classes: int, width: int = 16):
    """ResNet-18 layout ([2, 2, 2, 2] basic blocks) for 1-channel images, base width ``width``."""
    import torch.nn.functional as F
    from torch import nn

    class Block(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.b1 = nn.BatchNorm2d(cout)
            self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.b2 = nn.BatchNorm2d(cout)
            self.skip = None if stride == 1 and cin == cout else nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

        def forward(self, x):
            y = self.b2(self.c2(F.relu(self.b1(self.c1(x)))))
            return F.relu(y + (x if self.skip is None else self.skip(x)))

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(1, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
            layers, cin = [], width
            for i, cout in enumerate((width, 2 * width, 4 * width, 8 * width)):
                layers += [Block(cin, cout, 1 if i == 0 else 2), Block(cout, cout, 1)]
                cin = cout
            self.layers = nn.Sequential(*layers)
            self.fc = nn.Linear(cin, num_classes)

        def features(self, x):
            return F.adaptive_avg_pool2d(self.layers(self.stem(x)), 1).flatten(1)

        def forward(self, x):
            return self.fc(self.features(x))

    return Net()


def augment(x, g):
    """Flips, small rotations (+-10 deg), brightness/contrast (+-10 %) and a mild elastic warp
    (smooth random displacement, ~1 px), on a batch (B, 1, H, W) in [-1, 1], seeded by ``g``."""
    import math

    import torch
    import torch.nn.functional as F

    b, _, h, w = x.shape
    flip = torch.rand(b, generator=g) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    ang = (torch.rand(b, generator=g) - 0.5) * 2 * math.radians(10)
    cos, sin = ang.cos(), ang.sin()
    theta = torch.stack([torch.stack([cos, -sin, torch.zeros(b)], 1), torch.stack([sin, cos, torch.zeros(b)], 1)], 1)
    grid = F.affine_grid(theta, x.shape, align_corners=False)
    coarse = (torch.rand(b, 2, 4, 4, generator=g) - 0.5) * (4.0 / max(h, w))
    grid = grid + F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=False).permute(0, 2, 3, 1)
    x = F.grid_sample(x, grid, padding_mode="border", align_corners=False)
    c = 1 + (torch.rand(b, 1, 1, 1, generator=g) - 0.5) * 0.2
    br = (torch.rand(b, 1, 1, 1, generator=g) - 0.5) * 0.2
    return (x * c + br).clamp(-1, 1)


def train_classifier(images, labels, epochs: int = 5, batch: int = 64, lr: float = 2e-3, width: int = 16, seed: int = 0,
                     device: str = "cpu", check=lambda: None, n_classes: int | None = None):
    """Train the classifier from scratch (AdamW, cross-entropy, augmentation); returns it in eval mode."""
    import torch

    images = np.asarray(images, np.float32)
    if labels is None:
        raise UserError("the classifier needs one class label per image; none were given")
    labels = np.asarray(labels, np.int64)
    if len(labels) != len(images) or (labels < 0).any():
        raise UserError("the classifier needs one non-negative class label per image")
    n_cls = max(int(labels.max()) + 1, n_classes or 0)
    if n_cls < 2:
        raise UserError("the classifier needs at least two classes")
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # parameter init; the explicit generator drives data order / augmentation
    net = resnet18_small(n_cls, width).to(device)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    x_all, y_all = torch.from_numpy(images), torch.from_numpy(labels)
    for _ in range(epochs):
        net.train()
        perm = torch.randperm(len(x_all), generator=g)
        for s in range(0, len(perm), batch):
            check()
            idx = perm[s : s + batch]
            xb = augment(x_all[idx], g).to(device)
            loss = torch.nn.functional.cross_entropy(net(xb), y_all[idx].to(device))
            opt.zero_grad()
            loss.backward()
            opt.step()
    return net.eval()


def predict_proba(net, images, device: str = "cpu", batch: int = 512) -> np.ndarray:
    import torch

    out = []
    with torch.no_grad():
        for s in range(0, len(images), batch):
            out.append(torch.softmax(net(torch.from_numpy(np.asarray(images[s : s + batch], np.float32)).to(device)), 1).cpu().numpy())
    return np.concatenate(out)


def penultimate_features(net, images, device: str = "cpu", batch: int = 512) -> np.ndarray:
    import torch

    out = []
    with torch.no_grad():
        for s in range(0, len(images), batch):
            out.append(net.features(torch.from_numpy(np.asarray(images[s : s + batch], np.float32)).to(device)).cpu().numpy())
    return np.concatenate(out)


def _auc(y: np.ndarray, prob: np.ndarray) -> float:
    """The headline AUC of class probabilities (N, K): binary -> ROC AUC of class 1's probability;
    K > 2 -> macro one-vs-rest AUC (scikit-learn)."""
    from sklearn.metrics import roc_auc_score

    if prob.ndim == 1:
        return float(roc_auc_score(y, prob))
    if prob.shape[1] == 2:
        return float(roc_auc_score(y, prob[:, 1]))
    return float(roc_auc_score(y, prob, multi_class="ovr", average="macro", labels=list(range(prob.shape[1]))))


def _boot_ok(y: np.ndarray, prob: np.ndarray) -> bool:
    """A resample can be scored: two classes for a binary score, every class for macro OvR."""
    k = 2 if prob.ndim == 1 or prob.shape[1] == 2 else prob.shape[1]
    return len(np.unique(y)) >= k


def auc_with_ci(y: np.ndarray, score: np.ndarray, n_boot: int = 1000, seed: int = 0) -> dict:
    """ROC AUC (scikit-learn) with a percentile bootstrap 95 % interval (resampling test images).

    ``score``: (N,) scores of the positive class for binary ``y`` in {0, 1}, or (N, K) class
    probabilities (binary: class 1; K > 2: macro one-vs-rest AUC)."""
    y, score = np.asarray(y), np.asarray(score, np.float64)
    if len(np.unique(y)) < 2:
        raise UserError(f"AUC needs test images of at least two classes; all {len(y)} are of class {y[0] if len(y) else '-'}")
    rng = np.random.default_rng(seed)
    auc = _auc(y, score)
    boots = []
    for _ in range(n_boot):
        i = rng.integers(0, len(y), len(y))
        if _boot_ok(y[i], score[i]):
            boots.append(_auc(y[i], score[i]))
    lo, hi = np.percentile(boots, [2.5, 97.5]) if boots else (np.nan, np.nan)
    return {"auc": auc, "ci95": [float(lo), float(hi)], "n": int(len(y)), "n_boot": len(boots)}


def auc_difference(y: np.ndarray, score_a: np.ndarray, score_b: np.ndarray, n_boot: int = 1000, seed: int = 0) -> dict:
    """AUC(b) - AUC(a) on the same test images with a paired percentile bootstrap 95 % interval
    (each resample scores both classifiers on the same images, so their correlation is kept)."""
    y = np.asarray(y)
    sa, sb = np.asarray(score_a, np.float64), np.asarray(score_b, np.float64)
    rng = np.random.default_rng(seed)
    diff = _auc(y, sb) - _auc(y, sa)
    boots = []
    for _ in range(n_boot):
        i = rng.integers(0, len(y), len(y))
        if _boot_ok(y[i], sa[i]):
            boots.append(_auc(y[i], sb[i]) - _auc(y[i], sa[i]))
    lo, hi = np.percentile(boots, [2.5, 97.5]) if boots else (np.nan, np.nan)
    return {"difference": float(diff), "ci95": [float(lo), float(hi)], "n_boot": len(boots)}


def mcnemar(correct_a: np.ndarray, correct_b: np.ndarray) -> dict:
    """Exact McNemar test (McNemar 1947) on paired correctness: a two-sided binomial test
    (scipy.stats.binomtest) of the discordant pairs."""
    from scipy.stats import binomtest

    correct_a, correct_b = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
    if correct_a.shape != correct_b.shape:
        raise UserError(f"McNemar's test needs paired results; got {correct_a.shape} and {correct_b.shape}")
    b = int(np.sum(correct_a & ~correct_b))
    c = int(np.sum(~correct_a & correct_b))
    p = 1.0 if b + c == 0 else float(binomtest(b, b + c, 0.5).pvalue)
    return {"only_first_correct": b, "only_second_correct": c, "p_value": p, "test": "exact (binomial)"}


def classification_report(net, images, labels, device: str = "cpu", seed: int = 0, n_boot: int = 1000,
                          prob: np.ndarray | None = None) -> tuple[dict, np.ndarray]:
    """Accuracy, macro F1, confusion matrix (rows: true class, columns: predicted), the headline
    AUC and per-class one-vs-rest AUC (each with a bootstrap CI); and the per-image correctness mask."""
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

    labels = np.asarray(labels)
    prob = predict_proba(net, images, device) if prob is None else prob
    pred = prob.argmax(1)
    out = {"accuracy": float(accuracy_score(labels, pred)), "f1_macro": float(f1_score(labels, pred, average="macro")),
           "confusion_matrix": confusion_matrix(labels, pred, labels=range(prob.shape[1])).tolist(), "n_test": int(len(labels))}
    out["per_class_auc"] = {int(c): auc_with_ci((labels == c).astype(int), prob[:, c], n_boot=n_boot, seed=seed)
                            for c in range(prob.shape[1]) if 0 < (labels == c).sum() < len(labels)}
    if _boot_ok(labels, prob):
        out["auc"] = auc_with_ci(labels, prob, n_boot=n_boot, seed=seed)
    return out, pred == labels


def subgroup_reports(labels: np.ndarray, probs: dict[str, np.ndarray], attributes: dict[str, np.ndarray] | None,
                     min_n: int = 10, n_boot: int = 1000, seed: int = 0) -> dict:
    """Per subgroup of each attribute (e.g. sex, site, scanner): n, and per classifier accuracy and
    AUC with its bootstrap CI (AUC only where the subgroup holds every class). Subgroups with
    fewer than ``min_n`` test images are listed with their size only."""
    out: dict = {}
    labels = np.asarray(labels)
    for attr, values in (attributes or {}).items():
        values = np.asarray(values).astype(str)
        if len(values) != len(labels):
            raise UserError(f"attribute {attr!r} has {len(values)} values for {len(labels)} test images")
        groups = {}
        for v in sorted(set(values.tolist())):
            sel = values == v
            g: dict = {"n": int(sel.sum())}
            if sel.sum() >= min_n:
                for name, prob in probs.items():
                    r = {"accuracy": float(np.mean(prob[sel].argmax(1) == labels[sel]))}
                    if _boot_ok(labels[sel], prob[sel]):
                        r["auc"] = auc_with_ci(labels[sel], prob[sel], n_boot=n_boot, seed=seed)
                    g[name] = r
            groups[v] = g
        out[attr] = groups
    return out


def check_labelled(labels, n: int, what: str, n_classes: int | None = None) -> np.ndarray:
    """Class labels for a set used by the utility classifier, or a UserError naming the set."""
    if labels is None:
        raise UserError(f"downstream utility needs class labels; {what} carry none (NPZ: a 'labels' array; "
                        "image folders: one sub-folder per class; datasets: labels at ingest)")
    labels = np.asarray(labels)
    if len(labels) != n:
        raise UserError(f"{what}: {len(labels)} labels for {n} images")
    if labels.dtype.kind not in "iu":
        raise UserError(f"{what}: class labels must be integers, got {labels.dtype}")
    if (labels < 0).any():
        raise UserError(f"{what}: {int((labels < 0).sum())} images have a class the real training images lack "
                        "(or no label); the classifier only knows the real training classes")
    if n_classes is not None and labels.max(initial=0) >= n_classes:
        raise UserError(f"{what}: class {int(labels.max())} is not among the {n_classes} real training classes")
    return labels.astype(np.int64)


def downstream_utility(real_x, real_y, syn_x, syn_y, test_x, test_y, epochs: int = 5, seed: int = 0, device: str = "cpu",
                       width: int = 16, check=lambda: None, n_boot: int = 1000, test_attributes: dict | None = None,
                       class_names: list[str] | None = None, log=lambda text: None) -> dict:
    """Train on real only and on real + synthetic (same seed, epochs, augmentation), compare on
    held-out real test images: both reports, McNemar between them, the paired AUC difference, and
    per subgroup where ``test_attributes`` (name -> (N,) values) are given."""
    real_y = check_labelled(real_y, len(real_x), "the real training images")
    n_cls = int(real_y.max()) + 1
    if len(np.unique(real_y)) < 2:
        raise UserError("downstream utility needs real training images of at least two classes")
    syn_y = check_labelled(syn_y, len(syn_x), "the generated (synthetic) images", n_cls)
    test_y = check_labelled(test_y, len(test_x), "the held-out real test images", n_cls)
    if len(np.unique(test_y)) < 2:
        raise UserError("downstream utility needs held-out real test images of at least two classes")
    log(f"utility: training on {len(real_x)} real images ({epochs} epochs)")
    net_r = train_classifier(real_x, real_y, epochs=epochs, seed=seed, device=device, width=width, check=check, n_classes=n_cls)
    log(f"utility: training on {len(real_x)} real + {len(syn_x)} synthetic images ({epochs} epochs)")
    net_rs = train_classifier(np.concatenate([real_x, syn_x]), np.concatenate([real_y, syn_y]), epochs=epochs, seed=seed,
                              device=device, width=width, check=check, n_classes=n_cls)
    p_r, p_rs = predict_proba(net_r, test_x, device), predict_proba(net_rs, test_x, device)
    rep_r, ok_r = classification_report(None, test_x, test_y, device, seed, n_boot, prob=p_r)
    rep_rs, ok_rs = classification_report(None, test_x, test_y, device, seed, n_boot, prob=p_rs)
    out = {"real_only": rep_r, "real_plus_synthetic": rep_rs, "mcnemar": mcnemar(ok_r, ok_rs),
           "counts": {"real_train": len(real_x), "synthetic": len(syn_x), "test": len(test_x),
                      "test_per_class": np.bincount(test_y, minlength=n_cls).tolist()},
           "epochs": epochs, "width": width, "seed": seed, "n_boot": n_boot,
           "classifier": f"ResNet-18-style ([2, 2, 2, 2] basic blocks, base width {width}), from scratch, augmented",
           "class_names": list(class_names) if class_names else [str(c) for c in range(n_cls)]}
    if _boot_ok(test_y, p_r):
        out["auc_difference"] = auc_difference(test_y, p_r, p_rs, n_boot=n_boot, seed=seed)
    if test_attributes:
        out["per_subgroup"] = subgroup_reports(test_y, {"real_only": p_r, "real_plus_synthetic": p_rs}, test_attributes,
                                               n_boot=n_boot, seed=seed)
    return out
