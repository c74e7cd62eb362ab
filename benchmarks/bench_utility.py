"""Downstream utility classifier on real data, side by side with a scikit-learn anchor.

    .venv/bin/python benchmarks/bench_utility.py [--epochs 5] [--width 16] [--threads 2]

PneumoniaMNIST 28x28 (balanced subset in ../shared/data): trained on the train split (2428),
tested on the test split (468). Ours: the ResNet-18-style classifier of
``app/engine/evaluation/utility.py`` (from scratch, augmented) -> AUC with its bootstrap 95 % CI,
accuracy, F1, training time. Anchor: scikit-learn's LogisticRegression on the raw pixels (a
well-kept baseline any classifier here should beat), scored with the same AUC / CI code.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np


def main():
    import argparse

    import torch
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score

    from app.engine.evaluation.utility import auc_with_ci, predict_proba, train_classifier
    from tests.engine.metrics.realdata import pneumoniamnist

    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    (tr, ytr), _, (te, yte) = pneumoniamnist()
    print(f"PneumoniaMNIST 28x28: {len(tr)} train, {len(te)} test (classes {np.bincount(yte).tolist()}), "
          f"{a.threads} torch threads")
    rows = []
    t0 = time.perf_counter()
    net = train_classifier(tr, ytr, epochs=a.epochs, width=a.width, seed=a.seed)
    t_ours = time.perf_counter() - t0
    p = predict_proba(net, te)
    rows.append((f"ours: ResNet-18-style w{a.width}, {a.epochs} ep", p[:, 1], p.argmax(1), t_ours))
    t0 = time.perf_counter()
    lr = LogisticRegression(max_iter=2000, C=0.1).fit(tr.reshape(len(tr), -1), ytr)
    t_lr = time.perf_counter() - t0
    pl = lr.predict_proba(te.reshape(len(te), -1))
    rows.append(("anchor: sklearn LogisticRegression (pixels)", pl[:, 1], pl.argmax(1), t_lr))
    print(f"{'classifier':48s} {'AUC [95% CI]':>24s} {'accuracy':>9s} {'F1':>7s} {'train s':>8s}")
    for name, score, pred, t in rows:
        r = auc_with_ci(yte, score, n_boot=1000, seed=a.seed)
        print(f"{name:48s} {r['auc']:.3f} [{r['ci95'][0]:.3f}, {r['ci95'][1]:.3f}]   {accuracy_score(yte, pred):9.3f} "
              f"{f1_score(yte, pred, average='macro'):7.3f} {t:8.1f}")


if __name__ == "__main__":
    main()
