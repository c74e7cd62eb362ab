"""`radsynth evaluate` and `radsynth audit` through app.cli.main with --json, on PneumoniaMNIST."""

from __future__ import annotations

import json

import numpy as np
import pytest

from app.cli import main
from tests.conftest import shared_file
from tests.engine.metrics.realdata import pneumoniamnist


def _last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


def _npz(path, images, labels=None):
    np.savez(path, images=images, **({} if labels is None else {"labels": labels}))
    return str(path)


def test_audit_cli_reports_the_planted_copies_and_fails(tmp_path, capsys):
    (tr, _), (va, _), (te, _) = pneumoniamnist()
    gen = np.concatenate([te[:30], tr[5:7], np.roll(tr[9:10], 1, axis=-1)])
    code = main(["audit", "--generated", _npz(tmp_path / "gen.npz", gen), "--train", _npz(tmp_path / "tr.npz", tr[:400]),
                 "--holdout", _npz(tmp_path / "ho.npz", va[:80]), "--out", str(tmp_path / "rep"), "--extractor", "none",
                 "--clean-out", str(tmp_path / "clean"), "--json", "-q"])
    res = _last_json(capsys.readouterr().out)
    assert code == 0
    assert res["passed"] is False
    assert [(r["generated_index"], r["training_index"]) for r in res["flagged"]] == [(30, 5), (31, 6), (32, 9)]
    assert res["measures"]["ncc"]["holdout"]["n"] == 80 and res["cleaned"]["kept"] == 30
    assert (tmp_path / "rep" / "audit.html").exists() and (tmp_path / "rep" / "hist_ncc.png").exists()


def test_audit_cli_with_an_absolute_threshold_passes_a_clean_set(tmp_path, capsys):
    (tr, _), _, (te, _) = pneumoniamnist()
    code = main(["audit", "--generated", _npz(tmp_path / "gen.npz", te[:20]), "--train", _npz(tmp_path / "tr.npz", tr[:200]),
                 "--threshold", "0.01", "--measure", "ncc", "--out", str(tmp_path / "rep"), "--extractor", "none", "--json", "-q"])
    res = _last_json(capsys.readouterr().out)
    assert code == 0 and res["passed"] is True and res["flagged"] == []
    assert res["rule"]["mode"] == "absolute" and res["thresholds"] == {"ncc": 0.01}


def test_audit_cli_refuses_nan_images_with_the_file_named(tmp_path, capsys):
    (tr, _), _, _ = pneumoniamnist()
    bad = tr[:5].copy()
    bad[1, 0, 0, 0] = np.nan
    code = main(["audit", "--generated", _npz(tmp_path / "bad.npz", bad), "--train", _npz(tmp_path / "tr.npz", tr[:50]),
                 "--extractor", "none", "--json", "-q"])
    res = _last_json(capsys.readouterr().out)
    assert code == 1 and "NaN" in res["error"] and "bad.npz" in res["error"]


def test_evaluate_cli_ranks_generated_between_the_floor_and_the_noise_baseline(tmp_path, capsys):
    (tr, ytr), (va, yva), (te, yte) = pneumoniamnist()
    tr, ytr = tr[::8], ytr[::8]  # every 8th: both classes (the split is ordered by class)
    # "generated" = real test images with mild noise (sigma 0.05): worse than the real floor,
    # better than the sigma 0.3 noise baseline
    rng = np.random.default_rng(0)
    pick = rng.permutation(len(te))[:200]  # the split is ordered by class
    gen = np.clip(te[pick] + rng.normal(0, 0.05, te[pick].shape), -1, 1).astype(np.float32)
    code = main(["evaluate", "--real", _npz(tmp_path / "real.npz", tr, ytr),
                 "--generated", _npz(tmp_path / "gen.npz", gen, yte[pick]),
                 "--holdout", _npz(tmp_path / "ho.npz", va[:200], yva[:200]),
                 "--kid-subsets", "10", "--kid-subset-size", "100", "--ms-ssim-pairs", "50", "--clusters", "5",
                 "--out", str(tmp_path / "ev"), "--json", "-q"])
    res = _last_json(capsys.readouterr().out)
    assert code == 0, res
    o = res["tables"]["overall"]
    assert res["extractor"] == "radiomics" and o["generated"]["n"] == 200 and o["generated"]["n_real"] == len(tr)
    assert o["real_holdout_floor"]["fid"] < o["generated"]["fid"] < o["noise_baseline_sigma0.3"]["fid"]
    assert o["real_holdout_floor"]["precision"] > o["noise_baseline_sigma0.3"]["precision"]
    assert set(res["tables"]) == {"overall", "0", "1"}
    assert o["generated"]["diversity"]["scales"] == 2  # 28 px images fit 2 of MS-SSIM's 5 scales
    assert len(res["least_plausible"]) == 16


def _small_eval_args(tmp_path):
    return ["--kid-subsets", "5", "--kid-subset-size", "50", "--ms-ssim-pairs", "20", "--clusters", "4",
            "--out", str(tmp_path / "ev"), "--json", "-q"]


def test_evaluate_cli_with_utility_compares_real_only_and_real_plus_synthetic_on_held_out_real(tmp_path, capsys):
    """A tiny utility run (width 4, one epoch): the numbers are not meaningful, their bookkeeping is
    checked: both classifiers on the same held-out images, counts, per-subgroup, the HTML report."""
    (tr, ytr), (va, yva), (te, yte) = pneumoniamnist()
    rng = np.random.default_rng(1)
    r, g, t = rng.permutation(len(tr))[:120], rng.permutation(len(va))[:40], rng.permutation(len(te))[:60]
    site = np.where(np.arange(60) % 3 == 0, "site-A", "site-B")
    np.savez(tmp_path / "test.npz", images=te[t], labels=yte[t], attr_site=site)
    code = main(["evaluate", "--real", _npz(tmp_path / "real.npz", tr[r], ytr[r]),
                 "--generated", _npz(tmp_path / "gen.npz", va[g], yva[g]), "--holdout", str(tmp_path / "test.npz"),
                 "--utility", "--utility-epochs", "1", "--utility-width", "4", "--utility-bootstrap", "50"] + _small_eval_args(tmp_path))
    res = _last_json(capsys.readouterr().out)
    assert code == 0, res
    u = res["utility"]
    assert u["counts"] == {"real_train": 120, "synthetic": 40, "test": 60, "test_per_class": np.bincount(yte[t]).tolist()}
    for key in ("real_only", "real_plus_synthetic"):
        rep = u[key]
        assert np.sum(rep["confusion_matrix"]) == 60 and rep["n_test"] == 60
        assert rep["auc"]["ci95"][0] <= rep["auc"]["auc"] <= rep["auc"]["ci95"][1]
        assert set(rep["per_class_auc"]) == {"0", "1"}
    n_disc = u["mcnemar"]["only_first_correct"] + u["mcnemar"]["only_second_correct"]
    acc_gap = abs(u["real_only"]["accuracy"] - u["real_plus_synthetic"]["accuracy"]) * 60
    assert n_disc >= round(acc_gap)  # accuracies can only differ through discordant pairs
    assert u["auc_difference"]["difference"] == pytest.approx(u["real_plus_synthetic"]["auc"]["auc"] - u["real_only"]["auc"]["auc"])
    assert {k: v["n"] for k, v in u["per_subgroup"]["site"].items()} == {"site-A": 20, "site-B": 40}
    page = (tmp_path / "ev" / "evaluation.html").read_text()
    for text in ("Downstream utility", "real held-out (floor)", "pixel-noise baseline (σ=0.3)", "radiomics", "McNemar",
                 "Subgroups by site", "120 real reference images"):
        assert text in page, text
    assert "data:image/png;base64," in page and "src='grid" not in page  # self-contained: figures inlined


def test_evaluate_cli_utility_without_generated_labels_is_a_clear_error_before_any_work(tmp_path, capsys):
    (tr, ytr), (va, _), (te, yte) = pneumoniamnist()
    code = main(["evaluate", "--real", _npz(tmp_path / "real.npz", tr[::40], ytr[::40]),
                 "--generated", _npz(tmp_path / "unlabelled.npz", va[:30]), "--holdout", _npz(tmp_path / "ho.npz", te[::20], yte[::20]),
                 "--utility"] + _small_eval_args(tmp_path))
    res = _last_json(capsys.readouterr().out)
    assert code == 1 and "unlabelled.npz" in res["error"] and "class labels" in res["error"]
    assert not (tmp_path / "ev" / "evaluation.json").exists()


def test_evaluate_reads_a_split_of_a_medmnist_layout_npz(tmp_path):
    from app.engine.metrics.sets import load_set

    s = load_set(f"{shared_file('pneumoniamnist_balanced_28.npz')}:val")
    assert s.images.shape == (270, 1, 28, 28) and np.bincount(s.labels).tolist() == [135, 135] and s.source.endswith(":val")
