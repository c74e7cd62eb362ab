"""Pieces the Reconstruction tabs share: the metrics table and the export of a comparison."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import QAbstractItemView, QFileDialog, QHeaderView, QTableWidget, QTableWidgetItem

from app.views.reconstruct.sources import write_comparison

#: the image metrics of the recon / ct-recon results (``metrics.image.image_metrics``) as the tables show them
METRIC_COLUMNS = (("psnr", "PSNR (dB)", "{:.2f}"), ("ssim", "SSIM", "{:.4f}"), ("nmse", "NMSE", "{:.4f}"))


def metrics_table(object_name: str, extra: tuple[str, str]) -> QTableWidget:
    """method | PSNR | SSIM | NMSE | <extra[0]> | <extra[1]>, read-only, sized to its rows."""
    t = QTableWidget(0, 6)
    t.setObjectName(object_name)
    t.setHorizontalHeaderLabels(["method"] + [c[1] for c in METRIC_COLUMNS] + list(extra))
    t.verticalHeader().setVisible(False)
    t.horizontalHeader().setSectionResizeMode(QHeaderView.Stretch)
    t.setEditTriggers(QAbstractItemView.NoEditTriggers)
    fit_height(t)
    return t


def fit_height(table: QTableWidget, max_rows: int = 6) -> None:
    """Size a small results table to its rows (no scroll bar for a handful of methods)."""
    rows = min(table.rowCount(), max_rows)
    h = table.horizontalHeader().height() + sum(table.rowHeight(r) for r in range(rows)) + 2 * table.frameWidth() + 2
    table.setFixedHeight(max(h, 60))


def fill_metrics(table: QTableWidget, results: dict[str, dict]) -> None:
    """One row per method: its metrics, ``extra`` (R, views or noise) and ``seconds``."""
    table.setRowCount(0)
    for method, entry in results.items():
        r = table.rowCount()
        table.insertRow(r)
        table.setItem(r, 0, QTableWidgetItem(method))
        m = entry.get("metrics") or {}
        for c, (key, _label, fmt) in enumerate(METRIC_COLUMNS, start=1):
            v = m.get(key)
            table.setItem(r, c, QTableWidgetItem(fmt.format(v) if v is not None else "–"))
        extra = entry.get("extra")
        table.setItem(r, 4, QTableWidgetItem(f"{extra:.2f}" if isinstance(extra, float) else str(extra or "–")))
        secs = entry.get("seconds")
        table.setItem(r, 5, QTableWidgetItem(f"{secs:.2f}" if secs is not None else "–"))
    fit_height(table)


def export_comparison(parent, grid, results: dict[str, dict], out_dir, stem: str, controller, on_done):
    """Write ``<stem>.png`` (the grid as drawn) and ``<stem>.npz`` (every array, the metrics) to ``out_dir``
    (asked for when None) off the GUI thread; ``on_done(paths)`` then. Returns the paths it will write, or
    None when there is nothing to export or no folder was chosen."""
    arrays = grid.arrays()
    if not arrays:
        controller.say("Nothing to export yet.")
        return None
    if out_dir is None:
        out_dir = QFileDialog.getExistingDirectory(parent, "Export the comparison to")
        if not out_dir:
            return None
    out = Path(out_dir)
    picture = grid.grab().toImage()  # drawn here (GUI thread); a QImage may be saved on any thread
    meta = {m: {k: v for k, v in e.items() if not k.startswith("_")} for m, e in results.items()}
    controller.say(f"Exporting to {out}…")

    def done(paths):
        controller.say(f"Exported {paths[0].name} and {paths[1].name} to {out}")
        on_done(paths)

    controller.run_io(lambda: write_comparison(out, stem, picture, arrays, meta), done, "Export")
    return [out / f"{stem}.png", out / f"{stem}.npz"]
