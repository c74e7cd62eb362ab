"""Live plots: a loss-curve plot fed with batches of (name, step, value) scalars, and bar charts.

``CurvePlot`` creates one PlotDataItem per scalar name the first time it sees the name and then
only calls ``setData`` (pyqtgraph's draw-once, update-data pattern), with clip-to-view and auto
down-sampling so a 100 000-point curve stays cheap. A log-scale toggle is built in.

Responsiveness (benchmarks/bench_gui_responsiveness.py): a redraw of a plot is GUI-thread CPU
work that competes with the training thread for the cores and the GIL, so it was where the
event loop stalled. Points are stored at once but the curves are redrawn at most ``max_hz``
times a second, and only horizontal grid lines are drawn: pyqtgraph's translucent vertical grid
lines cost about as much to paint as the rest of the plot together (measured offscreen, 500x330:
17.6 ms CPU per update+repaint with both grids, 9.1 ms with the horizontal one only). The step
axis grows in 1-2-5 steps instead of following every new point, so its ticks and labels are not
regenerated on each redraw (5.7 vs 15.1 ms in the same measurement) until the user zooms or pans;
a log y axis likewise moves between 1-2-5 bounds only when the data leave them.
"""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import QCheckBox, QHBoxLayout, QLabel, QSizePolicy, QVBoxLayout, QWidget

PALETTE = [(90, 160, 240), (240, 150, 70), (120, 200, 120), (220, 100, 200), (230, 220, 90),
           (100, 220, 220), (240, 100, 100), (170, 140, 250)]


class SideLegend(pg.LegendItem):
    """A legend that is a cell of its plot's layout (``side_legend``), not an item over the data.

    pyqtgraph's LegendItem sizes itself with ``setGeometry(0, 0, w, h)``, which would move it to the
    plot's top-left corner; here a change of its rows only tells the plot's layout its new size."""

    def updateSize(self):
        self.layout.invalidate()
        self.updateGeometry()


def side_legend(plot, **kwargs) -> SideLegend:
    """A legend to the right of the plot area (top aligned), outside the data: it never covers a
    curve, whatever the curves do. ``plot`` is a PlotWidget or PlotItem; curves plotted with a
    ``name`` join it (it is the PlotItem's ``legend``)."""
    item = plot.getPlotItem() if hasattr(plot, "getPlotItem") else plot
    kwargs.setdefault("brush", None)
    legend = SideLegend(**kwargs)  # no offset: not anchored inside the view box
    legend.setSizePolicy(QSizePolicy.Preferred, QSizePolicy.Fixed)  # its rows' height, not the plot's
    legend.setParentItem(item)
    item.layout.addItem(legend, 2, 3)
    item.layout.setAlignment(legend, Qt.AlignTop | Qt.AlignLeft)
    item.legend = legend
    return legend


def nice_bounds(lo: float, hi: float) -> tuple[float, float]:
    """The tightest 1-2-5 x 10^k values around [lo, hi] (lo, hi > 0), for a log axis that only
    moves when the data leave it."""
    def floor125(x):
        p = 10.0 ** math.floor(math.log10(x))
        return next(m * p for m in (5, 2, 1) if m * p <= x * (1 + 1e-12))

    a, b = floor125(lo), nice_ceil(hi)
    return (a, b) if b > a else (a, nice_ceil(b * 1.01))


def nice_ceil(x: float) -> float:
    """The smallest 1, 2 or 5 times a power of ten that is >= x (x > 0)."""
    if x <= 0:
        return 1.0
    p = 10.0 ** math.floor(math.log10(x))
    return next(m * p for m in (1, 2, 5, 10) if m * p >= x * (1 - 1e-12))


class LogFriendlyAxis(pg.AxisItem):
    """On a log axis, label only 1, 2 and 5 times a power of ten (the other minor ticks keep their
    lines): pyqtgraph labels every minor tick, which stacks 0.6 0.7 0.8 0.9 1 on top of each other
    near the top of a decade."""

    def tickStrings(self, values, scale, spacing):
        if not self.logMode:
            return super().tickStrings(values, scale, spacing)
        out = []
        for v in values:
            x = 10.0 ** float(v) * scale
            if not np.isfinite(x) or x <= 0:
                out.append("")
                continue
            mant = x / 10.0 ** math.floor(math.log10(x) + 1e-9)
            out.append(f"{x:.3g}" if any(abs(mant - m) < 1e-3 for m in (1, 2, 5)) else "")
        return out


class _Series:
    __slots__ = ("x", "y", "n", "item", "colour")

    def __init__(self, item, colour=None):
        self.colour = colour
        self.x = np.empty(256, np.float64)
        self.y = np.empty(256, np.float64)
        self.n = 0
        self.item = item

    def extend(self, xs, ys) -> None:
        k = len(xs)
        if self.n + k > len(self.x):
            cap = max(len(self.x) * 2, self.n + k)
            self.x = np.resize(self.x, cap)
            self.y = np.resize(self.y, cap)
        self.x[self.n:self.n + k] = xs
        self.y[self.n:self.n + k] = ys
        self.n += k


class CurvePlot(QWidget):
    """Named curves over steps. ``add_points([(name, step, value), ...])``; ``accept(name)`` filters."""

    updated = Signal()

    def __init__(self, title: str = "", y_label: str = "", log_y: bool = False, accept=None, parent=None,
                 max_hz: float = 4.0, symbols: bool = False, label=None):
        super().__init__(parent)
        self.label = label or (lambda name: name)  # legend text of a series
        self.symbols = symbols  # a dot on every point: for sparse curves (one value per epoch)
        self.accept = accept or (lambda name: True)
        self.series: dict[str, _Series] = {}
        self.updates = 0  # redraws made (the responsiveness benchmark reads it)
        self._dirty: set[str] = set()
        self._redraw = QTimer(self)
        self._redraw.setSingleShot(True)
        self._redraw.setInterval(int(1000 / max_hz) if max_hz > 0 else 0)
        self._redraw.timeout.connect(self._tick)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        top = QHBoxLayout()
        self.title = QLabel(title)
        self.title.setProperty("role", "hint")
        top.addWidget(self.title)
        top.addStretch(1)
        self.log_box = QCheckBox("log scale")
        self.log_box.setChecked(log_y)
        self.log_box.toggled.connect(self.set_log_y)
        top.addWidget(self.log_box)
        lay.addLayout(top)
        self.plot = pg.PlotWidget(axisItems={"left": LogFriendlyAxis("left")})
        self.plot.showGrid(x=False, y=True, alpha=0.25)  # horizontal lines only: see the module docstring
        self.plot.setLabel("bottom", "step")
        if y_label:
            self.plot.setLabel("left", y_label)
        # no "(x0.001)" scaling in the axis label: the tick labels carry the values (also on log axes)
        self.plot.getAxis("left").enableAutoSIPrefix(False)
        self.legend = side_legend(self.plot)  # beside the curves, never over them
        lay.addWidget(self.plot, 1)
        self._x_hi: float | None = None  # the managed step axis' right end (None: not set yet)
        self._y_bounds: tuple[float, float] | None = None  # the managed log axis' range
        self._manage_x = True
        self.plot.enableAutoRange(x=False)
        self.plot.getViewBox().sigRangeChangedManually.connect(self._user_moved)
        self.set_log_y(log_y)

    def set_log_y(self, on: bool) -> None:
        if self.log_box.isChecked() != bool(on):
            self.log_box.setChecked(bool(on))  # calls back here through toggled
            return
        self.plot.setLogMode(x=False, y=bool(on))
        self._y_bounds = None
        # a log axis moves in 1-2-5 steps (see flush); a linear one follows the data
        self.plot.enableAutoRange(y=not on or not self._manage_x)
        self._dirty.update(self.series)  # non-positive values are gaps on a log axis
        self.flush()

    def _user_moved(self, *_):
        self._manage_x = False  # the user's zoom / pan wins until the next clear()

    def clear(self) -> None:
        self._redraw.stop()
        self._x_hi = None
        self._y_bounds = None
        self._manage_x = True
        self.plot.enableAutoRange(x=False, y=not self.log_box.isChecked())
        self._dirty.clear()
        for s in self.series.values():
            if s.item is not None:
                self.plot.removeItem(s.item)
        self.legend.clear()
        self.series.clear()

    def add_points(self, batch) -> None:
        grouped: dict[str, tuple[list, list]] = {}
        for name, step, value in batch:
            if not self.accept(name):
                continue
            xs, ys = grouped.setdefault(name, ([], []))
            xs.append(step)
            ys.append(value)
        for name, (xs, ys) in grouped.items():
            s = self.series.get(name)
            if s is None:  # its curve is made by the redraw (see _tick)
                s = self.series[name] = _Series(None, PALETTE[len(self.series) % len(PALETTE)])
            s.extend(np.asarray(xs, np.float64), np.asarray(ys, np.float64))
            self._dirty.add(name)
        if grouped and not self._redraw.isActive():
            self._redraw.start()

    def _make_item(self, name: str, s: _Series) -> None:
        sym = dict(symbol="o", symbolSize=5, symbolBrush=s.colour, symbolPen=None) if self.symbols else {}
        item = self.plot.plot([], [], pen=pg.mkPen(s.colour, width=1.5), name=self.label(name), **sym)
        item.setClipToView(True)
        item.setDownsampling(auto=True, method="peak")
        s.item = item

    def _tick(self) -> None:
        """The redraw timer: new curves are made one per event-loop turn (a curve with its legend row
        costs ~20 ms of GUI time; five at once, as the first validation brings, stalled the loop for
        ~100 ms), then the data of every changed curve is set in one go."""
        new = [(n, s) for n, s in self.series.items() if s.item is None]
        if new:
            self._make_item(*new[0])
            if len(new) > 1:
                QTimer.singleShot(0, self._tick)
                return
        self.flush()

    def flush(self) -> None:
        """Redraw now every curve that gained points since the last redraw (tests and job ends call it)."""
        self._redraw.stop()
        dirty, self._dirty = self._dirty, set()
        for name in [n for n in self.series if n in dirty]:  # in arrival order: the legend's order
            s = self.series[name]
            if s.item is None:
                self._make_item(name, s)
            y = s.y[:s.n]
            if self.log_box.isChecked():
                y = np.where(y > 0, y, np.nan)
            s.item.setData(s.x[:s.n], y, connect="finite")
        if dirty and self._manage_x:
            filled = [s for s in self.series.values() if s.n]
            if filled:
                lo = min(float(s.x[:s.n].min()) for s in filled)
                hi = max(float(s.x[:s.n].max()) for s in filled)
                if self._x_hi is None or hi > self._x_hi:
                    self._x_hi = nice_ceil(max(hi, lo + 1.0))
                    self.plot.setXRange(min(lo, 0.0), self._x_hi, padding=0.02)
                if self.log_box.isChecked():
                    ys = np.concatenate([s.y[:s.n] for s in filled])
                    ys = ys[np.isfinite(ys) & (ys > 0)]
                    b = self._y_bounds
                    if ys.size and (b is None or ys.min() < b[0] or ys.max() > b[1]):
                        self._y_bounds = nice_bounds(float(ys.min()), float(ys.max()))
                        self.plot.setYRange(math.log10(self._y_bounds[0]), math.log10(self._y_bounds[1]),
                                            padding=0.06)  # the end labels stay readable
        if dirty:
            self.updates += 1
            self.updated.emit()

    def points(self, name: str) -> int:
        s = self.series.get(name)
        return 0 if s is None else s.n

    def total_points(self) -> int:
        return sum(s.n for s in self.series.values())


class BarChart(pg.PlotWidget):
    """Bars with category labels (class distribution) or a histogram (edges + counts)."""

    def __init__(self, title: str = "", parent=None):
        super().__init__(parent)
        self.setTitle(title, size="9pt")
        self.showGrid(y=True, alpha=0.2)
        self.bars = pg.BarGraphItem(x=[0], height=[0], width=0.8, brush=(90, 160, 240))
        self.addItem(self.bars)
        self.setMouseEnabled(x=False, y=False)
        self.hideButtons()

    def set_categories(self, names: list[str], counts) -> None:
        counts = np.asarray(counts, float)
        x = np.arange(len(counts))
        self.bars.setOpts(x=x, height=counts, width=0.7, brush=(90, 160, 240))
        ax = self.getAxis("bottom")
        ax.setTicks([[(i, str(n)) for i, n in enumerate(names)]])
        self.setXRange(-0.6, max(len(counts) - 0.4, 0.6), padding=0)
        self.setYRange(0, max(float(counts.max()) if counts.size else 1.0, 1.0) * 1.1, padding=0)

    def set_histogram(self, edges, counts) -> None:
        edges = np.asarray(edges, float)
        counts = np.asarray(counts, float)
        centres = (edges[:-1] + edges[1:]) / 2
        self.bars.setOpts(x=centres, height=counts, width=float(np.diff(edges).mean()) if len(edges) > 1 else 1.0,
                          brush=(150, 150, 160))
        self.getAxis("bottom").setTicks(None)
        self.autoRange()
