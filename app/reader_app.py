"""RadSynth Reader: the reading station of a blinded reader study, for a radiologist's own machine (no torch).

    radsynth-reader [PACKAGE.h5] [--reader ID] [--workspace DIR]
    radsynth-reader PACKAGE.h5 --reader ID --status               how many cases this reader has answered (JSON)
    radsynth-reader PACKAGE.h5 --reader ID --export-answers FILE  write the answers file the Studio imports
    radsynth-reader PACKAGE.h5 --reader ID --screenshot FILE.png  render the reading window and quit
    radsynth-reader --version | --selftest

It opens a study package made with the Studio's "Export for reading elsewhere..." (``radsynth study export
STUDY OUT.h5``), asks for the reader id, and shows the same full-screen reading view as the Studio
(``app.views.reader_window``): every answer is one committed SQLite transaction in the Reader's own workspace
(a reader copy of the study, without the truth), so a killed Reader loses nothing and resumes at the first
unanswered case. When the reading is complete (or on Esc) it offers to save the answers file, which the
Studio imports with "Import answers..." (``radsynth study import FILE``).

``--keys "R3 S4 R5"`` types keys into the reading view as a person would (a scripted reading, for tests and
demonstrations): one group per case, a character a key (R, S, 1-5, N, P, ← as "<", → as ">").

The Reader imports only what reading needs (PySide6, pyqtgraph, numpy, h5py, pydantic and the study engine);
``--selftest`` checks the Qt plugins, opens a reading view offscreen on a study it makes itself, records an
answer and reads it back.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

APP_NAME = "RadSynth Reader"


def default_workspace() -> Path:
    from platformdirs import user_data_dir

    return Path(user_data_dir(APP_NAME, "RadSynth")) / "workspace"


def open_package(ws, package: Path):
    """The reader copy of the package's study in ``ws``: imported on first use, the same one afterwards."""
    from app.engine.study import get_study, import_study_package, read_blinded

    _, _, info = read_blinded(package)
    study_id = info.get("study_id")
    if study_id and ws.query("SELECT 1 FROM studies WHERE id = ?", (study_id,)):
        return get_study(ws, study_id)
    return import_study_package(ws, package)


def ensure_reader(ws, study_id: str, reader: str) -> None:
    from app.engine.study import add_reader, list_readers

    if reader not in {r.reader_id for r in list_readers(ws, study_id)}:
        add_reader(ws, study_id, reader)


def answered(ws, study_id: str, reader: str) -> int:
    from app.engine.study import ReadingSession

    return ReadingSession(ws, study_id, reader).n_answered


_KEY_NAMES = {"<": "Key_Left", ">": "Key_Right", " ": "Key_Space"}


def type_keys(widget, text: str) -> None:
    """Send the keys of ``text`` to ``widget`` as key presses (letters, digits, '<' / '>' for the arrows)."""
    from PySide6.QtCore import QEvent, Qt
    from PySide6.QtGui import QKeyEvent
    from PySide6.QtWidgets import QApplication

    for ch in text:
        if ch.isspace():
            continue
        name = _KEY_NAMES.get(ch, f"Key_{ch.upper()}")
        key = getattr(Qt.Key, name)
        for kind in (QEvent.KeyPress, QEvent.KeyRelease):
            QApplication.sendEvent(widget, QKeyEvent(kind, key, Qt.NoModifier, ch))
        QApplication.processEvents()


def selftest() -> int:
    """Qt plugins present, a reading view opens offscreen, an answer is saved and read back. 0 when all pass."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    import numpy as np
    from PySide6.QtWidgets import QApplication

    from app import __version__
    from app.engine.store import Workspace
    from app.engine.study import ReadingSession
    from app.engine.study.presentation import write_blinded
    from app.views.app import platform_plugins_present

    ok = platform_plugins_present()
    app = QApplication.instance() or QApplication([APP_NAME])
    from app.views.reader_window import ReaderWindow

    with tempfile.TemporaryDirectory() as tmp:
        # a package as the Studio exports it (blinded 8-bit pixels, case ids, no truth), made here
        pixels = np.random.default_rng(0).integers(0, 255, (4, 1, 32, 32), dtype=np.uint8)  # case, view, H, W
        package = Path(tmp) / "selftest.h5"
        write_blinded(package, pixels, [f"case{i}" for i in range(4)], "single", 32,
                      extra={"study_id": "selftest-study", "name": "selftest", "spec": {"mode": "single", "size": 32}})
        ws = Workspace.open(Path(tmp) / "reader")
        copy = open_package(ws, package)
        ensure_reader(ws, copy.id, "selftest")
        win = ReaderWindow(ws, copy.id, "selftest")
        win.resize(800, 600)
        win.show()
        type_keys(win, "R3")
        app.processEvents()
        got = ReadingSession(ws, copy.id, "selftest").answer(0)
        saved = got is not None and got.get("answer") == "real" and got.get("confidence") == 3
        ok &= saved
        print(f"{'ok' if saved else 'FAILED'}  a reading view opened ({app.platformName()}) and saved an answer ({got})")
        win.close()
    torch_loaded = "torch" in sys.modules
    ok &= not torch_loaded
    print(f"{'ok' if not torch_loaded else 'FAILED'}  torch is not loaded")
    print(f"RadSynth Reader {__version__} selftest {'passed' if ok else 'FAILED'}")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="radsynth-reader", description="Read a blinded RadSynth reader study.")
    p.add_argument("package", nargs="?", type=Path, help="study package (.h5) exported by RadSynth Studio")
    p.add_argument("--reader", help="your reader id (asked when not given)")
    p.add_argument("--workspace", type=Path, help=f"where answers are kept (default: the {APP_NAME} data folder)")
    p.add_argument("--status", action="store_true", help="print how many cases the reader has answered and exit")
    p.add_argument("--export-answers", type=Path, metavar="FILE", help="write the answers file and exit")
    p.add_argument("--keys", help="type these keys into the reading view (a scripted reading)")
    p.add_argument("--windowed", action="store_true", help="a window instead of full screen")
    p.add_argument("--screenshot", type=Path, help="render the reading window to this PNG and quit")
    p.add_argument("--version", action="store_true", help="print the version and exit")
    p.add_argument("--selftest", action="store_true", help="check the installation and exit")
    ns = p.parse_args(sys.argv[1:] if argv is None else argv)
    from app import __version__

    if ns.version:
        print(f"{APP_NAME} {__version__}")
        return 0
    if ns.selftest:
        return selftest()

    from app.engine.errors import UserError
    from app.engine.store import Workspace

    try:
        ws = Workspace.open(ns.workspace or default_workspace())
        if ns.status or ns.export_answers:
            if ns.package is None or not ns.reader:
                p.error("--status and --export-answers need the package and --reader")
            study = open_package(ws, ns.package)
            ensure_reader(ws, study.id, ns.reader)
            if ns.status:
                print(json.dumps({"study": study.name, "reader": ns.reader, "answered": answered(ws, study.id, ns.reader)}))
            if ns.export_answers:
                from app.engine.study import export_answers

                out = export_answers(ws, study.id, ns.export_answers, readers=[ns.reader])
                print(json.dumps({"answers": str(out), "answered": answered(ws, study.id, ns.reader)}))
            return 0
    except UserError as exc:
        print(f"radsynth-reader: {exc}", file=sys.stderr)
        return 1
    return _read(ws, ns)


def _read(ws, ns) -> int:
    from PySide6.QtWidgets import QFileDialog, QInputDialog, QMessageBox

    from app.engine.errors import UserError
    from app.views.app import create_application
    from app.views.reader_window import ReaderWindow

    app = create_application([APP_NAME])
    app.setApplicationName(APP_NAME)
    package = ns.package
    if package is None:
        chosen, _ = QFileDialog.getOpenFileName(None, "Open a study package", str(Path.home()), "Study package (*.h5)")
        if not chosen:
            return 0
        package = Path(chosen)
    try:
        study = open_package(ws, package)
        reader = ns.reader
        if not reader:
            reader, ok = QInputDialog.getText(None, APP_NAME, "Your reader id (letters, digits, '.', '_', '-'):")
            if not ok or not reader.strip():
                return 0
            reader = reader.strip()
        ensure_reader(ws, study.id, reader)
    except UserError as exc:
        QMessageBox.critical(None, APP_NAME, str(exc))
        return 1
    win = ReaderWindow(ws, study.id, reader)

    def offer_answers() -> None:
        if ns.keys is not None or ns.screenshot:  # a scripted reading exports only when asked (--export-answers)
            return
        default = Path.home() / f"{study.name}-{reader}-answers.json"
        path, _ = QFileDialog.getSaveFileName(win, "Save your answers for the study's owner", str(default),
                                              "Answers (*.json)")
        if path:
            from app.engine.study import export_answers

            export_answers(ws, study.id, path, readers=[reader])

    win.closed.connect(offer_answers)
    win.start(full_screen=not (ns.windowed or ns.keys is not None or ns.screenshot))
    if ns.screenshot:
        from PySide6.QtCore import QTimer

        win.resize(1366, 768)

        def shoot() -> None:
            win.grab().save(str(ns.screenshot))
            app.quit()

        QTimer.singleShot(800, shoot)
    if ns.keys is not None:
        from PySide6.QtCore import QTimer

        def play() -> None:
            type_keys(win, ns.keys)
            print(json.dumps({"answered": answered(ws, study.id, reader)}), flush=True)

        QTimer.singleShot(200, play)
    return app.exec()


if __name__ == "__main__":
    sys.exit(main())
