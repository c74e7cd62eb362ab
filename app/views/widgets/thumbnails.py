"""ThumbnailGrid: a selectable grid of small greyscale images (dataset browser, generated results)."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QIcon, QImage, QPixmap
from PySide6.QtWidgets import QAbstractItemView, QListView, QListWidget, QListWidgetItem


def array_to_qimage(img: np.ndarray, lo: float | None = None, hi: float | None = None) -> QImage:
    """(H, W) float or uint8 -> an 8-bit greyscale QImage (a copy, safe after the array goes)."""
    a = np.asarray(img)
    if a.ndim == 3 and a.shape[0] == 1:
        a = a[0]
    if a.dtype != np.uint8:
        a = a.astype(np.float32)
        lo = float(np.nanmin(a)) if lo is None else lo
        hi = float(np.nanmax(a)) if hi is None else hi
        scale = 255.0 / (hi - lo) if hi > lo else 0.0
        a = np.clip((a - lo) * scale, 0, 255).astype(np.uint8)
    a = np.ascontiguousarray(a)
    h, w = a.shape
    return QImage(a.data, w, h, a.strides[0], QImage.Format_Grayscale8).copy()


class ThumbnailGrid(QListWidget):
    """``set_images(array (N,[1,]H,W), labels=None, lo=-1, hi=1)``; signal ``selection(list[int])``."""

    selection = Signal(list)

    def __init__(self, icon_size: int = 72, parent=None):
        super().__init__(parent)
        self.setViewMode(QListView.IconMode)
        self.setResizeMode(QListView.Adjust)
        self.setMovement(QListView.Static)
        self.setUniformItemSizes(True)
        self.setSpacing(3)
        self.setIconSize(QSize(icon_size, icon_size))
        self.setSelectionMode(QAbstractItemView.ExtendedSelection)
        self.itemSelectionChanged.connect(lambda: self.selection.emit(self.selected()))
        self.keys: list = []

    def set_images(self, images, labels: list[str] | None = None, lo: float | None = -1.0,
                   hi: float | None = 1.0, keys: list | None = None) -> None:
        self.clear()
        images = np.asarray(images)
        if images.ndim == 4:
            images = images[:, 0]
        self.keys = list(keys) if keys is not None else list(range(len(images)))
        size = self.iconSize()
        for i, img in enumerate(images):
            pix = QPixmap.fromImage(array_to_qimage(img, lo, hi)).scaled(size, Qt.KeepAspectRatio,
                                                                         Qt.SmoothTransformation)
            item = QListWidgetItem(QIcon(pix), labels[i] if labels else "")
            item.setData(Qt.UserRole, self.keys[i])
            item.setToolTip(labels[i] if labels else f"#{self.keys[i]}")
            self.addItem(item)

    def selected(self) -> list:
        return [it.data(Qt.UserRole) for it in self.selectedItems()]
