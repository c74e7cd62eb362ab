"""Connection settings: run jobs locally or on a remote `radsynth serve` box (URL + token).

The URL and the choice are kept in QSettings (``connection/mode``, ``connection/url``); the token
is kept in a file only the user can read (``app.workers.remote.save_token``, mode 0600), never in
QSettings, whose plain-text store other programs of the user can read and which backup tools copy.
"Test connection" asks the server for its version and GPUs off the GUI thread.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import (
    QButtonGroup,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QRadioButton,
    QVBoxLayout,
)

from app.workers.remote import RemoteClient, load_token, normalise_url, save_token

DEFAULT_URL = "http://127.0.0.1:8765"


def describe_server(info: dict) -> str:
    """One readable paragraph: version, torch, GPUs with free memory, queue."""
    gpus = info.get("gpus") or []
    if gpus:
        gpu_text = "; ".join(f"{g.get('name')} ({g.get('free_gb')} of {g.get('memory_gb')} GB free)" for g in gpus)
        gpu_text = f"{len(gpus)} GPU{'s' if len(gpus) > 1 else ''}: {gpu_text}"
    else:
        compute = info.get("compute", {})
        gpu_text = f"no GPU — CPU {compute.get('name', '')} ({compute.get('cores', '?')} cores)"
    q = info.get("queue", {})
    return (f"Connected to RadSynth server {info.get('version')} · torch {info.get('torch')}\n{gpu_text}\n"
            f"Queue: {q.get('running', 0)} running, {q.get('queued', 0)} waiting")


class ConnectionDialog(QDialog):
    def __init__(self, settings, parent=None, token_path: Path | None = None):
        super().__init__(parent)
        self.setWindowTitle("Connection")
        self.setObjectName("connectionDialog")
        self.settings = settings
        self.token_path = token_path
        self.last_info: dict | None = None
        self.last_error: str | None = None

        self.local_radio = QRadioButton("Local: run jobs on this computer")
        self.remote_radio = QRadioButton("Remote GPU server (radsynth serve)")
        group = QButtonGroup(self)
        group.addButton(self.local_radio)
        group.addButton(self.remote_radio)
        self.url_edit = QLineEdit()
        self.url_edit.setPlaceholderText(DEFAULT_URL)
        self.url_edit.setToolTip("http://127.0.0.1:PORT through an SSH tunnel (ssh -L PORT:127.0.0.1:PORT gpu-box), "
                                 "or https://host:PORT when the server has TLS")
        self.token_edit = QLineEdit()
        self.token_edit.setEchoMode(QLineEdit.Password)
        self.token_edit.setPlaceholderText("printed by 'radsynth serve' on its first start")
        self.test_button = QPushButton("Test connection")
        self.result_label = QLabel("")
        self.result_label.setObjectName("connectionResult")
        self.result_label.setWordWrap(True)

        form = QFormLayout()
        form.addRow("Server URL", self.url_edit)
        form.addRow("Token", self.token_edit)
        test_row = QHBoxLayout()
        test_row.addWidget(self.test_button)
        test_row.addStretch(1)
        self.buttons = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel)
        lay = QVBoxLayout(self)
        lay.addWidget(self.local_radio)
        lay.addWidget(self.remote_radio)
        lay.addLayout(form)
        lay.addLayout(test_row)
        lay.addWidget(self.result_label)
        lay.addWidget(self.buttons)

        mode = str(settings.value("connection/mode", "local") or "local")
        url = str(settings.value("connection/url", "") or "")
        self.url_edit.setText(url)
        if url:
            self.token_edit.setText(load_token(url, token_path))
        (self.remote_radio if mode == "remote" else self.local_radio).setChecked(True)
        self._sync_enabled()
        self.remote_radio.toggled.connect(self._sync_enabled)
        self.test_button.clicked.connect(self.test_connection)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)

    # -- state -------------------------------------------------------------------------------
    def mode(self) -> str:
        return "remote" if self.remote_radio.isChecked() else "local"

    def url(self) -> str:
        return self.url_edit.text().strip() or DEFAULT_URL

    def token(self) -> str:
        return self.token_edit.text().strip()

    def _sync_enabled(self) -> None:
        remote = self.remote_radio.isChecked()
        for w in (self.url_edit, self.token_edit, self.test_button):
            w.setEnabled(remote)

    # -- actions -----------------------------------------------------------------------------
    def test_connection(self) -> None:
        """Ask the server for /api/info off the GUI thread; the answer lands in result_label."""
        from app.workers.manager import run_in_thread

        try:
            url = normalise_url(self.url())
        except ValueError as exc:
            self._show_error(str(exc))
            return
        token = self.token()
        self.result_label.setText(f"Connecting to {url}…")
        self.test_button.setEnabled(False)

        def ask():
            with RemoteClient(url, token, timeout=10) as c:
                return c.info()

        run_in_thread(ask, self._show_info, lambda msg, tb: self._show_error(msg))

    def _show_info(self, info: dict) -> None:
        self.last_info, self.last_error = info, None
        self.test_button.setEnabled(self.remote_radio.isChecked())
        self.result_label.setText(describe_server(info))

    def _show_error(self, message: str) -> None:
        self.last_info, self.last_error = None, message
        self.test_button.setEnabled(self.remote_radio.isChecked())
        self.result_label.setText(f"Connection failed: {message}")

    def accept(self) -> None:
        if self.mode() == "remote":
            try:
                url = normalise_url(self.url())
            except ValueError as exc:
                self._show_error(str(exc))
                return
            if not self.token():
                self._show_error("a token is needed (printed by 'radsynth serve' on its first start)")
                return
            self.settings.setValue("connection/url", url)
            save_token(url, self.token(), self.token_path)
        self.settings.setValue("connection/mode", self.mode())
        self.settings.sync()
        super().accept()

    def make_runner(self, workspace):
        """The runner for the choice made: LocalRunner(workspace) or RemoteRunner(url, token)."""
        return runner_from_settings(self.settings, workspace, self.token_path)


def saved_remote_url(settings) -> str | None:
    """The server URL when the saved choice is Remote (None for Local)."""
    mode = str(settings.value("connection/mode", "local") or "local")
    url = str(settings.value("connection/url", "") or "")
    return url if mode == "remote" and url else None


def runner_from_settings(settings, workspace, token_path: Path | None = None):
    """The runner the saved settings ask for: LocalRunner(workspace), or RemoteRunner(url, token from
    the token store) whose finished jobs' result files are fetched into ``<workspace>/remote-results``.
    Builds it without touching the network (the app calls it at start, then checks the server off
    the GUI thread). Raises ValueError for a saved URL that is not http(s)://host:port."""
    url = saved_remote_url(settings)
    if url:
        from app.workers.remote import RemoteRunner

        root = getattr(workspace, "root", None)
        return RemoteRunner(url, load_token(url, token_path),
                            local_dir=Path(root) / "remote-results" if root is not None else None)
    from app.workers.local import LocalRunner

    return LocalRunner(workspace)
