"""`radsynth evaluate` and `radsynth audit` through app.cli.main with --json, on PneumoniaMNIST."""

from __future__ import annotations

import json

import numpy as np

from app.cli import main
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
