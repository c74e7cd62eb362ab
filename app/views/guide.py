"""The user guide (docs/guide/*.md, one page per panel, screenshots in docs/guide/img/) in a window.

``guide_index()`` finds docs/guide/index.md: in the source tree and in the packaged app (the
PyInstaller bundle carries docs/guide next to resources/, packaging/studio/radsynth-studio.spec);
``RADSYNTH_GUIDE`` names another folder. ``GuideWindow`` shows a page as Markdown (QTextBrowser:
links between pages and the screenshots work, relative to the page); "Open in browser" hands the
file to the system (QDesktopServices). Help > User guide (F1) opens it at the page of the panel
in view.
"""

from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtCore import QUrl
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QPushButton, QTextBrowser, QVBoxLayout

GUIDE_DIR = Path(__file__).resolve().parents[2] / "docs" / "guide"

#: the guide page of each panel key (main_window.PANELS)
PANEL_PAGES = {"datasets": "datasets.md", "train": "training.md", "generate": "generation.md",
               "reconstruct": "reconstruction.md", "audit": "audit.md", "study": "reader-study.md"}


def guide_dir() -> Path:
    return Path(os.environ.get("RADSYNTH_GUIDE") or GUIDE_DIR)


def guide_index() -> Path | None:
    """docs/guide/index.md, or None when this installation has no guide."""
    p = guide_dir() / "index.md"
    return p if p.is_file() else None


def guide_page(panel: str | None = None) -> Path | None:
    """The page of ``panel`` (a PANELS key), else the index; None without a guide."""
    index = guide_index()
    if index is None:
        return None
    page = index.parent / PANEL_PAGES.get(panel or "", "index.md")
    return page if page.is_file() else index


class GuideWindow(QDialog):
    """The guide, non-modal. ``browser.source()`` is the page shown."""

    def __init__(self, page: Path, parent=None):
        super().__init__(parent)
        self.setObjectName("guideWindow")
        self.setWindowTitle("RadSynth Studio — User guide")
        self.setModal(False)
        self.resize(980, 700)
        lay = QVBoxLayout(self)
        self.browser = QTextBrowser()
        self.browser.setObjectName("guideBrowser")
        self.browser.setOpenLinks(True)
        self.browser.setOpenExternalLinks(True)
        lay.addWidget(self.browser, 1)
        buttons = QDialogButtonBox(QDialogButtonBox.Close)
        self.home_button = QPushButton("Contents")
        self.home_button.clicked.connect(lambda: self.show_page(guide_index() or page))
        buttons.addButton(self.home_button, QDialogButtonBox.ActionRole)
        self.external_button = QPushButton("Open in browser")
        self.external_button.setToolTip("the page as a file, in the system's viewer for Markdown")
        self.external_button.clicked.connect(self.open_external)
        buttons.addButton(self.external_button, QDialogButtonBox.ActionRole)
        buttons.rejected.connect(self.close)
        lay.addWidget(buttons)
        self.show_page(page)

    def show_page(self, page: Path) -> None:
        self.browser.setSource(QUrl.fromLocalFile(str(page)))

    def open_external(self) -> bool:
        return QDesktopServices.openUrl(self.browser.source())
