"""The Training panel across a run's life: one curve across resumes, run states that say what happens, job names
with the preset, a failed start that keeps its message, presets that pick the kind of dataset they need.
Real training jobs on tiny models, a real import job for the complex dataset."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import shared_file
from tests.views.conftest import assert_not_blank
from tests.views.test_flow import SHOTS, TINY
from tests.views.test_panels import make_dataset

pytest.importorskip("app.engine.training.loop")


def _steps(plot, name="loss") -> np.ndarray:
    s = plot.series[name]
    return s.x[: s.n].copy()


def _start_from_preset(main_window, qtbot, preset="cpu-quickstart", **extra):
    panel = main_window.show_panel("train")
    panel.refresh_runs()
    panel.apply_preset(preset)
    panel.form.set_values({**TINY, "dataset": "phantoms", **extra})
    assert panel.form.is_valid, panel.form.errors
    panel.start_button.click()
    return panel, panel.handle


def test_a_resumed_run_keeps_one_curve_says_it_is_training_and_its_job_names_the_preset(main_window, workspace,
                                                                                         qtbot):
    make_dataset(workspace, n=12, size=16)
    panel, h = _start_from_preset(main_window, qtbot)
    dock = main_window.jobs_dock.jobs
    assert dock.rows[h.job_id].text(0) == "train: cpu-quickstart · phantoms"
    labels: list[str] = []
    h.progress.connect(lambda *_a: labels.append(panel.runs.currentText()))
    qtbot.waitUntil(lambda: h.is_final, timeout=120000)
    assert h.state == "done", (h.message, h.logs[-3:])
    run = h.result["run"]
    assert any(t == f"{run} (training)" for t in labels), labels  # while it trained, not "(stopped)"
    assert panel.runs.currentText() == f"{run} (finished)"
    assert list(_steps(panel.loss_plot)) == [1, 2, 3, 4, 5, 6]

    panel.form.set_values({"max_steps": 10, "epochs": 6})
    h2 = panel.resume()
    assert dock.rows[h2.job_id].text(0) == f"train: resume {run} · cpu-quickstart · phantoms"
    labels.clear()
    h2.progress.connect(lambda *_a: labels.append(panel.runs.currentText()))
    qtbot.waitUntil(lambda: h2.is_final, timeout=120000)
    assert h2.state == "done", (h2.message, h2.logs[-3:])
    assert labels and all(t == f"{run} (training)" for t in labels), labels
    # the steps before the resume stay drawn, the new ones follow them: one curve 1..10, no gap, no repeat
    qtbot.waitUntil(lambda: panel.loss_plot.points("loss") == 10, timeout=10000)
    assert list(_steps(panel.loss_plot)) == list(range(1, 11))
    assert panel.runs.currentText() == f"{run} (finished)"
    assert panel.status.text() == f"Run {run}: training finished."
    for size in ((1366, 768), (1920, 1080)):
        main_window.resize(*size)
        qtbot.wait(50)
        assert_not_blank(panel, SHOTS / f"train_resumed_{size[0]}x{size[1]}.png")


def test_a_failed_start_keeps_its_message_and_a_preset_takes_the_dataset_kind_it_needs(main_window, workspace,
                                                                                        qtbot, tmp_path):
    from app.engine.data.ingest import IngestSpec

    make_dataset(workspace, n=12, size=16)  # magnitude images
    panel, h = _start_from_preset(main_window, qtbot)
    qtbot.waitUntil(lambda: h.is_final, timeout=120000)
    assert h.state == "done", h.message
    earlier = h.result["run"]

    # the complex preset on a workspace without a complex dataset: said at once, and the engine refuses it
    panel.apply_preset("mri-prior-complex")
    assert panel.preset_note.isVisible() and "needs a complex dataset" in panel.preset_note.text()
    main_window.resize(1366, 768)
    assert_not_blank(panel, SHOTS / "train_preset_needs_1366x768.png")
    panel.form.set_values({**TINY, "dataset": "phantoms", "process": "vpsde"})
    panel.start_button.click()
    failed = panel.handle
    qtbot.waitUntil(lambda: failed.is_final, timeout=60000)
    assert failed.state == "failed" and "phantoms holds magnitude images" in failed.message
    from app.workers.manager import wait_for_calls

    wait_for_calls()  # the selected (earlier) run's history is read again: it must not replace the message
    qtbot.wait(200)
    assert panel.status.text().startswith("Training failed: preset mri-prior-complex: dataset phantoms")
    assert "no run was started" in panel.status.text() and earlier not in panel.status.text()
    panel.runs.setCurrentIndex(panel.runs.findData(earlier))
    panel.runs.activated.emit(panel.runs.currentIndex())  # the user picks the run: its own status again
    qtbot.waitUntil(lambda: panel.status.text().startswith(f"Run {earlier} (finished)"), timeout=10000)

    # a complex dataset arrives (a real import job); the preset now selects it, the chest-like one stays for others
    with np.load(shared_file("siat_brain_t2_complex_dev.npz")) as z:
        np.savez(tmp_path / "siat8.npz", images=z["images"][:8])
    imp = main_window.jobs.submit(IngestSpec(source=str(tmp_path / "siat8.npz"), name="siat-complex", complex=True,
                                             size=16))
    qtbot.waitUntil(lambda: imp.is_final, timeout=60000)
    assert imp.state == "done", imp.message
    qtbot.waitUntil(lambda: "siat-complex" in [panel.form.editors["dataset"].widget.itemText(i) for i in
                                               range(panel.form.editors["dataset"].widget.count())], timeout=5000)
    panel.form.set_values({"dataset": "phantoms"})
    panel.apply_preset("mri-prior-complex")
    assert panel.form.values()["dataset"] == "siat-complex" and not panel.preset_note.isVisible()
    panel.preset.setCurrentIndex(0)  # "(defaults)"
    assert not panel.preset_note.isVisible()
    panel.apply_preset("mri-prior-complex")
    for size in ((1366, 768), (1920, 1080)):
        main_window.resize(*size)
        qtbot.wait(50)
        assert_not_blank(panel, SHOTS / f"train_preset_complex_{size[0]}x{size[1]}.png")
