"""Sets of different sizes compare: the audit and the evaluation resample every set to one stated size
(by default the training set's / the real set's) and their results and reports say which."""

from __future__ import annotations

import json

import numpy as np
import pytest

from app.engine import jobs as J
from app.engine.data.demo import write_demo_dataset
from app.engine.data.imagesets import load_image_set
from app.engine.data.preprocess import fit_size
from app.engine.specs.data import DemoSpec
from app.engine.specs.evaluate import AuditSpec, EvaluateSpec


@pytest.fixture
def demo64(workspace):
    write_demo_dataset(workspace, DemoSpec(name="demo", n_images=64, size=64, slices_per_patient=4))
    return workspace


def _generated32(workspace, tmp_path, n: int = 12) -> str:
    """32x32 'generated' images: test-split phantoms resampled to half size (a model trained at 32x32)."""
    test = load_image_set("demo:test", workspace).images[:n]
    small = np.stack([fit_size(im[0], 32)[None] for im in test]).astype(np.float32)
    path = tmp_path / "gen32.npz"
    np.savez(path, images=small)
    return str(path)


def test_a_32px_generated_set_audits_against_a_64px_training_set_at_the_training_size(demo64, tmp_path):
    gen = _generated32(demo64, tmp_path)
    spec = AuditSpec(generated=gen, train="demo", extractor="none", out=str(tmp_path / "rep"), device="cpu")
    final = J.run_collect(spec, workspace=demo64)[-1]
    assert isinstance(final, J.Done), getattr(final, "message", final)
    res = final.result
    assert res["image_size"]["size"] == 64 and res["image_size"]["chosen"] == "training images"
    assert res["image_size"]["resampled"] == ["generated"]
    assert res["image_size"]["stored"] == {"generated": [32, 32], "train": [64, 64], "holdout": [64, 64]}
    assert res["counts"]["size"] == [64, 64]
    on_disk = json.loads((tmp_path / "rep" / "audit.json").read_text())
    assert on_disk["image_size"]["size"] == 64
    html = (tmp_path / "rep" / "audit.html").read_text()
    assert "Compared at 64x64 (the size of the training images); resampled: generated images (stored 32x32)." in html


def test_a_stated_audit_size_resamples_every_set_to_it(demo64, tmp_path):
    gen = _generated32(demo64, tmp_path)
    spec = AuditSpec(generated=gen, train="demo", extractor="none", size=48, out=str(tmp_path / "rep"), device="cpu")
    final = J.run_collect(spec, workspace=demo64)[-1]
    assert isinstance(final, J.Done), getattr(final, "message", final)
    sizes = final.result["image_size"]
    assert sizes["size"] == 48 and sizes["chosen"] == "stated"
    assert sorted(sizes["resampled"]) == ["generated", "holdout", "train"]
    assert "Compared at 48x48 (as stated)" in (tmp_path / "rep" / "audit.html").read_text()


def test_a_32px_generated_set_evaluates_against_a_64px_real_set_at_the_real_size(demo64, tmp_path):
    gen = _generated32(demo64, tmp_path)
    spec = EvaluateSpec(real="demo", generated=gen, kid_subsets=5, kid_subset_size=8, ms_ssim_pairs=10, clusters=2,
                        per_class=False, out=str(tmp_path / "ev"), device="cpu")
    final = J.run_collect(spec, workspace=demo64)[-1]
    assert isinstance(final, J.Done), getattr(final, "message", final)
    sizes = final.result["image_size"]
    assert sizes["size"] == 64 and sizes["chosen"] == "real images" and sizes["resampled"] == ["generated"]
    assert json.loads((tmp_path / "ev" / "evaluation.json").read_text())["image_size"]["size"] == 64
    html = (tmp_path / "ev" / "evaluation.html").read_text()
    assert "Compared at 64x64 (the size of the real images); resampled: generated images (stored 32x32)." in html
