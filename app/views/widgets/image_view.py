"""ImageView: the one image display of the app, with radiology reading conventions.

Grey scale by default; window / level by dragging with the right (or middle) mouse button
(horizontal: window width, vertical: window centre, as on a PACS workstation) with the values
shown; wheel zoom and left-drag pan; the pixel value and (row, column) under the cursor; aspect
ratio locked; row 0 at the top (row-major, as DICOM stores pixels). ``R`` or a double click
resets zoom and window.

Public API (small on purpose; the reconstruction, audit and study panels use it)::

    view = ImageView(title="", colormap=None)
    view.set_image(array, levels=None, autolevel=None)  # (H, W) float/uint8, or (H, W, 3) RGB
    view.set_levels(lo, hi)                # window = [lo, hi]
    view.levels() -> (lo, hi)
    view.auto_levels()                     # 1st..99th percentile of the image
    view.reset_view()                      # fit the image, auto window
    view.set_colormap(name | None)         # e.g. "inferno" for uncertainty / error maps, adds a colour bar
    view.set_unit("HU")                    # the unit of the values (readout and window), "" for none
    view.link(other)                       # share zoom / pan and window / level (symmetric, transitive)
    view.unlink()
    view.clear()
    signals: levels_changed(lo, hi), hovered(row, col, value)

Everything is created once; ``set_image`` only calls ``ImageItem.setImage``.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt, Signal
from PySide6.QtWidgets import QVBoxLayout, QWidget

from app.views.widgets.scroll import ElidedLabel


class _WindowLevelViewBox(pg.ViewBox):
    """A ViewBox where right / middle drag changes the window instead of zooming."""

    def __init__(self, owner: ImageView):
        super().__init__(lockAspect=True, invertY=True, enableMenu=False)
        self._owner = owner
        self._drag_start: tuple[float, float] | None = None

    def mouseDragEvent(self, ev, axis=None):
        if ev.button() in (Qt.MouseButton.RightButton, Qt.MouseButton.MiddleButton):
            ev.accept()
            if ev.isStart():
                self._drag_start = self._owner.levels()
            if self._drag_start is None:
                return
            lo, hi = self._drag_start
            width, centre = hi - lo, (hi + lo) / 2
            span = max(self._owner._data_range, 1e-12)
            d = ev.pos() - ev.buttonDownPos()
            # one screen pixel moves the window by 1/400 of the image's value range
            width = max(width + d.x() * span / 400.0, span * 1e-4)
            centre = centre - d.y() * span / 400.0
            self._owner.set_levels(centre - width / 2, centre + width / 2)
            if ev.isFinish():
                self._drag_start = None
        else:
            super().mouseDragEvent(ev, axis)

    def mouseDoubleClickEvent(self, ev):
        self._owner.reset_view()
        ev.accept()


class _LinkGroup:
    """Views that share zoom / pan and window; ``busy`` stops the echo of a propagated change."""

    def __init__(self, first: ImageView):
        self.members: list[ImageView] = [first]
        self.busy = False


class ImageView(QWidget):
    """See the module docstring."""

    levels_changed = Signal(float, float)
    hovered = Signal(int, int, float)

    def __init__(self, title: str = "", colormap: str | None = None, parent=None, show_info: bool = True):
        super().__init__(parent)
        self._image: np.ndarray | None = None
        self._levels: tuple[float, float] = (0.0, 1.0)
        self._data_range = 1.0
        self._title = title
        self._group = _LinkGroup(self)
        self._colorbar = None
        self._cmap_name: str | None = None
        self._hover_text = ""
        self._hover_at: tuple[int, int] | None = None  # (row, col) under the cursor
        self._unit = ""

        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(2)
        self.graphics = pg.GraphicsLayoutWidget()
        self.graphics.setBackground((12, 12, 12))
        self.graphics.ci.layout.setContentsMargins(0, 0, 0, 0)
        self.vb = _WindowLevelViewBox(self)
        self.graphics.addItem(self.vb, row=0, col=0)
        self.item = pg.ImageItem(axisOrder="row-major")
        self.vb.addItem(self.item)
        self.vb.sigRangeChanged.connect(self._on_range_changed)
        self.graphics.scene().sigMouseMoved.connect(self._on_mouse_moved)
        lay.addWidget(self.graphics, 1)
        self.info = ElidedLabel("")  # title · size · window: "…" where the view is narrow, never cut mid-word
        self.info.setObjectName("imageInfo")
        self.info.setProperty("role", "hint")
        self.info.setVisible(show_info)
        lay.addWidget(self.info)
        self.setFocusPolicy(Qt.StrongFocus)
        self.set_colormap(colormap)
        self._update_info()

    # -- images and window ------------------------------------------------------------------
    def set_image(self, array, levels: tuple[float, float] | None = None, autolevel: bool | None = None) -> None:
        """Show an (H, W) or (H, W, 3) array. The window is kept when the new image has the same
        shape (so a live preview does not flicker), unless ``levels`` or ``autolevel`` say otherwise."""
        arr = np.asarray(array)
        if arr.ndim == 3 and arr.shape[0] == 1:
            arr = arr[0]
        if arr.ndim not in (2, 3):
            raise ValueError(f"ImageView shows (H, W) or (H, W, 3) arrays, got shape {arr.shape}")
        if arr.dtype != np.uint8:
            arr = arr.astype(np.float32, copy=False)
        first = self._image is None or self._image.shape[:2] != arr.shape[:2]
        self._image = arr
        finite = arr[np.isfinite(arr)] if arr.dtype != np.uint8 else arr
        if finite.size:
            self._data_range = float(finite.max() - finite.min()) or 1.0
        self.item.setImage(arr, autoLevels=False)
        if levels is not None:
            self.set_levels(*levels)
        elif autolevel or (autolevel is None and first):
            self.auto_levels()
        else:
            self.item.setLevels(self._levels)
        if first:
            self.vb.autoRange(padding=0.0)
        self._read_hover()  # the readout is of this image, never of the one before
        self._update_info()

    def set_unit(self, unit: str) -> None:
        """The unit of the image's values ("HU"), shown after the readout and the window; "" for none."""
        self._unit = unit
        self._read_hover()
        self._update_info()

    def image(self) -> np.ndarray | None:
        return self._image

    def clear(self) -> None:
        self._image = None
        self.item.clear()
        self._hover_text = ""  # the cursor stays where it is: the next image's pixel there is read
        self._update_info()

    def levels(self) -> tuple[float, float]:
        return self._levels

    def set_levels(self, lo: float, hi: float) -> None:
        lo, hi = float(lo), float(hi)
        if hi <= lo:
            hi = lo + 1e-6
        self._levels = (lo, hi)
        self.item.setLevels((lo, hi))
        if self._colorbar is not None:
            self._colorbar.setLevels((lo, hi))
        self._update_info()
        self.levels_changed.emit(lo, hi)
        self._propagate(lambda other: other._apply_levels(lo, hi))

    def _apply_levels(self, lo: float, hi: float) -> None:
        self._levels = (lo, hi)
        self.item.setLevels((lo, hi))
        if self._colorbar is not None:
            self._colorbar.setLevels((lo, hi))
        self._update_info()
        self.levels_changed.emit(lo, hi)

    def auto_levels(self) -> None:
        """Window to the 1st..99th percentile (robust to a few bright pixels)."""
        if self._image is None:
            return
        arr = self._image
        finite = arr[np.isfinite(arr)] if arr.dtype != np.uint8 else arr.ravel()
        if finite.size == 0:
            return
        lo, hi = np.percentile(finite, [1, 99]) if finite.size > 64 else (finite.min(), finite.max())
        if hi <= lo:
            lo, hi = float(finite.min()), float(finite.max())
        if hi <= lo:
            hi = lo + 1.0
        self.set_levels(float(lo), float(hi))

    def reset_view(self) -> None:
        self.vb.autoRange(padding=0.0)
        self.auto_levels()

    # -- colour maps ---------------------------------------------------------------------------
    def set_colormap(self, name: str | None) -> None:
        """None: grey scale (images). A pyqtgraph colour map name (e.g. "inferno", "viridis",
        "CET-D1" for signed differences): applied with a colour bar (uncertainty / error maps)."""
        if self._colorbar is not None:
            self.graphics.removeItem(self._colorbar)
            self._colorbar = None
        self._cmap_name = name
        if name is None:
            self.item.setLookupTable(None)
            return
        cmap = pg.colormap.get(name)
        self.item.setColorMap(cmap)
        bar = pg.ColorBarItem(colorMap=cmap, interactive=False, width=14, values=self._levels)
        bar.setLevels(self._levels)
        self.graphics.addItem(bar, row=0, col=1)
        self._colorbar = bar

    def colormap(self) -> str | None:
        return self._cmap_name

    # -- linking -------------------------------------------------------------------------------
    def link(self, other: ImageView) -> None:
        """Share zoom / pan and window / level with ``other`` (and everything linked to it)."""
        if other._group is self._group:
            return
        merged = self._group
        for m in other._group.members:
            m._group = merged
            merged.members.append(m)
        other.vb.setRange(self.target_rect(), padding=0.0)
        other._apply_levels(*self._levels)

    def unlink(self) -> None:
        self._group.members.remove(self)
        self._group = _LinkGroup(self)

    def linked(self) -> list[ImageView]:
        return [m for m in self._group.members if m is not self]

    def _propagate(self, fn) -> None:
        group = self._group
        if group.busy or len(group.members) < 2:
            return
        group.busy = True
        try:
            for m in group.members:
                if m is not self:
                    fn(m)
        finally:
            group.busy = False

    def target_rect(self) -> QRectF:
        """The range asked for (zoom / pan), before the locked aspect widens it to this view's shape.

        Linked views share this, not ``viewRect()``: passing on the widened rect would widen it again
        in a view of another shape, and back, until the images shrink to dots (it did, with 7 linked
        views of different shapes in the reconstruction grid)."""
        (x0, x1), (y0, y1) = self.vb.targetRange()
        return QRectF(x0, y0, x1 - x0, y1 - y0)

    def _on_range_changed(self, _vb, _ranges, *args) -> None:
        rect = self.target_rect()
        self._propagate(lambda other: other.vb.setRange(rect, padding=0.0))

    # -- cursor readout ------------------------------------------------------------------------
    def _on_mouse_moved(self, scene_pos) -> None:
        if self._image is None or not self.vb.sceneBoundingRect().contains(scene_pos):
            return
        p = self.vb.mapSceneToView(scene_pos)
        col, row = int(np.floor(p.x())), int(np.floor(p.y()))
        self._hover_at = (row, col)
        value = self._read_hover()
        if value is not None:
            self.hovered.emit(row, col, value)
        self._update_info()

    def _read_hover(self) -> float | None:
        """The readout text of the pixel under the cursor in the image shown now; its value, or None."""
        self._hover_text = ""
        if self._image is None or self._hover_at is None:
            return None
        row, col = self._hover_at
        h, w = self._image.shape[:2]
        if not (0 <= row < h and 0 <= col < w):
            return None
        v = self._image[row, col]
        value = float(np.mean(v)) if np.ndim(v) else float(v)
        self._hover_text = f"(r {row}, c {col}) = {value:.4g}{' ' + self._unit if self._unit else ''}"
        return value

    def _update_info(self) -> None:
        lo, hi = self._levels
        parts = []
        if self._title:
            parts.append(self._title)
        if self._image is not None:
            parts.append(f"{self._image.shape[1]}×{self._image.shape[0]}")
            if self._unit:  # physical units (HU): whole numbers, never 1.5e+03
                parts.append(f"W {hi - lo:.0f} {self._unit}  C {(hi + lo) / 2:.0f} {self._unit}")
            else:
                parts.append(f"W {hi - lo:.3g}  C {(hi + lo) / 2:.3g}")
        if self._hover_text:
            parts.append(self._hover_text)
        self.info.setText("   ".join(parts))

    def keyPressEvent(self, ev) -> None:
        if ev.key() == Qt.Key_R:
            self.reset_view()
            ev.accept()
            return
        super().keyPressEvent(ev)
