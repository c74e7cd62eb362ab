"""Reader-study statistics: accuracy with Wilson intervals, ROC AUC, Fleiss' kappa, the verdict against the goal."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np

from app.engine.jobs import UserError
from app.engine.specs.options import GoalRule, StudyMode
from app.engine.store import Workspace
from app.engine.study.reading import case_ids, list_readers
from app.engine.study.records import TRUTHS, ensure_tables, get_study


def wilson_interval(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion k / n (Wilson 1927), as scipy computes it."""
    from scipy.stats import binomtest

    if n == 0:
        return (float("nan"), float("nan"))
    ci = binomtest(int(k), int(n), 0.5).proportion_ci(confidence_level=confidence, method="wilson")
    return float(ci.low), float(ci.high)


def auc_interval(auc: float, n_pos: int, n_neg: int, z: float = 1.959964) -> tuple[float, float]:
    """95 % interval of an ROC AUC from the Hanley & McNeil (1982) standard error.

    Radiology 143:29-36, eq. 2 with Q1 = A / (2 - A), Q2 = 2 A^2 / (1 + A) (eqs. 3-4). Hand-written:
    scikit-learn gives the AUC but no interval.
    """
    a = float(auc)
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    var = (a * (1 - a) + (n_pos - 1) * (q1 - a * a) + (n_neg - 1) * (q2 - a * a)) / (n_pos * n_neg)
    se = math.sqrt(max(var, 0.0))
    return max(0.0, a - z * se), min(1.0, a + z * se)


def fleiss_kappa(counts: np.ndarray) -> float:
    """Fleiss' kappa for a (subjects, categories) table of rating counts, equal raters per subject.

    Fleiss (1971), Psychol. Bull. 76(5):378, eqs. 2-3 (P_i), 5 (P-bar), 6-7 (p_j, P-bar_e), 8
    (kappa). Hand-written because statsmodels (which has it) is not a dependency of the project; it
    is a dozen lines and tested against Fleiss' worked example.
    """
    x = np.asarray(counts, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"fleiss_kappa expects a non-empty (subjects, categories) table, got shape {x.shape}")
    n_raters = x.sum(axis=1)
    if not np.all(n_raters == n_raters[0]) or n_raters[0] < 2:
        raise ValueError("fleiss_kappa needs the same number (>= 2) of ratings for every subject")
    m = n_raters[0]
    n_subjects = x.shape[0]
    p_j = x.sum(axis=0) / (n_subjects * m)  # share of all ratings in category j
    p_i = (np.sum(x * x, axis=1) - m) / (m * (m - 1))  # agreement on subject i
    p_bar, p_e = p_i.mean(), np.sum(p_j * p_j)
    if p_e >= 1.0:  # every rating in one category: agreement is perfect but kappa is undefined
        return float("nan")
    return float((p_bar - p_e) / (1.0 - p_e))


def answer_table(ws: Workspace, study: str) -> list[dict]:
    """Every answer joined with its truth (owner studies only): one dict per (reader, case)."""
    ensure_tables(ws)
    st = get_study(ws, study)
    if st.is_reader_copy:
        raise UserError(f"study {st.name!r} is a reader copy (imported for reading): it has no truth to score against")
    rows = ws.query(
        "SELECT a.reader_id, a.case_id, c.truth, a.answer, a.confidence, a.plausibility, a.comment, a.seconds,"
        " a.over_time, a.answered FROM study_answers a JOIN study_cases c"
        " ON a.study_id = c.study_id AND a.case_id = c.case_id WHERE a.study_id = ? ORDER BY a.reader_id, a.answered",
        (st.id,),
    )
    return [dict(r) for r in rows]


def _group_stats(rows: list[dict], mode: StudyMode) -> dict:
    from scipy.stats import binomtest, mannwhitneyu
    from sklearn.metrics import roc_auc_score, roc_curve

    out: dict = {"n": len(rows), "median_seconds": float(np.median([r["seconds"] for r in rows])) if rows else None,
                 "n_over_time": int(sum(int(r["over_time"] or 0) for r in rows))}
    if not rows:
        return out
    if mode == StudyMode.plausibility:
        truth = np.array([r["truth"] for r in rows])
        score = np.array([r["plausibility"] for r in rows], dtype=float)
        out["mean_plausibility"] = {t: (float(score[truth == t].mean()) if np.any(truth == t) else None) for t in TRUTHS}
        y = (truth == "real").astype(int)
        if 0 < y.sum() < len(y):
            # AUC of telling real from synthetic by plausibility: 0.5 when the ratings do not differ
            out["auc"] = float(roc_auc_score(y, score))
            out["auc_ci"] = list(auc_interval(out["auc"], int(y.sum()), int(len(y) - y.sum())))
            fpr, tpr, _ = roc_curve(y, score)
            out["roc"] = {"fpr": fpr.tolist(), "tpr": tpr.tolist(), "positive": "real"}
            out["mannwhitney_p"] = float(mannwhitneyu(score[y == 1], score[y == 0], alternative="two-sided").pvalue)
        return out
    correct = np.array([r["answer"] == r["truth"] for r in rows])
    k, n = int(correct.sum()), len(rows)
    out["correct"] = k
    out["accuracy"] = k / n
    out["accuracy_ci"] = list(wilson_interval(k, n))
    out["p_value"] = float(binomtest(k, n, 0.5, alternative="two-sided").pvalue)
    conf = np.array([r["confidence"] or 1 for r in rows], dtype=float)
    if mode == StudyMode.single:
        truth = np.array([r["truth"] for r in rows])
        said = np.array([r["answer"] for r in rows])
        syn, real = truth == "synthetic", truth == "real"
        tp, tn = int(np.sum(syn & (said == "synthetic"))), int(np.sum(real & (said == "real")))
        out["sensitivity"] = tp / int(syn.sum()) if syn.any() else None  # synthetic images called synthetic
        out["sensitivity_ci"] = list(wilson_interval(tp, int(syn.sum()))) if syn.any() else None
        out["specificity"] = tn / int(real.sum()) if real.any() else None  # real images called real
        out["specificity_ci"] = list(wilson_interval(tn, int(real.sum()))) if real.any() else None
        y = syn.astype(int)
        # a 10-level rating of "synthetic-ness": +confidence when called synthetic, -confidence when real
        score = np.where(said == "synthetic", conf, -conf)
        positive = "synthetic"
    else:
        truth = np.array([r["truth"] for r in rows])
        said = np.array([r["answer"] for r in rows])
        y = (truth == "left").astype(int)
        score = np.where(said == "left", conf, -conf)
        positive = "left image real"
    if 0 < y.sum() < len(y):
        out["auc"] = float(roc_auc_score(y, score))
        out["auc_ci"] = list(auc_interval(out["auc"], int(y.sum()), int(len(y) - y.sum())))
        fpr, tpr, _ = roc_curve(y, score)
        out["roc"] = {"fpr": fpr.tolist(), "tpr": tpr.tolist(), "positive": positive}
    return out


def goal_verdict(metric: str, value: float, ci: tuple[float, float], goal: float, rule: GoalRule, n: int) -> dict:
    """The verdict on a pooled accuracy (AUC) ``value`` with its 95 % interval ``ci`` from ``n`` answers.

    Chance (0.5) inside the interval: the readers are "not distinguishable from chance". Rule ``upper_ci``
    (the default): the goal is met only when the whole interval lies below ``goal``; an interval that straddles
    the goal is "not shown yet" (more answers narrow it), one wholly above it is "not met". Rule ``point``
    (by name only): the point estimate decides, and the text says whether the interval agrees. ``state``:
    "met", "not met" or "not shown" (not yet decided by the interval).
    """
    lo, hi = float(ci[0]), float(ci[1])
    chance = bool(lo <= 0.5 <= hi)
    est = f"pooled {metric} {value:.3f} (95 % interval {lo:.3f}-{hi:.3f}, {n} answers)"
    tail = "; readers not distinguishable from chance" if chance else (
        "; readers tell real from synthetic better than chance" if lo > 0.5 else "")
    if rule == GoalRule.upper_ci:
        tested = hi
        passed = bool(hi < goal)
        state = "met" if passed else ("not shown" if lo < goal else "not met")
        if passed:
            text = f"goal met: {est} lies below {goal:.2f}{tail}"
        elif lo < goal:
            text = (f"goal not shown yet: {est} reaches {goal:.2f}; more answers narrow the interval" + tail)
        else:
            text = f"goal not met: {est} is at or above {goal:.2f}{tail}"
    else:
        tested = value
        passed = bool(value < goal)
        agrees = (hi < goal) if passed else (lo >= goal)
        state = "met" if passed else "not met"
        text = (f"goal {'met' if passed else 'not met'} by the point estimate (rule point): {est} "
                f"{'<' if passed else '>='} {goal:.2f}"
                + ("" if agrees else "; the interval does not show it") + tail)
    return {"metric": metric, "threshold": goal, "rule": rule.value, "value": value, "tested": tested,
            "ci": [lo, hi], "passed": passed, "state": state, "chance": chance, "text": text}


def compute_stats(rows: list[dict], mode: str, goal_accuracy: float = 0.6, goal_rule: str = "upper_ci") -> dict:
    """All the statistics of a study from its answer table (see ``answer_table``).

    Each row needs reader_id, case_id, truth, answer, confidence, plausibility, seconds, over_time.
    """
    mode = StudyMode(mode)
    rule = GoalRule(goal_rule)
    readers = sorted({r["reader_id"] for r in rows})
    per_reader = {rid: _group_stats([r for r in rows if r["reader_id"] == rid], mode) for rid in readers}
    pooled = _group_stats(rows, mode)

    cases: dict[str, dict] = {}
    for r in rows:
        c = cases.setdefault(r["case_id"], {"case_id": r["case_id"], "truth": r["truth"], "n": 0, "n_wrong": 0,
                                            "plausibility": []})
        c["n"] += 1
        if mode == StudyMode.plausibility:
            c["plausibility"].append(r["plausibility"])
        elif r["answer"] != r["truth"]:
            c["n_wrong"] += 1
    per_case = []
    for c in sorted(cases.values(), key=lambda c: c["case_id"]):
        item = {"case_id": c["case_id"], "truth": c["truth"], "n_readers": c["n"]}
        if mode == StudyMode.plausibility:
            item["mean_plausibility"] = float(np.mean(c["plausibility"]))
        else:
            item["n_wrong"] = c["n_wrong"]
            item["fooling_rate"] = c["n_wrong"] / c["n"]  # share of readers who got this case wrong
        per_case.append(item)

    # Fleiss' kappa over the cases every reader answered
    kappa = None
    n_kappa_cases = 0
    if len(readers) >= 2:
        cats = ["real", "synthetic"] if mode == StudyMode.single else (
            ["left", "right"] if mode == StudyMode.afc2 else [1, 2, 3, 4, 5])
        key = "plausibility" if mode == StudyMode.plausibility else "answer"
        by_case: dict[str, list] = {}
        for r in rows:
            by_case.setdefault(r["case_id"], []).append(r[key])
        full = [v for v in by_case.values() if len(v) == len(readers)]
        n_kappa_cases = len(full)
        if full:
            table = np.array([[v.count(c) for c in cats] for v in full])
            kappa = fleiss_kappa(table)
            kappa = None if math.isnan(kappa) else kappa

    metric = "auc" if mode == StudyMode.plausibility else "accuracy"
    value = pooled.get(metric)
    if value is None:
        verdict = {"metric": metric, "threshold": goal_accuracy, "rule": rule.value, "value": None, "passed": None,
                   "state": None, "chance": None, "text": "no answers yet" if not rows else f"{metric} is undefined (one class only)"}
    else:
        ci = pooled.get("accuracy_ci" if metric == "accuracy" else "auc_ci")
        verdict = goal_verdict(metric, value, ci, goal_accuracy, rule, len(rows))
    return {
        "mode": mode.value,
        "n_answers": len(rows),
        "readers": readers,
        "per_reader": per_reader,
        "pooled": pooled,
        "per_case": per_case,
        "fleiss_kappa": kappa,
        "fleiss_kappa_cases": n_kappa_cases,
        "verdict": verdict,
        "notes": "pooled tests treat all readings as independent; per-reader tests are exact binomial tests",
    }


def study_stats(ws: Workspace, study: str) -> dict:
    st = get_study(ws, study)
    stats = compute_stats(answer_table(ws, st.id), st.mode, float(st.spec.get("goal_accuracy", 0.6)),
                          st.spec.get("goal_rule", "point"))  # a study made before the default changed keeps its rule
    readers = list_readers(ws, st.id)
    stats.update(study_id=st.id, study=st.name, n_cases=len(case_ids(ws, st.id)),
                 progress={r.reader_id: r.answered for r in readers},
                 real_sets=st.meta.get("real_sets", st.spec.get("real", [])),
                 real_training=st.meta.get("real_training", []))
    return stats


def write_results(ws: Workspace, study: str, folder: str | Path, stats: dict | None = None) -> list[Path]:
    """Write stats.json, readers.csv, cases.csv and answers.csv of a study into ``folder``."""
    folder = Path(folder).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    stats = stats if stats is not None else study_stats(ws, study)
    from app.engine.jobs import to_jsonable

    paths = [folder / "stats.json", folder / "readers.csv", folder / "cases.csv", folder / "answers.csv"]
    paths[0].write_text(json.dumps(to_jsonable(stats), indent=2))
    cols = ["n", "correct", "accuracy", "accuracy_ci_low", "accuracy_ci_high", "p_value", "sensitivity",
            "specificity", "auc", "mean_plausibility_real", "mean_plausibility_synthetic", "median_seconds"]
    with paths[1].open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["reader"] + cols)
        for rid, g in list(stats["per_reader"].items()) + [("pooled", stats["pooled"])]:
            ci = g.get("accuracy_ci") or [None, None]
            mp = g.get("mean_plausibility") or {}
            vals = {**g, "accuracy_ci_low": ci[0], "accuracy_ci_high": ci[1],
                    "mean_plausibility_real": mp.get("real"), "mean_plausibility_synthetic": mp.get("synthetic")}
            w.writerow([rid] + ["" if vals.get(c) is None else vals.get(c) for c in cols])
    with paths[2].open("w", newline="") as f:
        keys = list(stats["per_case"][0].keys()) if stats["per_case"] else ["case_id", "truth"]
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(stats["per_case"])
    rows = answer_table(ws, study)
    with paths[3].open("w", newline="") as f:
        keys = ["reader_id", "case_id", "truth", "answer", "confidence", "plausibility", "comment", "seconds",
                "over_time", "answered"]
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    return paths
