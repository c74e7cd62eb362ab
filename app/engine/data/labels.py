"""Where image labels come from: subfolder names, a CSV sidecar (file,label), or the file itself.

Shared by ingest and ``load_image_set`` so a folder gets the same labels in both.
"""

from __future__ import annotations

import csv
from pathlib import Path

from app.engine.errors import UserError

SIDECAR_NAMES = ("labels.csv",)


def read_label_csv(path: str | Path) -> dict[str, str]:
    """{file: label} from a CSV with header columns ``file`` and ``label`` (other columns ignored)."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            cols = [c.strip().lower() for c in (reader.fieldnames or [])]
            if "file" not in cols or "label" not in cols:
                raise UserError(
                    f"labels CSV {path} needs a header with columns 'file' and 'label' (found: {', '.join(cols) or 'none'})"
                )
            fmap = {c.strip().lower(): c for c in reader.fieldnames or []}
            out: dict[str, str] = {}
            for i, row in enumerate(reader, start=2):
                f, lab = (row.get(fmap["file"]) or "").strip(), (row.get(fmap["label"]) or "").strip()
                if not f or not lab:
                    raise UserError(f"labels CSV {path} line {i}: empty file or label")
                out[f.replace("\\", "/")] = lab
            return out
    except FileNotFoundError:
        raise UserError(f"labels CSV {path} does not exist") from None
    except (OSError, csv.Error, UnicodeDecodeError) as exc:
        raise UserError(f"labels CSV {path} is unreadable: {exc}") from None


class Labeler:
    """Gives the label of a file under ``root`` by the chosen rule ("subfolders", "csv", "none")."""

    def __init__(self, mode: str, root: Path, csv_path: Path | None = None):
        self.mode, self.root = mode, Path(root)
        self.table = read_label_csv(csv_path) if mode == "csv" and csv_path is not None else {}
        self.csv_path = csv_path

    @classmethod
    def from_option(cls, option: str, root: Path, files: list[Path]) -> Labeler:
        """``auto`` | ``subfolders`` | ``csv:FILE`` | ``none`` -> a Labeler (auto picks the rule)."""
        root = Path(root)
        folder = root if root.is_dir() else root.parent
        if option == "none":
            return cls("none", folder)
        if option == "subfolders":
            return cls("subfolders", folder)
        if option.startswith("csv:"):
            p = Path(option[4:]).expanduser()
            if not p.is_absolute() and not p.exists():
                p = folder / p
            return cls("csv", folder, p)
        if option == "auto":
            if root.is_dir():
                for name in SIDECAR_NAMES:
                    if (root / name).is_file():
                        return cls("csv", folder, root / name)
                firsts = {f.relative_to(root).parts[0] for f in files if len(f.relative_to(root).parts) > 1}
                if len(firsts) >= 2 and all(len(f.relative_to(root).parts) > 1 for f in files):
                    return cls("subfolders", folder)
            return cls("none", folder)
        raise UserError(f"labels {option!r} is not one of auto, subfolders, csv:FILE, none")

    def is_sidecar(self, path: Path) -> bool:
        return self.csv_path is not None and Path(path).resolve() == Path(self.csv_path).resolve()

    def label(self, path: Path) -> str | None:
        """The file's label, or None when the rule gives none (unlabelled, or missing from the CSV)."""
        if self.mode == "none":
            return None
        try:
            rel = Path(path).resolve().relative_to(self.root.resolve())
        except ValueError:
            rel = Path(Path(path).name)
        if self.mode == "subfolders":
            return rel.parts[0] if len(rel.parts) > 1 else None
        key = rel.as_posix()
        if key in self.table:
            return self.table[key]
        return self.table.get(Path(path).name)


def class_order(names) -> list[str]:
    """Distinct class names sorted naturally: numerically when all are integers, else by text."""
    distinct = {str(n) for n in names if n is not None}
    try:
        return sorted(distinct, key=lambda s: (int(s), s))
    except ValueError:
        return sorted(distinct)
