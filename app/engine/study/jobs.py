"""The four study jobs: study-create, study-stats, study-export, study-import."""

from __future__ import annotations

from pathlib import Path

from app.engine.jobs import JobContext, register
from app.engine.specs.study import StudyCreateSpec, StudyExportSpec, StudyImportSpec, StudyStatsSpec
from app.engine.study.design import create_study
from app.engine.study.packages import export_answers, export_study, import_answers, import_study_package
from app.engine.study.statistics import study_stats, write_results


@register(StudyCreateSpec)
def run_study_create(spec: StudyCreateSpec, ctx: JobContext) -> dict:
    st = create_study(ctx.workspace, spec, ctx)
    ctx.artifact("study", st.path)
    ctx.log(f"study {st.name} ({st.id}): {st.n_cases} {st.mode} cases")
    return {"study_id": st.id, "name": st.name, "path": str(st.path), "mode": st.mode, "n_cases": st.n_cases,
            "readers": list(spec.readers), "warnings": st.meta.get("warnings", [])}


@register(StudyStatsSpec)
def run_study_stats(spec: StudyStatsSpec, ctx: JobContext) -> dict:
    ctx.check()
    stats = study_stats(ctx.workspace, spec.study)
    if spec.out:
        for p in write_results(ctx.workspace, spec.study, spec.out, stats):
            ctx.artifact("report", p)
    ctx.log(stats["verdict"]["text"])
    return stats


@register(StudyExportSpec)
def run_study_export(spec: StudyExportSpec, ctx: JobContext) -> dict:
    ctx.check()
    if spec.what == "package":
        p = export_study(ctx.workspace, spec.study, spec.out, spec.readers or None)
    else:
        p = export_answers(ctx.workspace, spec.study, spec.out, spec.readers or None)
    ctx.artifact("study-" + spec.what, p)
    return {"path": str(p), "what": spec.what}


@register(StudyImportSpec)
def run_study_import(spec: StudyImportSpec, ctx: JobContext) -> dict:
    ctx.check()
    p = Path(spec.file).expanduser()
    if p.suffix.lower() == ".json":
        return {"what": "answers", **import_answers(ctx.workspace, p)}
    st = import_study_package(ctx.workspace, p)
    return {"what": "package", "study_id": st.id, "study": st.name, "n_cases": st.n_cases}
