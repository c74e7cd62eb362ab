"""The strip above a panel that says what to do next, with a button that does it (first_steps.py)."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QPushButton

from app.views.widgets.scroll import wrapping_label


class NextStepBar(QFrame):
    """Hidden when there is no next step; ``triggered(action)`` when its button is pressed."""

    triggered = Signal(str)

    def __init__(self, key: str, parent=None):
        super().__init__(parent)
        self.setObjectName(f"{key}NextStep")
        self.setProperty("role", "nextStep")
        self.step = None
        lay = QHBoxLayout(self)
        lay.setContentsMargins(12, 6, 8, 6)
        self.label = wrapping_label()
        self.label.setObjectName("nextStepText")
        lay.addWidget(self.label, 1)
        self.button = QPushButton()
        self.button.setObjectName("nextStepButton")
        self.button.clicked.connect(lambda: self.step and self.step.action and self.triggered.emit(self.step.action))
        lay.addWidget(self.button)
        self.hide()

    def show_step(self, step) -> None:
        self.step = step
        if step is None:
            self.hide()
            return
        self.label.setText(step.text)
        self.button.setVisible(bool(step.button))
        self.button.setText(step.button or "")
        self.show()
