"""Shared widgets: the radiology image view, linked views, the spec form, plots and thumbnails."""

from __future__ import annotations

from typing import Literal

import numpy as np
import pytest
from pydantic import Field

from app.engine.jobs import Spec


def _phantom(n=64):
    yy, xx = np.mgrid[:n, :n]
    return np.where((yy - n / 2) ** 2 + (xx - n / 2) ** 2 < (n / 3) ** 2, 1.0, -1.0).astype(np.float32) + \
        0.01 * xx.astype(np.float32)


def _drag(qtbot, view, button, dx, dy):
    from PySide6.QtCore import QPoint, Qt
    from PySide6.QtGui import QMouseEvent
    from PySide6.QtWidgets import QApplication

    vp = view.graphics.viewport()
    start = vp.rect().center()
    QApplication.sendEvent(vp, QMouseEvent(QMouseEvent.MouseButtonPress, start, vp.mapToGlobal(start), button,
                                           button, Qt.NoModifier))
    for k in range(1, 6):
        p = start + QPoint(dx * k // 5, dy * k // 5)
        QApplication.sendEvent(vp, QMouseEvent(QMouseEvent.MouseMove, p, vp.mapToGlobal(p), Qt.NoButton, button,
                                               Qt.NoModifier))
    end = start + QPoint(dx, dy)
    QApplication.sendEvent(vp, QMouseEvent(QMouseEvent.MouseButtonRelease, end, vp.mapToGlobal(end), button,
                                           Qt.NoButton, Qt.NoModifier))


@pytest.fixture
def view(qtbot):
    from app.views.widgets.image_view import ImageView

    v = ImageView(title="T1")
    qtbot.addWidget(v)
    v.resize(300, 300)
    v.show()
    qtbot.waitExposed(v)
    return v


def test_image_view_shows_row_major_images_with_row_zero_at_the_top_and_locked_aspect(view):
    img = np.zeros((40, 80), np.float32)
    img[0, :] = 1.0  # top row bright
    view.set_image(img)
    assert view.item.image.shape == (40, 80)  # rows x columns, not transposed
    assert view.vb.state["yInverted"] and view.vb.state["aspectLocked"]
    assert "80×40" in view.info.text()


def test_right_drag_widens_the_window_and_shows_the_new_width_and_centre(view, qtbot):
    from PySide6.QtCore import Qt

    view.set_image(_phantom())
    view.set_levels(-0.5, 0.5)
    _drag(qtbot, view, Qt.RightButton, 80, 0)
    lo, hi = view.levels()
    assert hi - lo > 1.0 + 0.1  # wider window
    assert abs((hi + lo) / 2) < 0.05  # centre unchanged by a horizontal drag
    assert f"W {hi - lo:.3g}" in view.info.text()
    qtbot.wait(50)
    _drag(qtbot, view, Qt.MiddleButton, 0, -60)  # dragging up raises the centre
    lo2, hi2 = view.levels()
    assert (hi2 + lo2) / 2 > (hi + lo) / 2 + 0.1


def test_the_pixel_value_under_the_cursor_is_shown_with_its_row_and_column(view, qtbot):
    img = np.arange(16 * 16, dtype=np.float32).reshape(16, 16)
    view.set_image(img)
    got = []
    view.hovered.connect(lambda r, c, v: got.append((r, c, v)))
    scene_pt = view.vb.mapViewToScene(__import__("PySide6.QtCore", fromlist=["QPointF"]).QPointF(5.5, 3.5))
    view._on_mouse_moved(scene_pt)
    assert got[-1] == (3, 5, float(img[3, 5]))
    assert "(r 3, c 5) = 53" in view.info.text()


def test_linked_views_share_window_and_zoom_both_ways_without_looping(qtbot):
    from app.views.widgets.image_view import ImageView

    a, b, c = ImageView(), ImageView(), ImageView()
    for v in (a, b, c):
        qtbot.addWidget(v)
        v.resize(200, 200)
        v.show()
        v.set_image(_phantom())
    a.link(b)
    c.link(b)  # transitive: a, b, c in one group
    a.set_levels(-0.2, 0.3)
    assert b.levels() == c.levels() == (-0.2, 0.3)
    c.set_levels(0.0, 1.0)  # and the other way
    assert a.levels() == (0.0, 1.0)
    b.vb.setRange(xRange=(10, 20), yRange=(10, 20), padding=0)
    for v in (a, c):
        (x0, x1), _ = v.vb.viewRange()
        assert abs(x0 - 10) < 1.5 and abs(x1 - 20) < 1.5 or (x1 - x0) < 25
    c.unlink()
    a.set_levels(-1, 1)
    assert c.levels() == (0.0, 1.0) and b.levels() == (-1.0, 1.0)


def test_a_colour_map_adds_a_colour_bar_that_follows_the_window(view):
    view.set_image(np.random.default_rng(0).random((32, 32)).astype(np.float32))
    view.set_colormap("inferno")
    view.set_levels(0.1, 0.7)
    assert view._colorbar is not None and tuple(view._colorbar.levels()) == pytest.approx((0.1, 0.7))
    view.set_colormap(None)
    assert view._colorbar is None


class FormSpec(Spec):
    kind: Literal["formtest"] = "formtest"
    dataset: str = Field("demo", description="dataset name")
    process: Literal["ncsn", "ddpm", "vpsde"] = Field("ddpm", description="noise process")
    steps: int = Field(100, ge=1, le=1000, description="training steps")
    lr: float = Field(2e-4, gt=0, le=1.0, description="learning rate")
    dropout: float = Field(0.1, ge=0, le=0.9, description="dropout")
    ema: bool = Field(True, description="keep an EMA")
    max_steps: int | None = Field(None, ge=1, description="stop after this many steps")
    channels: list[int] = Field(default_factory=lambda: [32, 64], description="widths")
    phase: bool | None = Field(None, description="on, off, or the field's default")


def test_spec_form_builds_one_widget_per_field_from_the_spec(qtbot):
    from PySide6.QtWidgets import QCheckBox, QComboBox, QDoubleSpinBox, QLineEdit, QSpinBox

    from app.views.widgets.spec_form import SpecForm

    form = SpecForm(FormSpec, choices={"dataset": ["demo", "brain"]})
    qtbot.addWidget(form)
    w = {n: e.widget for n, e in form.editors.items()}
    assert isinstance(w["process"], QComboBox) and [w["process"].itemText(i) for i in range(3)] == ["ncsn", "ddpm", "vpsde"]
    assert isinstance(w["steps"], QSpinBox) and (w["steps"].minimum(), w["steps"].maximum()) == (1, 1000)
    assert isinstance(w["dropout"], QDoubleSpinBox) and w["dropout"].maximum() == 0.9
    assert isinstance(w["lr"], QLineEdit) and float(w["lr"].text()) == 2e-4
    assert isinstance(w["ema"], QCheckBox) and w["ema"].isChecked()
    assert isinstance(w["dataset"], QComboBox)
    assert isinstance(w["phase"], QComboBox) and [w["phase"].itemText(i) for i in range(3)] == ["(default)", "on", "off"]
    assert w["steps"].toolTip().startswith("training steps")
    assert form.spec() == FormSpec()


def test_spec_form_shows_pydantic_errors_next_to_the_field_and_no_spec_until_fixed(qtbot):
    from app.views.widgets.spec_form import SpecForm

    form = SpecForm(FormSpec)
    qtbot.addWidget(form)
    form.show()
    seen = []
    form.validity_changed.connect(seen.append)
    form.editors["lr"].widget.setText("-3")
    assert form.spec() is None and "greater than 0" in form.errors["lr"]
    assert form.editors["lr"].error.isVisible()
    form.editors["max_steps"].widget.setText("abc")
    assert form.errors["max_steps"] == "enter a whole number"
    form.editors["lr"].widget.setText("1e-3")
    form.editors["max_steps"].widget.setText("")
    spec = form.spec()
    assert spec is not None and spec.lr == 1e-3 and spec.max_steps is None
    assert not form.editors["lr"].error.isVisible()
    assert seen == [False, True]


def test_spec_form_round_trips_a_spec(qtbot):
    from app.views.widgets.spec_form import SpecForm

    form = SpecForm(FormSpec)
    qtbot.addWidget(form)
    spec = FormSpec(process="vpsde", steps=7, lr=5e-5, ema=False, max_steps=3, channels=[8, 16, 32])
    form.set_spec(spec)
    assert form.spec() == spec
    for phase in (False, True, None):  # an optional bool: off, on and the default all come back
        form.set_spec(spec.model_copy(update={"phase": phase}))
        assert form.spec().phase is phase


def test_curve_plot_keeps_one_curve_per_name_and_appends_batches(qtbot):
    from app.views.widgets.plots import CurvePlot

    p = CurvePlot(accept=lambda n: n.startswith("loss"))
    qtbot.addWidget(p)
    p.add_points([("loss", 1, 1.0), ("loss", 2, 0.5), ("lr", 1, 1e-4)])
    p.add_points([("loss", 3, 0.25), ("loss/val", 3, 0.4)])
    assert p.points("loss") == 3 and p.points("loss/val") == 1 and "lr" not in p.series
    item = p.series["loss"].item
    p.add_points([("loss", 4, 0.2)])
    assert p.series["loss"].item is item  # created once, updated with setData
    p.set_log_y(True)
    assert p.plot.getPlotItem().ctrl.logYCheck.isChecked()


def test_thumbnail_grid_lists_images_and_reports_the_selection(qtbot):
    from app.views.widgets.thumbnails import ThumbnailGrid

    g = ThumbnailGrid()
    qtbot.addWidget(g)
    g.set_images(np.stack([_phantom(16)] * 5)[:, None], labels=[f"#{i}" for i in range(5)], keys=[10, 11, 12, 13, 14])
    assert g.count() == 5
    got = []
    g.selection.connect(got.append)
    g.item(3).setSelected(True)
    assert got[-1] == [13]


def test_comparison_grid_without_a_reference_keeps_every_result_filling_its_view(qtbot):
    # measured k-space has no reference: 3 results, their error and uncertainty maps, in views of
    # different shapes, linked with the aspect ratio locked; none may shrink to a dot
    from app.views.widgets.comparison_grid import ComparisonGrid

    grid = ComparisonGrid()
    qtbot.addWidget(grid)
    grid.resize(1200, 700)
    grid.show()
    qtbot.waitExposed(grid)
    img = np.random.default_rng(0).random((180, 230)).astype(np.float32)
    for method in ("zero-filled", "cs-tv", "score-dds"):
        grid.set_result(method, image=img)
        qtbot.wait(10)
        grid.set_result(method, error=img)
    grid.set_result("score-dds", std=img)
    grid.resize(1500, 900)
    qtbot.wait(100)
    views = [*grid.views.values(), *grid.error_views.values(), *grid.std_views.values()]
    assert len(views) == 8
    for v in views:
        (x0, x1), (y0, y1) = v.vb.viewRange()
        # the locked aspect widens one axis; the other fits the 230 x 180 image
        assert min((x1 - x0) / 230, (y1 - y0) / 180) < 1.05, (v.objectName(), v.vb.viewRange())


def test_the_jobs_dock_names_a_job_without_workspace_paths():
    from app.views.widgets.jobs_dock import job_summary

    ckpt = "/home/me/RadSynth/workspace/runs/ddpm-20261204-1dd6/checkpoints/epoch-0003"
    assert job_summary("sample", {"sampler": "ddim", "run": ckpt}) == "sample: ddim · ddpm-20261204-1dd6 epoch-0003"
    assert job_summary("sample", {"sampler": "ddim", "run": "ddpm-1"}) == "sample: ddim · ddpm-1"
    assert job_summary("ingest", {"source": "/data/scans/brain"}) == "ingest: brain"
