"""Specs of generation: sampling a trained model, and exporting its network to ONNX."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from app.engine.specs.base import Spec
from app.engine.specs.options import ExportFormat, SamplerName
from app.engine.specs.paths import CheckpointRef, NewDatasetName, OutputFile, OutputFolder


class SampleSpec(Spec):
    """Generate synthetic images from a trained model and export them marked as synthetic."""

    kind: Literal["sample"] = "sample"
    run: CheckpointRef = Field(..., description="training run id in the workspace, or a checkpoint folder")
    epoch: int | None = Field(None, ge=0, description="use the run's checkpoint of this epoch (default: the latest)")
    ema: bool = Field(True, description="sample from the EMA weights (else the raw weights)")
    n_images: int = Field(16, ge=1, le=1_000_000, description="number of images to generate")
    sampler: SamplerName = Field(
        "ddim", description="dpmpp2m | unipc (fewest steps: 5-10) | dpmpp3m (10-20) | ddim | heun (10-50) | ancestral | "
        "pc | langevin (ncsn) | euler (flow)"
    )
    steps: int = Field(50, ge=1, le=100_000, description="sampler steps (noise levels for langevin)")
    seed: int = Field(0, ge=0, le=2**63 - 1, description="seed: the same seed gives the same images on any device")
    class_label: list[int | str] | None = Field(
        None, description="class (index or name) for every image, or one per image; empty: unconditional"
    )
    guidance: float = Field(0.0, ge=0, le=100, description="classifier-free guidance scale w (0: none)")
    eta: float = Field(0.0, ge=0, le=1, description="ddim: stochasticity (0 deterministic, 1 ancestral)")
    snr: float = Field(0.16, gt=0, le=10, description="pc: signal-to-noise ratio of the Langevin corrector")
    n_steps_each: int | None = Field(
        None, ge=0, le=1000, description="pc: corrector steps per time (default 1); langevin: steps per level (default 5)"
    )
    batch_size: int = Field(64, ge=1, le=4096, description="images per batch (does not change the images)")
    device: str = Field("auto", description="auto | cpu | cuda | cuda:N | mps")
    format: ExportFormat = Field(
        "png", description="png (8 bit) | png16 | dicom (Secondary Capture) | npz | hdf5"
    )
    out: OutputFolder | None = Field(None, description="output folder (default: the job's folder in the workspace /samples)")
    dataset: NewDatasetName = Field("", description="also register the images as this workspace dataset, marked "
                                    "synthetic with their provenance (default: <run>-samples-<job id>)")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="the network's precision: auto (bf16 autocast where the device runs bf16 natively, "
        "else fp32) | fp32 | bf16 | fp16; the sampler's own arithmetic stays fp32"
    )
    half: bool = Field(False, description="the older switch: half precision (fp16 on CUDA, bf16 on CPU) whatever "
                       "precision says")
    compile: bool = Field(False, description="torch.compile the network (slow start, faster on long runs)")
    preview_every: int = Field(5, ge=0, le=100_000, description="preview grid of the clean-image estimate every N steps (0: off)")

    cli_aliases: ClassVar[dict[str, str]] = {"n": "n_images", "class": "class_label"}
    cli_help: ClassVar[str] = "generate synthetic images from a trained model"
    heavy: ClassVar[bool] = True


class ExportOnnxSpec(Spec):
    """Export a trained network to ONNX (dynamic batch) for serving elsewhere, checked with onnxruntime."""

    kind: Literal["export-onnx"] = "export-onnx"
    run: CheckpointRef = Field(..., description="training run id in the workspace, or a checkpoint folder")
    epoch: int | None = Field(None, ge=0, description="the run's checkpoint of this epoch (default: the latest)")
    ema: bool = Field(True, description="export the EMA weights (else the raw weights)")
    out: OutputFile | None = Field(None, description="output .onnx file (default: model.onnx in the job's folder)")
    opset: int = Field(17, ge=14, le=23, description="ONNX opset version")
    verify: bool = Field(True, description="run the exported model with onnxruntime and compare with PyTorch")

    cli_help: ClassVar[str] = "export a trained network to ONNX"
