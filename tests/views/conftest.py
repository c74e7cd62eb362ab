"""View-test fixtures: isolated QSettings (never the user's), a main window in record-error mode."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(autouse=True)
def isolated_qsettings(tmp_path, qapp):
    """QSettings go to an INI file under the test's tmp dir, not to the user's settings."""
    from PySide6.QtCore import QSettings

    qapp.setOrganizationName("RadSynthTest")
    qapp.setApplicationName("RadSynth Studio Test")
    QSettings.setDefaultFormat(QSettings.IniFormat)
    QSettings.setPath(QSettings.IniFormat, QSettings.UserScope, str(tmp_path / "settings"))
    yield tmp_path / "settings"


@pytest.fixture
def themed(qapp):
    from app.views.theme import apply_dark_theme

    apply_dark_theme(qapp)
    return qapp


@pytest.fixture
def main_window(qtbot, workspace, themed):
    """A main window on the test workspace; errors recorded, not shown as dialogs; no demo job."""
    from app.views.main_window import MainWindow

    win = MainWindow(workspace=workspace.root, error_mode="record", demo_at_first_start=False)
    qtbot.addWidget(win)
    win.show()
    yield win
    win.jobs.cancel_all()
    win.jobs.wait_all(30000)
    win.close()


def assert_not_blank(widget, path, min_std: float = 8.0, min_colours: int = 24):
    """Render a widget to a PNG and check it shows something: pixel spread and colour count."""
    from PySide6.QtGui import QImage

    path.parent.mkdir(parents=True, exist_ok=True)
    assert widget.grab().save(str(path)), f"could not save {path}"
    img = QImage(str(path)).convertToFormat(QImage.Format_RGB888)
    w, h = img.width(), img.height()
    arr = np.frombuffer(img.constBits(), np.uint8, count=img.bytesPerLine() * h).reshape(h, img.bytesPerLine())
    arr = arr[:, : w * 3].reshape(h, w, 3)
    colours = len(np.unique(arr.reshape(-1, 3).astype(np.int64) @ np.array([1, 256, 65536])))
    std = float(arr.std())
    assert std > min_std, f"{path.name}: pixel std {std:.1f} looks blank"
    assert colours > min_colours, f"{path.name}: only {colours} distinct colours"
    return std, colours
