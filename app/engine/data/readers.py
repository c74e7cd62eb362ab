"""Readers: turn one source file (DICOM, PNG/JPEG/TIFF, NIfTI, fastMRI HDF5, NPZ) into 2-D frames.

Each reader returns a list of ``Frame`` objects holding the pixels in the file's own physical units
(Hounsfield units for CT after the DICOM modality LUT, raw magnitudes for MR), plus what ingest
needs for provenance and grouping. A file that cannot be used raises ``SkipFile`` with a reason
meant for the user; ingest lists it and goes on with the next file.

``detect_format`` looks at the file's content (magic bytes, DICOM preamble or a DICOM parse),
not only at its extension, so a DICOM file called ``IM0001`` is still read as DICOM.

One bad image inside a file of many (NaN or infinite values in 2 of 20 images of an NPZ, a bad
frame of a multi-frame DICOM) does not cost the file: with ``bad_images`` (a list) given, the
reader leaves that image out and appends its reason; without, the file is skipped as before.

Images that RadSynth exported as synthetic (PNG text chunk, DICOM private block, NPZ
``provenance`` / ``per_image`` arrays) carry their generation provenance in ``Frame.provenance``,
so that an import of an exported set is marked synthetic again. NPZ ``volume_hu`` / ``image_hu``
arrays (the layout CT reconstruction reads) are CT slices in Hounsfield units.
"""

from __future__ import annotations

import dataclasses
import warnings
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

#: formats ``detect_format`` can return (besides "unknown")
FORMATS = ("dicom", "png", "jpeg", "tiff", "nifti", "hdf5", "npz", "npy")
IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".tif", ".tiff"}

#: DICOM modalities that are not images one could train on (reasons shown to the user)
NON_IMAGE_MODALITIES = {
    "SEG": "a segmentation object (SEG), not an image",
    "SR": "a structured report (SR), not an image",
    "RTSTRUCT": "an RT structure set (RTSTRUCT), not an image",
    "RTPLAN": "an RT plan (RTPLAN), not an image",
    "RTDOSE": "an RT dose grid (RTDOSE), not an image",
    "RTRECORD": "an RT treatment record, not an image",
    "KO": "a key object selection (KO), not an image",
    "PR": "a presentation state (PR), not an image",
    "REG": "a registration object (REG), not an image",
    "ECG": "a waveform (ECG), not an image",
    "AU": "an audio waveform, not an image",
    "DOC": "an encapsulated document, not an image",
}


class SkipFile(Exception):
    """A file that cannot be used; ``str(exc)`` is the reason shown to the user."""


@dataclasses.dataclass
class Frame:
    """One 2-D image taken from a source file."""

    pixels: np.ndarray  # (H, W) float32 in the file's units (HU for CT), finite; complex64 for complex reads
    source: str  # the file it came from
    frame: int = 0  # frame / slice index within the file
    modality: str = ""  # "MR", "CT", "CR", "DX", ... ("" when the file does not say)
    patient: str | None = None  # raw patient id: hash it before storing (never stored as is)
    series: str | None = None  # series / volume identifier, the group when there is no patient
    label: str | None = None  # class label carried by the file itself (NPZ labels)
    split: str | None = None  # split carried by the file itself (MedMNIST NPZ prefixes)
    window: tuple[float, float] | None = None  # (centre, width) the file recommends (DICOM VOI)
    kind: str = "int"  # "int" for integer stored values, "float" otherwise, "complex" for complex reads
    bits: int = 0  # bit depth of integer pixels from image files (8 / 16), 0 when unknown
    provenance: dict | None = None  # RadSynth provenance of an image it exported as synthetic, else None


def _unusable(reason: str, bad_images: list[str] | None) -> None:
    """One image of a file cannot be used: noted in ``bad_images`` (the caller leaves it out) or, without
    that list, the whole file is skipped."""
    if bad_images is None:
        raise SkipFile(reason)
    bad_images.append(reason)


def _json_or_none(text) -> dict | list | None:
    import json

    try:
        return json.loads(str(text))
    except (TypeError, ValueError):
        return None


def synthetic_provenance(prov) -> dict | None:
    """``prov`` when it is the provenance of a synthetic image that RadSynth exported, else None."""
    return prov if isinstance(prov, dict) and prov.get("synthetic") is True else None


# ------------------------------------------------------------------------------------------------
# format detection
# ------------------------------------------------------------------------------------------------


def detect_format(path: str | Path) -> str:
    """The format of a file from its first bytes: one of FORMATS, or "unknown"."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(512)
    except OSError:
        return "unknown"
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "dicom"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):  # classic and BigTIFF
        return "tiff"
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        return "hdf5"
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    if head.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(path) as zf:
                if any(n.endswith(".npy") for n in zf.namelist()):
                    return "npz"
        except (zipfile.BadZipFile, OSError):
            pass
        return "unknown"
    # NIfTI-1 / NIfTI-2: sizeof_hdr (348 or 540) at byte 0 and the magic string at 344 / 4
    if len(head) >= 348 and head[344:347] in (b"n+1", b"ni1"):
        return "nifti"
    if len(head) >= 8 and head[4:7] in (b"n+2", b"ni2"):
        return "nifti"
    if head.startswith(b"\x1f\x8b"):  # gzip: a .nii.gz (the header is inside the stream)
        import gzip

        try:
            with gzip.open(path, "rb") as gz:
                inner = gz.read(548)
            if inner[344:347] in (b"n+1", b"ni1") or inner[4:7] in (b"n+2", b"ni2"):
                return "nifti"
        except (OSError, EOFError):
            pass
        return "unknown"
    if _parses_as_dicom(path):  # DICOM without the 128-byte preamble (old ACR-NEMA style)
        return "dicom"
    return "unknown"


def _parses_as_dicom(path: Path) -> bool:
    import pydicom

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path, force=True, stop_before_pixels=True, specific_tags=[0x00080016, 0x00080060, 0x00280010])
        # a random file "parses" into an empty or garbage dataset; insist on a real image/SOP tag
        return any(t in ds for t in (0x00080016, 0x00080060, 0x00280010))
    except Exception:
        return False


# ------------------------------------------------------------------------------------------------
# DICOM
# ------------------------------------------------------------------------------------------------


def _to_grey(arr: np.ndarray) -> np.ndarray:
    """RGB(A) -> luminance with the ITU-R BT.601 weights (what skimage.color.rgb2gray uses for 8 bit)."""
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):
        rgb = arr[..., :3].astype(np.float64)
        return (rgb @ np.array([0.299, 0.587, 0.114])).astype(np.float32)
    return arr.astype(np.float32)


def _frame_rescale(ds, index: int) -> tuple[float, float] | None:
    """Rescale slope/intercept of an enhanced multi-frame object's frame (functional groups)."""
    for seq_name in ("PerFrameFunctionalGroupsSequence", "SharedFunctionalGroupsSequence"):
        seq = ds.get(seq_name)
        if not seq:
            continue
        item = seq[index] if seq_name.startswith("PerFrame") and index < len(seq) else seq[0]
        pvt = item.get("PixelValueTransformationSequence")
        if pvt and "RescaleSlope" in pvt[0]:
            return float(pvt[0].RescaleSlope), float(pvt[0].get("RescaleIntercept", 0.0))
    return None


def _dicom_window(ds) -> tuple[float, float] | None:
    c, w = ds.get("WindowCenter"), ds.get("WindowWidth")
    if c is None or w is None:
        return None
    try:
        c = float(c[0] if hasattr(c, "__len__") and not isinstance(c, str) else c)
        w = float(w[0] if hasattr(w, "__len__") and not isinstance(w, str) else w)
    except (TypeError, ValueError, IndexError):
        return None
    return (c, w) if w > 0 else None


def _decoder_reason(ts, msg: str) -> str:
    """A reader-facing reason from pydicom's "all plugins failed / are missing" message."""
    if "missing" in msg:
        reason = f"compressed with {ts.name}, for which no decoder is installed"
    else:  # pydicom lists each plugin's exception on its own line: "  gdcm: <why>"
        why = [ln.strip() for ln in msg.splitlines()[1:] if ln.strip()]
        reason = f"compressed with {ts.name}, which the installed decoders could not read"
        if why:
            reason += f" ({why[0]})"
    from pydicom.uid import JPEGExtended12Bit

    if ts == JPEGExtended12Bit:
        reason += "; 12-bit JPEG Extended needs pylibjpeg-libjpeg (GPL-3, not installed by default)"
    return reason


def _dicom_provenance(ds) -> dict | None:
    """The provenance JSON of a DICOM file that RadSynth exported (private block), else None."""
    from app.engine.specs.options import EXPORT_PRIVATE_CREATOR, EXPORT_PRIVATE_GROUP

    try:
        block = ds.private_block(EXPORT_PRIVATE_GROUP, EXPORT_PRIVATE_CREATOR)
        return synthetic_provenance(_json_or_none(block[0x01].value))
    except (KeyError, ValueError):
        return None


def read_dicom(path: str | Path, bad_images: list[str] | None = None) -> list[Frame]:
    """All frames of one DICOM file, modality LUT applied (HU for CT), MONOCHROME1 inverted."""
    import pydicom
    from pydicom.errors import InvalidDicomError
    from pydicom.pixels import apply_modality_lut

    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path, force=True)
    except InvalidDicomError as exc:
        raise SkipFile(f"not a valid DICOM file ({exc})") from None
    except (EOFError, ValueError, OSError, KeyError, IndexError, TypeError) as exc:
        raise SkipFile(f"truncated or corrupt DICOM file ({type(exc).__name__}: {exc})") from None
    modality = str(ds.get("Modality", "") or "").upper()
    if modality in NON_IMAGE_MODALITIES:
        raise SkipFile(NON_IMAGE_MODALITIES[modality])
    if len(ds) == 0:
        raise SkipFile("truncated or empty: the file ends after its DICOM header")
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        sop = ds.get("SOPClassUID")
        sop_name = str(getattr(sop, "name", "") or "") if sop is not None else ""
        if "Rows" in ds or sop_name.endswith("Image Storage"):
            # pydicom stops quietly at the end of a cut-off file: an image object without pixels
            what = f" ({sop_name})" if sop_name else ""
            raise SkipFile(f"truncated or incomplete: an image object{what} without pixel data")
        what = f" ({sop_name})" if sop_name else ""
        raise SkipFile(f"no pixel data: not an image object{what}")
    if "TransferSyntaxUID" not in getattr(ds, "file_meta", {}):
        # headerless files: pydicom worked out the encoding while reading; say it explicitly
        from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

        ds.file_meta = getattr(ds, "file_meta", pydicom.dataset.FileMetaDataset())
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian if ds.is_implicit_VR else ExplicitVRLittleEndian
    ts = ds.file_meta.TransferSyntaxUID
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            arr = ds.pixel_array
    except NotImplementedError as exc:
        raise SkipFile(f"unsupported pixel encoding ({exc})") from None
    except RuntimeError as exc:
        msg = str(exc)
        if "plugin" in msg or "decompress" in msg or "decode" in msg:
            raise SkipFile(_decoder_reason(ts, msg)) from None
        raise SkipFile(f"pixel data could not be decoded ({msg.splitlines()[0]})") from None
    except (ValueError, EOFError) as exc:
        msg = str(exc)
        if "less than expected" in msg or "truncat" in msg.lower() or isinstance(exc, EOFError):
            raise SkipFile("truncated: the pixel data is shorter than the image size says") from None
        raise SkipFile(f"pixel data could not be decoded ({msg.splitlines()[0]})") from None
    except (AttributeError, KeyError, TypeError) as exc:
        raise SkipFile(f"image attributes missing or invalid ({exc})") from None

    n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    if n_frames == 1:
        arr = arr[None]
    elif arr.ndim == (3 if samples == 1 else 4) and arr.shape[0] != n_frames:
        raise SkipFile(f"pixel array shape {arr.shape} does not match NumberOfFrames {n_frames}")
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if photometric == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut

        arr = apply_color_lut(arr, ds)
    patient = str(ds.get("PatientID", "") or "").strip() or None
    series = str(ds.get("SeriesInstanceUID", "") or "").strip() or None
    window = _dicom_window(ds)
    provenance = _dicom_provenance(ds)
    frames = []
    for i in range(arr.shape[0]):
        px = arr[i]
        if px.ndim == 3:  # colour: luminance
            px = _to_grey(px)
            kind = "int"
        else:
            rescale = _frame_rescale(ds, i) if n_frames > 1 else None
            if rescale is not None:  # enhanced multi-frame: slope/intercept in functional groups
                px = px.astype(np.float64) * rescale[0] + rescale[1]
            else:  # modality LUT (rescale slope/intercept or a LUT), PS3.3 C.11.1
                px = apply_modality_lut(px, ds)
            px = px.astype(np.float32)
            kind = "float" if px.dtype.kind == "f" and not np.all(px == np.round(px)) else "int"
            if photometric == "MONOCHROME1":  # minimum is white: invert within the image's range
                px = (px.max() + px.min()) - px
        if not np.isfinite(px).all():
            _unusable(f"frame {i} contains NaN or infinite values", bad_images)
            continue
        frames.append(
            Frame(px.astype(np.float32), str(path), i, modality, patient, series, window=window, kind=kind,
                  provenance=provenance)
        )
    return frames


# ------------------------------------------------------------------------------------------------
# PNG / JPEG / TIFF
# ------------------------------------------------------------------------------------------------


def read_image(path: str | Path, bad_images: list[str] | None = None) -> list[Frame]:
    """A PNG / JPEG / TIFF image (8 or 16 bit, grey or RGB -> grey); multi-page TIFF gives frames."""
    path = Path(path)
    fmt = detect_format(path)
    provenance = None
    try:
        if fmt == "tiff":
            import tifffile

            data = tifffile.imread(path)
            if data.ndim == 3 and data.shape[-1] in (3, 4):
                pages = [data]
            elif data.ndim == 3:
                pages = list(data)
            elif data.ndim == 2:
                pages = [data]
            else:
                raise SkipFile(f"TIFF with {data.ndim} dimensions {data.shape} is not a 2-D image or stack")
        else:
            from PIL import Image as PILImage

            from app.engine.specs.options import EXPORT_PNG_PROVENANCE_KEY

            with PILImage.open(path) as im:
                im.load()
                provenance = synthetic_provenance(_json_or_none(getattr(im, "text", {}).get(EXPORT_PNG_PROVENANCE_KEY)))
                if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                    data = np.asarray(im).astype(np.uint16 if im.mode.startswith("I;16") else np.int32)
                elif im.mode in ("L", "RGB", "RGBA", "F"):
                    data = np.asarray(im)
                else:  # palette, CMYK, LA...: via RGB
                    data = np.asarray(im.convert("RGB"))
            pages = [data]
    except SkipFile:
        raise
    except Exception as exc:  # PIL / tifffile raise many types for corrupt files
        raise SkipFile(f"unreadable {fmt.upper()} image ({type(exc).__name__}: {exc})") from None
    frames = []
    for i, page in enumerate(pages):
        bits = {1: 8, 2: 16}.get(page.dtype.itemsize, 0) if page.dtype.kind in "ui" else 0
        kind = "int" if page.dtype.kind in "uib" else "float"
        px = _to_grey(page)
        if not np.isfinite(px).all():
            _unusable(f"image {i} contains NaN or infinite values", bad_images)
            continue
        frames.append(Frame(px, str(path), i, "", kind=kind, bits=bits, provenance=provenance))
    return frames


# ------------------------------------------------------------------------------------------------
# NIfTI
# ------------------------------------------------------------------------------------------------


def read_nifti(path: str | Path, axis: int = 2) -> list[Frame]:
    """Slices of a NIfTI volume along ``axis`` after reorienting it to the closest canonical (RAS+)."""
    import nibabel as nib

    path = Path(path)
    try:
        img = nib.as_closest_canonical(nib.load(str(path)))
        vol = np.asarray(img.get_fdata(dtype=np.float32))
    except Exception as exc:
        raise SkipFile(f"unreadable NIfTI volume ({type(exc).__name__}: {exc})") from None
    if vol.ndim == 4 and vol.shape[3] == 1:
        vol = vol[..., 0]
    if vol.ndim == 2:
        vol = vol[:, :, None]
    if vol.ndim != 3:
        raise SkipFile(f"NIfTI data of shape {vol.shape} is not a 3-D volume (4-D series are not supported)")
    if axis not in (0, 1, 2):
        raise SkipFile(f"axis {axis} is not 0, 1 or 2")
    if not np.isfinite(vol).all():
        raise SkipFile("volume contains NaN or infinite values")
    vol = np.moveaxis(vol, axis, 0)
    frames = []
    for i, sl in enumerate(vol):
        # RAS+ arrays are indexed (x, y): transpose and flip so anterior is up, patient right on
        # the image left (radiological display convention)
        px = np.flipud(sl.T).astype(np.float32)
        frames.append(Frame(np.ascontiguousarray(px), str(path), i, "", series=str(path), kind="float"))
    return frames


# ------------------------------------------------------------------------------------------------
# HDF5 (fastMRI)
# ------------------------------------------------------------------------------------------------

FASTMRI_KEYS = ("reconstruction_rss", "reconstruction_esc")

#: ``on_slice(i, n)``: called before slice i of n of a slow per-slice conversion (combining the coils of
#: multi-coil k-space takes seconds per slice), for progress and cancellation; what it raises goes
#: through to the caller unchanged (the HDF5 reader, which turns any h5py failure into SkipFile, lets it
#: pass with ``_calling``)
OnSlice = Callable[[int, int], None]


class _Passed(Exception):
    """Carries an exception raised by ``on_slice`` through a reader's ``except Exception``."""

    def __init__(self, exc: BaseException):
        super().__init__(str(exc))
        self.exc = exc


def _calling(on_slice: OnSlice | None) -> OnSlice:
    def call(i: int, n: int) -> None:
        if on_slice is not None:
            try:
                on_slice(i, n)
            except Exception as exc:
                raise _Passed(exc) from None
    return call


def _each_slice(n: int, convert: Callable[[int], np.ndarray], on_slice: OnSlice | None) -> list[np.ndarray]:
    out = []
    for i in range(n):
        if on_slice is not None:
            on_slice(i, n)
        out.append(convert(i))
    return out


def read_fastmri_h5(path: str | Path, keep_complex: bool = False, on_slice: OnSlice | None = None) -> list[Frame]:
    """Slices of a fastMRI HDF5 file's ``reconstruction_rss`` (or ``reconstruction_esc``).

    ``keep_complex``: the complex images of the file's fully sampled ``kspace`` instead (see
    ``complex_from_kspace``); the reconstructions hold magnitudes only. ``on_slice``: see ``OnSlice``."""
    import h5py

    path = Path(path)
    if keep_complex:
        try:
            return _fastmri_complex(path, _calling(on_slice))
        except _Passed as p:
            raise p.exc from None
    try:
        with h5py.File(path, "r") as f:
            key = next((k for k in FASTMRI_KEYS if k in f), None)
            if key is None:
                keys = ", ".join(sorted(f.keys())) or "none"
                raise SkipFile(
                    f"HDF5 file has no {' or '.join(FASTMRI_KEYS)} dataset (keys: {keys}); "
                    "k-space-only files need a reconstruction first"
                )
            vol = np.asarray(f[key][()])
            attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
    except SkipFile:
        raise
    except Exception as exc:
        raise SkipFile(f"unreadable HDF5 file ({type(exc).__name__}: {exc})") from None
    if np.iscomplexobj(vol):
        vol = np.abs(vol)
    if vol.ndim == 2:
        vol = vol[None]
    if vol.ndim != 3:
        raise SkipFile(f"{key} has shape {vol.shape}, expected (slices, H, W)")
    if not np.isfinite(vol).all():
        raise SkipFile(f"{key} contains NaN or infinite values")
    patient = str(attrs.get("patient_id", "") or "") or None
    series = str(attrs.get("acquisition", "")) + ":" + path.stem
    return [
        Frame(sl.astype(np.float32), str(path), i, "MR", patient, series, kind="float")
        for i, sl in enumerate(vol)
    ]


def complex_from_kspace(kspace: np.ndarray, what: str = "k-space") -> np.ndarray:
    """The complex image (H, W) of one slice of fully sampled k-space: (H, W) single-coil by the centred
    orthonormal inverse FFT, (C, H, W) multi-coil by the SENSE-1 combination with ESPIRiT maps
    (``recon.mri.coils.sense_combine``, the image convention of multi-coil reconstruction).

    Undersampled k-space (zeros off a sampling pattern; zero-padded edges are fine) is skipped: a
    prior learnt from aliased images would teach the reconstruction the aliasing."""
    from app.engine.recon.mri.coils import sense_combine
    from app.engine.recon.mri.fft import ifft2c
    from app.engine.recon.mri.io import is_fully_sampled, sampling_pattern

    k = np.asarray(kspace)
    if not np.iscomplexobj(k):
        raise SkipFile(f"{what} is {k.dtype}, not complex")
    if not np.isfinite(k).all():
        raise SkipFile(f"{what} contains NaN or infinite values")
    mask = sampling_pattern(k)
    if not is_fully_sampled(mask):
        raise SkipFile(f"{what} is undersampled ({mask.mean():.0%} of the samples are present): a prior needs fully "
                       "sampled data (reconstruct undersampled data with radsynth recon)")
    k = k.astype(np.complex64)
    if k.ndim == 2:
        return ifft2c(k)
    try:
        return sense_combine(k)[0]
    except ValueError as exc:
        raise SkipFile(f"{what}: cannot combine the coils ({exc})") from None


def _fastmri_complex(path: Path, on_slice: OnSlice) -> list[Frame]:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            if "kspace" not in f:
                raise SkipFile(f"HDF5 file has no 'kspace' dataset (keys: {', '.join(sorted(f.keys())) or 'none'}): "
                               "complex images come from fully sampled k-space")
            ds = f["kspace"]
            if ds.ndim not in (3, 4):
                raise SkipFile(f"kspace has shape {ds.shape}, expected (slices, H, W) or (slices, coils, H, W)")
            # slice by slice: a multi-coil brain volume is ~0.4 GB of complex64
            images = _each_slice(ds.shape[0], lambda i: complex_from_kspace(ds[i], f"kspace slice {i}"), on_slice)
            attrs = {k2: (v.decode() if isinstance(v, bytes) else v) for k2, v in f.attrs.items()}
    except (SkipFile, _Passed):
        raise
    except Exception as exc:
        raise SkipFile(f"unreadable HDF5 file ({type(exc).__name__}: {exc})") from None
    patient = str(attrs.get("patient_id", "") or "") or None
    series = str(attrs.get("acquisition", "")) + ":" + path.stem
    return [Frame(np.ascontiguousarray(im, np.complex64), str(path), i, "MR", patient, series, kind="complex")
            for i, im in enumerate(images)]


def _npz_kspace_images(kspace: np.ndarray, on_slice: OnSlice | None) -> np.ndarray:
    """Complex images (N, H, W) of an NPZ ``kspace`` array, in the layouts of ``recon.mri.io``: (H, W)
    single-coil, (C, H, W) one multi-coil slice, (S, C, H, W) a stack of multi-coil slices."""
    k = np.asarray(kspace)
    if k.ndim in (2, 3):
        return complex_from_kspace(k)[None]
    if k.ndim == 4:
        return np.stack(_each_slice(k.shape[0], lambda i: complex_from_kspace(k[i], f"kspace slice {i}"), on_slice))
    raise SkipFile(f"kspace of shape {k.shape} is not (H, W), (C, H, W) or (S, C, H, W)")


# ------------------------------------------------------------------------------------------------
# NPZ / NPY
# ------------------------------------------------------------------------------------------------

NPZ_SPLITS = ("train", "val", "test")


NPZ_HU_KEYS = ("volume_hu", "image_hu")


def read_npz(path: str | Path, split: str | None = None, keep_complex: bool = False,
             on_slice: OnSlice | None = None, bad_images: list[str] | None = None) -> list[Frame]:
    """Images of an NPZ: ``images`` [+ ``labels``, ``groups``/``series``, ``class_names``], or the
    MedMNIST layout ``{train,val,test}_images`` / ``_labels`` (the split is kept per frame).

    ``split`` restricts a MedMNIST file to one of its splits. Complex images give their magnitude,
    or stay complex with ``keep_complex`` (which refuses real-valued images). ``on_slice``: see ``OnSlice``.
    ``volume_hu`` (S, H, W) / ``image_hu`` (H, W) are CT slices in HU. An image with NaN or infinite
    values is left out with its reason in ``bad_images`` when given (else the file is skipped).
    """
    path = Path(path)
    try:
        z = np.load(path, allow_pickle=False)
    except Exception as exc:
        raise SkipFile(f"unreadable NPZ file ({type(exc).__name__}: {exc})") from None
    with z:
        keys = set(z.files)
        parts: list[tuple[str | None, np.ndarray, np.ndarray | None, np.ndarray | None]] = []
        modality = ""
        hu_key = next((k for k in NPZ_HU_KEYS if k in keys), None)
        if any(f"{s}_images" in keys for s in NPZ_SPLITS):
            wanted = [split] if split else [s for s in NPZ_SPLITS if f"{s}_images" in keys]
            for s in wanted:
                if f"{s}_images" not in keys:
                    have = [s2 for s2 in NPZ_SPLITS if f"{s2}_images" in keys]
                    raise SkipFile(f"NPZ has no split {s!r} (it has {', '.join(have)})")
                labels = z[f"{s}_labels"] if f"{s}_labels" in keys else None
                parts.append((s, z[f"{s}_images"], labels, None))
        elif keep_complex and "kspace" in keys and "images" not in keys:
            if split:
                raise SkipFile(f"NPZ has a single 'kspace' array, no split {split!r}")
            parts.append((None, _npz_kspace_images(z["kspace"], on_slice), None, None))
        elif hu_key is not None and "images" not in keys and not keep_complex:
            if split:
                raise SkipFile(f"NPZ has a single {hu_key!r} array, no split {split!r}")
            parts.append((None, z[hu_key], None, None))
            modality = "CT"  # the array's name says Hounsfield units
        elif "images" in keys:
            if split:
                raise SkipFile(f"NPZ has a single 'images' array, no split {split!r}")
            groups = next((z[k] for k in ("groups", "group", "series", "patient") if k in keys), None)
            parts.append((None, z["images"], z["labels"] if "labels" in keys else None, groups))
        else:
            raise SkipFile(
                f"NPZ has no 'images', 'train_images' or 'volume_hu' array (keys: {', '.join(sorted(keys)) or 'none'})"
            )
        names = [str(n) for n in z["class_names"]] if "class_names" in keys else None
        set_prov = synthetic_provenance(_json_or_none(z["provenance"])) if "provenance" in keys else None
        per_image = _json_or_none(z["per_image"]) if set_prov is not None and "per_image" in keys else None
    frames: list[Frame] = []
    for s, images, labels, groups in parts:
        images = np.asarray(images)
        if keep_complex:
            _check_complex(images, "NPZ images" + (f" of split {s}" if s else ""))
        elif np.iscomplexobj(images):
            images = np.abs(images)
        if images.ndim == 4 and images.shape[1] == 1:  # (N, 1, H, W)
            images = images[:, 0]
        elif keep_complex and images.ndim == 4:  # (N, coils, H, W) coil images: combined as k-space
            from app.engine.recon.mri.fft import fft2c

            images = np.stack(_each_slice(
                len(images), lambda i: complex_from_kspace(fft2c(images[i].astype(np.complex64)), f"coil images {i}"),
                on_slice))
        elif images.ndim == 4 and images.shape[-1] == 1:  # (N, H, W, 1); (N, H, W, 3) stays RGB
            images = images[..., 0]
        if images.ndim == 2:
            images = images[None]
        if images.ndim not in (3, 4):
            raise SkipFile(f"images of shape {images.shape} are not (N, H, W) / (N, 1, H, W) / (N, H, W, C)")
        if keep_complex and images.ndim != 3:
            raise SkipFile(f"complex images of shape {images.shape} are not (N, H, W), (N, 1, H, W) or "
                           "(N, coils, H, W)")
        if labels is not None:
            labels = np.asarray(labels).reshape(len(labels), -1)
            if labels.shape[1] != 1:
                raise SkipFile(f"labels of shape {labels.shape}: only one label per image is supported")
            labels = labels[:, 0]
            if len(labels) != len(images):
                raise SkipFile(f"{len(labels)} labels for {len(images)} images")
        kind = "complex" if keep_complex else "int" if images.dtype.kind in "uib" else "float"
        bits = {1: 8, 2: 16}.get(images.dtype.itemsize, 0) if kind == "int" else 0
        for i in range(len(images)):
            px = images[i].astype(np.complex64) if keep_complex else _to_grey(images[i])
            if not np.isfinite(px).all():
                _unusable(f"image {i}{f' of split {s}' if s else ''} contains NaN or infinite values", bad_images)
                continue
            lab = None
            if labels is not None:
                if names is None:
                    lab = str(labels[i].item())
                elif int(labels[i]) < 0:
                    lab = None  # -1: no class (e.g. unconditional images beside conditional ones)
                elif int(labels[i]) < len(names):
                    lab = names[int(labels[i])]
                else:
                    raise SkipFile(f"label {int(labels[i])} of image {i} has no entry in class_names ({len(names)} names)")
            grp = None if groups is None else str(groups[i].item() if hasattr(groups[i], "item") else groups[i])
            prov = None
            if set_prov is not None:
                image = per_image[i] if isinstance(per_image, list) and i < len(per_image) else {"index": i}
                prov = {**set_prov, "image": image}
            frames.append(
                Frame(px, str(path), i, modality, None, grp if grp is not None or not modality else str(path),
                      label=lab, split=s, kind=kind, bits=bits, provenance=prov)
            )
    return frames


def read_npy(path: str | Path, keep_complex: bool = False, bad_images: list[str] | None = None) -> list[Frame]:
    """A single .npy array: (H, W) or a stack (N, H, W); complex kept with ``keep_complex``."""
    path = Path(path)
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as exc:
        raise SkipFile(f"unreadable NPY file ({type(exc).__name__}: {exc})") from None
    if keep_complex:
        _check_complex(arr, "the array")
    elif np.iscomplexobj(arr):
        arr = np.abs(arr)
    if arr.ndim == 4 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise SkipFile(f"array of shape {arr.shape} is not (H, W) or (N, H, W)")
    kind = "complex" if keep_complex else "int" if arr.dtype.kind in "uib" else "float"
    out = []
    for i, px in enumerate(arr):
        px = px.astype(np.complex64 if keep_complex else np.float32)
        if not np.isfinite(px).all():
            _unusable(f"image {i} contains NaN or infinite values", bad_images)
            continue
        out.append(Frame(px, str(path), i, "", series=str(path), kind=kind))
    return out


# ------------------------------------------------------------------------------------------------
# dispatch
# ------------------------------------------------------------------------------------------------


def _check_complex(arr: np.ndarray, what: str) -> None:
    if not np.iscomplexobj(arr):
        raise SkipFile(f"{what} are real-valued ({arr.dtype}): a complex import needs complex images (real and "
                       "imaginary parts, i.e. the phase)")


def read_file(path: str | Path, *, axis: int = 2, split: str | None = None, fmt: str | None = None,
              keep_complex: bool = False, on_slice: OnSlice | None = None,
              bad_images: list[str] | None = None) -> list[Frame]:
    """The frames of any supported file (format from its content); SkipFile when unusable.

    ``keep_complex``: complex-valued frames (complex NPZ / NPY, fully sampled k-space), for
    priors of MRI reconstruction; formats that store magnitudes only are skipped with the reason.
    ``on_slice``: progress and cancellation of the slow per-slice conversions (``OnSlice``).
    ``bad_images``: a list that collects the reasons of single images left out (else they skip the file)."""
    path = Path(path)
    fmt = fmt or detect_format(path)
    if keep_complex and fmt not in ("hdf5", "npz", "npy"):
        if fmt == "unknown":
            return read_file(path, axis=axis, split=split, fmt=fmt)  # the usual reason for an unknown file
        raise SkipFile(f"{fmt.upper()} files hold magnitude images (no phase): a complex import needs complex NPZ / "
                       "NPY arrays or fully sampled k-space (NPZ or fastMRI HDF5)")
    if fmt == "hdf5":
        return read_fastmri_h5(path, keep_complex, on_slice)
    if fmt == "npz":
        return read_npz(path, split, keep_complex, on_slice, bad_images)
    if fmt == "npy":
        return read_npy(path, keep_complex, bad_images)
    if fmt == "dicom":
        return read_dicom(path, bad_images)
    if fmt in ("png", "jpeg", "tiff"):
        return read_image(path, bad_images)
    if fmt == "nifti":
        return read_nifti(path, axis)
    if path.stat().st_size == 0:
        raise SkipFile("empty file")
    raise SkipFile("not a recognised image format (checked the content: not DICOM, PNG, JPEG, TIFF, NIfTI, HDF5 or NPZ)")


def list_files(root: str | Path) -> list[Path]:
    """The files under a folder (recursively, sorted, hidden files and folders left out)."""
    root = Path(root)
    if root.is_file():
        return [root]
    out = []
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if any(part.startswith(".") for part in rel.parts) or not p.is_file():
            continue
        out.append(p)
    return out


def iter_frames(paths, *, axis: int = 2, split: str | None = None) -> Iterator[tuple[Path, list[Frame] | SkipFile]]:
    """(path, frames) per path, or (path, SkipFile) for a path that cannot be used."""
    for p in paths:
        try:
            yield p, read_file(p, axis=axis, split=split)
        except SkipFile as exc:
            yield p, exc
