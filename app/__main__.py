"""`python -m app` (`radsynth-studio`) opens the RadSynth Studio window on the last (or the demo) workspace.

    radsynth-studio [--workspace DIR] [--screenshot FILE.png]
    radsynth-studio --version | --selftest
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path


def selftest() -> int:
    """Qt's platform plugins present, the main window opens offscreen on a new workspace, and two tiny jobs run
    through the job spine: the built-in demo dataset (numpy) and the compute self-test (torch). 0 when all pass."""
    import os

    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from app import __version__
    from app.engine import jobs as J
    from app.engine.specs import spec_class
    from app.views.app import create_application, platform_plugins_present

    ok = platform_plugins_present()
    app = create_application(["RadSynth Studio"])
    from app.views.main_window import MainWindow

    with tempfile.TemporaryDirectory() as tmp:
        win = MainWindow(workspace=Path(tmp) / "ws", demo_at_first_start=False)
        win.resize(1366, 768)
        win.show()
        app.processEvents()
        print(f"ok  the main window opened ({app.platformName()})")
        from app.views.guide import guide_dir, guide_index

        guide = guide_index()  # Help > User guide: docs/guide is in the bundle's data
        ok &= guide is not None
        print(f"{'ok' if guide else 'FAILED'}  the user guide: {guide or f'not found in {guide_dir()}'}")
        for kind, fields in (("demo", {"n_images": 16, "size": 32}), ("selftest", {"steps": 3, "size": 16})):
            ev = J.run_collect(spec_class(kind)(**fields), workspace=Path(tmp) / "ws")[-1]
            done = isinstance(ev, J.Done)
            ok &= done
            print(f"{'ok' if done else 'FAILED'}  the {kind} job: {ev.result if done else getattr(ev, 'message', ev)}")
        win.close()
    print(f"RadSynth Studio {__version__} selftest {'passed' if ok else 'FAILED'}")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="radsynth gui", description="Open the RadSynth Studio window.")
    p.add_argument("--workspace", type=Path, help="workspace folder (default: last used, else the user data dir)")
    p.add_argument("--screenshot", type=Path, help="render the window to this PNG after start-up and quit")
    p.add_argument("--version", action="store_true", help="print the version and exit")
    p.add_argument("--selftest", action="store_true", help="check the installation (Qt, a window, two tiny jobs) and exit")
    ns = p.parse_args(sys.argv[1:] if argv is None else argv)
    if ns.version:
        from app import __version__

        print(f"RadSynth Studio {__version__}")
        return 0
    if ns.selftest:
        return selftest()
    from app.views.app import run_app

    return run_app(workspace=ns.workspace, screenshot=ns.screenshot)


if __name__ == "__main__":
    sys.exit(main())
