"""Deterministic train / val / test splits grouped by patient (or series), stratified by class.

No group is ever on two sides of a split: all images of one patient go to the same split, so a
model is never validated on a patient it was trained on. The same groups, labels, fractions and
seed always give the same split.

Why by hand: scikit-learn's ``GroupShuffleSplit`` takes its fractions in groups (not images) and
does not stratify, and ``StratifiedGroupKFold`` only gives 1/k fractions; a greedy assignment of
shuffled groups per class reaches arbitrary image fractions and is a few lines.
"""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np

from app.engine.data.cache import SPLITS

TRAIN, VAL, TEST = SPLITS["train"], SPLITS["val"], SPLITS["test"]


def grouped_split(
    groups,
    labels=None,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 0,
) -> np.ndarray:
    """uint8 (N,) split codes (0 train, 1 val, 2 test) with whole groups per split.

    Groups are stratified by their majority label (when labels are given): within each class the
    groups are shuffled with ``seed`` and handed to test, then val, until each has its fraction of
    that class's images; the rest go to train. When there are at least three groups, a non-zero
    fraction always gets at least one group and train keeps at least one.
    """
    groups = np.asarray([str(g) for g in groups])
    n = len(groups)
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValueError(f"val_fraction {val_fraction} and test_fraction {test_fraction} must be >= 0 and sum below 1")
    out = np.full(n, TRAIN, np.uint8)
    if n == 0:
        return out
    labels = np.full(n, -1) if labels is None else np.asarray(labels)
    members: dict[str, list[int]] = defaultdict(list)
    for i, g in enumerate(groups):
        members[g].append(i)
    # a group's stratum: its most frequent label (ties: the smallest label, for determinism)
    stratum = {}
    for g, idx in members.items():
        counts = Counter(labels[idx].tolist())
        stratum[g] = min(counts.items(), key=lambda kv: (-kv[1], str(kv[0])))[0]
    rng = np.random.default_rng(seed)
    assign: dict[str, int] = {}
    for s in sorted(set(stratum.values()), key=str):
        gs = sorted(g for g in members if stratum[g] == s)
        gs = [gs[i] for i in rng.permutation(len(gs))]
        total = sum(len(members[g]) for g in gs)
        targets = [(TEST, test_fraction * total), (VAL, val_fraction * total)]
        filled = {TEST: 0, VAL: 0}
        for code, target in targets:
            # take (in shuffled order) each group that brings the split closer to its target count
            for g in gs:
                if g not in assign and abs(filled[code] + len(members[g]) - target) < abs(filled[code] - target):
                    assign[g] = code
                    filled[code] += len(members[g])
        for g in gs:
            assign.setdefault(g, TRAIN)
    # small sets: make sure a requested split is not empty when that is possible
    if len(members) >= 3:
        for code, frac in ((TEST, test_fraction), (VAL, val_fraction)):
            if frac > 0 and code not in assign.values():
                train_groups = sorted((g for g, c in assign.items() if c == TRAIN), key=lambda g: (len(members[g]), g))
                if len(train_groups) > 1:
                    assign[train_groups[0]] = code
    for g, idx in members.items():
        out[idx] = assign[g]
    return out


def split_counts(split: np.ndarray) -> dict[str, int]:
    """{"train": n, "val": n, "test": n} of a split array."""
    split = np.asarray(split)
    return {name: int((split == code).sum()) for name, code in SPLITS.items()}
