"""The audit catches what training and memorization really produce, and says which transformation it found.

Real SIAT T2 slices: training = series 0-11, calibration held-out = series 12, and the generated set hides
near-copies of training slices under each transformation among the slices of series 13-14 (patients the
audit was neither trained nor calibrated on). The copies are made with scipy.ndimage, independently of the
audit's own warps.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from app.engine.audit.memorization import audit, load_report, write_report
from tests.engine.metrics.realdata import siat_magnitude

#: name -> the transformation applied (the audit's convention: mirror, rotate counter-clockwise as shown,
#: zoom about the centre, move by dx right / dy down; then intensity, blur, resampling, noise)
PLANTS = {
    "mirrored": {"mirrored": True},
    "rotated": {"rotation": 4.0},
    "zoom / crop 10 %": {"crop": 6},
    "shifted 7, -9 px": {"dy": 7, "dx": -9},
    "gamma 0.7": {"gamma": 0.7},
    "window": {"window": (0.05, 0.8)},
    "blurred": {"blur": 1.5},
    "resampled": {"resample": 2},
    "noise": {"noise": 0.05},
    "mirrored + shifted + gamma": {"mirrored": True, "dx": 5, "gamma": 0.8},
    "rotated + zoomed + shifted + blurred + noise": {"rotation": -3.0, "zoom": 1.06, "dy": 4, "blur": 1.0, "noise": 0.04},
}


def plant(img: np.ndarray, rng, mirrored=False, rotation=0.0, zoom=1.0, crop=0, dy=0, dx=0, gamma=1.0, window=None,
          blur=0.0, resample=0, noise=0.0) -> np.ndarray:
    from scipy import ndimage
    from skimage.transform import resize

    u = (img[0].astype(np.float64) + 1) / 2
    h = u.shape[0]
    if mirrored:
        u = u[:, ::-1]
    if rotation:
        u = ndimage.rotate(u, rotation, reshape=False, order=1, mode="nearest")
    if zoom != 1:
        z = ndimage.zoom(u, zoom, order=1)
        o = (z.shape[0] - h) // 2
        u = z[o : o + h, o : o + h]
    if crop:
        u = resize(u[crop:-crop, crop:-crop], (h, h), order=1, anti_aliasing=False)
    if dy or dx:
        u = ndimage.shift(u, (dy, dx), order=1, mode="nearest")
    if gamma != 1:
        u = np.clip(u, 0, 1) ** gamma
    if window is not None:
        u = np.clip((u - window[0]) / (window[1] - window[0]), 0, 1)
    if blur:
        u = ndimage.gaussian_filter(u, blur)
    if resample:
        u = resize(resize(u, (h // resample, h // resample), order=1, anti_aliasing=True), (h, h), order=1)
    y = u * 2 - 1
    if noise:
        y = y + rng.normal(0, noise, y.shape)
    return np.clip(y, -1, 1)[None].astype(np.float32)


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    images, series = siat_magnitude(128)
    train, calib, new = images[series < 12], images[series == 12], images[series >= 13]
    rng = np.random.default_rng(27)
    src = rng.choice(len(train), len(PLANTS), replace=False)
    copies = np.stack([plant(train[i], rng, **p) for i, p in zip(src, PLANTS.values())])
    gen = np.concatenate([new, copies])
    report = audit(gen, train, holdout=calib, extractor=None)
    out = tmp_path_factory.mktemp("audit")
    paths = write_report(report, gen, train, out)
    return report, gen, train, len(new), src, paths


def test_every_transformed_copy_is_flagged_and_no_slice_of_a_new_patient(planted):
    report, _, _, n_new, _, _ = planted
    names = list(PLANTS)
    missed = [names[j] for j in range(len(names)) if not report.flagged[n_new + j]]
    assert not missed, f"copies missed: {missed}"
    assert not report.flagged[:n_new].any(), f"new patients' slices flagged: {np.flatnonzero(report.flagged[:n_new])}"
    assert report.rule.measures[-1] == "invariant" and "invariant" in report.thresholds  # calibrated like the rest


def test_the_transformation_named_for_each_copy_is_the_one_applied(planted):
    report, _, _, n_new, src, paths = planted
    js = json.loads(paths["json"].read_text())
    rows = {r["generated_index"]: r for r in js["flagged"]}
    for j, (name, p) in enumerate(PLANTS.items()):
        tf = rows[n_new + j]["transformation"]
        assert tf["training_index"] == src[j], name
        text = tf["text"]
        assert tf["mirrored"] == p.get("mirrored", False), (name, text)
        assert abs(tf["rotation"] - p.get("rotation", 0.0)) <= 1.0, (name, text)
        want_zoom = p.get("zoom", 128 / (128 - 2 * p["crop"]) if "crop" in p else 1.0)
        assert abs(tf["zoom"] - want_zoom) <= 0.02, (name, text)
        if not {"crop", "zoom", "rotation"} & set(p):  # a zoom / rotation about the centre moves nothing else
            assert abs(tf["dx"] - p.get("dx", 0)) <= 1.0 and abs(tf["dy"] - p.get("dy", 0)) <= 1.0, (name, text)
        elif "dy" in p:
            assert abs(tf["dy"] - p["dy"]) <= 1.5, (name, text)
        if "gamma" in p:
            assert tf["intensity"]["kind"] == "gamma" and abs(tf["intensity"]["gamma"] - p["gamma"]) <= 0.08, (name, text)
            assert f"gamma {tf['intensity']['gamma']:.2f}" in text
        elif "window" in p:
            assert tf["intensity"]["kind"] == "window" and "window" in text, (name, text)
        else:
            assert "gamma" not in text and "window" not in text, (name, text)
        if "blur" in p:
            assert abs(tf["blur_sigma"] - p["blur"]) <= 0.5 and "blurred" in text, (name, text)
        elif "resample" not in p:
            assert "blurred" not in text, (name, text)
        if "noise" in p:
            assert abs(tf["noise_sigma"] - p["noise"]) <= 0.015 and "noise" in text, (name, text)
        elif "resample" not in p and "blur" not in p:
            assert "noise" not in text, (name, text)
        for word, key in (("mirrored", "mirrored"), ("rotated", "rotation"), ("shifted", "dx"), ("zoomed", "zoom")):
            assert (word in text) == (key in p or (key == "zoom" and "crop" in p) or (key == "dx" and "dy" in p)), (name, text)
    # the report names the feature space of the descriptor measure and shows the transformation of each pair
    assert "training images" in js["descriptor"] and "nothing downloaded" in js["descriptor"]
    html = paths["html"].read_text()
    assert "mirrored, shifted 5 px" in html and js["descriptor"] in html
    back = load_report(paths["json"].parent)
    assert back.transforms[n_new]["text"] == report.transforms[n_new]["text"]
