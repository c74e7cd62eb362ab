"""DistanceHistogram: generated->train and held-out->train nearest-neighbour distances with a draggable threshold.

Two step histograms (densities, so sets of different sizes compare) on shared bins and one
vertical pyqtgraph ``InfiniteLine`` that the user drags. ``threshold_moved(float)`` fires on every
move (the panel recounts the flagged images with the engine's cheap ``privacy.flag`` on the stored
distances); ``set_threshold`` moves the line from code (tests, reset).

    h = DistanceHistogram()
    h.set_data(generated_distances, holdout_distances_or_None, threshold, measure="ncc")
    h.threshold() -> float;  h.set_threshold(x);  signal threshold_moved(float)
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Signal
from PySide6.QtWidgets import QVBoxLayout, QWidget

from app.views.widgets.plots import side_legend

GEN_COLOUR = (240, 150, 70)
HOLD_COLOUR = (90, 160, 240)


class DistanceHistogram(QWidget):
    threshold_moved = Signal(float)

    def __init__(self, parent=None, bins: int = 40):
        super().__init__(parent)
        self.bins = bins
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        self.plot = pg.PlotWidget()
        self.plot.showGrid(x=True, y=True, alpha=0.2)
        self.plot.setLabel("left", "fraction of images")
        self.plot.setLabel("bottom", "distance to the nearest training image (smaller = closer)")
        self.plot.getAxis("left").enableAutoSIPrefix(False)
        self.plot.getAxis("bottom").enableAutoSIPrefix(False)
        self.legend = side_legend(self.plot)  # beside the histograms, never over them
        self.gen_curve = self.plot.plot([0, 1], [0], stepMode="center", fillLevel=0, pen=pg.mkPen(GEN_COLOUR, width=2),
                                        brush=(*GEN_COLOUR, 90), name="generated → train")
        self.hold_curve = self.plot.plot([0, 1], [0], stepMode="center", fillLevel=0, pen=pg.mkPen(HOLD_COLOUR, width=2),
                                         brush=(*HOLD_COLOUR, 70), name="held-out real → train")
        self.line = pg.InfiniteLine(pos=0.0, angle=90, movable=True, pen=pg.mkPen((230, 40, 40), width=2),
                                    hoverPen=pg.mkPen((255, 90, 90), width=3),
                                    label="threshold {value:.4g}",
                                    labelOpts={"position": 0.92, "color": (230, 80, 80), "anchors": [(0, 0), (0, 0)]})
        self.line.setZValue(10)
        self._quiet = False  # set_data moves the line without reporting a drag
        self.line.sigPositionChanged.connect(self._moved)
        self.plot.addItem(self.line)
        lay.addWidget(self.plot)

    def set_data(self, generated, holdout=None, threshold: float | None = None, measure: str = "") -> None:
        g = np.asarray(generated, np.float64)
        g = g[np.isfinite(g)]
        h = np.asarray(holdout, np.float64) if holdout is not None else np.zeros(0)
        h = h[np.isfinite(h)]
        vals = np.concatenate([g, h] + ([[threshold]] if threshold is not None else []))
        lo, hi = (float(vals.min()), float(vals.max())) if vals.size else (0.0, 1.0)
        lo = min(lo, 0.0)
        hi = hi if hi > lo else lo + 1e-3
        edges = np.linspace(lo, hi, self.bins + 1)
        for curve, v in ((self.gen_curve, g), (self.hold_curve, h)):
            counts = np.histogram(v, edges)[0] / max(len(v), 1)
            curve.setData(edges, counts)
        self.hold_curve.setVisible(h.size > 0)
        self.plot.setTitle(f"{measure}: generated n={g.size}, held-out n={h.size}" if measure else None, size="9pt")
        self.plot.setXRange(lo, hi + 0.02 * (hi - lo), padding=0.02)
        self._quiet = True
        try:
            self.line.setValue(float(threshold) if threshold is not None else lo)
        finally:
            self._quiet = False

    def _moved(self, _line) -> None:
        if not self._quiet:
            self.threshold_moved.emit(float(self.line.value()))

    def threshold(self) -> float:
        return float(self.line.value())

    def set_threshold(self, x: float) -> None:
        """Move the line as a drag would (emits threshold_moved)."""
        self.line.setValue(float(x))
