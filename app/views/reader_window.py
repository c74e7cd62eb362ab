"""The reading view of a reader study: full-screen, dark, keyboard first, every answer saved at once.

Keys (the window keeps the keyboard focus; the buttons only mirror the keys for the mouse):

    single        R real · S synthetic · 1-5 confidence (the answer is saved when both are given)
    2afc          ← left image is real · → right image is real · 1-5 confidence
    plausibility  1-5 plausibility (saved at once) · C comment (Enter returns to the image)
    all modes     N next · P previous · Space pause / resume · W reset zoom and window
                  F11 full screen · Esc close (nothing is lost: every answer is already saved)

Window / level: drag with the right (or middle) mouse button; wheel zoom; left-drag pan (the
shared ``ImageView``). Every case starts at the same full 0..255 window, whatever its origin.

The view knows only what ``ReadingSession`` gives it: blinded 8-bit pixels in this reader's order
and this reader's own answers; it never sees the truth.
"""

from __future__ import annotations

from PySide6.QtCore import QElapsedTimer, Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from app.engine.study import ReadingSession, StudyMode
from app.views.widgets.image_view import ImageView

_STYLE = """
QWidget#readerWindow { background: #000000; }
QWidget#readerWindow QLabel { color: #c8c8c8; }
QLabel#caseLabel { font-size: 15px; font-weight: 600; color: #e0e0e0; }
QLabel#keyHelp { color: #7a7a7a; font-size: 12px; }
QLabel#message { font-size: 22px; color: #d0d0d0; }
QLabel#savedLabel { color: #8fb98f; }
QLabel#timerLabel { color: #a0a0a0; font-family: monospace; }
QLabel#timerLabel[late="true"] { color: #ff8060; }
QPushButton { background: #1b1b1d; color: #d0d0d0; border: 1px solid #3a3a3e; border-radius: 4px;
              padding: 8px 16px; font-size: 14px; }
QPushButton:checked { background: #2f5f95; border-color: #5a8ac0; color: white; }
QPushButton:hover { border-color: #6a6a70; }
QProgressBar { background: #111; border: 1px solid #333; border-radius: 3px; height: 8px; color: transparent; }
QProgressBar::chunk { background: #3f6f9f; }
QLineEdit { background: #151517; color: #ddd; border: 1px solid #3a3a3e; padding: 6px; }
"""


class ReaderWindow(QWidget):
    """One reader reading one study. ``ReaderWindow(workspace, study, reader_id)``; ``start()``
    shows it full screen at the first unanswered case."""

    answered = Signal(int, dict)  # index in this reader's order, the saved answer
    completed = Signal()  # every case has an answer
    closed = Signal()

    def __init__(self, workspace, study: str, reader_id: str, parent=None):
        super().__init__(parent)
        self.setObjectName("readerWindow")
        self.setAttribute(Qt.WA_StyledBackground, True)
        self.setStyleSheet(_STYLE)
        self.session = ReadingSession(workspace, study, reader_id)
        self.mode = self.session.mode
        self.setWindowTitle(f"Reading — {self.session.study_name} — reader {reader_id}")
        self.index = 0
        self.paused = False
        self.time_up = False
        self._pending: dict = {}
        self._spent: dict[int, float] = {}  # seconds already spent on a case (earlier visits / sessions)
        self._clock = QElapsedTimer()
        self._last_error = ""
        self._complete_shown = False
        self._build()
        self._tick = QTimer(self)
        self._tick.setInterval(200)
        self._tick.timeout.connect(self._on_tick)
        self._tick.start()
        first = self.session.first_unanswered()
        if first is None:
            self._show_complete()
        else:
            self.go_to(first)

    # -- building ----------------------------------------------------------------------------
    def _build(self) -> None:
        lay = QVBoxLayout(self)
        lay.setContentsMargins(16, 10, 16, 10)
        lay.setSpacing(8)

        top = QHBoxLayout()
        self.case_label = QLabel()
        self.case_label.setObjectName("caseLabel")
        top.addWidget(self.case_label)
        self.progress = QProgressBar()
        self.progress.setRange(0, len(self.session))
        self.progress.setTextVisible(False)
        self.progress.setFixedHeight(8)
        top.addWidget(self.progress, 1)
        self.answered_label = QLabel()
        top.addWidget(self.answered_label)
        self.timer_label = QLabel()
        self.timer_label.setObjectName("timerLabel")
        top.addWidget(self.timer_label)
        lay.addLayout(top)

        self.stack = QStackedWidget()
        images = QWidget()
        il = QHBoxLayout(images)
        il.setContentsMargins(0, 0, 0, 0)
        n_views = 2 if self.mode == StudyMode.afc2 else 1
        self.views: list[ImageView] = []
        for k in range(n_views):
            box = QVBoxLayout()
            v = ImageView(show_info=False)
            v.setFocusPolicy(Qt.NoFocus)
            v.graphics.setFocusPolicy(Qt.NoFocus)
            v.graphics.setBackground((0, 0, 0))
            self.views.append(v)
            box.addWidget(v, 1)
            if n_views == 2:
                cap = QLabel("Left  (←)" if k == 0 else "Right  (→)")
                cap.setAlignment(Qt.AlignCenter)
                box.addWidget(cap)
            il.addLayout(box, 1)
        if n_views == 2:
            self.views[0].link(self.views[1])
        self.stack.addWidget(images)
        self.message = QLabel()
        self.message.setObjectName("message")
        self.message.setAlignment(Qt.AlignCenter)
        self.message.setWordWrap(True)
        self.stack.addWidget(self.message)
        lay.addWidget(self.stack, 1)

        self.wl_label = QLabel()
        self.wl_label.setAlignment(Qt.AlignCenter)
        self.wl_label.setProperty("role", "hint")
        lay.addWidget(self.wl_label)
        for v in self.views:
            v.levels_changed.connect(self._show_levels)

        # answer strip: buttons mirror the keys
        strip = QHBoxLayout()
        strip.addStretch(1)
        self.choice_buttons: dict[str, QPushButton] = {}
        if self.mode == StudyMode.single:
            choices = [("real", "Real  (R)"), ("synthetic", "Synthetic  (S)")]
        elif self.mode == StudyMode.afc2:
            choices = [("left", "← Left is real"), ("right", "Right is real →")]
        else:
            choices = []
        for key, text in choices:
            b = QPushButton(text)
            b.setCheckable(True)
            b.setFocusPolicy(Qt.NoFocus)
            b.clicked.connect(lambda _=False, k=key: self.choose(k))
            self.choice_buttons[key] = b
            strip.addWidget(b)
        if choices:
            strip.addSpacing(24)
        rating_name = "Plausibility" if self.mode == StudyMode.plausibility else "Confidence"
        lbl = QLabel(f"{rating_name}:")
        strip.addWidget(lbl)
        self.rating_buttons: list[QPushButton] = []
        for r in range(1, 6):
            b = QPushButton(str(r))
            b.setCheckable(True)
            b.setFocusPolicy(Qt.NoFocus)
            b.setFixedWidth(44)
            b.clicked.connect(lambda _=False, r=r: self.rate(r))
            self.rating_buttons.append(b)
            strip.addWidget(b)
        hint = QLabel("1 = implausible … 5 = fully plausible" if self.mode == StudyMode.plausibility
                      else "1 = guessing … 5 = certain")
        hint.setProperty("role", "hint")
        strip.addWidget(hint)
        strip.addStretch(1)
        self.answer_strip = QWidget()
        self.answer_strip.setLayout(strip)
        lay.addWidget(self.answer_strip)

        self.comment = QLineEdit()
        self.comment.setPlaceholderText("Comment (C to type, Enter to return to the image)")
        self.comment.returnPressed.connect(self._comment_done)
        self.comment.setVisible(self.mode == StudyMode.plausibility)
        lay.addWidget(self.comment)

        bottom = QHBoxLayout()
        self.saved_label = QLabel()
        self.saved_label.setObjectName("savedLabel")
        bottom.addWidget(self.saved_label)
        bottom.addStretch(1)
        keys = {
            StudyMode.single: "R real · S synthetic · 1-5 confidence",
            StudyMode.afc2: "← / → the real image · 1-5 confidence",
            StudyMode.plausibility: "1-5 plausibility · C comment",
        }[self.mode]
        self.key_help = QLabel(f"{keys} · N next · P previous · Space pause · W reset window · "
                               "right-drag window/level · wheel zoom · F11 full screen · Esc close")
        self.key_help.setObjectName("keyHelp")
        bottom.addWidget(self.key_help)
        lay.addLayout(bottom)
        self.setFocusPolicy(Qt.StrongFocus)

    # -- navigation ----------------------------------------------------------------------------
    def start(self, full_screen: bool = True) -> None:
        if full_screen:
            self.showFullScreen()
        else:
            self.show()
        self.activateWindow()
        self.setFocus(Qt.OtherFocusReason)

    def go_to(self, index: int) -> None:
        """Show the case at ``index`` of this reader's order (the clock of the case we leave stops)."""
        self._stop_clock()
        self.index = max(0, min(int(index), len(self.session) - 1))
        self._pending = {}
        self.time_up = False
        saved = self.session.answer(self.index)
        self._spent.setdefault(self.index, float(saved["seconds"]) if saved else 0.0)
        pixels = self.session.image(self.index)
        for k, v in enumerate(self.views):
            v.set_image(pixels[k], levels=(0.0, 255.0))
            v.reset_view()
            v.set_levels(0.0, 255.0)  # every case opens at the same full window
        if self.mode == StudyMode.plausibility:
            self.comment.setText((saved or {}).get("comment") or "")
        self.stack.setCurrentIndex(0 if not self.paused else 1)
        if not self.paused:
            self._clock.start()
        self._refresh()
        self._on_tick()

    def next_case(self) -> None:
        if self._complete_shown:
            return
        if self.index < len(self.session) - 1:
            self.go_to(self.index + 1)

    def previous_case(self) -> None:
        if self._complete_shown:
            self._complete_shown = False
            self.go_to(len(self.session) - 1)
            return
        if self.index > 0:
            self.go_to(self.index - 1)

    def _show_complete(self) -> None:
        self._stop_clock()
        self._complete_shown = True
        self._pending = {}
        n = len(self.session)
        self.message.setText(f"All {n} cases are answered.\nThank you.\n\n"
                             "P goes back to the last case · Esc closes")
        self.stack.setCurrentIndex(1)
        self._refresh()
        self.completed.emit()

    # -- answering -----------------------------------------------------------------------------
    def choose(self, answer: str) -> None:
        """R / S (single) or left / right (2afc)."""
        if not self._can_answer() or self.mode == StudyMode.plausibility:
            return
        self._pending["answer"] = answer
        self._maybe_commit()

    def rate(self, value: int) -> None:
        """1-5: confidence (single, 2afc) or plausibility."""
        if not self._can_answer():
            return
        key = "plausibility" if self.mode == StudyMode.plausibility else "confidence"
        self._pending[key] = int(value)
        self._maybe_commit()

    def _can_answer(self) -> bool:
        return not self.paused and not self._complete_shown

    def _maybe_commit(self) -> None:
        p = self._pending
        if self.mode == StudyMode.plausibility:
            ready = "plausibility" in p
        else:
            ready = "answer" in p and "confidence" in p
        if not ready:
            self._refresh()
            return
        seconds = self._elapsed()
        limit = self.session.time_limit_s
        try:
            saved = self.session.record(
                self.index, answer=p.get("answer"), confidence=p.get("confidence"),
                plausibility=p.get("plausibility"),
                comment=self.comment.text().strip() if self.mode == StudyMode.plausibility else None,
                seconds=seconds, over_time=bool(limit and seconds > limit),
            )
        except Exception as exc:  # a locked or unwritable database: say so and stay on the case
            self._last_error = f"NOT SAVED: {exc}"
            self._refresh()
            return
        self._last_error = ""
        self._spent[self.index] = seconds
        self._clock.invalidate()
        self.answered.emit(self.index, saved)
        nxt = self.session.first_unanswered(self.index + 1)
        if nxt is None:
            self._show_complete()
        else:
            self.go_to(nxt)

    def _comment_done(self) -> None:
        """Enter in the comment box: back to the image; an answered case gets its comment saved."""
        self.setFocus(Qt.OtherFocusReason)
        saved = self.session.answer(self.index)
        if saved is not None and self.mode == StudyMode.plausibility:
            self.session.record(self.index, plausibility=saved["plausibility"], comment=self.comment.text().strip(),
                                seconds=self._elapsed(), over_time=bool(saved.get("over_time")))
            self._refresh()

    # -- pause and time ------------------------------------------------------------------------
    def toggle_pause(self) -> None:
        if self._complete_shown:
            return
        if not self.paused:
            self._stop_clock()
            self.paused = True
            self.message.setText("Paused\n\nSpace resumes")
            self.stack.setCurrentIndex(1)
        else:
            self.paused = False
            self.stack.setCurrentIndex(1 if self.time_up else 0)
            self._clock.start()
        self._refresh()

    def _elapsed(self) -> float:
        run = self._clock.elapsed() / 1000.0 if self._clock.isValid() else 0.0
        return self._spent.get(self.index, 0.0) + run

    def _stop_clock(self) -> None:
        if self._clock.isValid():
            self._spent[self.index] = self._elapsed()
            self._clock.invalidate()

    def _on_tick(self) -> None:
        if self._complete_shown or self.paused:
            return
        t = self._elapsed()
        limit = self.session.time_limit_s
        if limit:
            self.timer_label.setText(f"{t:5.1f} / {limit:.0f} s")
            late = t > limit
            if self.timer_label.property("late") != late:
                self.timer_label.setProperty("late", late)
                self.timer_label.style().polish(self.timer_label)
            if late and not self.time_up and self.session.answer(self.index) is None:
                self.time_up = True
                self.message.setText("Time is up for this case.\nGive your answer now.")
                self.stack.setCurrentIndex(1)
        else:
            self.timer_label.setText(f"{t:5.1f} s")

    # -- display -------------------------------------------------------------------------------
    def _show_levels(self, lo: float, hi: float) -> None:
        self.wl_label.setText(f"window {hi - lo:.0f} · level {(hi + lo) / 2:.0f}")

    def _refresh(self) -> None:
        n = len(self.session)
        done = self.session.n_answered
        self.progress.setValue(done)
        self.case_label.setText("Complete" if self._complete_shown else f"Case {self.index + 1} / {n}")
        self.answered_label.setText(f"{done} answered")
        self.answer_strip.setEnabled(not self._complete_shown and not self.paused)
        if self._complete_shown:
            self.timer_label.setText("")
        saved = None if self._complete_shown else self.session.answer(self.index)
        shown = dict(self._pending)
        for key, b in self.choice_buttons.items():
            b.setChecked(shown.get("answer") == key)
        rating = shown.get("plausibility" if self.mode == StudyMode.plausibility else "confidence")
        for r, b in enumerate(self.rating_buttons, start=1):
            b.setChecked(rating == r)
        if self._last_error:
            self.saved_label.setText(self._last_error)
        elif saved:
            if self.mode == StudyMode.plausibility:
                what = f"plausibility {saved['plausibility']}"
            else:
                what = f"{saved['answer']}, confidence {saved['confidence']}"
            self.saved_label.setText(f"Saved: {what}  (give a new answer to change it)")
        else:
            self.saved_label.setText("")

    # -- keys ------------------------------------------------------------------------------------
    def keyPressEvent(self, ev) -> None:
        key = ev.key()
        if self.comment.hasFocus():
            if key == Qt.Key_Escape:
                self.setFocus(Qt.OtherFocusReason)
                ev.accept()
                return
            super().keyPressEvent(ev)
            return
        handled = True
        if Qt.Key_1 <= key <= Qt.Key_5:
            self.rate(key - Qt.Key_0)
        elif key == Qt.Key_R and self.mode == StudyMode.single:
            self.choose("real")
        elif key == Qt.Key_S and self.mode == StudyMode.single:
            self.choose("synthetic")
        elif key == Qt.Key_Left and self.mode == StudyMode.afc2:
            self.choose("left")
        elif key == Qt.Key_Right and self.mode == StudyMode.afc2:
            self.choose("right")
        elif key == Qt.Key_N:
            self.next_case()
        elif key == Qt.Key_P:
            self.previous_case()
        elif key in (Qt.Key_Space, Qt.Key_Pause):
            self.toggle_pause()
        elif key == Qt.Key_W:
            for v in self.views:
                v.reset_view()
                v.set_levels(0.0, 255.0)
        elif key == Qt.Key_C and self.mode == StudyMode.plausibility:
            self.comment.setFocus(Qt.OtherFocusReason)
        elif key == Qt.Key_F11:
            self.showNormal() if self.isFullScreen() else self.showFullScreen()
        elif key == Qt.Key_Escape:
            self.close()
        else:
            handled = False
        if handled:
            ev.accept()
        else:
            super().keyPressEvent(ev)

    def closeEvent(self, ev) -> None:
        # nothing to save: every answer was committed when it was given
        self._tick.stop()
        self._stop_clock()
        self.closed.emit()
        super().closeEvent(ev)
