"""The reading view: a study read with key presses only, answers in SQLite at once, resume after a kill."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import Qt

from app.engine import study as S
from app.engine.store import Workspace
from tests.conftest import shared_file

SHOTS = Path("/tmp/shots")


@pytest.fixture
def image_sets(tmp_path):
    z = np.load(shared_file("pneumoniamnist_balanced_28.npz"))
    real = z["train_images"][:60].astype(np.float32) / 127.5 - 1
    syn = np.clip(z["test_images"][:60].astype(np.float32) / 255 * 1.4 - 0.8, -1, 1)
    paths = {"real": tmp_path / "real.npz", "synthetic": tmp_path / "synthetic.npz"}
    np.savez(paths["real"], images=real)
    np.savez(paths["synthetic"], images=syn)
    return {k: str(v) for k, v in paths.items()}


def make_study(ws, image_sets, **kw):
    spec = S.StudyCreateSpec(name="reading", real=[image_sets["real"]], synthetic=[image_sets["synthetic"]],
                             **{"n_cases": 20, "size": 96, "seed": 5, **kw})
    return S.create_study(ws, spec)


def open_reader(qtbot, ws, st, reader="ann"):
    from app.views.reader_window import ReaderWindow

    w = ReaderWindow(ws, st.id, reader)
    qtbot.addWidget(w)
    w.resize(1100, 760)
    w.start(full_screen=False)
    qtbot.waitExposed(w)
    return w


def saved_answers(ws, st, reader="ann"):
    rows = Workspace.open(ws.root).query(
        "SELECT case_id, answer, confidence, plausibility, comment, seconds, over_time FROM study_answers"
        " WHERE study_id = ? AND reader_id = ?", (st.id, reader))
    return {r["case_id"]: dict(r) for r in rows}


def assert_not_blank(widget, name):
    from PIL import Image

    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / name
    assert widget.grab().save(str(path))
    arr = np.asarray(Image.open(path).convert("L"), dtype=np.float64)
    assert arr.std() > 10 and len(np.unique(arr)) > 32, f"{path} looks blank"


def test_a_reader_completes_a_20_case_study_with_key_presses_only(qtbot, workspace, image_sets):
    st = make_study(workspace, image_sets)
    w = open_reader(qtbot, workspace, st)
    assert w.case_label.text() == "Case 1 / 20"
    assert_not_blank(w, "reader_single.png")
    expected = {}
    for i in range(20):
        assert w.index == i
        call_key, call = (Qt.Key_R, "real") if i % 3 else (Qt.Key_S, "synthetic")
        conf = 1 + (i * 7) % 5
        expected[w.session.order[i]] = (call, conf)
        with qtbot.waitSignal(w.answered, timeout=2000):
            qtbot.keyClick(w, call_key)
            qtbot.keyClick(w, getattr(Qt, f"Key_{conf}"))
    got = {cid: (a["answer"], a["confidence"]) for cid, a in saved_answers(workspace, st).items()}
    assert got == expected
    assert w.case_label.text() == "Complete"
    assert all(a["seconds"] >= 0 and a["over_time"] == 0 for a in saved_answers(workspace, st).values())
    assert_not_blank(w, "reader_complete.png")


def test_closing_after_7_answers_loses_nothing_and_a_restart_resumes_at_case_8(qtbot, workspace, image_sets):
    st = make_study(workspace, image_sets)
    w = open_reader(qtbot, workspace, st)
    for _ in range(7):
        qtbot.keyClick(w, Qt.Key_S)
        qtbot.keyClick(w, Qt.Key_4)
    qtbot.keyClick(w, Qt.Key_R)  # a half-given answer (no confidence yet) is not an answer
    w.close()  # no save step: the app goes away here
    fresh_ws = Workspace.open(workspace.root)  # as after a restart
    again = open_reader(qtbot, fresh_ws, st)
    assert len(saved_answers(fresh_ws, st)) == 7
    assert again.index == 7 and again.case_label.text() == "Case 8 / 20"
    assert again.session.order == w.session.order
    assert set(saved_answers(fresh_ws, st)) == set(w.session.order[:7])


def test_previous_shows_the_saved_answer_and_a_new_answer_replaces_it(qtbot, workspace, image_sets):
    st = make_study(workspace, image_sets)
    w = open_reader(qtbot, workspace, st)
    first = w.session.order[0]
    qtbot.keyClick(w, Qt.Key_R)
    qtbot.keyClick(w, Qt.Key_2)
    qtbot.keyClick(w, Qt.Key_P)
    assert w.index == 0 and "real, confidence 2" in w.saved_label.text()
    qtbot.keyClick(w, Qt.Key_S)
    qtbot.keyClick(w, Qt.Key_5)
    assert saved_answers(workspace, st)[first]["answer"] == "synthetic"
    assert saved_answers(workspace, st)[first]["confidence"] == 5
    assert len(saved_answers(workspace, st)) == 1 and w.index == 1
    qtbot.keyClick(w, Qt.Key_N)
    qtbot.keyClick(w, Qt.Key_N)
    assert w.index == 3


def test_pause_hides_the_case_and_ignores_answers_until_resumed(qtbot, workspace, image_sets):
    st = make_study(workspace, image_sets)
    w = open_reader(qtbot, workspace, st)
    qtbot.keyClick(w, Qt.Key_Space)
    assert w.paused and w.stack.currentIndex() == 1
    qtbot.keyClick(w, Qt.Key_R)
    qtbot.keyClick(w, Qt.Key_3)
    assert saved_answers(workspace, st) == {}
    qtbot.keyClick(w, Qt.Key_Space)
    assert not w.paused and w.stack.currentIndex() == 0
    qtbot.keyClick(w, Qt.Key_R)
    qtbot.keyClick(w, Qt.Key_3)
    assert len(saved_answers(workspace, st)) == 1


def test_2afc_is_answered_with_the_arrow_keys(qtbot, workspace, image_sets):
    st = make_study(workspace, image_sets, mode="2afc", n_cases=6)
    w = open_reader(qtbot, workspace, st)
    assert len(w.views) == 2
    assert_not_blank(w, "reader_2afc.png")
    order = list(w.session.order)
    for i in range(6):
        qtbot.keyClick(w, Qt.Key_Left if i % 2 else Qt.Key_Right)
        qtbot.keyClick(w, Qt.Key_3)
    got = {cid: a["answer"] for cid, a in saved_answers(workspace, st).items()}
    assert got == {cid: ("left" if i % 2 else "right") for i, cid in enumerate(order)}


def test_plausibility_rating_with_a_typed_comment(qtbot, workspace, image_sets):
    st = make_study(workspace, image_sets, mode="plausibility", n_cases=4)
    w = open_reader(qtbot, workspace, st)
    first = w.session.order[0]
    qtbot.keyClick(w, Qt.Key_C)
    assert w.focusWidget() is w.comment
    qtbot.keyClicks(w.comment, "rib edge blurred")
    qtbot.keyClick(w.comment, Qt.Key_Return)
    assert w.focusWidget() is not w.comment
    assert_not_blank(w, "reader_plausibility.png")
    qtbot.keyClick(w, Qt.Key_2)
    a = saved_answers(workspace, st)[first]
    assert (a["plausibility"], a["comment"], a["answer"]) == (2, "rib edge blurred", None)
    assert w.index == 1 and w.comment.text() == ""


def test_a_case_past_its_time_limit_is_hidden_and_its_answer_marked_over_time(qtbot, workspace, image_sets):
    st = make_study(workspace, image_sets, time_limit_s=0.2, n_cases=4)
    w = open_reader(qtbot, workspace, st)
    qtbot.waitUntil(lambda: w.time_up, timeout=10000)
    assert w.stack.currentIndex() == 1
    qtbot.keyClick(w, Qt.Key_R)
    qtbot.keyClick(w, Qt.Key_1)
    a = saved_answers(workspace, st)[w.session.order[0]]
    assert a["over_time"] == 1 and a["seconds"] > 0.2


KILL_AFTER_7 = r"""
import os, signal, sys
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication
from app.engine.store import Workspace
from app.views.reader_window import ReaderWindow

app = QApplication([])
w = ReaderWindow(Workspace.open(sys.argv[1]), sys.argv[2], "ann")
w.start(full_screen=False)
for _ in range(7):
    QTest.keyClick(w, Qt.Key_S)
    QTest.keyClick(w, Qt.Key_2)
QTest.keyClick(w, Qt.Key_R)  # half an answer, then the process dies without any clean-up
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_reader_process_killed_after_7_answers_loses_none_of_them(qtbot, workspace, image_sets, tmp_path):
    import os
    import signal
    import subprocess
    import sys

    st = make_study(workspace, image_sets)
    script = tmp_path / "kill_after_7.py"
    script.write_text(KILL_AFTER_7)
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    proc = subprocess.run([sys.executable, str(script), str(workspace.root), st.id], env=env,
                          cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    fresh_ws = Workspace.open(workspace.root)
    answers = saved_answers(fresh_ws, st)
    assert len(answers) == 7 and {a["answer"] for a in answers.values()} == {"synthetic"}
    assert {a["confidence"] for a in answers.values()} == {2}
    again = open_reader(qtbot, fresh_ws, st)
    assert again.index == 7 and again.case_label.text() == "Case 8 / 20"
    assert set(answers) == set(again.session.order[:7])
