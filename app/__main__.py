"""`python -m app` opens the RadSynth Studio window on the last (or the demo) workspace."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="radsynth gui", description="Open the RadSynth Studio window.")
    p.add_argument("--workspace", type=Path, help="workspace folder (default: last used, else the user data dir)")
    p.add_argument("--screenshot", type=Path, help="render the window to this PNG after start-up and quit")
    ns = p.parse_args(sys.argv[1:] if argv is None else argv)
    from app.views.app import run_app

    return run_app(workspace=ns.workspace, screenshot=ns.screenshot)


if __name__ == "__main__":
    sys.exit(main())
