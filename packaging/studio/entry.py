"""The frozen RadSynth Studio's entry point (PyInstaller runs this file).

    radsynth-studio [--workspace DIR] [--version] [--selftest]    the window
    radsynth-studio cli VERB ...                                   the command line (radsynth VERB ...)
"""

import multiprocessing
import sys

if __name__ == "__main__":
    multiprocessing.freeze_support()
    if len(sys.argv) > 1 and sys.argv[1] == "cli":
        from app.cli import main as cli

        sys.exit(cli(sys.argv[2:]))
    from app.__main__ import main

    sys.exit(main())
