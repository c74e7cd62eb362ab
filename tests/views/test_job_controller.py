"""JobController: jobs submitted from validated specs, followed to their end, their failures said."""

from __future__ import annotations

from PySide6.QtWidgets import QLabel, QWidget

from app.engine.specs.recon import CTReconSpec, ReconSpec
from app.views.job_controller import FieldErrors, JobController, build_spec


def test_build_spec_names_the_bad_field_and_sets_only_the_given_ones():
    spec, errors = build_spec(ReconSpec, {"input": "slice.npz", "lam": 0.0, "iterations": 0})
    assert spec is None
    assert errors == {"lam": "Input should be greater than 0", "iterations": "Input should be greater than or equal to 1"}
    spec, errors = build_spec(ReconSpec, {"input": "slice.npz", "steps": 12})
    assert errors == {} and spec.steps == 12 and spec.model_fields_set == {"input", "steps"}


def test_field_errors_go_under_the_label_of_their_field_and_the_rest_to_the_fallback(qtbot):
    host = QWidget()
    qtbot.addWidget(host)
    mask, other = QLabel(host), QLabel(host)
    shown = FieldErrors({"center_fraction": mask}, other)
    shown.show({"center_fraction": "Input should be less than 1", "lam": "Input should be greater than 0"})
    assert mask.text() == "center_fraction: Input should be less than 1"
    assert other.text() == "lam: Input should be greater than 0"
    shown.show({})
    assert mask.isHidden() and other.isHidden() and mask.text() == ""


def test_a_failed_job_says_its_message_on_the_status_line_and_ends_the_group(main_window, qtbot, tmp_path):
    status = QLabel()
    ctl = JobController(main_window.jobs, status, what="CT reconstruction")
    ended, groups = [], []
    ctl.finished.connect(lambda name, h: ended.append((name, h.state)))
    ctl.group_done.connect(lambda: groups.append(ctl.group))
    h = ctl.submit(CTReconSpec(input=str(tmp_path / "missing.npz")), name="fbp")
    assert ctl.busy and ctl.handle is h and h in main_window.jobs.handles()  # listed in the Jobs dock
    qtbot.waitUntil(lambda: not ctl.busy, timeout=30000)
    assert ended == [("fbp", "failed")] and groups == [ctl.group]
    assert status.text() == f"CT reconstruction failed: {h.message}" and "does not exist" in h.message


def test_a_new_group_drops_the_events_of_the_last(main_window, qtbot, tmp_path):
    status = QLabel()
    ctl = JobController(main_window.jobs, status, what="Reconstruction")
    ended = []
    ctl.finished.connect(lambda name, h: ended.append(name))
    old = ctl.submit(ReconSpec(input=str(tmp_path / "missing.npz")), name="old")
    ctl.start()  # e.g. the user pressed Reconstruct again: the old job's end must not touch the new run
    ctl.say("new run")
    qtbot.waitUntil(lambda: old.is_final, timeout=30000)
    qtbot.wait(100)
    assert ended == [] and status.text() == "new run" and not ctl.busy
