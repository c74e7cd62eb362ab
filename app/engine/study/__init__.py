"""Blinded real-vs-synthetic reader studies: design, blinded presentation, answers and statistics.

A study draws N cases from real and synthetic image sets with a seed, makes every image look the
same whatever its origin (one resampler to one size, per-image percentile normalisation, 8-bit
quantisation), stores the pixels the readers see under opaque random case ids in
``studies/<id>/blinded.h5`` (which holds no provenance at all), and keeps the truth only in the
owner's SQLite registry (table ``study_cases``). Each reader gets a random order seeded from the
study seed and the reader id; every answer is one committed transaction (``study_answers``), so a
reading survives a killed application and resumes at the first unanswered case.

Modes (``StudyMode``):

- ``single``: one image; the reader says real or synthetic with a confidence 1-5;
- ``2afc``: a real and a synthetic image side by side (random side); which one is real? + 1-5;
- ``plausibility``: one image; anatomical plausibility 1-5 and an optional comment.

A study can be exported as one HDF5 file (blinded pixels, case ids, reader orders; no truth) for
reading on another machine (``import_study_package`` makes a *reader copy* there), and the
answers come back as one JSON file (``export_answers`` / ``import_answers``).

Statistics (``compute_stats``): per reader and pooled accuracy with the Wilson score interval
(Wilson 1927, JASA 22:209, eq. for the score interval; computed by scipy), two-sided exact
binomial test against 50 %, sensitivity / specificity for detecting synthetic images, ROC AUC
from the confidence ratings (scikit-learn), mean plausibility by true class, per-case fooling
rate, Fleiss' kappa between readers, and the verdict against the goal set when the study was made.

The package: ``records`` (tables, StudyRecord), ``presentation`` (blinding, reader orders, the blinded
file), ``design`` (create_study), ``reading`` (readers, ReadingSession), ``statistics``, ``packages``
(export / import), ``jobs`` (the four study jobs). This module re-exports their public names.
"""

from app.engine.specs.options import GoalRule, StudyMode
from app.engine.specs.study import StudyCreateSpec, StudyExportSpec, StudyImportSpec, StudyStatsSpec
from app.engine.study.design import create_study
from app.engine.study.packages import export_answers, export_study, import_answers, import_study_package
from app.engine.study.presentation import blind_image, read_blinded, reader_order
from app.engine.study.reading import ReaderProgress, ReadingSession, add_reader, list_readers
from app.engine.study.records import (
    ANSWERS_FORMAT,
    BLINDED_FILE,
    PACKAGE_FORMAT,
    TRUTHS,
    StudyRecord,
    delete_study,
    ensure_tables,
    get_study,
    list_studies,
)
from app.engine.study.statistics import (
    answer_table,
    auc_interval,
    compute_stats,
    fleiss_kappa,
    study_stats,
    wilson_interval,
    write_results,
)

__all__ = [
    "ANSWERS_FORMAT", "BLINDED_FILE", "PACKAGE_FORMAT", "TRUTHS", "GoalRule", "ReaderProgress", "ReadingSession",
    "StudyCreateSpec", "StudyExportSpec", "StudyImportSpec", "StudyMode", "StudyRecord", "StudyStatsSpec",
    "add_reader", "answer_table", "auc_interval", "blind_image", "compute_stats", "create_study", "delete_study",
    "ensure_tables", "export_answers", "export_study", "fleiss_kappa", "get_study", "import_answers",
    "import_study_package", "list_readers", "list_studies", "read_blinded", "reader_order", "study_stats",
    "wilson_interval", "write_results",
]
