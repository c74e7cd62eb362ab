"""The Generation panel after training: the run just trained is preselected, and a class-conditional model's
thumbnails say each image's class. Real training and sample jobs on tiny models."""

from __future__ import annotations

import pytest

from app.views.generate_panel import class_captions
from tests.views.conftest import assert_not_blank
from tests.views.test_flow import SHOTS, TINY
from tests.views.test_panels import make_dataset

pytest.importorskip("app.engine.training.loop")


def test_class_captions_name_the_class_or_fall_back_to_its_number():
    assert class_captions([0, 1, -1], ["normal", "lesion"], 3) == ["normal", "lesion", ""]
    assert class_captions([1], ["normal", "lesion"], 2) == ["lesion", "lesion"]  # one class for all
    assert class_captions([0, 2], ["normal", "lesion"], 2) == ["normal", "2"]  # a class without a name
    assert class_captions([3, 5], [], 2) == ["3", "5"]
    assert class_captions(None, ["normal"], 2) == ["", ""]


def _train(main_window, qtbot, **extra):
    panel = main_window.show_panel("train")
    panel.form.set_values({**TINY, "dataset": "phantoms", "max_steps": 2, "epochs": 1, "val_every": 0,
                           "preview_every": 0, **extra})
    assert panel.form.is_valid, panel.form.errors
    panel.start_button.click()
    h = panel.handle
    qtbot.waitUntil(lambda: h.is_final, timeout=120000)
    assert h.state == "done", (h.message, h.logs[-3:])
    return h.result["run"]


def test_the_run_just_trained_is_preselected_and_the_thumbnails_say_the_class(main_window, workspace, qtbot):
    make_dataset(workspace, n=12, size=16)  # classes normal, lesion
    first = _train(main_window, qtbot)
    gen = main_window.show_panel("generate")
    qtbot.waitUntil(lambda: gen.runs.currentData() == first, timeout=10000)
    newer = _train(main_window, qtbot, class_conditional=True, label_dropout=0.1)
    gen.runs.setCurrentIndex(gen.runs.findData(first))  # an older run was selected when training ended
    # ... so the panel must not keep it: the newest run, the one just trained, is selected
    conditional = _train(main_window, qtbot, class_conditional=True, label_dropout=0.1, seed=1)
    assert conditional != newer
    main_window.show_panel("generate")
    assert gen.runs.currentData() == conditional and gen.runs.currentIndex() == 0
    qtbot.waitUntil(lambda: gen.class_combo.count() > 1, timeout=20000)
    gen.class_combo.setCurrentIndex(gen.class_combo.findData("all"))
    gen.form.set_values({"n_images": 4, "steps": 2, "sampler": "ddim", "batch_size": 4, "device": "cpu",
                         "preview_every": 0})
    h = gen.generate()
    qtbot.waitUntil(lambda: h.is_final, timeout=120000)
    assert h.state == "done", (h.message, h.logs[-3:])
    qtbot.waitUntil(lambda: gen.results.count() == 4, timeout=10000)
    texts = [gen.results.item(i).text() for i in range(4)]
    assert texts == ["#0 · normal", "#1 · lesion", "#2 · normal", "#3 · lesion"]  # classes in turn, by name
    assert gen.classes == ["normal", "lesion", "normal", "lesion"]
    for size in ((1366, 768), (1920, 1080)):
        main_window.resize(*size)
        qtbot.wait(50)
        assert_not_blank(gen, SHOTS / f"generate_classes_{size[0]}x{size[1]}.png")
