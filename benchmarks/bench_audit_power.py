"""Audit power on real data: planted near-copies of training images beside genuinely new images.

    .venv/bin/python benchmarks/bench_audit_power.py [--per-kind 20]

SIAT T2 magnitude at 128x128: training = series 0-11, calibration held-out = series 12, genuinely
new = series 13-14 (20 slices). PneumoniaMNIST 28x28: training = train split, calibration = val,
new = test. Copies: exact, 1-px shift, Gaussian noise sigma 0.05 and 0.10, intensity x0.8+0.1,
slight crop (1 px off two edges, resized back). For each measure alone (its calibrated
threshold) and for the default rule: copies flagged / planted, new images wrongly flagged / new;
anchor: a bare 5th-percentile cut of the held-out distances on the same measures.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np


def main():
    import argparse

    import torch

    from app.engine.audit.memorization import DEFAULT_RULE_MEASURES, FlagRule, audit, flag
    from tests.engine.metrics.realdata import near_copies, pneumoniamnist, siat_magnitude

    ap = argparse.ArgumentParser()
    ap.add_argument("--per-kind", type=int, default=20)
    a = ap.parse_args()
    torch.set_num_threads(2)
    rng = np.random.default_rng(0)
    kinds_all = ("exact", "shift", "noise", "noise10", "rescale", "crop")
    images, series = siat_magnitude(128)
    (ptr, _), (pva, _), (pte, _) = pneumoniamnist()
    for name, train, calib, new in (
        ("SIAT 128x128", images[series < 12], images[series == 12], images[series >= 13]),
        ("PneumoniaMNIST 28x28", ptr, pva, pte),
    ):
        parts, kinds = [new], ["new"] * len(new)
        for kind in kinds_all:
            idx = rng.choice(len(train), args_per := a.per_kind, replace=len(train) < args_per)
            src = train[idx]
            parts.append(np.clip(src + rng.normal(0, 0.10, src.shape), -1, 1).astype(np.float32) if kind == "noise10"
                         else near_copies(src, kind, rng))
            kinds += [kind] * a.per_kind
        gen, kinds = np.concatenate(parts), np.array(kinds)
        rep = audit(gen, train, holdout=calib, extractor="radiomics")
        d, h = rep.generated.distances, rep.holdout.distances
        print(f"\n{name}: {len(train)} training, {len(calib)} calibration held-out, {len(new)} new, "
              f"{a.per_kind} copies per kind")
        header = "rule".ljust(34) + "".join(k.rjust(9) for k in kinds_all) + "   new wrongly flagged"
        print(header)
        rules = [(f"calibrated, {m} alone", FlagRule(measures=(m,))) for m in DEFAULT_RULE_MEASURES + ("cosine",)]
        rules.append(("calibrated, default (any)", FlagRule()))
        rules.append(("bare 5th percentile, default", FlagRule(mode="percentile", percentile=5, margin=1.0, ratio=0)))
        for label, rule in rules:
            mask = flag(d, h, rule)
            row = label.ljust(34) + "".join(f"{mask[kinds == k].sum():>4d}/{(kinds == k).sum():<4d}" for k in kinds_all)
            print(row + f"   {mask[kinds == 'new'].sum()}/{(kinds == 'new').sum()}")


if __name__ == "__main__":
    main()
