"""Specs of reconstruction: one MRI slice (recon), an MRI error analysis (recon-sweep), a CT slice (ct-recon)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, field_validator

from app.engine.specs.base import Spec
from app.engine.specs.options import (
    ALD_MIN_STEPS,
    WARM_START_HELP,
    CTMethod,
    CTTask,
    MaskKind,
    Method,
    WarmStart,
)
from app.engine.specs.paths import CheckpointRef, InputFile, OutputFolder


def check_warm_start(warm_start: float | str | None, methods: list[str]) -> None:
    """A warm start is asked of score-dds; one given without it would silently do nothing."""
    if warm_start is not None and "score-dds" not in methods:
        raise ValueError(f"--warm-start applies to score-dds, which is not among the methods ({', '.join(methods)})")


class _WarmStartChecked:
    """A field check (not a model check) so that the error names ``warm_start`` and a form shows it there;
    ``method`` is declared before ``warm_start``, so it is validated first."""

    @field_validator("warm_start")
    @classmethod
    def _warm_start_needs_dds(cls, v, info):
        methods = info.data.get("method")
        if methods is not None:
            check_warm_start(v, [getattr(m, "value", m) for m in methods])
        return v


class _LangevinStepsChecked:
    """Annealed Langevin with too few noise levels returns noise without a word: refused on ``steps`` (declared
    after ``method``), naming the number that works."""

    @field_validator("steps")
    @classmethod
    def _langevin_needs_levels(cls, v, info):
        methods = [getattr(m, "value", m) for m in info.data.get("method") or []]
        if "score-ald" in methods and v < ALD_MIN_STEPS:
            raise ValueError(f"annealed Langevin (score-ald) needs at least {ALD_MIN_STEPS} noise levels; with {v} "
                             f"its samples stay noise. Use {ALD_MIN_STEPS} or more, or score-dds for few steps")
        return v


class ReconSpec(_LangevinStepsChecked, _WarmStartChecked, Spec):
    """Reconstruct an undersampled MRI slice with one or more methods and score it."""

    kind: Literal["recon"] = "recon"
    input: InputFile = Field(..., description="complex image / k-space file (.npz, .npy, fastMRI .h5)")
    slice: int = Field(0, ge=0, description="slice index in the file")
    mask: MaskKind = Field(MaskKind.random, description="undersampling mask (ignored for already undersampled k-space)")
    acceleration: float = Field(4.0, ge=1.0, le=64.0, description="acceleration factor R")
    center_fraction: float = Field(0.08, gt=0.0, lt=1.0, description="fully sampled centre fraction")
    method: list[Method] = Field(
        default_factory=lambda: [Method.zero_filled, Method.cs_tv], min_length=1,
        description="methods to run and compare: zero-filled cs-tv cs-wavelet score-ald score-pc score-dds",
    )
    lam: float | None = Field(None, gt=0.0, description="regularisation weight of CS methods (default 0.005)")
    iterations: int = Field(100, ge=1, le=10000, description="iterations of CS methods")
    run: CheckpointRef | None = Field(None, description="checkpoint (run id or path) for score-based methods")
    samples: int = Field(4, ge=1, le=256, description="posterior samples of score-based methods")
    steps: int = Field(100, ge=1, le=5000, description="noise levels of score-based methods")
    warm_start: WarmStart = Field(None, description=WARM_START_HELP)
    seed: int = Field(0, description="seed of the mask, the noise and the posterior samples")
    noise_sigma: float = Field(0.0, ge=0.0, description="std of complex Gaussian noise added to simulated k-space")
    crop: int | None = Field(None, ge=8, description="centre crop (pixels) for the metrics; default none")
    dicom: bool = Field(False, description="also write the reconstructions as DICOM (derived MR images)")
    out: OutputFolder | None = Field(None, description="output folder (default: the job's folder in the workspace)")
    device: str = Field("auto", description="auto | cpu | cuda | cuda:N | mps")

    cli_aliases: ClassVar[dict[str, str]] = {"methods": "method"}
    heavy: ClassVar[bool] = True


class ReconSweepSpec(_LangevinStepsChecked, _WarmStartChecked, Spec):
    """Error analysis: methods x accelerations over slices, with radial k-space error and subgroups."""

    kind: Literal["recon-sweep"] = "recon-sweep"
    input: InputFile = Field(..., description="complex image / k-space file (.npz, .npy, fastMRI .h5)")
    slices: list[int] = Field(default_factory=lambda: [0], min_length=1, description="slice indices")
    accelerations: list[float] = Field(default_factory=lambda: [2.0, 4.0, 6.0, 8.0], min_length=1,
                                       description="acceleration factors")
    method: list[Method] = Field(default_factory=lambda: [Method.zero_filled, Method.cs_tv], min_length=1,
                                 description="methods to compare")
    mask: MaskKind = Field(MaskKind.random, description="undersampling mask")
    center_fraction: float = Field(0.08, gt=0.0, lt=1.0, description="fully sampled centre fraction")
    lam: float | None = Field(None, gt=0.0, description="regularisation of CS methods")
    iterations: int = Field(100, ge=1, le=10000, description="iterations of CS methods")
    run: CheckpointRef | None = Field(None, description="checkpoint for score-based methods")
    samples: int = Field(2, ge=1, le=64, description="posterior samples (score-based)")
    steps: int = Field(100, ge=1, le=5000, description="noise levels (score-based)")
    warm_start: WarmStart = Field(None, description=WARM_START_HELP)
    seed: int = Field(0, description="seed of the masks (slice k uses seed + k) and samples")
    flag_ssim_drop: float = Field(0.05, gt=0.0, lt=1.0, description="flag subgroups whose mean SSIM is this far below the rest")
    out: OutputFolder | None = Field(None, description="output folder (default: the job's folder)")
    device: str = Field("auto", description="auto | cpu | cuda | cuda:N | mps")


class CTReconSpec(Spec):
    """Reconstruct a sparse-view CT slice or denoise a noisy one; score against the clean slice."""

    kind: Literal["ct-recon"] = "ct-recon"
    input: InputFile = Field(..., description="NPZ with volume_hu / image_hu (HU), or a CT DICOM file")
    slice: int = Field(0, ge=0, description="slice index of the volume")
    task: CTTask = Field("sparse-view", description="sparse-view | denoise")
    views: int = Field(60, ge=2, le=2000, description="number of projection angles over 180 degrees (sparse-view)")
    noise_hu: float = Field(50.0, gt=0.0, le=2000.0, description="std of the added Gaussian noise in HU (denoise)")
    method: list[CTMethod] = Field(
        default_factory=lambda: ["fbp"], min_length=1, description="fbp backprojection noisy score"
    )
    run: CheckpointRef | None = Field(None, description="checkpoint of a 1-channel CT prior for the score method")
    samples: int = Field(2, ge=1, le=64, description="posterior samples (score)")
    steps: int = Field(100, ge=1, le=5000, description="reverse-process steps (score)")
    seed: int = Field(0, description="seed of the noise and the samples")
    out: OutputFolder | None = Field(None, description="output folder (default: the job's folder)")
    device: str = Field("auto", description="auto | cpu | cuda | cuda:N | mps")

    heavy: ClassVar[bool] = True
