"""QApplication set-up: theme, workspace choice, demo data on first start, main window."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ICONS = Path(__file__).resolve().parents[2] / "resources" / "icons"
APP_ICON = ICONS / "radsynth-studio.svg"
DESKTOP_ID = "radsynth-studio"  # packaging/linux/radsynth-studio.desktop


def app_icon():
    """The application icon (SVG, with the 256 px PNG as a fallback where Qt has no SVG plugin)."""
    from PySide6.QtGui import QIcon

    icon = QIcon()
    for path in (APP_ICON, ICONS / "radsynth-studio.png"):
        if path.exists():
            icon.addFile(str(path))
    return icon


def platform_plugins_present(needed=("libqoffscreen.so", "libqxcb.so")) -> bool:
    """Print whether Qt's platform plugins are where Qt looks for them (the selftests of the Studio and the
    Reader, frozen or not); True when all are."""
    from PySide6.QtCore import QLibraryInfo

    folder = Path(QLibraryInfo.path(QLibraryInfo.LibraryPath.PluginsPath)) / "platforms"
    ok = True
    for name in needed:
        found = (folder / name).is_file()
        ok &= found
        print(f"{'ok' if found else 'MISSING'}  Qt platform plugin {name} ({folder})")
    return ok


def create_application(argv: list[str] | None = None):
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(argv if argv is not None else sys.argv[:1])
    app.setApplicationName("RadSynth Studio")
    app.setOrganizationName("RadSynth")
    app.setWindowIcon(app_icon())  # every window without its own icon shows this one
    app.setDesktopFileName(DESKTOP_ID)  # lets Wayland / the dock match the window to the .desktop entry
    from app.views.theme import apply_dark_theme

    apply_dark_theme(app)
    from app.workers.gc_guard import collect_in_gui_thread

    collect_in_gui_thread()
    from app.workers.qt_checks import guard_bool_refcounts

    guard_bool_refcounts()  # PySide6 6.12.0's bool refcount leak would abort a long session
    return app


def run_app(workspace: Path | None = None, screenshot: Path | None = None) -> int:
    app = create_application()
    from PySide6.QtCore import QSettings

    from app.views.main_window import MainWindow

    if workspace is None and not os.environ.get("RADSYNTH_WORKSPACE"):
        last = QSettings().value("workspace/last")
        if last and Path(str(last)).is_dir():
            workspace = Path(str(last))
    win = MainWindow(workspace=workspace)
    if screenshot is not None:
        win.resize(1280, 800)  # a fixed size for documentation screenshots, whatever the screen
    win.show()
    if screenshot is not None:
        from PySide6.QtCore import QTimer

        def shoot():
            win.grab().save(str(screenshot))
            win.close()
            app.quit()

        QTimer.singleShot(int(os.environ.get("RADSYNTH_SCREENSHOT_DELAY_MS", "1500")), shoot)
    return app.exec()
