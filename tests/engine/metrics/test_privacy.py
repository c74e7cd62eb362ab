"""The memorization audit: copies are flagged, genuinely new real images are not, on real data."""

from __future__ import annotations

import json

import numpy as np
import pytest

from app.engine.jobs import UserError
from app.engine.audit.nn import ssim_pairs
from app.engine.audit.memorization import FlagRule, apply_gate, audit, flag, holdout_rank, load_report, write_cleaned_set, write_report
from tests.engine.metrics.realdata import COPY_KINDS, near_copies, pneumoniamnist, siat_magnitude


def _plant(train, new, per_kind, rng):
    """Generated set = genuinely new real images followed by near-copies of training images."""
    parts, kinds, sources = [new], ["new"] * len(new), [-1] * len(new)
    for kind in COPY_KINDS:
        idx = rng.choice(len(train), per_kind, replace=False)
        parts.append(near_copies(train[idx], kind, rng))
        kinds += [kind] * per_kind
        sources += list(idx)
    return np.concatenate(parts), np.array(kinds), np.array(sources)


def test_ssim_of_pairs_matches_skimage(rng):
    import torch
    from skimage.metrics import structural_similarity

    (train, _), _, _ = pneumoniamnist()
    a, b = train[:6, 0], train[6:12, 0]
    ours = ssim_pairs(torch.from_numpy(a), torch.from_numpy(b)).numpy()
    ref = [structural_similarity(x, y, data_range=2.0) for x, y in zip(a, b)]
    np.testing.assert_allclose(ours, ref, atol=1e-4)


def test_audit_flags_every_near_copy_and_no_new_image_on_pneumoniamnist(rng):
    (train, _), (val, _), (test, _) = pneumoniamnist()
    train = train[:1200]
    gen, kinds, sources = _plant(train, test[:150], 6, rng)
    report = audit(gen, train, holdout=val[:150], extractor=None)
    copies = kinds != "new"
    assert report.flagged[copies].all(), f"missed copies: {kinds[copies & ~report.flagged]}"
    assert not report.flagged[~copies].any(), f"new images flagged: {np.flatnonzero(~copies & report.flagged)}"
    # the NCC-nearest training image of an exact / rescaled copy is its source
    for kind in ("exact", "rescale"):
        sel = kinds == kind
        assert (report.generated.index["ncc"][sel] == sources[sel]).all()
    assert not report.passed and report.memorization_rate == pytest.approx(copies.mean())


def test_audit_flags_near_copies_and_no_slice_of_unseen_series_on_siat_brain(rng):
    images, series = siat_magnitude(128)
    train, calib, new = images[series < 12], images[series == 12], images[series >= 13]
    gen, kinds, _ = _plant(train, new, 3, rng)
    report = audit(gen, train, holdout=calib, extractor=None)
    copies = kinds != "new"
    assert report.flagged[copies].all(), f"missed copies: {kinds[copies & ~report.flagged]}"
    assert not report.flagged[~copies].any()
    # every new slice lies far inside the held-out distribution's scale, copies at its very bottom
    rank = holdout_rank(report.generated.distances, report.holdout.distances)
    assert (rank["ncc"][copies] == 0).all()


def test_a_bare_percentile_rule_flags_new_images_where_the_calibrated_rule_does_not(rng):
    images, series = siat_magnitude(128)
    train, calib, new = images[series < 12], images[series == 12], images[series >= 13]
    report = audit(new, train, holdout=calib, extractor=None, with_ssim=False,
                   rule=FlagRule(measures=("l2", "ncc", "l2_coarse", "ncc_coarse")))
    d, h = report.generated.distances, report.holdout.distances
    bare = flag(d, h, FlagRule(mode="percentile", percentile=5, margin=1.0, measures=("l2", "ncc", "l2_coarse", "ncc_coarse")))
    assert bare.sum() >= 3  # series 13-14 sit closer to the training series than series 12 does
    assert not report.flagged.any()
    assert not flag(d, h, FlagRule(measures=("l2", "ncc", "l2_coarse", "ncc_coarse"))).any()


def test_flag_with_an_absolute_threshold_is_cheap_and_monotone():
    d = {"ncc": np.array([0.0, 0.01, 0.05, 0.2])}
    assert flag(d, None, 0.02, measure="ncc").tolist() == [True, True, False, False]
    assert flag(d, None, 0.1, measure="ncc").sum() == 3
    with pytest.raises(UserError, match="held-out"):
        flag(d, None, FlagRule())


def test_bad_inputs_get_clear_errors(rng):
    ok = rng.uniform(-1, 1, (4, 1, 16, 16)).astype(np.float32)
    with pytest.raises(UserError, match="empty"):
        audit(np.zeros((0, 1, 16, 16), np.float32), ok, extractor=None)
    with pytest.raises(UserError, match="16x16.*32x32|32x32.*16x16"):
        audit(rng.uniform(-1, 1, (4, 1, 32, 32)).astype(np.float32), ok, extractor=None)
    bad = ok.copy()
    bad[2, 0, 3, 3] = np.nan
    with pytest.raises(UserError, match="NaN"):
        audit(bad, ok, extractor=None)


def test_report_files_round_trip_and_the_gate_drops_flagged_images(tmp_path, rng):
    (train, _), (val, _), (test, _) = pneumoniamnist()
    train = train[:300]
    gen = np.concatenate([test[:20], train[:3]])
    report = audit(gen, train, holdout=val[:60], extractor="radiomics")
    assert report.flagged.tolist() == [False] * 20 + [True] * 3
    assert "cosine" in report.generated.distances
    paths = write_report(report, gen, train, tmp_path / "rep")
    assert len(paths["pairs"]) == 3 and paths["html"].read_text().count("data:image/png;base64,") >= 5
    js = json.loads(paths["json"].read_text())
    assert js["n_flagged"] == 3 and js["flagged"][0]["training_index"] == 0
    back = load_report(tmp_path / "rep")
    np.testing.assert_array_equal(back.flagged, report.flagged)
    np.testing.assert_array_equal(back.generated.distances["ncc"], report.generated.distances["ncc"])
    keep = apply_gate(gen, report)
    assert keep.sum() == 20
    files = write_cleaned_set(gen, report, tmp_path / "clean")
    with np.load(files[0]) as z:
        assert len(z[z.files[0]]) == 20
