"""load_image_set: datasets, image folders, NPZ files and caches as images in [-1, 1] with labels."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from app.engine.data.demo import DemoSpec, write_demo_dataset
from app.engine.data.imagesets import load_image_set
from app.engine.jobs import UserError
from tests.conftest import shared_file


@pytest.fixture
def demo(workspace):
    return write_demo_dataset(workspace, DemoSpec(n_images=40, size=32, seed=0))


def test_dataset_name_with_split_suffix_gives_that_split_only(workspace, demo):
    s = load_image_set("demo-phantoms:test", workspace)
    from app.engine.data.cache import ImageDataset

    ds = ImageDataset(demo.cache_path)
    assert len(s) == len(ds.indices("test")) > 0
    assert s.images.shape[1:] == (1, 32, 32) and s.images.dtype == np.float32
    assert s.class_names == ["healthy", "lesion"]
    assert s.names[0].startswith("demo-phantoms:")
    np.testing.assert_array_equal(s.labels, ds.labels("test"))


def test_dataset_resize_and_limit(workspace, demo):
    s = load_image_set("demo-phantoms", workspace, split="train", size=16, limit=5)
    assert s.images.shape == (5, 1, 16, 16)
    assert s.images.min() >= -1 and s.images.max() <= 1


def test_unknown_dataset_name_lists_the_known_ones(workspace, demo):
    with pytest.raises(UserError, match="demo-phantoms"):
        load_image_set("no-such-set", workspace)


def test_folder_of_8bit_pngs_inverts_the_exporter_mapping_and_takes_labels_from_subfolders(tmp_path):
    rng = np.random.default_rng(0)
    for cls in ("healthy", "lesion"):
        (tmp_path / cls).mkdir()
        for i in range(3):
            Image.fromarray(rng.integers(0, 256, (20, 20), dtype=np.uint8)).save(tmp_path / cls / f"{i}.png")
    Image.fromarray(np.full((20, 20), 255, np.uint8)).save(tmp_path / "lesion" / "white.png")
    (tmp_path / "manifest.json").write_text("{}")  # sidecars are left alone
    s = load_image_set(tmp_path)
    assert len(s) == 7 and s.class_names == ["healthy", "lesion"]
    assert s.labels.tolist() == [0, 0, 0, 1, 1, 1, 1]
    white = s.names.index("lesion/white.png")
    assert np.allclose(s.images[white], 1.0)  # 255 -> +1 exactly (bit-depth mapping)


def test_folder_with_mixed_sizes_needs_size_and_names_both_files(tmp_path):
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(np.zeros((24, 20), np.uint8)).save(tmp_path / "b.png")
    with pytest.raises(UserError, match=r"a\.png is 20x20 but b\.png is 24x20"):
        load_image_set(tmp_path)
    assert load_image_set(tmp_path, size=16).images.shape == (2, 1, 16, 16)


def test_folder_with_a_corrupt_png_names_the_file(tmp_path):
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "ok.png")
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage")
    with pytest.raises(UserError, match="bad.png"):
        load_image_set(tmp_path)


def test_empty_folder_is_a_clear_error(tmp_path):
    with pytest.raises(UserError, match="no images"):
        load_image_set(tmp_path)


def test_npz_with_nan_is_rejected_naming_the_file(tmp_path):
    imgs = np.zeros((3, 8, 8), np.float32)
    imgs[1, 2, 2] = np.nan
    np.savez(tmp_path / "x.npz", images=imgs)
    with pytest.raises(UserError, match=r"x\.npz.*NaN"):
        load_image_set(tmp_path / "x.npz")


def test_medmnist_npz_split_and_labels_on_real_pneumoniamnist():
    path = shared_file("pneumoniamnist_balanced_28.npz")
    with np.load(path) as z:
        n_test, test_labels = len(z["test_images"]), z["test_labels"].ravel()
        first = z["test_images"][0]
    s = load_image_set(path, split="test")
    assert len(s) == n_test and s.images.shape[1:] == (1, 28, 28)
    assert s.class_names == ["0", "1"]
    np.testing.assert_array_equal(s.labels, test_labels.astype(np.int64))
    np.testing.assert_allclose(s.images[0, 0], first / 255.0 * 2 - 1, atol=1e-6)
    limited = load_image_set(path, split="test", limit=10)
    assert len(limited) == 10 and limited.class_names == ["0", "1"]


def test_cache_file_path_loads_like_the_dataset(workspace, demo):
    a = load_image_set(demo.cache_path)
    b = load_image_set("demo-phantoms", workspace)
    np.testing.assert_array_equal(a.images, b.images)
