"""The job spine: events, terminal outcomes, cancellation, serialisation, recording."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

from app.engine import jobs as J
from app.engine.selftest import SelfTestSpec


def test_a_job_emits_progress_and_ends_done_with_its_result(workspace):
    events = J.run_collect(SelfTestSpec(steps=5, size=16), workspace=workspace)
    kinds = [type(e).__name__ for e in events]
    assert kinds.count("Progress") == 5
    assert [e.step for e in events if isinstance(e, J.Progress)] == [1, 2, 3, 4, 5]
    assert isinstance(events[-1], J.Done)
    assert sum(isinstance(e, J.TERMINAL) for e in events) == 1
    assert events[-1].result["device"] == "cpu"
    json.dumps(events[-1].result)  # JSON-serialisable


def test_a_job_that_raises_ends_failed_with_a_readable_message_and_a_traceback_log(workspace):
    events = J.run_collect(SelfTestSpec(steps=5, fail_at=3), workspace=workspace)
    assert isinstance(events[-1], J.Failed)
    assert events[-1].message == "self-test asked to fail at step 3"
    assert any(isinstance(e, J.Log) and "Traceback" in e.text for e in events)
    # progress stopped at the failing step
    assert max(e.step for e in events if isinstance(e, J.Progress)) == 2


def test_cancellation_is_cooperative_and_ends_cancelled(workspace):
    stop = threading.Event()
    seen = []

    def emit(ev):
        seen.append(ev)
        if isinstance(ev, J.Progress) and ev.step == 4:
            stop.set()

    final = J.run(SelfTestSpec(steps=100), emit, stop.is_set, workspace=workspace)
    assert isinstance(final, J.Cancelled)
    assert max(e.step for e in seen if isinstance(e, J.Progress)) == 4


def test_jobs_are_recorded_in_the_workspace_with_their_outcome(workspace):
    J.run_collect(SelfTestSpec(steps=2), workspace=workspace, job_id="ok-job")
    J.run_collect(SelfTestSpec(steps=2, fail_at=1), workspace=workspace, job_id="bad-job")
    jobs = {j.id: j for j in workspace.jobs()}
    assert jobs["ok-job"].state == "done" and jobs["ok-job"].result["device"] == "cpu"
    assert jobs["ok-job"].spec["steps"] == 2
    assert jobs["bad-job"].state == "failed" and "step 1" in jobs["bad-job"].message


def test_unknown_spec_fields_and_bad_values_are_refused_naming_the_field():
    with pytest.raises(Exception) as exc:
        J.parse_spec({"kind": "selftest", "stepz": 3})
    assert "stepz" in str(exc.value)
    with pytest.raises(Exception) as exc:
        J.parse_spec({"kind": "selftest", "steps": 0})
    assert "steps" in str(exc.value)
    with pytest.raises(J.UserError, match="unknown job kind"):
        J.parse_spec({"kind": "nope"})


def test_spec_round_trips_through_json():
    spec = SelfTestSpec(steps=7, seed=3)
    again = J.parse_spec(spec.to_json())
    assert again == spec


def test_events_round_trip_through_the_wire_format_including_images():
    img = np.random.default_rng(0).normal(size=(8, 9)).astype(np.float32)
    for ev in [J.Progress(1, 2, "x"), J.Log("info", "hi"), J.Scalar("loss", 3, 0.5), J.Image("p", img, "grid"),
               J.Artifact("checkpoint", "/a/b"), J.Done({"a": 1}), J.Failed("no"), J.Cancelled()]:
        wire = json.loads(json.dumps(J.event_to_dict(ev)))
        back = J.event_from_dict(wire)
        assert type(back) is type(ev)
        if isinstance(ev, J.Image):
            np.testing.assert_array_equal(back.array, img)
            assert back.kind == "grid"
        else:
            assert back == ev


def test_a_broken_emit_callback_still_reaches_a_terminal_event_in_the_workspace(workspace):
    calls = []

    def emit(ev):
        calls.append(ev)
        if isinstance(ev, J.Scalar):
            raise RuntimeError("viewer went away")

    final = J.run(SelfTestSpec(steps=3), emit, workspace=workspace, job_id="emit-broke")
    assert isinstance(final, J.Failed) and "viewer went away" in final.message
    assert {j.id: j.state for j in workspace.jobs()}["emit-broke"] == "failed"
