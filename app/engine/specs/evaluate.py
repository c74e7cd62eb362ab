"""Specs of evaluation (distribution metrics, utility) and of the memorization audit."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from app.engine.specs.base import Spec
from app.engine.specs.options import DEFAULT_RULE_MEASURES, AuditExtractorName, ExtractorName, MeasureName, RuleMode
from app.engine.specs.paths import ImageSetRef, InputFile, OutputFolder


class EvaluateSpec(Spec):
    """Evaluate a generated image set against real images (FID, KID, precision/recall, diversity, spectra)."""

    kind: Literal["evaluate"] = "evaluate"
    real: ImageSetRef = Field(..., description="real images: workspace dataset name[:split], folder or NPZ")
    generated: ImageSetRef = Field(..., description="generated images: folder of PNG/DICOM, NPZ or dataset name[:split]")
    holdout: ImageSetRef | None = Field(None, description="real held-out images for the floor row (default: the dataset's "
                                "val/test split, else a seeded half of --real)")
    extractor: ExtractorName = Field("radiomics", description="feature extractor")
    inception_weights: InputFile | None = Field(None, description="local InceptionV3 FID weights file (for --extractor inception)")
    size: int | None = Field(None, ge=8, le=4096, description="resample every set to this size (default: the real set's size)")
    limit: int | None = Field(None, ge=2, description="use at most this many images per set")
    noise_sigma: float = Field(0.3, ge=0, description="sigma of the pixel-noise baseline")
    kid_subsets: int = Field(50, ge=1, le=1000, description="KID subsets")
    kid_subset_size: int = Field(1000, ge=2, description="KID subset size (capped by the set sizes)")
    ms_ssim_pairs: int = Field(200, ge=1, le=100_000, description="random pairs for MS-SSIM diversity")
    clusters: int = Field(20, ge=2, le=1000, description="k-means clusters of the mode-collapse check")
    per_class: bool = Field(True, description="also per class when both sets carry labels")
    utility: bool = Field(False, description="downstream utility: train a classifier on real vs real + generated "
                          "images and test both on the held-out real images (needs class labels on all three sets; "
                          "minutes on a CPU, hence off by default)")
    utility_epochs: int = Field(5, ge=1, le=1000, description="epochs of each utility classifier")
    utility_width: int = Field(16, ge=2, le=256, description="base width of the ResNet-18-style utility classifier")
    utility_bootstrap: int = Field(1000, ge=20, le=100_000, description="bootstrap resamples of the AUC confidence intervals")
    utility_test: ImageSetRef | None = Field(None, description="held-out real test images of the utility classifier "
                                     "(default: the held-out set); its subgroup attributes (a workspace dataset's, from "
                                     "DICOM headers or a labels CSV; an NPZ's attr_<name> arrays) give per-subgroup results")
    out: OutputFolder | None = Field(None, description="report folder (default: the job folder)")
    seed: int = Field(0, description="seed of subsets, pairs, splits and noise")
    device: str = Field("auto", description="auto | cpu | cuda | cuda:N")

    cli_help: ClassVar[str] = "evaluate generated images against real images"


class AuditSpec(Spec):
    """Memorization audit: nearest training images of every generated image, calibrated flags, a report."""

    kind: Literal["audit"] = "audit"
    generated: ImageSetRef = Field(..., description="generated images: folder of PNG/DICOM, an NPZ, or a workspace dataset name[:split]")
    train: ImageSetRef = Field(..., description="training images: workspace dataset name[:split], folder or NPZ")
    holdout: ImageSetRef | None = Field(None, description="held-out real images the model never saw (calibrates the threshold); "
                                "default: the val / test split when --train is a workspace dataset")
    out: OutputFolder | None = Field(None, description="report folder (default: the job folder in the workspace)")
    rule: RuleMode | None = Field(None, description="calibrated (robust floor x margin) | percentile | absolute "
                                  "(default: calibrated, or percentile / absolute when --percentile / --threshold is given)")
    percentile: float | None = Field(None, ge=0, le=100, description="flag below margin x this percentile of held-out distances")
    threshold: float | None = Field(None, ge=0, description="absolute distance threshold on --measure (distance: l2 RMS, or 1 - similarity)")
    thresholds: dict[str, float] | None = Field(None, description="absolute distance thresholds per measure, JSON")
    measure: MeasureName = Field("ncc", description="measure of --threshold")
    measures: list[MeasureName] = Field(
        list(DEFAULT_RULE_MEASURES), description="measures whose flags count (an image is flagged if any flags it)")
    margin: float | None = Field(None, gt=0, description="factor on the calibrated floor / percentile (default 0.5; 1 with --percentile)")
    z: float = Field(3.0, ge=0, description="robust floor: median - z MAD of log held-out distances")
    ratio: float = Field(0.5, ge=0, le=1, description="also flag below the floor when nearest < ratio x second-nearest (0: off)")
    max_memorization_rate: float = Field(0.0, ge=0, le=1, description="the audit passes when at most this fraction is flagged")
    extractor: AuditExtractorName = Field("radiomics", description="features for the cosine measure: radiomics | inception | none")
    size: int | None = Field(None, ge=8, le=4096, description="resample every set to this size (default: the training set's size)")
    k: int = Field(5, ge=1, le=64, description="candidates per search for the shift-tolerant scoring and SSIM")
    shift_radius: int = Field(2, ge=0, le=8, description="search translations of up to this many pixels")
    ssim: bool = Field(True, description="score SSIM on the candidates")
    invariant: bool = Field(True, description="also search mirrored, rotated, zoomed, shifted, intensity-mapped, blurred copies "
                            "(the invariant and descriptor measures) and name the transformation of every flagged pair")
    clean_out: OutputFolder | None = Field(None, description="also write the set without flagged images here (NPZ through the exporter)")
    max_pairs: int = Field(48, ge=0, le=10_000, description="flagged pairs drawn in the report")
    device: str = Field("auto", description="auto | cpu | cuda | cuda:N")

    cli_help: ClassVar[str] = "memorization audit of generated images against the training set"
