"""A training run's scalar history file: written as training goes, read whole or followed by offset."""

from __future__ import annotations

import json

import numpy as np

from app.engine.run_history import FILE_NAME, ScalarLog, read_history


def test_the_history_is_read_whole_sorted_with_the_last_value_of_a_repeated_step(tmp_path):
    log = ScalarLog(tmp_path)
    for step, v in [(1, 1.0), (2, 0.8), (3, 0.7)]:
        log.write("loss", step, v)
    log.write("val_loss", 3, 0.5)
    log.write("loss", 2, 0.75)  # a resumed run logs step 2 again
    log.write("lr", 4, float("nan"))
    log.close()
    points, offset = read_history(tmp_path)
    assert [(n, s) for n, s, _ in points if n == "loss"] == [("loss", 1), ("loss", 2), ("loss", 3)]
    values = {(n, s): v for n, s, v in points}
    assert values[("loss", 2)] == 0.75
    assert ("val_loss", 3, 0.5) in points
    assert np.isnan(values[("lr", 4)])  # stored as null, read back as NaN
    assert offset == (tmp_path / FILE_NAME).stat().st_size


def test_a_reader_follows_new_lines_and_leaves_a_partial_last_line_for_later(tmp_path):
    log = ScalarLog(tmp_path)
    log.write("loss", 1, 1.0)
    points, offset = read_history(tmp_path)
    assert points == [("loss", 1, 1.0)]
    assert read_history(tmp_path, offset) == ([], offset)  # nothing new
    log.write("loss", 2, 0.5)
    with open(tmp_path / FILE_NAME, "a") as f:  # a line still being written
        f.write('{"name": "loss", "st')
    new, offset2 = read_history(tmp_path, offset)
    assert new == [("loss", 2, 0.5)]
    with open(tmp_path / FILE_NAME, "a") as f:
        f.write('ep": 3, "value": 0.25}\n' + "not json\n" + json.dumps({"name": "loss", "step": 4, "value": 0.2}) + "\n")
    new, _ = read_history(tmp_path, offset2)
    assert new == [("loss", 3, 0.25), ("loss", 4, 0.2)]  # the damaged line costs only itself
    assert read_history(tmp_path / "no-such-run") == ([], 0)


def test_a_history_that_cannot_be_written_warns_once_and_never_raises(tmp_path):
    warnings = []
    log = ScalarLog(tmp_path / "gone" / "run", warn=warnings.append)
    log.write("loss", 1, 1.0)
    log.write("loss", 2, 0.5)
    assert len(warnings) == 1 and "scalars.jsonl" in warnings[0] and "training goes on" in warnings[0]
