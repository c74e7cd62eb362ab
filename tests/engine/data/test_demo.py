"""The built-in demo dataset: deterministic synthetic phantoms in two classes, grouped by phantom."""

from __future__ import annotations

import numpy as np

from app.engine.data.cache import ImageDataset
from app.engine.data.demo import DEMO_SOURCE, DemoSpec, ensure_demo, phantom_slices
from app.engine.jobs import Done, run_collect


def test_same_seed_gives_identical_phantoms_and_another_seed_does_not():
    a = phantom_slices(24, 64, seed=3)
    b = phantom_slices(24, 64, seed=3)
    c = phantom_slices(24, 64, seed=4)
    assert np.array_equal(a.images, b.images)
    assert np.array_equal(a.labels, b.labels)
    assert not np.allclose(a.images, c.images)


def test_phantoms_are_in_range_and_have_both_classes_with_several_slices_per_patient():
    ph = phantom_slices(64, 64, seed=0, slices_per_patient=8)
    assert ph.images.shape == (64, 1, 64, 64) and ph.images.dtype == np.float32
    assert ph.images.min() >= -1 and ph.images.max() <= 1
    assert set(ph.labels.tolist()) == {0, 1}
    assert len(set(ph.patients)) == 8
    # a phantom patient has one class for all its slices (patient-level label)
    for p in set(ph.patients):
        assert len({int(lab) for lab, q in zip(ph.labels, ph.patients) if q == p}) == 1


def test_phantoms_look_like_a_head_on_a_dark_background():
    ph = phantom_slices(8, 64, seed=1)
    img = ph.images[0, 0]
    corners = np.concatenate([img[:4, :4].ravel(), img[-4:, -4:].ravel()])
    centre = img[24:40, 24:40]
    assert corners.mean() < -0.8  # air
    assert centre.mean() > -0.5  # brain tissue


def test_lesion_slices_differ_from_healthy_ones_in_the_brightest_or_darkest_tissue():
    ph = phantom_slices(128, 64, seed=0)
    healthy, lesion = ph.images[ph.labels == 0, 0], ph.images[ph.labels == 1, 0]
    # class means differ noticeably somewhere (the lesions), not only by noise
    diff = np.abs(healthy.mean(0) - lesion.mean(0))
    assert diff.max() > 0.1


def test_demo_job_registers_a_dataset_marked_synthetic_with_patient_grouped_splits(workspace):
    events = run_collect(DemoSpec(n_images=48, size=32, seed=2), workspace=workspace)
    done = events[-1]
    assert isinstance(done, Done), events[-1]
    assert done.result["dataset"] == "demo-phantoms" and done.result["kept"] == 48
    rec = workspace.dataset("demo-phantoms")
    assert rec.source == DEMO_SOURCE and "not patient data" in rec.source
    assert rec.meta["synthetic"] is True
    ds = ImageDataset(rec.cache_path)
    groups, split = ds.groups(), ds.split_array()
    for g in set(groups):
        assert len(set(split[groups == g].tolist())) == 1
    assert set(ds.class_names) == {"healthy", "lesion"}


def test_ensure_demo_creates_it_only_in_an_empty_workspace(workspace):
    rec = ensure_demo(workspace)
    assert rec is not None and rec.n_images == 512 and rec.height == 64
    assert ensure_demo(workspace) is None
    assert [d.name for d in workspace.datasets()] == ["demo-phantoms"]
