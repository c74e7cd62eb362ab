"""GUI responsiveness while a training job runs at full speed: event-loop stall and live update rates.

    QT_QPA_PLATFORM=offscreen .venv/bin/python benchmarks/bench_gui_responsiveness.py [--seconds 20]

A 10 ms QTimer (Qt.PreciseTimer) on the GUI thread records how late each tick fires; its
lateness is the event loop's stall. Measured twice in the same process: the anchor is the idle
main window (nothing running), then the Training panel with a cpu-quickstart-like DDPM job on the
demo phantoms (tiny U-Net, loss every step, a preview grid every epoch) running on the local
QThread transport. Goal: max and 99th-percentile stall under 50 ms. Also printed: how many times
per second the loss curve and the preview image were updated on screen, and how many scalar
events per second the job emitted (the JobHandle batches them).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402


def measure(app, seconds: float, interval_ms: int = 10) -> np.ndarray:
    from PySide6.QtCore import Qt, QTimer

    lateness: list[float] = []
    last = [time.perf_counter()]

    def tick():
        now = time.perf_counter()
        lateness.append(max(0.0, now - last[0] - interval_ms / 1000.0))
        last[0] = now

    timer = QTimer()
    timer.setTimerType(Qt.PreciseTimer)
    timer.timeout.connect(tick)
    timer.start(interval_ms)
    t_end = time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        app.processEvents()
        time.sleep(0.001)
    timer.stop()
    return np.asarray(lateness[1:]) * 1000.0


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--threads", type=int, default=int(os.environ.get("RADSYNTH_THREADS", "2")))
    ns = p.parse_args()
    os.environ["RADSYNTH_THREADS"] = str(ns.threads)

    from PySide6.QtCore import QSettings

    from app.engine.data.demo import DemoSpec, write_demo_dataset
    from app.engine.store import Workspace
    from app.views.app import create_application

    tmp = Path(tempfile.mkdtemp(prefix="radsynth-bench-"))
    ws = Workspace.open(tmp / "ws")
    write_demo_dataset(ws, DemoSpec(n_images=256, size=32))
    app = create_application(["bench"])
    QSettings.setDefaultFormat(QSettings.IniFormat)
    QSettings.setPath(QSettings.IniFormat, QSettings.UserScope, str(tmp / "settings"))
    from app.views.main_window import MainWindow

    win = MainWindow(workspace=ws.root, error_mode="record", demo_at_first_start=False)
    win.resize(1400, 880)
    win.show()
    panel = win.show_panel("train")
    t_wait = time.perf_counter() + 60
    while win.compute_text == "Compute: …" and time.perf_counter() < t_wait:  # torch import off-thread
        app.processEvents()
        time.sleep(0.01)
    measure(app, 2.0)  # let the rest of start-up (thumbnails, EDA) settle
    idle = measure(app, min(5.0, ns.seconds))

    panel.apply_preset("cpu-quickstart") if panel.preset.findData("cpu-quickstart") >= 0 else None
    panel.form.set_values({"dataset": "demo-phantoms", "image_size": 32, "base_channels": 16,
                           "channel_mults": [1, 2], "num_res_blocks": 1, "attention_resolutions": [8],
                           "epochs": 1000, "batch_size": 16, "log_every": 1, "preview_every": 1, "preview_n": 16,
                           "preview_steps": 10, "checkpoint_every": 0, "val_every": 1, "val_levels": 4,
                           "device": "cpu", "max_steps": None})
    assert panel.form.is_valid, panel.form.errors
    h = panel.start()
    while h.state != "running" or panel.loss_plot.points("loss") == 0:  # skip the job's start-up
        app.processEvents()
        time.sleep(0.005)
    scal0, loss0, prev0 = h.events_received, panel.loss_plot.updates, panel.preview_updates
    steps0 = h.step
    t0 = time.perf_counter()
    busy = measure(app, ns.seconds)
    dt = time.perf_counter() - t0
    loss_ups = (panel.loss_plot.updates - loss0) / dt
    prev_ups = (panel.preview_updates - prev0) / dt
    events = (h.events_received - scal0) / dt
    steps = (h.step - steps0) / dt
    h.cancel()
    win.jobs.wait_all(60000)

    def row(name, a):
        return f"{name:<34}{np.max(a):>10.1f}{np.percentile(a, 99):>10.1f}{np.mean(a):>10.2f}{len(a):>8d}"

    print(f"GUI responsiveness, {ns.seconds:.0f} s of training (torch threads {ns.threads}, {os.cpu_count()} cores)")
    print(f"{'10 ms timer lateness (ms)':<34}{'max':>10}{'p99':>10}{'mean':>10}{'ticks':>8}")
    print(row("anchor: idle main window", idle))
    print(row("training job at full speed", busy))
    ratio_p99 = np.percentile(busy, 99) / max(np.percentile(idle, 99), 1e-3)
    print(f"ratio training / idle: p99 {ratio_p99:.2f}x, max {np.max(busy) / max(np.max(idle), 1e-3):.2f}x")
    goal = "MET" if np.max(busy) < 50 and np.percentile(busy, 99) < 50 else "NOT MET"
    print(f"goal max and p99 < 50 ms: {goal}")
    print(f"training speed: {steps:.1f} optimizer steps/s; job events delivered: {events:.1f}/s")
    print(f"live updates: loss curve {loss_ups:.1f}/s, preview grid {prev_ups:.2f}/s "
          f"(previews thinned to <= 4/s per image name)")
    win.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
