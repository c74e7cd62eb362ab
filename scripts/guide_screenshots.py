"""Screenshots of every panel for the user guide, made from the real app on the demo workspace.

    QT_QPA_PLATFORM=offscreen python scripts/guide_screenshots.py            # docs/guide/img/<panel>.png, 1366x768
    python scripts/guide_screenshots.py --size 1920x1080 --out /tmp/shots    # other sizes, for a review

A new workspace in a temporary folder gets the demo dataset (the first-start job, run here
directly); the main window opens on it offscreen with the dark theme, Reconstruction loads its demo
slice, and each panel (each tab of a panel with tabs, with --tabs) is rendered with ``grab()``.
Nothing is trained: the pictures show the first start, which is what the guide walks through.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _settle(app, seconds: float = 0.3) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        app.processEvents()
        time.sleep(0.02)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "guide" / "img", help="folder for the PNGs")
    p.add_argument("--size", default="1366x768", help="window size WxH (default 1366x768)")
    p.add_argument("--tabs", action="store_true", help="also one picture per tab of a panel with tabs")
    ns = p.parse_args(argv)
    try:
        width, height = (int(v) for v in ns.size.lower().split("x"))
    except ValueError:
        p.error(f"--size {ns.size!r}: give WIDTHxHEIGHT, e.g. 1366x768")
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ.setdefault("RADSYNTH_ERROR_DIALOGS", "record")

    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QTabWidget

    from app.views.app import create_application

    app = create_application(["RadSynth Studio"])
    tmp = Path(tempfile.mkdtemp(prefix="radsynth-guide-"))
    QSettings.setDefaultFormat(QSettings.IniFormat)
    QSettings.setPath(QSettings.IniFormat, QSettings.UserScope, str(tmp / "settings"))  # never the user's

    from app.engine.data.demo import write_demo_dataset
    from app.engine.store import Workspace
    from app.views.main_window import PANELS, MainWindow

    ws = Workspace.open(tmp / "workspace")
    write_demo_dataset(ws)
    win = MainWindow(workspace=ws.root, settings=QSettings(str(tmp / "settings.ini"), QSettings.IniFormat),
                     error_mode="record", demo_at_first_start=False)
    win.resize(width, height)
    win.show()
    _settle(app)
    mri = getattr(win.panels.get("reconstruct"), "mri", None)
    if mri is not None:
        win.load_demo_slice()
        end = time.monotonic() + 20
        while mri.preview is None and time.monotonic() < end:
            _settle(app, 0.1)
    end = time.monotonic() + 120  # the statistics job the Datasets panel starts: shown done, not "computing"
    while win.jobs.active() and time.monotonic() < end:
        _settle(app, 0.2)
    win.show_panel("datasets")
    _settle(app, 1.0)
    ns.out.mkdir(parents=True, exist_ok=True)
    written = []
    for key, _title, _text in PANELS:
        win.show_panel(key)
        _settle(app)
        shots = [(None, 0)]
        if ns.tabs:
            shots += [(t, i) for t in win.panels[key].findChildren(QTabWidget) for i in range(1, t.count())]
        for tabs, i in shots:
            name = key
            if tabs is not None:
                tabs.setCurrentIndex(i)
                _settle(app)
                name = f"{key}-{tabs.tabText(i).lower().replace(' ', '-').replace('&', '')}"
            path = ns.out / f"{name}.png"
            if not win.grab().save(str(path)):
                print(f"could not write {path}", file=sys.stderr)
                return 1
            written.append(path)
            if tabs is not None:
                tabs.setCurrentIndex(0)
    win.jobs.cancel_all()
    win.jobs.wait_all(30000)
    win.close()
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
