"""The frozen RadSynth Reader's entry point (PyInstaller runs this file)."""

import sys

from app.reader_app import main

if __name__ == "__main__":
    sys.exit(main())
