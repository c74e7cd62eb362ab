"""Reader studies: blinding that leaks nothing, answers in SQLite, statistics equal to scipy's / sklearn's."""

from __future__ import annotations

import json
import math

import h5py
import numpy as np
import pytest
from scipy.stats import binomtest, mannwhitneyu
from sklearn.metrics import roc_auc_score

from app.engine import study as S
from app.engine.jobs import UserError, run_collect
from app.engine.store import Workspace
from tests.conftest import shared_file


@pytest.fixture
def image_sets(tmp_path):
    """Real: PneumoniaMNIST chest X-rays (uint8 levels). "Synthetic": other X-rays made to look like a
    generator's output: continuous float values, another intensity range, a little noise. A study must
    hide all of those presentation differences."""
    z = np.load(shared_file("pneumoniamnist_balanced_28.npz"))
    real = z["train_images"][:300].astype(np.float32) / 127.5 - 1
    rng = np.random.default_rng(7)
    syn = z["test_images"][:300].astype(np.float32) / 255 * 1.4 - 0.8 + rng.normal(0, 0.02, (300, 28, 28))
    paths = {"real": tmp_path / "real.npz", "synthetic": tmp_path / "synthetic.npz"}
    np.savez(paths["real"], images=real[:, None])
    np.savez(paths["synthetic"], images=np.clip(syn, -1, 1).astype(np.float32)[:, None])
    return {k: str(v) for k, v in paths.items()}


def make_study(ws, image_sets, name="turing", **kw):
    spec = S.StudyCreateSpec(name=name, real=[image_sets["real"]], synthetic=[image_sets["synthetic"]],
                             **{"n_cases": 20, "size": 64, "seed": 3, **kw})
    return S.create_study(ws, spec)


def truth_of(ws, st):
    return {r["case_id"]: r["truth"] for r in ws.query("SELECT case_id, truth FROM study_cases WHERE study_id = ?", (st.id,))}


# -- statistics ----------------------------------------------------------------------------------


def test_fleiss_kappa_matches_the_worked_example_of_fleiss_1971():
    # 10 subjects, 14 raters, 5 categories; P-bar = 0.378, P-bar_e = 0.213, kappa = 0.210
    table = np.array([
        [0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
        [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7],
    ])
    assert S.fleiss_kappa(table) == pytest.approx(0.210, abs=0.001)
    assert S.fleiss_kappa(np.array([[3, 0], [0, 3], [3, 0]])) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        S.fleiss_kappa(np.array([[2, 0], [1, 2]]))  # unequal numbers of raters


def test_wilson_interval_is_the_closed_form_score_interval():
    k, n, z = 14, 20, 1.959963984540054
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    assert S.wilson_interval(k, n) == pytest.approx((centre - half, centre + half), abs=1e-9)


def _fixed_answer_table():
    """Three readers, twelve cases (six real, six synthetic), answers and confidences fixed by hand."""
    truth = ["real", "synthetic"] * 6
    said = {
        "r1": ["real", "synthetic", "real", "real", "synthetic", "synthetic", "real", "synthetic", "real", "real", "real", "synthetic"],
        "r2": ["synthetic", "synthetic", "real", "real", "real", "real", "real", "synthetic", "synthetic", "real", "real", "real"],
        "r3": ["real", "real", "real", "real", "real", "synthetic", "real", "real", "real", "synthetic", "real", "real"],
    }
    conf = {"r1": [5, 4, 3, 2, 1, 5, 4, 3, 2, 1, 5, 4], "r2": [1, 2, 3, 4, 5, 1, 2, 3, 4, 5, 1, 2],
            "r3": [3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3]}
    rows = []
    for rid in said:
        for i in range(12):
            rows.append({"reader_id": rid, "case_id": f"c{i:02d}", "truth": truth[i], "answer": said[rid][i],
                         "confidence": conf[rid][i], "plausibility": None, "seconds": 2.0 + i, "over_time": 0})
    return rows


def test_statistics_equal_scipy_and_sklearn_on_a_fixed_answer_table():
    rows = _fixed_answer_table()
    stats = S.compute_stats(rows, "single", goal_accuracy=0.6)
    for rid, g in list(stats["per_reader"].items()) + [("pooled", stats["pooled"])]:
        sub = rows if rid == "pooled" else [r for r in rows if r["reader_id"] == rid]
        k = sum(r["answer"] == r["truth"] for r in sub)
        ref = binomtest(k, len(sub), 0.5)
        ci = ref.proportion_ci(0.95, method="wilson")
        assert g["accuracy"] == pytest.approx(k / len(sub))
        assert g["accuracy_ci"] == pytest.approx([ci.low, ci.high])
        assert g["p_value"] == pytest.approx(ref.pvalue)
        y = [r["truth"] == "synthetic" for r in sub]
        s = [r["confidence"] * (1 if r["answer"] == "synthetic" else -1) for r in sub]
        assert g["auc"] == pytest.approx(roc_auc_score(y, s))
        syn = [r for r in sub if r["truth"] == "synthetic"]
        real = [r for r in sub if r["truth"] == "real"]
        assert g["sensitivity"] == pytest.approx(sum(r["answer"] == "synthetic" for r in syn) / len(syn))
        assert g["specificity"] == pytest.approx(sum(r["answer"] == "real" for r in real) / len(real))
    # by hand: r1 gets 9 of 12, r2 6 of 12, r3 8 of 12 right -> pooled 23 / 36 = 0.639
    assert [stats["per_reader"][r]["correct"] for r in ("r1", "r2", "r3")] == [9, 6, 8]
    assert stats["pooled"]["accuracy"] == pytest.approx(23 / 36)
    assert stats["verdict"]["passed"] is False  # 0.639 >= 0.6
    assert S.compute_stats(rows, "single", goal_accuracy=0.65, goal_rule="point")["verdict"]["passed"] is True
    assert S.compute_stats(rows, "single", goal_accuracy=0.65)["verdict"]["passed"] is False  # upper_ci: the default
    # case c00 (real): r1 real, r2 synthetic, r3 real -> one reader in three fooled
    case0 = next(c for c in stats["per_case"] if c["case_id"] == "c00")
    assert case0["fooling_rate"] == pytest.approx(1 / 3)
    # Fleiss' kappa on the same table, counted by hand
    table = np.array([[sum(rows[j * 12 + i]["answer"] == c for j in range(3)) for c in ("real", "synthetic")]
                      for i in range(12)])
    assert stats["fleiss_kappa"] == pytest.approx(S.fleiss_kappa(table))
    assert stats["fleiss_kappa_cases"] == 12


def test_plausibility_statistics_compare_ratings_by_true_class():
    rows = [{"reader_id": "r1", "case_id": f"c{i}", "truth": t, "answer": None, "confidence": None,
             "plausibility": p, "seconds": 1.0, "over_time": 0}
            for i, (t, p) in enumerate([("real", 5), ("real", 4), ("real", 4), ("synthetic", 2),
                                        ("synthetic", 4), ("synthetic", 3)])]
    stats = S.compute_stats(rows, "plausibility", goal_accuracy=0.6)
    g = stats["pooled"]
    assert g["mean_plausibility"] == {"real": pytest.approx(13 / 3), "synthetic": pytest.approx(3.0)}
    assert g["auc"] == pytest.approx(roc_auc_score([1, 1, 1, 0, 0, 0], [5, 4, 4, 2, 4, 3]))
    assert g["mannwhitney_p"] == pytest.approx(mannwhitneyu([5, 4, 4], [2, 4, 3]).pvalue)
    assert stats["verdict"]["metric"] == "auc" and stats["verdict"]["passed"] is False


# -- design and blinding --------------------------------------------------------------------------


def test_a_study_draws_the_asked_mix_and_keeps_the_truth_only_in_sqlite(workspace, image_sets):
    st = make_study(workspace, image_sets, n_cases=20, synthetic_fraction=0.25)
    truth = truth_of(workspace, st)
    assert sorted(truth.values()).count("synthetic") == 5 and len(truth) == 20
    with h5py.File(st.blinded_path) as f:
        assert set(f.keys()) == {"images", "case_ids"}
        assert f["images"].shape == (20, 1, 64, 64) and f["images"].dtype == np.uint8
        assert set(f.attrs.keys()) == {"study"}
    again = make_study(workspace, image_sets, name="turing-again", n_cases=20, synthetic_fraction=0.25)
    origins = [sorted(json.dumps(json.loads(r["origin"])) for r in workspace.query(
        "SELECT origin FROM study_cases WHERE study_id = ?", (s.id,))) for s in (st, again)]
    assert origins[0] == origins[1]  # same seed, same draw


def test_nothing_the_reader_sees_or_the_order_leaks_the_truth(workspace, image_sets):
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    st = make_study(workspace, image_sets, n_cases=120, seed=11)
    truth = truth_of(workspace, st)
    pixels, ids, info = S.read_blinded(st.blinded_path)
    y = np.array([truth[c] == "synthetic" for c in ids])
    # identical presentation: shape, dtype, full 8-bit range for every case whatever its origin
    assert pixels.dtype == np.uint8 and pixels.shape == (120, 1, 64, 64)
    assert set(pixels.min(axis=(1, 2, 3))) == {0} and set(pixels.max(axis=(1, 2, 3))) == {255}
    # a classifier on trivial statistics cannot beat chance (the sources differ in range, bit depth
    # and dtype before blinding, and the same classifier on the raw images separates them perfectly)
    def features(imgs):
        flat = imgs.reshape(len(imgs), -1).astype(np.float64)
        return np.stack([flat.mean(1), flat.std(1), [len(np.unique(x)) for x in flat], flat.min(1), flat.max(1),
                         np.median(flat, 1)], axis=1)

    clf = LogisticRegression(max_iter=2000)
    cv = StratifiedKFold(5, shuffle=True, random_state=0)
    blinded_acc = cross_val_score(clf, features(pixels), y, cv=cv).mean()
    assert blinded_acc < 0.5 + 2.58 * math.sqrt(0.25 / 120)  # not above chance at the 1 % level
    raw = np.concatenate([np.load(image_sets["real"])["images"][:60], np.load(image_sets["synthetic"])["images"][:60]])
    raw_y = np.r_[np.zeros(60), np.ones(60)]
    assert cross_val_score(clf, features(raw), raw_y, cv=cv).mean() > 0.9  # the test can see a leak
    # case ids: same form for every case, not related to the truth
    assert len({len(c) for c in ids}) == 1
    id_values = np.array([int(c[1:], 16) for c in ids])
    assert mannwhitneyu(id_values[y], id_values[~y]).pvalue > 0.01
    # storage order and each reader's order are not sorted by source
    for order in [ids] + [S.add_reader(workspace, st.id, r) for r in ("ann", "bob")]:
        pos = np.array([truth[c] == "synthetic" for c in order])
        assert mannwhitneyu(np.flatnonzero(pos), np.flatnonzero(~pos)).pvalue > 0.01
        runs = 1 + int(np.sum(pos[1:] != pos[:-1]))
        assert runs > 40  # a sorted order would have 2 runs; a random one about 60
    # the info attached to the pixels says nothing about the sets
    assert set(info) == {"format", "mode", "size"}


def test_exported_package_holds_only_blinded_pixels_and_no_provenance(workspace, image_sets, tmp_path):
    st = make_study(workspace, image_sets, readers=["ann"])
    pkg = S.export_study(workspace, st.id, tmp_path / "for-readers.h5")
    raw = pkg.read_bytes()
    for needle in (image_sets["real"], image_sets["synthetic"], "real.npz", "synthetic.npz", "truth", "origin"):
        assert needle.encode() not in raw
    with h5py.File(pkg) as f:
        assert set(f.keys()) == {"images", "case_ids"}
        info = json.loads(f.attrs["study"])
    assert set(info["spec"]) <= {"mode", "size", "time_limit_s", "n_cases"}
    assert "real" not in json.dumps(info["spec"]) and "synthetic" not in json.dumps(info["spec"])
    assert info["readers"]["ann"] == S.add_reader(workspace, st.id, "ann")


def test_reader_orders_are_deterministic_per_reader_and_differ_between_readers(workspace, image_sets):
    st = make_study(workspace, image_sets)
    a, b = S.add_reader(workspace, st.id, "ann"), S.add_reader(workspace, st.id, "bob")
    assert sorted(a) == sorted(b) and a != b
    assert S.reader_order(a, 3, "ann") == a and S.reader_order(b, 3, "ann") == a


def test_2afc_pairs_one_real_and_one_synthetic_image_on_balanced_random_sides(workspace, image_sets):
    st = make_study(workspace, image_sets, mode="2afc", n_cases=10)
    rows = workspace.query("SELECT truth, origin FROM study_cases WHERE study_id = ?", (st.id,))
    assert sorted(r["truth"] for r in rows) == ["left"] * 5 + ["right"] * 5
    for r in rows:
        left, right = json.loads(r["origin"])
        assert (left["truth"], right["truth"]) == (("real", "synthetic") if r["truth"] == "left" else ("synthetic", "real"))
    session = S.ReadingSession(workspace, st.id, "ann")
    assert session.image(0).shape == (2, 64, 64)
    truth = truth_of(workspace, st)
    for i, cid in enumerate(session.order):  # a perfect reader
        session.record(i, answer=truth[cid], confidence=4, seconds=1.0)
    stats = S.study_stats(workspace, st.id)
    assert stats["pooled"]["accuracy"] == 1.0 and stats["pooled"]["auc"] == 1.0
    assert stats["verdict"]["passed"] is False


def test_answers_are_committed_at_once_and_a_fresh_workspace_resumes_at_the_first_unanswered(workspace, image_sets):
    st = make_study(workspace, image_sets)
    session = S.ReadingSession(workspace, st.id, "ann")
    for i in range(7):
        session.record(i, answer="real", confidence=3, seconds=1.5)
    fresh = S.ReadingSession(Workspace.open(workspace.root), st.name, "ann")
    assert fresh.n_answered == 7 and fresh.first_unanswered() == 7
    with pytest.raises(UserError, match="confidence"):
        fresh.record(7, answer="real", confidence=9)
    with pytest.raises(UserError, match="answer"):
        fresh.record(7, answer="fake", confidence=3)


def test_bad_study_designs_are_refused_with_a_reason(workspace, image_sets, tmp_path):
    with pytest.raises(UserError, match="only 300"):
        make_study(workspace, image_sets, n_cases=1000)
    with pytest.raises(UserError, match="no-such"):
        S.create_study(workspace, S.StudyCreateSpec(name="x", real=[str(tmp_path / "no-such.npz")],
                                                    synthetic=[image_sets["synthetic"]]))
    with pytest.raises(ValueError, match="synthetic_fraction must be 0.5"):
        S.StudyCreateSpec(name="x", real=["a"], synthetic=["b"], mode="2afc", synthetic_fraction=0.3)
    with pytest.raises(UserError, match="leaves no synthetic case"):
        make_study(workspace, image_sets, n_cases=10, synthetic_fraction=0.01)
    make_study(workspace, image_sets)
    with pytest.raises(UserError, match="already exists"):
        make_study(workspace, image_sets)


def test_a_workspace_dataset_split_is_a_valid_source(workspace, image_sets):
    from app.engine.data.cache import CacheWriter

    imgs = np.load(image_sets["real"])["images"][:40]
    staging = workspace.staging_dir()
    w = CacheWriter(staging / "cache.h5", 28, 28, ["normal", "pneumonia"])
    w.append(imgs, 0, "g", "x.png", 0, "CR")
    w.set_splits(np.r_[np.zeros(30), np.full(10, 2)])
    w.close()
    workspace.commit_dataset(staging, "chest", n_images=40, height=28, width=28, classes=["normal", "pneumonia"],
                             source="test", meta={})
    st = S.create_study(workspace, S.StudyCreateSpec(name="ds", real=["chest:test"], synthetic=[image_sets["synthetic"]],
                                                     n_cases=16, size=32))
    origins = [json.loads(r["origin"])[0] for r in workspace.query("SELECT origin FROM study_cases WHERE study_id = ?", (st.id,))]
    assert {o["set"] for o in origins} == {"chest:test", image_sets["synthetic"]}
    assert all(30 <= o["index"] < 40 for o in origins if o["set"] == "chest:test")
    with pytest.raises(UserError, match="only 10"):
        S.create_study(workspace, S.StudyCreateSpec(name="ds2", real=["chest:test"], synthetic=[image_sets["synthetic"]],
                                                    n_cases=40, size=32))


def _chest(workspace, image_sets, name="chest"):
    """A 40-image workspace dataset: 30 training images (indices 0-29), 10 held out for test (30-39)."""
    from app.engine.data.cache import CacheWriter

    imgs = np.load(image_sets["real"])["images"][:40]
    staging = workspace.staging_dir()
    w = CacheWriter(staging / "cache.h5", 28, 28, ["normal", "pneumonia"])
    w.append(imgs, 0, "g", "x.png", 0, "CR")
    w.set_splits(np.r_[np.zeros(30), np.full(10, 2)])
    w.close()
    workspace.commit_dataset(staging, name, n_images=40, height=28, width=28, classes=["normal", "pneumonia"],
                             source="test", meta={})


def _real_origins(workspace, st):
    rows = workspace.query("SELECT origin FROM study_cases WHERE study_id = ?", (st.id,))
    return [o for r in rows for o in json.loads(r["origin"]) if o["truth"] == "real"]


def test_real_cases_come_from_the_held_out_split_unless_training_images_are_chosen_and_then_the_results_say_so(
        workspace, image_sets):
    _chest(workspace, image_sets)
    st = S.create_study(workspace, S.StudyCreateSpec(name="held-out", real=["chest"], synthetic=[image_sets["synthetic"]],
                                                     n_cases=16, size=32))
    origins = _real_origins(workspace, st)
    assert len(origins) == 8 and {o["set"] for o in origins} == {"chest:test"}
    assert all(30 <= o["index"] < 40 for o in origins)  # never a training image
    stats = S.study_stats(workspace, st.id)
    assert stats["real_sets"] == ["chest:test"] and stats["real_training"] == []
    with pytest.raises(UserError, match=r"chest:test \(10\)"):  # the held-out split is what runs short
        S.create_study(workspace, S.StudyCreateSpec(name="big", real=["chest"], synthetic=[image_sets["synthetic"]],
                                                    n_cases=40, size=32))
    st = S.create_study(workspace, S.StudyCreateSpec(name="all", real=["chest"], real_split="all", n_cases=40,
                                                     synthetic=[image_sets["synthetic"]], size=32))
    assert any(o["index"] < 30 for o in _real_origins(workspace, st))
    stats = S.study_stats(workspace, st.id)
    assert stats["real_training"] == ["chest"]
    assert any("training images (chest)" in w for w in S.get_study(workspace, st.id).meta["warnings"])
    st = S.create_study(workspace, S.StudyCreateSpec(name="train", real=["chest:train"], n_cases=16,
                                                     synthetic=[image_sets["synthetic"]], size=32))
    assert S.study_stats(workspace, st.id)["real_training"] == ["chest:train"]


def _answers(n_correct: int, n: int) -> list[dict]:
    """n single-mode answers of one reader, the first n_correct of them right."""
    rows = []
    for i in range(n):
        truth = "real" if i % 2 else "synthetic"
        wrong = "synthetic" if truth == "real" else "real"
        rows.append({"reader_id": "r1", "case_id": f"c{i:02d}", "truth": truth,
                     "answer": truth if i < n_correct else wrong, "confidence": 3, "plausibility": None,
                     "seconds": 1.0, "over_time": 0})
    return rows


def test_the_verdict_reads_the_interval_not_the_point_estimate():
    # 8 of 20 right: 0.400, Wilson 95 % interval 0.219-0.613 (scipy): chance is inside, and so is the goal 0.6
    v = S.compute_stats(_answers(8, 20), "single", goal_accuracy=0.6)["verdict"]
    assert v["value"] == pytest.approx(0.4) and v["ci"] == pytest.approx([0.2188, 0.6134], abs=1e-3)
    assert v["passed"] is False and v["chance"] is True and v["rule"] == "upper_ci"
    assert v["text"].startswith("goal not shown yet") and "not distinguishable from chance" in v["text"]
    assert "0.219-0.613" in v["text"] and "20 answers" in v["text"]
    # the point-estimate rule is still there by name, and says that the interval does not back it
    p = S.compute_stats(_answers(8, 20), "single", goal_accuracy=0.6, goal_rule="point")["verdict"]
    assert p["passed"] is True and "rule point" in p["text"] and "the interval does not show it" in p["text"]
    # 100 of 200 right: the interval 0.431-0.569 lies below 0.6: met, and still chance
    v = S.compute_stats(_answers(100, 200), "single", goal_accuracy=0.6)["verdict"]
    assert v["passed"] is True and v["text"].startswith("goal met") and v["chance"] is True
    # 190 of 200: readers tell the sets apart
    v = S.compute_stats(_answers(190, 200), "single", goal_accuracy=0.6)["verdict"]
    assert v["passed"] is False and v["chance"] is False and v["text"].startswith("goal not met")
    assert "better than chance" in v["text"]


# -- jobs, CLI, export / import ---------------------------------------------------------------------


def test_study_stats_through_the_cli_prints_the_statistics_as_json(workspace, image_sets, capsys, tmp_path):
    from app.cli import main

    st = make_study(workspace, image_sets, readers=["ann", "bob"])
    truth = truth_of(workspace, st)
    for rid in ("ann", "bob"):
        s = S.ReadingSession(workspace, st.id, rid)
        for i, cid in enumerate(s.order):
            s.record(i, answer=truth[cid] if i % 4 else ("real" if truth[cid] == "synthetic" else "synthetic"),
                     confidence=3, seconds=1.0)
    capsys.readouterr()
    assert main(["study", "stats", "turing", "--workspace", str(workspace.root), "--json",
                 "--out", str(tmp_path / "results")]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["per_reader"]["ann"]["n"] == 20 and out["pooled"]["n"] == 40
    assert out["pooled"]["accuracy"] == pytest.approx(S.study_stats(workspace, st.id)["pooled"]["accuracy"])
    assert out["pooled"]["accuracy"] == pytest.approx(0.75)
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == ["answers.csv", "cases.csv", "readers.csv", "stats.json"]
    assert (tmp_path / "results" / "answers.csv").read_text().count("\n") == 41


def test_create_job_reports_progress_and_refuses_bad_sets(workspace, image_sets):
    from app.engine.jobs import Done, Failed, Progress

    spec = S.StudyCreateSpec(name="job", real=[image_sets["real"]], synthetic=[image_sets["synthetic"]], n_cases=8, size=32)
    events = run_collect(spec, workspace=workspace)
    assert isinstance(events[-1], Done) and events[-1].result["n_cases"] == 8
    assert any(isinstance(e, Progress) for e in events)
    bad = S.StudyCreateSpec(name="bad", real=["nowhere"], synthetic=[image_sets["synthetic"]])
    assert isinstance(run_collect(bad, workspace=workspace)[-1], Failed)


def test_export_for_reading_elsewhere_then_import_the_answers_back(workspace, image_sets, tmp_path):
    st = make_study(workspace, image_sets, readers=["ann"])
    pkg = S.export_study(workspace, st.id, tmp_path / "pkg.h5", readers=["ann", "carl"])
    elsewhere = Workspace.open(tmp_path / "other-machine")
    copy = S.import_study_package(elsewhere, pkg)
    assert copy.is_reader_copy and copy.id == st.id
    assert elsewhere.query("SELECT COUNT(*) AS n FROM study_cases WHERE truth IS NOT NULL")[0]["n"] == 0
    with pytest.raises(UserError, match="reader copy"):
        S.study_stats(elsewhere, copy.id)
    remote = S.ReadingSession(elsewhere, copy.id, "carl")
    assert remote.order == S.add_reader(workspace, st.id, "carl")
    given = {}
    for i in range(12):
        a = "real" if i % 3 else "synthetic"
        remote.record(i, answer=a, confidence=1 + i % 5, seconds=2.0)
        given[remote.order[i]] = (a, 1 + i % 5)
    answers = S.export_answers(elsewhere, copy.id, tmp_path / "answers.json")
    result = S.import_answers(workspace, answers)
    assert result["added"] == 12
    assert S.import_answers(workspace, answers)["kept"] == 12  # importing twice changes nothing
    back = {r["case_id"]: (r["answer"], r["confidence"]) for r in S.answer_table(workspace, st.id)
            if r["reader_id"] == "carl"}
    assert back == given
    home = S.ReadingSession(workspace, st.id, "carl")
    assert home.first_unanswered() == 12


def test_a_folder_of_exported_pngs_is_a_valid_synthetic_set(workspace, image_sets, tmp_path):
    from PIL import Image

    folder = tmp_path / "generated"
    folder.mkdir()
    imgs = np.load(image_sets["synthetic"])["images"][:12, 0]
    for i, im in enumerate(imgs):
        Image.fromarray(np.round((im + 1) * 127.5).astype(np.uint8)).resize((40, 40)).save(folder / f"sample_{i:03d}.png")
    st = S.create_study(workspace, S.StudyCreateSpec(name="pngs", real=[image_sets["real"]], synthetic=[str(folder)],
                                                     n_cases=10, size=48))
    assert any("different native sizes" in w for w in st.meta["warnings"])  # 28 px real vs 40 px synthetic
    pixels, ids, _ = S.read_blinded(st.blinded_path)
    assert pixels.shape == (10, 1, 48, 48)
    assert b"sample_" not in st.blinded_path.read_bytes()  # file names never reach the reader
