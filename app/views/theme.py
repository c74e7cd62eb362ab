"""A dark theme suited to reading images (low surround luminance, neutral greys)."""

from __future__ import annotations

from pathlib import Path

STYLE_SHEET = Path(__file__).resolve().parents[2] / "resources" / "style.qss"


def apply_dark_theme(app) -> None:
    from PySide6.QtGui import QColor, QPalette

    app.setStyle("Fusion")
    p = QPalette()
    base, alt, text, hl = QColor(30, 30, 32), QColor(40, 40, 44), QColor(220, 220, 220), QColor(60, 110, 170)
    p.setColor(QPalette.Window, QColor(36, 36, 38))
    p.setColor(QPalette.WindowText, text)
    p.setColor(QPalette.Base, base)
    p.setColor(QPalette.AlternateBase, alt)
    p.setColor(QPalette.ToolTipBase, alt)
    p.setColor(QPalette.ToolTipText, text)
    p.setColor(QPalette.Text, text)
    p.setColor(QPalette.Button, QColor(48, 48, 52))
    p.setColor(QPalette.ButtonText, text)
    p.setColor(QPalette.BrightText, QColor(255, 90, 90))
    p.setColor(QPalette.Highlight, hl)
    p.setColor(QPalette.HighlightedText, QColor(255, 255, 255))
    p.setColor(QPalette.Link, QColor(110, 160, 230))
    p.setColor(QPalette.PlaceholderText, QColor(130, 130, 130))
    for role in (QPalette.Text, QPalette.ButtonText, QPalette.WindowText):
        p.setColor(QPalette.Disabled, role, QColor(120, 120, 120))
    app.setPalette(p)
    if STYLE_SHEET.exists():
        app.setStyleSheet(STYLE_SHEET.read_text())
    import pyqtgraph as pg

    pg.setConfigOptions(background=(20, 20, 22), foreground=(200, 200, 200), imageAxisOrder="row-major")
