"""The window on a laptop and on a large screen: every panel (every tab) at 1366x768 and 1920x1080
without a clipped, overlapping or squeezed widget, checked from geometry (layout_checks.py); legends
beside the data; the first-start strip of each panel pointing to the next step; Help opening the guide.

Screenshots go to the test's tmp folder, or to $RADSYNTH_LAYOUT_SHOTS when set (to look at them).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PySide6.QtWidgets import QFormLayout, QHBoxLayout, QLabel, QLineEdit, QPushButton, QTabWidget, QWidget

from tests.views.layout_checks import layout_problems

ROOT = Path(__file__).resolve().parents[2]
SIZES = [(1366, 768), (1920, 1080)]


def _shots(tmp_path) -> Path:
    d = Path(os.environ.get("RADSYNTH_LAYOUT_SHOTS") or tmp_path / "shots")
    d.mkdir(parents=True, exist_ok=True)
    return d


@pytest.fixture
def demo_window(qtbot, workspace, themed):
    """A main window on a workspace holding the demo dataset (a small one), errors recorded."""
    from app.engine.data.demo import write_demo_dataset
    from app.engine.specs.data import DemoSpec
    from app.views.main_window import MainWindow

    write_demo_dataset(workspace, DemoSpec(n_images=32))
    win = MainWindow(workspace=workspace.root, error_mode="record", demo_at_first_start=False)
    qtbot.addWidget(win)
    win.show()
    yield win
    win.jobs.cancel_all()
    win.jobs.wait_all(30000)
    win.close()


# -- the checks themselves can fail ------------------------------------------------------------------
def test_the_geometry_check_finds_a_cut_label_a_widget_outside_its_parent_and_overlapping_siblings(qtbot):
    w = QWidget()
    form = QFormLayout(w)
    label = QLabel("Acceleration R")
    form.addRow(label, QLineEdit())
    qtbot.addWidget(w)
    w.resize(400, 80)
    w.show()
    qtbot.waitExposed(w)
    assert layout_problems(w) == []
    label.setFixedWidth(30)  # "eleration R": the text no longer fits its label
    qtbot.wait(10)
    assert any(p.startswith("text:") and "Acceleration R" in p for p in layout_problems(w))

    outside = QWidget()
    qtbot.addWidget(outside)
    outside.resize(100, 50)
    QPushButton("FAILED — 3 of 40 images", outside).setGeometry(60, 10, 150, 30)
    outside.show()
    assert any(p.startswith("outside:") for p in layout_problems(outside))

    row = QWidget()
    qtbot.addWidget(row)
    lay = QHBoxLayout(row)
    a, b = QPushButton("one"), QPushButton("two")
    lay.addWidget(a)
    lay.addWidget(b)
    row.show()
    qtbot.waitExposed(row)
    b.setGeometry(a.geometry().translated(5, 0))  # as a layout squeezed below its minimum would place it
    assert any(p.startswith("overlap:") for p in layout_problems(row))


def test_the_geometry_check_finds_a_form_cut_off_at_the_right_of_its_scroll_area(qtbot):
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QScrollArea

    form = QWidget()
    QFormLayout(form).addRow("A rather long label", QLineEdit("and a field beside it"))
    sc = QScrollArea()
    sc.setWidgetResizable(True)
    sc.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
    sc.setWidget(form)
    qtbot.addWidget(sc)
    sc.resize(120, 200)
    sc.show()
    qtbot.waitExposed(sc)
    assert any(p.startswith("cut:") for p in layout_problems(sc))


# -- the main window --------------------------------------------------------------------------------
def test_the_main_window_fits_a_1366x768_screen_less_a_taskbar(main_window):
    hint, least = main_window.minimumSizeHint(), main_window.minimumSize()
    for s in (hint, least):
        assert s.width() <= 1366 and s.height() <= 720, f"minimum {s.width()}x{s.height()} does not fit 1366x720"
    main_window.resize(1366, 720)
    assert (main_window.width(), main_window.height()) == (1366, 720)


def _states(panel):
    """The panel as it opens, then each tab of each tab widget in it."""
    yield None, 0
    for tabs in panel.findChildren(QTabWidget):
        for i in range(tabs.count()):
            yield tabs, i


@pytest.mark.parametrize("size", SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
def test_every_panel_and_tab_fits_without_clipping_overlap_or_scrolling(demo_window, qtbot, tmp_path, size):
    from app.views.main_window import PANELS

    win = demo_window
    win.resize(*size)
    qtbot.waitUntil(lambda: (win.width(), win.height()) == size, timeout=2000)
    shots = _shots(tmp_path)
    seen = []
    for key, _title, _text in PANELS:
        page = win.stack.widget([k for k, _, _ in PANELS].index(key))
        win.show_panel(key)
        for tabs, i in _states(win.panels[key]):
            if tabs is not None:
                tabs.setCurrentIndex(i)
            qtbot.wait(30)
            name = key + (f"-{tabs.tabText(i)}" if tabs is not None else "")
            assert win.grab().save(str(shots / f"{name.replace(' ', '_')}_{size[0]}x{size[1]}.png"))
            problems = layout_problems(win)
            assert problems == [], f"{name} at {size[0]}x{size[1]}:\n" + "\n".join(problems)
            # the panel fits the window: the page's own scroll bars (the fallback on small screens) stay off
            assert not page.verticalScrollBar().isVisible(), f"{name} scrolls vertically at {size}"
            assert not page.horizontalScrollBar().isVisible(), f"{name} scrolls horizontally at {size}"
            seen.append(name)
        for tabs in win.panels[key].findChildren(QTabWidget):
            tabs.setCurrentIndex(0)
    assert {"reconstruct-CT", "audit-Evaluation metrics", "study-Results"} <= set(seen)


def test_a_panel_larger_than_a_small_window_scrolls_instead_of_being_squeezed(demo_window, qtbot):
    win = demo_window
    win.resize(win.minimumSize())
    page = win.stack.widget(3)
    panel = win.show_panel("reconstruct")
    qtbot.waitUntil(lambda: page.verticalScrollBar().isVisible() or page.horizontalScrollBar().isVisible(),
                    timeout=2000)
    assert panel.width() >= panel.minimumSizeHint().width() and panel.height() >= panel.minimumSizeHint().height()
    assert layout_problems(panel) == []


def test_a_long_audit_verdict_wraps_in_its_banner_instead_of_losing_its_end(demo_window, qtbot):
    win = demo_window
    win.resize(1366, 768)
    panel = win.show_panel("audit")
    text = ("FAILED — 7 of 40 generated images are closer to a training image than the calibrated threshold "
            "allows (17.5 % flagged, 0.0 % allowed); see the flagged pairs below")
    panel.verdict.set(False, text)
    qtbot.waitUntil(lambda: panel.verdict.height() >= panel.verdict.heightForWidth(panel.verdict.width()), timeout=3000)
    assert panel.verdict.text() == text
    assert layout_problems(win) == []


def test_legends_stand_beside_the_data_never_over_a_curve(demo_window, qtbot):
    from app.views.widgets.distance_histogram import DistanceHistogram
    from app.views.widgets.plots import CurvePlot

    plot = CurvePlot("loss")
    hist = DistanceHistogram()
    for w in (plot, hist):
        qtbot.addWidget(w)
        w.resize(600, 300)
        w.show()
    plot.add_points([("train/loss", i, 1.0 / (i + 1)) for i in range(50)] + [("val/loss", i, 0.5) for i in range(50)])
    qtbot.waitUntil(lambda: len(plot.legend.items) == 2, timeout=3000)
    for item, legend in ((plot.plot.getPlotItem(), plot.legend), (hist.plot.getPlotItem(), hist.legend)):
        qtbot.wait(30)
        vb = item.vb.sceneBoundingRect()
        box = legend.sceneBoundingRect()
        assert box.width() > 20 and box.height() > 10, "the legend is shown"
        assert box.left() >= vb.right() - 1, f"legend {box} over the data area {vb}"  # 1 px: rounding


# -- first start: every panel says what to do next ---------------------------------------------------
def _bar(win, key):
    return win.next_steps[key]


def test_an_empty_workspace_offers_the_demo_dataset_and_its_button_makes_it(main_window, qtbot):
    bar = _bar(main_window, "datasets")
    main_window.show_panel("datasets")
    assert bar.isVisible() and bar.button.text() == "Make the demo dataset"
    bar.button.click()
    h = main_window.demo_handle
    assert h is not None and h.kind == "demo"
    qtbot.waitUntil(lambda: h.state == "done", timeout=60000)
    qtbot.waitUntil(lambda: not bar.isVisible(), timeout=5000)
    assert main_window.workspace.has_dataset("demo-phantoms")


def test_generation_without_a_model_trains_the_quick_demo_model_at_one_click(demo_window, qtbot):
    win = demo_window
    win.show_panel("generate")
    bar = _bar(win, "generate")
    assert bar.isVisible() and bar.button.text() == "Train the quick demo model"
    for key in ("train", "audit"):  # the same next step where a trained model is what is missing
        assert _bar(win, key).step is not None and _bar(win, key).step.action == "train_demo"
    bar.button.click()
    train = win.panels["train"]
    assert win.stack.currentWidget().panel is train, "the Training panel is shown with the run"
    h = train.handle
    assert h is not None and h.kind == "train"
    assert h.spec.dataset == "demo-phantoms" and h.spec.image_size == 32 and h.spec.epochs == 5  # cpu-quickstart
    # while it trains, Generation says so and points to Training instead
    qtbot.waitUntil(lambda: _bar(win, "generate").step.action == "show_train", timeout=10000)
    h.cancel()
    qtbot.waitUntil(lambda: h.is_final, timeout=60000)


def test_reconstruction_loads_a_demo_slice_from_its_strip(demo_window, qtbot):
    win = demo_window
    mri = win.show_panel("reconstruct").mri
    bar = _bar(win, "reconstruct")
    assert mri.source is None and bar.isVisible() and bar.button.text() == "Load a demo slice"
    bar.button.click()
    qtbot.waitUntil(lambda: mri.source is not None and mri.preview is not None, timeout=20000)
    assert mri.form.source_kind.currentData() == "dataset" and mri.source["measured_mask"] is None
    qtbot.waitUntil(lambda: not bar.isVisible(), timeout=5000)
    assert mri.form.run_button.isEnabled(), "zero-filled and CS-TV are ready to run"


def test_the_first_visit_to_reconstruction_on_the_demo_workspace_has_the_slice_ready(qtbot, workspace, themed):
    from app.engine.data.demo import write_demo_dataset
    from app.engine.specs.data import DemoSpec
    from app.views.main_window import MainWindow

    write_demo_dataset(workspace, DemoSpec(n_images=16))
    win = MainWindow(workspace=workspace.root, error_mode="record")  # as the app opens (first-start demo on)
    qtbot.addWidget(win)
    win.show()
    mri = win.show_panel("reconstruct").mri
    qtbot.waitUntil(lambda: mri.source is not None, timeout=20000)
    win.jobs.cancel_all()
    win.jobs.wait_all(30000)
    win.close()


def test_audit_and_study_without_a_generated_set_point_to_generation(demo_window, qtbot):
    from app.views.first_steps import WorkspaceState, next_step

    win = demo_window
    trained = WorkspaceState(datasets=["demo-phantoms"], trained_runs=1)
    assert next_step("audit", trained).action == "show_generate"
    assert next_step("generate", trained) is None
    bar = _bar(win, "study")
    win.show_panel("study")
    assert bar.isVisible() and bar.button.text() == "Go to Generation"
    bar.button.click()
    assert win.stack.currentWidget().panel is win.panels["generate"]
    done = WorkspaceState(datasets=["demo-phantoms"], synthetic=["gen-1"], trained_runs=1, studies=1)
    assert all(next_step(k, done) is None for k in ("datasets", "generate", "audit", "study"))


# -- Help > User guide -------------------------------------------------------------------------------
def test_help_opens_the_user_guide_at_the_page_of_the_panel_in_view(main_window, qtbot, tmp_path):
    from PySide6.QtCore import QUrl
    from PySide6.QtGui import QAction, QTextDocument

    action = next(a for a in main_window.findChildren(QAction) if a.text() == "&User guide")
    assert action.shortcut().toString() == "F1"
    main_window.show_panel("reconstruct")
    action.trigger()
    guide = main_window.guide_window
    assert guide.isVisible() and not guide.isModal()
    assert guide.browser.source().toLocalFile().endswith("docs/guide/reconstruction.md")
    text = guide.browser.toPlainText()
    assert "Reconstruction" in text and "Load a demo slice" in text
    shot = guide.browser.source().resolved(QUrl("img/reconstruct.png"))
    image = guide.browser.document().resource(QTextDocument.ImageResource, shot)
    assert image is not None and not image.isNull(), "the page's screenshot is loaded"
    guide.home_button.click()
    assert guide.browser.source().toLocalFile().endswith("docs/guide/index.md")
    assert guide.grab().save(str(_shots(tmp_path) / "guide.png"))
    guide.close()


def test_the_guide_has_a_page_per_panel_whose_links_and_screenshots_exist():
    import re

    from app.views.guide import GUIDE_DIR, PANEL_PAGES
    from app.views.main_window import PANELS

    assert set(PANEL_PAGES) == {k for k, _, _ in PANELS}
    for page in ["index.md", *PANEL_PAGES.values()]:
        text = (GUIDE_DIR / page).read_text()
        for target in re.findall(r"\]\(([^)#]+)\)", text):
            assert (GUIDE_DIR / target).is_file(), f"{page} links to {target}, which is missing"
    for page in PANEL_PAGES.values():
        assert re.search(r"!\[[^]]*\]\(img/[\w-]+\.png\)", (GUIDE_DIR / page).read_text()), f"{page} has no screenshot"
    # the packaged Studio carries the guide where app/views/guide.py looks for it
    spec = (ROOT / "packaging" / "studio" / "radsynth-studio.spec").read_text()
    assert '(str(ROOT / "docs" / "guide"), "docs/guide")' in spec


def test_without_a_guide_help_says_where_it_looked(main_window, monkeypatch, tmp_path):
    monkeypatch.setenv("RADSYNTH_GUIDE", str(tmp_path / "nowhere"))
    assert main_window.show_guide() is None
    assert "not installed" in main_window.statusBar().currentMessage()
    assert str(tmp_path / "nowhere") in main_window.statusBar().currentMessage()
