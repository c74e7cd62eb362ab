"""SetPicker: a checkable list of image sets (the workspace's datasets ``name[:split]`` plus image folders and
NPZ files added by hand), for the Reader Study design (real and synthetic sets)."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)


class SetPicker(QWidget):
    """A checkable list of image sets: the workspace's datasets plus files / folders added by hand."""

    changed = Signal()

    def __init__(self, title: str, parent=None):
        super().__init__(parent)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(QLabel(title))
        self.list = QListWidget()
        self.list.setMaximumHeight(110)
        self.list.itemChanged.connect(lambda _i: self.changed.emit())
        lay.addWidget(self.list)
        row = QHBoxLayout()
        add_file = QPushButton("Add NPZ…")
        add_file.clicked.connect(self._add_file)
        add_dir = QPushButton("Add folder…")
        add_dir.clicked.connect(self._add_folder)
        row.addWidget(add_file)
        row.addWidget(add_dir)
        row.addStretch(1)
        lay.addLayout(row)

    def set_datasets(self, names: list[str]) -> None:
        checked = set(self.refs())
        extra = [self.list.item(i).text() for i in range(self.list.count())
                 if self.list.item(i).data(Qt.UserRole) == "path"]
        self.list.blockSignals(True)
        self.list.clear()
        for n in names:
            self._add(n, "dataset", n in checked)
        for p in extra:
            self._add(p, "path", p in checked)
        self.list.blockSignals(False)
        self.changed.emit()

    def add_ref(self, ref: str, checked: bool = True) -> None:
        for i in range(self.list.count()):
            if self.list.item(i).text() == ref:
                self.list.item(i).setCheckState(Qt.Checked if checked else Qt.Unchecked)
                return
        self._add(ref, "path", checked)
        self.changed.emit()

    def _add(self, text: str, kind: str, checked: bool) -> None:
        it = QListWidgetItem(text)
        it.setData(Qt.UserRole, kind)
        it.setFlags(it.flags() | Qt.ItemIsUserCheckable)
        it.setCheckState(Qt.Checked if checked else Qt.Unchecked)
        self.list.addItem(it)

    def refs(self) -> list[str]:
        return [self.list.item(i).text() for i in range(self.list.count())
                if self.list.item(i).checkState() == Qt.Checked]

    def _add_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Image set (NPZ with an 'images' array)", "", "NumPy (*.npz)")
        if path:
            self.add_ref(path)

    def _add_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Folder of PNG / DICOM images")
        if path:
            self.add_ref(path)
