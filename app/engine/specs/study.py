"""Specs of the reader-study jobs: create, statistics, export for reading elsewhere, import answers."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from app.engine.specs.base import Spec
from app.engine.specs.options import GoalRule, RealSplit, StudyMode
from app.engine.specs.paths import ImageSetRef, InputFile, NewStudyName, OutputFile, OutputFolder, StudyRef


class StudyCreateSpec(Spec):
    """Create a blinded reader study from real and synthetic image sets."""

    kind: Literal["study-create"] = "study-create"
    name: NewStudyName = Field(..., description="study name (letters, digits, '.', '_', '-')")
    real: list[ImageSetRef] = Field(..., min_length=1, description="real image sets: dataset name[:split], image folder or NPZ")
    real_split: RealSplit = Field(
        RealSplit.test, description="split of a real dataset named without one: test (held out) | val | train | all "
        "(train and all put training images among the real cases; the results say so)"
    )
    synthetic: list[ImageSetRef] = Field(..., min_length=1, description="synthetic image sets: dataset name[:split], folder or NPZ")
    n_cases: int = Field(40, ge=2, le=100_000, description="number of cases (pairs in 2afc mode)")
    synthetic_fraction: float = Field(
        0.5, gt=0.0, lt=1.0, description="share of synthetic cases (single / plausibility; 2afc pairs are always 1:1)"
    )
    mode: StudyMode = Field(StudyMode.single, description="single | 2afc | plausibility")
    size: int = Field(256, ge=16, le=2048, description="every image is shown at this size (pixels, square)")
    seed: int = Field(0, description="seed of the case draw, case ids and reader orders")
    goal_accuracy: float = Field(
        0.6, gt=0.0, le=1.0, description="goal: pooled reader accuracy (plausibility mode: AUC) below this"
    )
    goal_rule: GoalRule = Field(
        GoalRule.upper_ci, description="upper_ci | point: the upper end of the confidence interval (default) or the point "
        "estimate must be below the goal"
    )
    time_limit_s: float = Field(0.0, ge=0.0, le=3600.0, description="seconds a case is shown (0: no limit)")
    low_percentile: float = Field(0.5, ge=0.0, lt=50.0, description="per-image normalisation: this percentile maps to 0")
    high_percentile: float = Field(99.5, gt=50.0, le=100.0, description="per-image normalisation: this percentile maps to 255")
    readers: list[str] = Field(default_factory=list, description="reader ids to add at once")

    cli_positional: ClassVar[tuple[str, ...]] = ("name",)
    cli_aliases: ClassVar[dict[str, str]] = {"n": "n_cases"}

    @model_validator(mode="after")
    def _pairs_are_balanced(self):
        if self.mode == StudyMode.afc2 and abs(self.synthetic_fraction - 0.5) > 1e-9:
            raise ValueError("2afc pairs one real with one synthetic image: synthetic_fraction must be 0.5")
        return self


class StudyStatsSpec(Spec):
    """Statistics of a reader study (per reader and pooled), optionally written as JSON + CSV."""

    kind: Literal["study-stats"] = "study-stats"
    study: StudyRef = Field(..., description="study name or id")
    out: OutputFolder | None = Field(None, description="folder to write stats.json, readers.csv, cases.csv, answers.csv")

    cli_positional: ClassVar[tuple[str, ...]] = ("study",)


class StudyExportSpec(Spec):
    """Export a study for reading elsewhere (package, no truth) or its answers (JSON)."""

    kind: Literal["study-export"] = "study-export"
    study: StudyRef = Field(..., description="study name or id")
    out: OutputFile = Field(..., description="file to write (.h5 for a package, .json for answers)")
    what: Literal["package", "answers"] = Field("package", description="package | answers")
    readers: list[str] = Field(default_factory=list, description="readers to include (default: all)")

    cli_positional: ClassVar[tuple[str, ...]] = ("study", "out")


class StudyImportSpec(Spec):
    """Import a study package (for reading here) or a readers' answers file (back into its study)."""

    kind: Literal["study-import"] = "study-import"
    file: InputFile = Field(..., description="study package (.h5) or answers file (.json)")

    cli_positional: ClassVar[tuple[str, ...]] = ("file",)
