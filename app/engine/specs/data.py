"""Specs of the dataset jobs: ingest, eda (statistics) and demo (the built-in phantoms)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, field_validator

from app.engine.specs.base import Spec
from app.engine.specs.options import MODALITIES, SplitName, parse_normalize
from app.engine.specs.paths import DatasetRef, InputPath, LabelsSpec, NewDatasetName

DEMO_NAME = "demo-phantoms"


class IngestSpec(Spec):
    """Import a file or folder of medical images as a dataset (cache, labels, grouped splits)."""

    kind: Literal["ingest"] = "ingest"
    source: InputPath = Field(..., description="file or folder to import (DICOM, PNG/JPEG/TIFF, NIfTI, fastMRI HDF5, NPZ)")
    name: NewDatasetName = Field("", description="dataset name (default: derived from the source's name)")
    size: int = Field(128, ge=8, le=2048, description="image size in pixels (square)")
    labels: LabelsSpec = Field("auto", description="auto | subfolders | csv:FILE (columns file,label) | none")
    modality: Literal[MODALITIES] = Field("auto", description="auto (from the files) or force mr | ct | cr | dx | ...")  # type: ignore[valid-type]
    normalize: str = Field(
        "percentile",
        description="minmax | percentile (0.5-99.5) | ct-window:brain|subdural|stroke|soft|mediastinum|liver|lung|bone"
        " | ct-window:C,W | dicom-window | bit-depth | auto",
    )
    axis: int = Field(2, ge=0, le=2, description="slicing axis for volumes (NIfTI), in canonical RAS+ order")
    group_by: Literal["auto", "patient", "series", "folder", "file"] = Field(
        "auto", description="what keeps images together in one split: auto (patient, else series/volume, else file)"
    )
    val_fraction: float = Field(0.1, ge=0, lt=1, description="fraction of images (whole groups) for validation")
    test_fraction: float = Field(0.1, ge=0, lt=1, description="fraction of images (whole groups) for testing")
    seed: int = Field(0, description="seed of the split")
    keep_aspect: bool = Field(True, description="pad to a square before resizing (else stretch)")
    min_size: int = Field(16, ge=1, description="skip images smaller than this many pixels on a side")
    skip_blank: bool = Field(True, description="skip constant (blank) images and slices")
    replace: bool = Field(False, description="replace a dataset of the same name")
    complex: bool = Field(
        False, description="keep complex MR images as 2 channels (real, imaginary), for reconstruction priors: "
        "complex NPZ / NPY or fully sampled k-space (NPZ, fastMRI HDF5; multi-coil combined with ESPIRiT "
        "maps); scaled by 2x the 99th percentile of the magnitude "
        "(normalize is not used), centre-cropped or zero-padded to size (not resampled)"
    )

    cli_positional: ClassVar[tuple[str, ...]] = ("source",)
    cli_help: ClassVar[str] = "import images (DICOM, PNG/TIFF, NIfTI, fastMRI HDF5, NPZ) as a dataset"

    @field_validator("normalize")
    @classmethod
    def _check_normalize(cls, v: str) -> str:
        parse_normalize(v)
        return v

    @field_validator("labels")
    @classmethod
    def _check_labels(cls, v: str) -> str:
        if v in ("auto", "subfolders", "none") or (v.startswith("csv:") and len(v) > 4):
            return v
        raise ValueError(f"labels {v!r} is not one of auto, subfolders, csv:FILE, none")

    @field_validator("test_fraction")
    @classmethod
    def _check_fractions(cls, v: float, info) -> float:
        if v + info.data.get("val_fraction", 0.0) >= 1:
            raise ValueError("val_fraction + test_fraction must be below 1")
        return v


class EdaSpec(Spec):
    """Explore a dataset: sample grid, intensity histogram, classes, mean/std images, class SSIM."""

    kind: Literal["eda"] = "eda"
    dataset: DatasetRef = Field(..., description="dataset name in the workspace")
    split: SplitName = Field("all", description="which split to describe")
    bins: int = Field(64, ge=4, le=1024, description="histogram bins over [-1, 1]")
    n_samples: int = Field(16, ge=1, le=256, description="images in the sample grid")
    seed: int = Field(0, description="seed for choosing the sample images")

    cli_positional: ClassVar[tuple[str, ...]] = ("dataset",)
    cli_help: ClassVar[str] = "dataset statistics: samples, histogram, classes, mean/std images, class SSIM"


class DemoSpec(Spec):
    """Create the built-in demo dataset of synthetic brain-like MR phantoms (no patient data)."""

    kind: Literal["demo"] = "demo"
    name: NewDatasetName = Field(DEMO_NAME, description="dataset name in the workspace")
    n_images: int = Field(512, ge=8, le=100_000, description="number of slices to generate")
    size: int = Field(64, ge=32, le=512, description="image size in pixels (square)")
    seed: int = Field(0, description="random seed (same seed, same phantoms and splits)")
    slices_per_patient: int = Field(8, ge=1, le=64, description="slices contributed by each phantom patient")
    val_fraction: float = Field(0.1, ge=0, lt=1, description="fraction of images (whole patients) for validation")
    test_fraction: float = Field(0.1, ge=0, lt=1, description="fraction of images (whole patients) for testing")
    replace: bool = Field(False, description="replace a dataset of the same name")

    cli_aliases: ClassVar[dict[str, str]] = {"n": "n_images"}
    cli_help: ClassVar[str] = "create the synthetic phantom demo dataset"
