"""The one registry of every named option a spec offers (torch-free).

Samplers, masks, reconstruction methods, audit measures, feature extractors, export formats, modalities,
study modes: the names are defined here, once. The engine modules that implement them import these names
(and ``tests/engine/test_specs.py`` checks that every name has exactly one implementation), so the CLI's
choices, the forms' combo boxes and the server's validation can never offer a name the engine lacks.
"""

from __future__ import annotations

import enum
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field

# -- generation ---------------------------------------------------------------------------------
#: sampler names (``app.engine.sampling.api.SAMPLERS`` has one class for each)
SamplerName = Literal["ddim", "dpmpp2m", "dpmpp3m", "unipc", "heun", "ancestral", "pc", "langevin", "euler"]
SAMPLER_NAMES: tuple[str, ...] = ("langevin", "ancestral", "ddim", "pc", "heun", "dpmpp2m", "dpmpp3m", "unipc", "euler")

#: the export formats of ``app.engine.export.export_images``
ExportFormat = Literal["png", "png16", "dicom", "npz", "hdf5"]
EXPORT_FORMATS: tuple[str, ...] = ("png", "png16", "dicom", "npz", "hdf5")
#: where an export keeps each image's provenance JSON, for the exporter and the readers that find it again:
#: the PNG text-chunk key, the DICOM private creator and group (element 0x01 holds the JSON)
EXPORT_PNG_PROVENANCE_KEY = "radsynth:provenance"
EXPORT_PRIVATE_CREATOR = "RadSynth Studio"
EXPORT_PRIVATE_GROUP = 0x0011

# -- training -----------------------------------------------------------------------------------
ProcessName = Literal["ncsn", "ddpm", "vpsde", "flow"]

# -- datasets -----------------------------------------------------------------------------------
MODALITIES = ("auto", "mr", "ct", "cr", "dx", "mg", "us", "pt", "nm", "xa", "ot")
Modality = Literal[MODALITIES]  # type: ignore[valid-type]
SplitName = Literal["all", "train", "val", "test"]

#: standard CT display windows (centre, width) in HU (Radiopaedia "Windowing (CT)")
CT_WINDOWS: dict[str, tuple[float, float]] = {
    "brain": (40.0, 80.0),
    "subdural": (75.0, 215.0),
    "stroke": (40.0, 40.0),
    "soft": (50.0, 400.0),
    "mediastinum": (50.0, 350.0),
    "liver": (60.0, 150.0),
    "lung": (-600.0, 1500.0),
    "bone": (400.0, 1800.0),
}
NORMALIZE_MODES = ("minmax", "percentile", "ct-window:<name>|ct-window:C,W", "dicom-window", "bit-depth", "auto")
PERCENTILES = (0.5, 99.5)


def parse_normalize(value: str) -> tuple[str, tuple[float, float] | None]:
    """(mode, window) for a normalisation name; ValueError naming the allowed values otherwise."""
    v = str(value).strip().lower()
    if v in ("minmax", "percentile", "dicom-window", "bit-depth", "auto"):
        return v, None
    if v.startswith("ct-window:"):
        arg = v.split(":", 1)[1]
        if arg in CT_WINDOWS:
            return "ct-window", CT_WINDOWS[arg]
        try:
            c, w = (float(x) for x in arg.split(","))
        except ValueError:
            raise ValueError(
                f"normalize {value!r}: after 'ct-window:' give one of {', '.join(CT_WINDOWS)} or 'C,W' in HU"
            ) from None
        if w <= 0:
            raise ValueError(f"normalize {value!r}: the window width must be positive")
        return "ct-window", (c, w)
    raise ValueError(
        f"normalize {value!r} is not one of minmax, percentile, dicom-window, bit-depth, auto, "
        f"ct-window:{{{'|'.join(CT_WINDOWS)}}} or ct-window:C,W"
    )


# -- reconstruction -----------------------------------------------------------------------------


class MaskKind(str, enum.Enum):
    """Undersampling masks (``app.engine.recon.mri.masks.MASKS`` has one function for each)."""

    random = "random"
    equispaced = "equispaced"
    gaussian1d = "gaussian1d"
    poisson2d = "poisson2d"
    radial = "radial"


MASK_KINDS = tuple(m.value for m in MaskKind)


class Method(str, enum.Enum):
    """MRI reconstruction methods (``app.engine.recon.mri.methods.reconstruct`` runs each)."""

    zero_filled = "zero-filled"
    cs_tv = "cs-tv"
    cs_wavelet = "cs-wavelet"
    score_ald = "score-ald"
    score_pc = "score-pc"
    score_dds = "score-dds"


METHODS = tuple(m.value for m in Method)
#: the fewest noise levels annealed Langevin (score-ald) is run with: with fewer its level ratio is too coarse
#: for a few Langevin steps per level to remove the excess noise (recon.mri.score.posterior_sample; with 10 a
#: small SIAT prior gave pure noise at -2.2 dB), so a spec with fewer is refused
ALD_MIN_STEPS = 50
SCORE_METHODS = ("score-ald", "score-pc", "score-dds")
#: regularisation weight of the CS methods (and of the CS-TV image a warm start begins from)
DEFAULT_LAM = 0.005
#: what the recon and sweep jobs say about their ``warm_start`` option
WARM_START_HELP = ("score-dds: start from the CS-TV image noised to this level sigma/alpha (network units) instead of "
                   "from noise, with fewer steps (0.1 with 5 steps on SIAT); 'auto': the level and steps that follow "
                   "the mask and R (0.1 / 5 for 2D masks, 0.3 / 15 for 1D, 0.5 / 20 above R = 5)")
#: the recon and sweep jobs' ``warm_start`` field: a level, "auto" (``recon.mri.warm.resolve_warm_start``) or none
WarmStart = Annotated[float, Field(gt=0.002, le=20.0)] | Literal["auto"] | None

CTMethod = Literal["fbp", "backprojection", "noisy", "score"]
CT_METHODS = ("fbp", "backprojection", "noisy", "score")
CTTask = Literal["sparse-view", "denoise"]

# -- evaluation and audit -----------------------------------------------------------------------
#: feature extractors of ``app.engine.metrics.features.make_extractor``
ExtractorName = Literal["radiomics", "inception", "domain"]
EXTRACTORS: tuple[str, ...] = ("radiomics", "inception", "domain")
#: the audit's cosine measure needs an extractor without a classifier: "domain" is not offered there
AuditExtractorName = Literal["radiomics", "inception", "none"]
#: the audit's distance measures (``app.engine.audit.nn``)
MeasureName = Literal["l2", "ncc", "l2_coarse", "ncc_coarse", "ssim", "cosine", "invariant", "descriptor"]
MEASURES: tuple[str, ...] = ("l2", "ncc", "l2_coarse", "ncc_coarse", "ssim", "cosine", "invariant", "descriptor")
PIXEL_MEASURES: tuple[str, ...] = ("l2", "ncc", "l2_coarse", "ncc_coarse", "ssim")
#: "descriptor" (the feature-space measure) is reported, not in the default rule: on SIAT its ratio route
#: flagged a slice of a new patient (a lone close layout), which the invariant measure does not
DEFAULT_RULE_MEASURES: tuple[str, ...] = ("l2", "ncc", "l2_coarse", "ncc_coarse", "ssim", "invariant")
#: the transform-invariant measures (``app.engine.audit.invariant``)
INVARIANT_MEASURES: tuple[str, ...] = ("invariant", "descriptor")
RuleMode = Literal["calibrated", "percentile", "absolute"]
RULE_MODES: tuple[str, ...] = ("calibrated", "percentile", "absolute")

# -- reader studies -----------------------------------------------------------------------------


class StudyMode(StrEnum):
    single = "single"
    afc2 = "2afc"
    plausibility = "plausibility"


class GoalRule(StrEnum):
    """How the goal threshold is applied to the pooled accuracy (AUC in plausibility mode)."""

    point = "point"  # the point estimate is below the threshold (the interval is reported, not tested)
    upper_ci = "upper_ci"  # the upper end of the 95 % interval is below the threshold (the default)


class RealSplit(StrEnum):
    """Which images of a workspace dataset named without a split become a study's real cases."""

    test = "test"  # the held-out test split (the default: images no model trained on)
    val = "val"
    train = "train"  # training images: an explicit choice, said in the results
    all = "all"  # every image, training images included: an explicit choice, said in the results

