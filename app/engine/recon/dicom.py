"""Writing reconstructions as DICOM: derived secondary MR images with pydicom (small own writer).

app/engine/export.py writes *synthetic* images (marked as such); a reconstruction is a derived image
of a real acquisition, so it gets ImageType DERIVED\\SECONDARY, a DerivationDescription, and, when
the input was DICOM, the source's study / patient and a reference to the source series and image.
"""

from __future__ import annotations

import datetime
from pathlib import Path

import numpy as np


def write_derived_mr(path: str | Path, magnitude: np.ndarray, description: str, source: str = "",
                     source_dataset=None) -> Path:
    """Write a (H, W) magnitude image as a 16-bit MR DICOM (rescale slope keeps the float scale)."""
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

    img = np.asarray(magnitude, np.float64)
    hi = float(img.max()) or 1.0
    slope = hi / 65535.0
    pixels = np.clip(np.round(img / slope), 0, 65535).astype(np.uint16)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    now = datetime.datetime.now()
    src = source_dataset
    ds.SOPClassUID = MRImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "MR"
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.DerivationDescription = (description + (f" from {Path(source).name}" if source else ""))[:1024]
    ds.SeriesDescription = description[:64]
    ds.ContentDate, ds.ContentTime = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    for tag in ("PatientName", "PatientID", "StudyInstanceUID", "StudyDate", "FrameOfReferenceUID"):
        if src is not None and tag in src:
            setattr(ds, tag, getattr(src, tag))
    ds.PatientName = getattr(ds, "PatientName", "ANONYMOUS")
    ds.PatientID = getattr(ds, "PatientID", "RADSYNTH")
    ds.StudyInstanceUID = getattr(ds, "StudyInstanceUID", generate_uid())
    ds.SeriesInstanceUID = generate_uid()
    ds.SeriesNumber, ds.InstanceNumber = 900, 1
    if src is not None and "SOPInstanceUID" in src:
        ref = pydicom.Dataset()
        ref.ReferencedSOPClassUID = src.SOPClassUID
        ref.ReferencedSOPInstanceUID = src.SOPInstanceUID
        ds.SourceImageSequence = [ref]
        series = pydicom.Dataset()
        series.SeriesInstanceUID = src.SeriesInstanceUID
        ds.ReferencedSeriesSequence = [series]
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.RescaleSlope, ds.RescaleIntercept = f"{slope:.10g}", "0"
    ds.PixelData = pixels.tobytes()
    path = Path(path)
    ds.save_as(path, enforce_file_format=True)
    return path
