"""ComparisonGrid: reference, each method's result, its error map and uncertainty in linked views.

Used by the Reconstruction panel (MRI and CT). It is fed with the engine's image events as they
come (names as the recon / ct-recon jobs emit them: ``reference``, ``<method>``,
``<method> error``, ``<method> uncertainty``) and draws::

    row 0   Reference      | method A       | method B ...     (grey, one shared window)
    row 1   Flicker A ⇄ B  | A error        | B error ...      (inferno + colour bar, one shared window)
    row 2                  | A uncertainty  | ...              (only when a method has one)

Without a fully sampled reference (k-space undersampled at acquisition; ``set_reference_expected(False)``)
there is nothing to compare against: the reference view and the error row are hidden, the flicker
view takes the reference's place and a line says why there are no error maps.

Zoom and pan move together in every view. Window / level moves together within a row kind:
images share one window, error maps share another (|error| is on another scale than the image),
uncertainty maps a third. The flicker view (a radiologist compares by flicking) shows result A or B
in the images' window; ``flick()`` swaps them and a timer can do so every ``interval_ms``.

    grid = ComparisonGrid()
    grid.on_image(name, array, kind)      # route an engine image event
    grid.set_result(method, image=None, error=None, std=None)
    grid.views -> {"reference": ImageView, method: ImageView, ...}
    grid.error_views / grid.std_views -> {method: ImageView}
    grid.arrays() -> {"reference": ..., "<m>": ..., "<m>_error": ..., "<m>_std": ...}
    grid.set_flicker(a, b); grid.flick(); grid.set_flicker_running(on)
    grid.set_reference_expected(False)    # measured k-space: no reference view, no error row
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QTimer, Signal
from PySide6.QtWidgets import QGridLayout, QLabel, QSizePolicy, QWidget

from app.views.widgets.image_view import ImageView

ERROR_CMAP = "inferno"
STD_CMAP = "viridis"


class ComparisonGrid(QWidget):
    """See the module docstring."""

    changed = Signal()  # a view was added or an image set

    def __init__(self, parent=None):
        super().__init__(parent)
        self.methods: list[str] = []
        self.views: dict[str, ImageView] = {}
        self.error_views: dict[str, ImageView] = {}
        self.std_views: dict[str, ImageView] = {}
        self._arrays: dict[str, np.ndarray] = {}
        self._range_busy = False
        self._lay = QGridLayout(self)
        self._lay.setContentsMargins(0, 0, 0, 0)
        self._lay.setSpacing(4)
        self.reference = self._make_view("Reference", None)
        self.views["reference"] = self.reference
        self._lay.addWidget(self.reference, 0, 0)
        self.flicker = self._make_view("Flicker", None)
        self.flicker.setObjectName("flickerView")
        self.flicker.setToolTip("Flips between two results in one view (choose them above; F or the button flips)")
        self.reference.link(self.flicker)
        self._lay.addWidget(self.flicker, 1, 0)
        self.flicker_pair: tuple[str, str] | None = None
        self.flicker_showing: str | None = None
        self.flicks = 0
        self._flick_timer = QTimer(self)
        self._flick_timer.setInterval(700)
        self._flick_timer.timeout.connect(self.flick)
        self.empty_hint = QLabel("Run a reconstruction: the reference, each result, its error map and\n"
                                 "uncertainty appear here, linked (zoom, pan and window move together).")
        self.empty_hint.setProperty("role", "hint")
        self._lay.addWidget(self.empty_hint, 0, 1)
        self.no_reference_hint = QLabel("No fully sampled reference (this k-space was undersampled when it was "
                                        "acquired): no error maps and no metrics. The flicker view compares two "
                                        "results.")
        self.no_reference_hint.setProperty("role", "hint")
        self.no_reference_hint.setWordWrap(True)
        self.no_reference_hint.hide()
        self._lay.addWidget(self.no_reference_hint, 1, 1, 1, -1)
        self.reference_expected = True
        self._lay.setRowStretch(0, 1)
        self._lay.setRowStretch(1, 1)

    def set_reference_expected(self, expected: bool) -> None:
        """Show (True, the default) or hide the reference view and the error row; see the module docstring."""
        expected = bool(expected)
        if expected == self.reference_expected:
            return
        self.reference_expected = expected
        self._lay.removeWidget(self.flicker)
        self._lay.addWidget(self.flicker, 1 if expected else 0, 0)
        self.reference.setVisible(expected)
        for e in self.error_views.values():
            e.setVisible(expected)
        self.no_reference_hint.setVisible(not expected)
        self._lay.setRowStretch(1, 1 if expected else 0)
        self.changed.emit()

    # -- building -------------------------------------------------------------------------------
    def _make_view(self, title: str, cmap: str | None) -> ImageView:
        v = ImageView(title=title, colormap=cmap)
        v.setMinimumSize(120, 110)  # small enough that the grid fits a 1366x768 screen beside the form
        v.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Expanding)
        v.vb.sigRangeChanged.connect(lambda *_a, src=v: self._sync_range(src))
        return v

    def _sync_range(self, src: ImageView) -> None:
        """Zoom / pan across the three link groups (each group already shares it internally)."""
        if self._range_busy:
            return
        self._range_busy = True
        try:
            rect = src.target_rect()
            for group in (self.reference, next(iter(self.error_views.values()), None),
                          next(iter(self.std_views.values()), None)):
                if group is not None and group._group is not src._group:
                    group.vb.setRange(rect, padding=0.0)
        finally:
            self._range_busy = False

    def ensure_method(self, method: str) -> ImageView:
        if method in self.views:
            return self.views[method]
        self.empty_hint.hide()
        col = len(self.methods) + 1
        self.methods.append(method)
        v = self._make_view(method, None)
        v.setObjectName(f"result:{method}")
        self.reference.link(v)
        self.views[method] = v
        self._lay.addWidget(v, 0, col)
        e = self._make_view(f"{method} |error|", ERROR_CMAP)
        e.setObjectName(f"error:{method}")
        if self.error_views:
            next(iter(self.error_views.values())).link(e)
        self.error_views[method] = e
        self._lay.addWidget(e, 1, col)
        e.setVisible(self.reference_expected)
        e.vb.setRange(self.reference.target_rect(), padding=0.0)
        self._lay.setColumnStretch(col, 1)
        self._lay.setColumnStretch(0, 1)
        self.changed.emit()
        return v

    def ensure_std(self, method: str) -> ImageView:
        self.ensure_method(method)
        if method in self.std_views:
            return self.std_views[method]
        s = self._make_view(f"{method} uncertainty (std)", STD_CMAP)
        s.setObjectName(f"std:{method}")
        if self.std_views:
            next(iter(self.std_views.values())).link(s)
        self.std_views[method] = s
        self._lay.addWidget(s, 2, self.methods.index(method) + 1)
        self._lay.setRowStretch(2, 1)
        s.vb.setRange(self.reference.target_rect(), padding=0.0)
        self.changed.emit()
        return s

    def clear(self) -> None:
        """Remove every method column (the reference view stays, emptied)."""
        self._flick_timer.stop()
        for d in (self.views, self.error_views, self.std_views):
            for k, v in list(d.items()):
                if v is self.reference:
                    continue
                v.unlink()
                self._lay.removeWidget(v)
                v.setParent(None)
                v.deleteLater()
                del d[k]
        self.methods.clear()
        self._arrays.clear()
        self.reference.clear()
        self.flicker.clear()
        self.flicker_pair = None
        self.flicker_showing = None
        self.empty_hint.show()

    # -- data -----------------------------------------------------------------------------------
    def on_image(self, name: str, array, kind: str = "image") -> bool:
        """Route one engine image event; returns True when it was shown."""
        arr = np.asarray(array)
        if arr.ndim == 3 and arr.shape[0] == 1:
            arr = arr[0]
        if arr.ndim != 2:
            return False
        if name == "reference":
            self.set_reference(arr)
            return True
        if name.endswith(" error"):
            self.set_result(name[: -len(" error")], error=arr)
            return True
        if name.endswith(" uncertainty"):
            self.set_result(name[: -len(" uncertainty")], std=arr)
            return True
        if kind == "image" and " " not in name and name not in ("kspace", "mask", "sinogram", "noisy"):
            self.set_result(name, image=arr)
            return True
        return False

    def set_reference(self, arr) -> None:
        arr = np.abs(np.asarray(arr)).astype(np.float32)
        self._arrays["reference"] = arr
        first = self.reference.image() is None or self.reference.image().shape != arr.shape
        self.reference.set_image(arr, autolevel=first)
        if first:  # the reference sets the window every result is read in (0 .. its max)
            self.reference.set_levels(0.0, float(np.percentile(arr, 99.5)) or 1.0)
        self.changed.emit()

    def set_result(self, method: str, image=None, error=None, std=None) -> None:
        v = self.ensure_method(method)
        if image is not None:
            img = np.abs(np.asarray(image)).astype(np.float32)
            self._arrays[method] = img
            v.set_image(img, levels=self.reference.levels() if self.reference.image() is not None else None)
            if self.flicker_pair is None and len([m for m in self.methods if m in self._arrays]) >= 2:
                a, b = [m for m in self.methods if m in self._arrays][:2]
                self.set_flicker(a, b)
            elif self.flicker_pair and self.flicker_showing == method:
                self.flicker.set_image(img, levels=self.reference.levels())
        if error is not None:
            err = np.asarray(error, np.float32)
            self._arrays[f"{method}_error"] = err
            e = self.error_views[method]
            e.set_image(err, autolevel=False)
            self._error_window()
        if std is not None:
            s = np.asarray(std, np.float32)
            self._arrays[f"{method}_std"] = s
            sv = self.ensure_std(method)
            sv.set_image(s, autolevel=False)
            sv.set_levels(0.0, max(float(np.percentile(s, 99.5)), 1e-12))
        self.changed.emit()

    def _error_window(self) -> None:
        """One window for all error maps: 0 .. the 99.5th percentile of the largest error."""
        errs = [self._arrays[f"{m}_error"] for m in self.methods if f"{m}_error" in self._arrays]
        if errs:
            hi = max(float(np.percentile(e, 99.5)) for e in errs) or 1e-6
            next(iter(self.error_views.values())).set_levels(0.0, hi)

    def arrays(self) -> dict[str, np.ndarray]:
        return dict(self._arrays)

    # -- flicker --------------------------------------------------------------------------------
    def set_flicker(self, a: str, b: str) -> None:
        self.flicker_pair = (a, b)
        self.flicker_showing = None
        self.flick()

    def flick(self) -> str | None:
        """Show the other image of the pair in the flicker view; returns the name now shown."""
        if not self.flicker_pair:
            return None
        a, b = self.flicker_pair
        nxt = b if self.flicker_showing == a else a
        img = self._arrays.get(nxt)
        if img is None:
            return self.flicker_showing
        self.flicker_showing = nxt
        self.flicker._title = f"Flicker: {nxt}   ({a} ⇄ {b})"
        self.flicker.set_image(img, levels=self.reference.levels() if self.reference.image() is not None else None)
        self.flicks += 1
        return nxt

    def set_flicker_running(self, on: bool, interval_ms: int | None = None) -> None:
        if interval_ms:
            self._flick_timer.setInterval(int(interval_ms))
        if on:
            self._flick_timer.start()
        else:
            self._flick_timer.stop()
