"""Plain-text summaries of a dataset for the Datasets panel: counts per value, split counts, subgroups."""

from __future__ import annotations


def count_summary(counts: dict, what: str) -> str:
    """"modality: CT 50 · MR 30 · CR 20" (every value with its count, most first); "" when none."""
    items = [(str(k), int(v)) for k, v in (counts or {}).items() if int(v) > 0]
    if not items:
        return ""
    items.sort(key=lambda kv: -kv[1])
    return f"{what}: " + " · ".join(f"{k} {v}" for k, v in items)


def split_summary(splits: dict) -> str:
    """"splits: train 80 · val 10 · test 10" in that order."""
    if not splits:
        return ""
    return "splits: " + " · ".join(f"{s} {int(splits.get(s, 0))}" for s in ("train", "val", "test"))


def subgroup_summary(attributes, most: int = 6) -> str:
    """One line per subgroup attribute of an EDA result ({name: {value: count}}), most frequent
    values first ("sex: F 12 · M 10 · unknown 2"); "" when the dataset carries none."""
    if not isinstance(attributes, dict) or not attributes:
        return ""
    lines = []
    for name, counts in sorted(attributes.items()):
        if not isinstance(counts, dict) or not counts:
            continue
        items = sorted(counts.items(), key=lambda kv: (-int(kv[1]), str(kv[0])))
        text = " · ".join(f"{v} {int(c)}" for v, c in items[:most])
        if len(items) > most:
            text += f" · {len(items) - most} more"
        lines.append(f"{name}: {text}")
    return ("Subgroups — " + "\n".join(lines)) if lines else ""
