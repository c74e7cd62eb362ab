"""Downstream utility: a classifier trained on real vs real + synthetic images, tested on held-out real.

The network is a small ResNet-18-style model (He et al. 2016: basic blocks, [2, 2, 2, 2], widths
scaled by ``width``), written here because torchvision cannot be imported beside this project's
torch build; no pretrained weights. Its penultimate layer is the "domain" feature extractor.
"""

from __future__ import annotations

import numpy as np

from app.engine.jobs import UserError


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
                     device: str = "cpu", check=lambda: None):
    """Train the classifier from scratch (AdamW, cross-entropy, augmentation); returns it in eval mode."""
    import torch

    images = np.asarray(images, np.float32)
    labels = np.asarray(labels, np.int64)
    if labels is None or len(labels) != len(images) or (labels < 0).any():
        raise UserError("the classifier needs one non-negative class label per image")
    n_cls = int(labels.max()) + 1
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


def auc_with_ci(y: np.ndarray, score: np.ndarray, n_boot: int = 1000, seed: int = 0) -> dict:
    """ROC AUC (scikit-learn) with a percentile bootstrap 95 % interval (resampling test images)."""
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(seed)
    auc = float(roc_auc_score(y, score))
    boots = []
    for _ in range(n_boot):
        i = rng.integers(0, len(y), len(y))
        if len(np.unique(y[i])) == 2:
            boots.append(roc_auc_score(y[i], score[i]))
    lo, hi = np.percentile(boots, [2.5, 97.5])
    return {"auc": auc, "ci95": [float(lo), float(hi)]}


def mcnemar(correct_a: np.ndarray, correct_b: np.ndarray) -> dict:
    """Exact McNemar test (McNemar 1947) on paired correctness: a two-sided binomial test
    (scipy.stats.binomtest) of the discordant pairs."""
    from scipy.stats import binomtest

    b = int(np.sum(correct_a & ~correct_b))
    c = int(np.sum(~correct_a & correct_b))
    p = 1.0 if b + c == 0 else float(binomtest(b, b + c, 0.5).pvalue)
    return {"only_first_correct": b, "only_second_correct": c, "p_value": p}


def classification_report(net, images, labels, device: str = "cpu", seed: int = 0) -> tuple[dict, np.ndarray]:
    """Accuracy, macro F1, confusion matrix, per-class AUC (+ bootstrap CI); and the per-image correctness mask."""
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

    prob = predict_proba(net, images, device)
    pred = prob.argmax(1)
    out = {"accuracy": float(accuracy_score(labels, pred)), "f1_macro": float(f1_score(labels, pred, average="macro")),
           "confusion_matrix": confusion_matrix(labels, pred, labels=range(prob.shape[1])).tolist(), "n_test": int(len(labels))}
    out["per_class_auc"] = {int(c): auc_with_ci((labels == c).astype(int), prob[:, c], seed=seed) for c in range(prob.shape[1])
                            if 0 < (labels == c).sum() < len(labels)}
    if prob.shape[1] == 2:
        out["auc"] = out["per_class_auc"][1]
    return out, pred == labels


def downstream_utility(real_x, real_y, syn_x, syn_y, test_x, test_y, epochs: int = 5, seed: int = 0, device: str = "cpu",
                       width: int = 16, check=lambda: None) -> dict:
    """Train on real only and on real + synthetic (same seed, epochs), compare on held-out real test images."""
    net_r = train_classifier(real_x, real_y, epochs=epochs, seed=seed, device=device, width=width, check=check)
    net_rs = train_classifier(np.concatenate([real_x, syn_x]), np.concatenate([real_y, syn_y]), epochs=epochs, seed=seed,
                              device=device, width=width, check=check)
    rep_r, ok_r = classification_report(net_r, test_x, test_y, device, seed)
    rep_rs, ok_rs = classification_report(net_rs, test_x, test_y, device, seed)
    return {"real_only": rep_r, "real_plus_synthetic": rep_rs, "mcnemar": mcnemar(ok_r, ok_rs),
            "counts": {"real_train": len(real_x), "synthetic": len(syn_x), "test": len(test_x)}, "epochs": epochs}
