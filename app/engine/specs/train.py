"""Spec of the training job (the Training panel's form, ``radsynth train``) and its presets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field

from app.engine.errors import UserError
from app.engine.specs.base import Spec
from app.engine.specs.options import ProcessName
from app.engine.specs.paths import DatasetRef, RunRef


class TrainSpec(Spec):
    """Train a score / diffusion model on a workspace dataset (the GUI's training form)."""

    kind: Literal["train"] = "train"
    dataset: DatasetRef | None = Field(None, description="dataset to train on (its 'train' split; 'val' for validation)")
    preset: str | None = Field(
        None, description="preset in resources/presets/ whose values fill the fields not given explicitly"
    )
    resume: RunRef | None = Field(None, description="run id to continue from its latest checkpoint")

    # -- noise process -------------------------------------------------------------------
    process: ProcessName = Field(
        "ddpm", description="noise process: ncsn (VE, geometric sigmas), ddpm (discrete VP), vpsde (continuous VP, "
        "cosine), flow (rectified flow)"
    )
    prediction_type: Literal["epsilon", "v", "score", "velocity"] | None = Field(
        None, description="what the network predicts: epsilon | v (ddpm, vpsde), score | epsilon (ncsn), velocity "
        "(flow); empty: the process default"
    )
    T: int | None = Field(None, ge=2, le=100_000, description="ddpm: number of discrete steps (default 1000)")
    schedule: Literal["linear", "cosine"] | None = Field(None, description="ddpm: beta schedule (default linear)")
    sigma_min: float | None = Field(None, gt=0, le=100, description="ncsn: smallest noise level (default 0.01)")
    sigma_max: float | None = Field(None, gt=0, le=10_000, description="ncsn: largest noise level (default 50)")
    num_levels: int | None = Field(None, ge=2, le=10_000, description="ncsn: number of noise levels (default 100)")
    freq_loss_weight: float | None = Field(
        None, ge=0, le=10, description="vpsde: weight of the Fourier-domain L1 loss on the clean image (default 0.1)"
    )
    t_sampling: Literal["uniform", "logit_normal"] | None = Field(
        None, description="flow: distribution of training times (default uniform)"
    )

    # -- network -------------------------------------------------------------------------
    image_size: int | None = Field(
        None, ge=8, le=1024, description="train at this square size (images are resized); empty: the dataset's"
    )
    base_channels: int = Field(32, ge=4, le=512, description="U-Net channels at full resolution")
    channel_mults: list[int] = Field([1, 2, 2], min_length=1, max_length=7, description="channel multiplier per level")
    num_res_blocks: int = Field(2, ge=1, le=8, description="residual blocks per level")
    attention_resolutions: list[int] = Field([16], max_length=7, description="feature-map sides with self-attention")
    num_heads: int = Field(4, ge=1, le=32, description="attention heads")
    dropout: float = Field(0.0, ge=0, le=0.9, description="dropout in residual blocks")
    crop_size: int | None = Field(
        None, ge=8, le=1024, description="train on random square crops of this side (the U-Net is fully "
        "convolutional: a reconstruction prior trained on crops is applied to whole slices); empty: whole images"
    )
    hflip: bool = Field(
        False, description="augment with random left-right flips (not for images whose laterality matters, such "
        "as chest radiographs)"
    )
    random_phase: bool | None = Field(
        None, description="complex datasets: multiply each image by a random global phase (an MR image's global "
        "phase is arbitrary); empty: on for complex datasets"
    )
    class_conditional: bool = Field(False, description="condition on the dataset's class labels")
    label_dropout: float = Field(
        0.1, ge=0, le=1, description="fraction of labels replaced by the null class (for classifier-free guidance)"
    )

    # -- optimisation --------------------------------------------------------------------
    epochs: int = Field(10, ge=1, le=100_000, description="passes over the training images")
    batch_size: int = Field(32, ge=1, le=4096, description="images per micro-batch (per GPU)")
    lr: float = Field(2e-4, gt=0, le=1, description="peak learning rate (AdamW)")
    weight_decay: float = Field(0.0, ge=0, le=1, description="AdamW weight decay")
    warmup_steps: int = Field(100, ge=0, le=1_000_000, description="optimizer steps of linear learning-rate warm-up")
    lr_schedule: Literal["cosine", "constant"] = Field("cosine", description="after warm-up: cosine decay or constant")
    grad_clip: float = Field(1.0, ge=0, le=1000, description="clip the gradient norm to this (0: off)")
    grad_accum: int = Field(1, ge=1, le=1024, description="micro-batches per optimizer step")
    ema_decay: float = Field(0.999, ge=0, lt=1, description="EMA decay of the weights used for sampling (0: off)")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="auto: bf16 autocast where the device runs bf16 natively (recent CPUs and GPUs), "
        "else fp32; or fp32, bf16, fp16 (CUDA, with loss scaling)"
    )
    seed: int = Field(0, ge=0, le=2**63 - 1, description="seed of initialisation, data order and noise")
    device: str = Field("auto", description="auto | cpu | cuda | cuda:N | mps")
    num_gpus: int = Field(1, ge=1, le=64, description="GPUs for data-parallel training (launch with torchrun)")
    max_steps: int | None = Field(None, ge=1, le=100_000_000, description="stop after this many optimizer steps")

    # -- reporting -----------------------------------------------------------------------
    log_every: int = Field(10, ge=1, le=100_000, description="emit the loss every N optimizer steps")
    preview_every: int = Field(1, ge=0, le=100_000, description="preview sample grid every N epochs (0: never)")
    preview_n: int = Field(16, ge=1, le=256, description="images in the preview grid")
    preview_steps: int = Field(20, ge=1, le=1000, description="DDIM steps for previews")
    checkpoint_every: int = Field(1, ge=0, le=100_000, description="checkpoint every N epochs (0: only at the end)")
    val_every: int = Field(1, ge=0, le=100_000, description="validation loss per noise level every N epochs (0: never)")
    val_levels: int = Field(8, ge=1, le=100, description="noise levels at which the validation loss is reported")

    cli_help: ClassVar[str] = "train a score / diffusion model on a dataset"
    heavy: ClassVar[bool] = True


# --------------------------------------------------------------------------------------------
# Presets: JSON files of TrainSpec values in resources/presets/
# --------------------------------------------------------------------------------------------

PRESETS_DIR = Path(__file__).resolve().parents[3] / "resources" / "presets"

#: fields that configure the noise process (None: the process's default; see make_process)
PROCESS_OPTION_FIELDS = ("prediction_type", "T", "schedule", "sigma_min", "sigma_max", "num_levels",
                         "freq_loss_weight", "t_sampling")
#: fields that may change when a run is resumed; every other explicit field must match the run
RESUME_OVERRIDABLE = ("epochs", "max_steps", "log_every", "preview_every", "preview_n", "preview_steps",
                      "checkpoint_every", "val_every", "device", "num_gpus")


#: what a preset may ask of its dataset (the preset file's "needs"): the words that say so
PRESET_NEEDS = {"complex": "a complex dataset (real and imaginary parts: import with --complex)",
                "classes": "a dataset with class labels (import with --labels)"}


def list_presets() -> list[dict]:
    """[{"name", "description", "needs", "path"}] of the JSON presets in resources/presets/, sorted by name.
    ``needs``: what the dataset must be ({"complex": true}, {"classes": true}; {} for any dataset)."""
    out = []
    for p in sorted(PRESETS_DIR.glob("*.json")):
        try:
            data = json.loads(p.read_text())
            desc, needs = data.get("description", ""), dict(data.get("needs") or {})
        except (OSError, json.JSONDecodeError, AttributeError, TypeError, ValueError):
            desc, needs = "(unreadable)", {}
        out.append({"name": p.stem, "description": desc, "needs": needs, "path": str(p)})
    return out


def preset_needs(name: str) -> dict:
    """What preset ``name`` needs of its dataset ({} when anything goes or the preset is unknown)."""
    return next((p["needs"] for p in list_presets() if p["name"] == name), {})


def dataset_misfit(needs: dict, dataset) -> str | None:
    """Why ``dataset`` (a store.DatasetRecord) does not give what ``needs`` asks, or None when it fits."""
    if needs.get("complex") and not (dataset.meta or {}).get("complex"):
        return f"dataset {dataset.name} holds magnitude images; it needs {PRESET_NEEDS['complex']}"
    if needs.get("classes") and len(dataset.classes or []) < 2:
        return f"dataset {dataset.name} has no class labels; it needs {PRESET_NEEDS['classes']}"
    return None


def load_preset(name: str) -> dict:
    """The TrainSpec field values of a preset (its "description" removed). UserError if unknown or invalid."""
    path = PRESETS_DIR / f"{name}.json"
    if not name or "/" in name or "\\" in name or not path.is_file():
        known = ", ".join(p["name"] for p in list_presets()) or "none"
        raise UserError(f"no training preset named {name!r} in {PRESETS_DIR} (presets: {known})")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"preset file {path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise UserError(f"preset file {path} must hold a JSON object of training fields")
    data.pop("description", None)
    data.pop("needs", None)
    unknown = sorted(set(data) - set(TrainSpec.model_fields) - {"kind"})
    if unknown:
        raise UserError(f"preset file {path} has fields a training spec does not know: {', '.join(unknown)}")
    data.pop("kind", None)
    return data


def resolve_spec(spec: TrainSpec) -> TrainSpec:
    """The spec with its preset applied: preset values fill every field not given explicitly."""
    if not spec.preset:
        return spec
    values = load_preset(spec.preset)
    data = spec.model_dump()
    for k, v in values.items():
        if k not in spec.model_fields_set:
            data[k] = v
    return TrainSpec.model_validate(data)
