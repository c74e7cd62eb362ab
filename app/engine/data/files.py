"""Opening a file the user named as NPZ / NPY or DICOM, with one plain message when it is not one.

numpy and pydicom answer a wrong file in their own terms: a text file named ``.npz`` gives "This
file contains pickled (object) data ... allow_pickle", a file that is not DICOM "Use force=True to
force reading". Neither tells a user what went wrong or what to do. These openers check the
content first and raise ``UserError`` naming the file, what it holds instead and what to give.
A leaf: numpy, pydicom and ``errors`` only, so that any reader may use it.
"""

from __future__ import annotations

import warnings
import zipfile
from pathlib import Path

import numpy as np

from app.engine.errors import UserError

_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGIC = b"PK\x03\x04"


def _head(path: Path, n: int = 512) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read(n)
    except FileNotFoundError:
        raise UserError(f"{path}: file does not exist") from None
    except IsADirectoryError:
        raise UserError(f"{path} is a folder: give a file") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot be read ({exc.strerror or exc})") from None


def what_it_holds(head: bytes) -> str:
    """A short description of a file's content from its first bytes, for a message."""
    if not head:
        return "it is empty"
    if head[128:132] == b"DICM":
        return "it is a DICOM file"
    if head.startswith(b"\x89PNG"):
        return "it is a PNG image"
    if head.startswith(b"\x89HDF"):
        return "it is an HDF5 file"
    if head.startswith(_ZIP_MAGIC):
        return "it is a ZIP archive without NumPy arrays"
    try:
        head.decode("utf-8")
        return "it holds text"
    except UnicodeDecodeError:
        return "its content is not in a known format"


def open_npz(path: str | Path):
    """``np.load`` of an NPZ (or NPY) file without pickles; UserError when the file is not one."""
    path = Path(path)
    head = _head(path)
    is_zip, is_npy = head.startswith(_ZIP_MAGIC), head.startswith(_NPY_MAGIC)
    if is_zip:
        try:
            with zipfile.ZipFile(path) as zf:
                is_zip = any(n.endswith(".npy") for n in zf.namelist())
        except (zipfile.BadZipFile, OSError):
            raise UserError(f"{path}: not a readable NPZ file (the archive is damaged or cut off); "
                            "write it again with numpy.savez") from None
    if not (is_zip or is_npy):
        raise UserError(f"{path}: not a NumPy file ({what_it_holds(head)}); give an .npz written by numpy.savez "
                        "or an .npy written by numpy.save")
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as exc:
        if "pickle" in str(exc):
            raise UserError(f"{path}: holds Python objects (pickled data), which are not read for safety; "
                            "save plain numeric arrays with numpy.savez") from None
        raise UserError(f"{path}: not a readable NumPy file ({exc})") from None
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise UserError(f"{path}: not a readable NumPy file ({type(exc).__name__}: {exc}); "
                        "write it again with numpy.savez") from None


def read_dicom_dataset(path: str | Path, **kwargs):
    """``pydicom.dcmread`` of a DICOM file; UserError naming the file when it is not DICOM or is damaged.

    Files without the 128-byte preamble (old ACR-NEMA style) are read when they parse as DICOM
    with an image or SOP class tag."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    path = Path(path)
    head = _head(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                return pydicom.dcmread(path, **kwargs)
            except InvalidDicomError:
                ds = pydicom.dcmread(path, force=True, **kwargs)
                if not any(t in ds for t in (0x00080016, 0x00080060, 0x00280010)):
                    raise InvalidDicomError("no DICOM attributes") from None
                return ds
    except InvalidDicomError:
        raise UserError(f"{path}: not a DICOM file ({what_it_holds(head)}; no DICOM header); give a DICOM "
                        "image (.dcm) or an NPZ") from None
    except (EOFError, ValueError, OSError, KeyError, IndexError, TypeError, AttributeError) as exc:
        raise UserError(f"{path}: a damaged or cut-off DICOM file ({type(exc).__name__}: {exc})") from None
