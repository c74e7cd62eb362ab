"""Views never import torch: every view module, and a form for every job kind, in a process without it."""

from __future__ import annotations

import subprocess
import sys
import typing
from pathlib import Path

from pydantic import Field

ROOT = Path(__file__).resolve().parents[2]


def test_every_view_module_and_every_jobs_form_load_without_torch():
    script = """
import importlib, pkgutil, sys
from PySide6.QtWidgets import QApplication
import app.views as V
app = QApplication([])
mods = [m.name for m in pkgutil.walk_packages(V.__path__, "app.views.")]
for m in mods:
    importlib.import_module(m)
from app.engine.specs import kinds, spec_class
from app.views.widgets.spec_form import SpecForm
forms = [SpecForm(spec_class(k)) for k in kinds()]
assert "torch" not in sys.modules, "torch was imported by the views"
print("views", len(mods), "forms", len(forms))
"""
    env = {"QT_QPA_PLATFORM": "offscreen", "PATH": "/usr/bin:/bin", "HOME": str(Path.home())}
    r = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    last = r.stdout.strip().splitlines()[-1].split()
    assert last[0] == "views" and int(last[1]) >= 15 and last[3] == str(16)


def test_a_field_added_to_a_spec_shows_up_as_a_form_widget_with_a_browse_button(qtbot):
    from app.engine.specs.base import Spec
    from app.engine.specs.paths import InputFile, OutputFolder
    from app.views.widgets.spec_form import SpecForm

    class ProbeFormSpec(Spec):
        kind: typing.Literal["probe-form"] = "probe-form"
        weights_file: InputFile = Field(..., description="a file the probe reads")
        report_dir: OutputFolder | None = Field(None, description="where the probe writes")

    form = SpecForm(ProbeFormSpec)
    qtbot.addWidget(form)
    assert set(form.editors) == {"weights_file", "report_dir"}
    assert form.findChild(object, "browse_weights_file") is not None
    assert form.findChild(object, "browse_report_dir") is not None
    assert "input file" in form.editors["weights_file"].widget.toolTip()
    # an empty required path is an error next to its field; typing one makes the spec valid
    assert form.spec() is None and "empty" in form.errors["weights_file"]
    form.editors["weights_file"].widget.setText("~/w.bin")
    spec = form.spec()
    assert spec is not None and spec.weights_file == str(Path("~/w.bin").expanduser()) and spec.report_dir is None
