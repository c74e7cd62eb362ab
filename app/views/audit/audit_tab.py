"""The Evaluation & Audit panel's memorization tab: the "audit" job, its distances, a live threshold, the gate.

``AuditSpec`` is built from the controls on the GUI thread and submitted through a ``JobController``. When
the job is done its report (distances, flags, thresholds) is read with the engine's ``privacy.load_report``
together with the two image sets, on a worker thread. Then: histograms of generated->train and
held-out->train nearest-neighbour distances per measure (``widgets/distance_histogram.py``) with a threshold
line to drag; every move recounts the flagged images with ``privacy.flag`` on the stored distances (no new
search): the dragged measure gets an absolute threshold, the other measures keep theirs, and images the audit
flagged by its ratio route (a lone, much closer neighbour) stay flagged. The gallery shows the flagged pairs
(generated | nearest training | difference, ``privacy.pair_figure``) sorted by distance, drawn on a worker
thread; a pair whose transformation the audit fitted ("mirrored, shifted 5 px (+5, +0), gamma 0.80") shows
the training image under it and names it under the pair. "Apply gate" writes the set without the flagged images (``privacy.write_cleaned_set``) off the GUI
thread. The verdict banner says PASSED / FAILED against the allowed rate.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
from PySide6.QtCore import QSize, Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from app.engine.audit.memorization import FlagRule, flag, load_report, pair_figure, write_cleaned_set
from app.engine.metrics.sets import load_set, size_sentence
from app.engine.specs.evaluate import AuditSpec
from app.views.job_controller import JobController, build_spec
from app.views.widgets.distance_histogram import DistanceHistogram
from app.views.widgets.thumbnails import ThumbnailGrid
from app.workers.manager import run_in_thread

GALLERY_MAX = 120


def load_audit_bundle(out_dir: str, gen_ref: str, train_ref: str, workspace, size: int | None) -> dict:
    """The audit report (distances, flags) and the two image sets its pairs are drawn from (worker thread)."""
    report = load_report(out_dir)
    gen = load_set(gen_ref, workspace, size=size, what="generated images")
    train = load_set(train_ref, workspace, size=size, what="training images")
    return {"report": report, "generated": gen, "train": train}


def transform_text(report, i: int) -> str:
    """The named transformation the audit fitted for generated image ``i`` ("" when it was not flagged by the audit)."""
    tf = report.transforms.get(int(i))
    return tf["text"] if tf else ""


def pair_figures(gen_images, train_images, report, indices, measure: str) -> list[tuple[int, int, np.ndarray]]:
    """(generated index, training index, [generated | nearest training | difference]) per index. An image
    whose transformation the audit named is shown against its training image under that transformation."""
    m = measure if measure in report.generated.index else "ncc"
    out = []
    for i in indices:
        tf = report.transforms.get(int(i))
        if tf is not None:
            j = int(tf["training_index"])
            fig = pair_figure(gen_images[i], train_images[j], (0, 0), tf)
            out.append((int(i), j, fig))
            continue
        j = int(report.generated.index[m][i])
        # the alignment shift is stored for the NCC-nearest image; other measures' pairs are shown unshifted
        shift = report.generated.shift[i] if j == int(report.generated.index["ncc"][i]) else (0, 0)
        fig = pair_figure(gen_images[i], train_images[j], shift)
        h, w = gen_images.shape[-2:]
        # a shifted pair is drawn on its overlap (smaller): pad to one size so the gallery lines up
        full = np.full((h, 3 * w + 4), -1.0, np.float32)
        full[: fig.shape[0], : fig.shape[1]] = fig[:h, : 3 * w + 4]
        out.append((int(i), j, full))
    return out


class VerdictBanner(QLabel):
    """The big coloured line: grey (no verdict), green PASSED, red FAILED."""

    def __init__(self):
        super().__init__("No audit yet")
        self.setObjectName("verdict")
        self.setAlignment(Qt.AlignCenter)
        self.setMinimumHeight(54)
        self.setWordWrap(True)  # a long verdict takes two lines on a small screen rather than being cut
        self.set(None, "No audit yet: choose the sets and press Run audit.")

    def set(self, passed: bool | None, text: str) -> None:
        colour = {None: ("#3a3a3e", "#d8d8d8"), True: ("#1f7a3a", "#ffffff"), False: ("#b3261e", "#ffffff")}[passed]
        self.setText(text)
        self.setStyleSheet(f"QLabel#verdict {{ background: {colour[0]}; color: {colour[1]}; font-size: 20px;"
                           f" font-weight: bold; border-radius: 6px; padding: 8px; }}")


class AuditTab(QWidget):
    """See the module docstring. ``controls`` is the panel's ``AuditControls``; ``verdict`` its banner."""

    flagged_changed = Signal(int)
    gallery_updated = Signal()
    shown = Signal()  # an audit's results are on screen

    def __init__(self, ctx, controls, verdict: VerdictBanner):
        super().__init__()
        self.ctx = ctx
        self.controls = controls
        self.verdict = verdict
        self.bundle: dict | None = None
        self.live_flags: np.ndarray | None = None
        self.n_flagged = 0
        self.cleaned_files: list[Path] = []
        self._thresholds: dict[str, float] | None = None
        self._pair_cache: dict[tuple[int, str], tuple[int, int, np.ndarray]] = {}
        self._gallery_token = 0
        self._build()
        self.jobs = JobController(ctx.jobs, controls.status, what="Audit", parent=self)
        self.jobs.finished.connect(self._on_audit_done)
        self._gallery_timer = QTimer(self)
        self._gallery_timer.setSingleShot(True)
        self._gallery_timer.setInterval(150)
        self._gallery_timer.timeout.connect(self._refresh_gallery)

    def _build(self) -> None:
        ml = QVBoxLayout(self)
        ml.setContentsMargins(0, 4, 0, 0)
        top = QHBoxLayout()
        top.addWidget(QLabel("Measure"))
        self.measure = QComboBox()
        self.measure.setObjectName("measureCombo")
        self.measure.currentIndexChanged.connect(lambda *_: self._show_measure())
        top.addWidget(self.measure)
        self.flag_label = QLabel("")
        self.flag_label.setObjectName("flaggedLabel")
        top.addWidget(self.flag_label, 1)
        reset = QPushButton("Reset threshold")
        reset.clicked.connect(self.reset_thresholds)
        top.addWidget(reset)
        ml.addLayout(top)
        vs = QSplitter(Qt.Vertical)
        self.histogram = DistanceHistogram()
        self.histogram.setObjectName("distanceHistogram")
        self.histogram.threshold_moved.connect(self._on_threshold)
        vs.addWidget(self.histogram)
        gbox = QWidget()
        gl = QVBoxLayout(gbox)
        gl.setContentsMargins(0, 0, 0, 0)
        self.gallery_title = QLabel("Flagged pairs: generated | nearest training (under the fitted transformation) | "
                                    "difference (closest first)")
        self.gallery_title.setWordWrap(True)
        self.gallery_title.setProperty("role", "hint")
        gl.addWidget(self.gallery_title)
        self.gallery = ThumbnailGrid(icon_size=96)
        self.gallery.setObjectName("flaggedGallery")
        self.gallery.setIconSize(QSize(228, 76))
        # two lines under each pair: indices and distance, then the transformation the audit named
        self.gallery.setWordWrap(True)
        self.gallery.setGridSize(QSize(240, 76 + 3 * self.gallery.fontMetrics().height() + 8))
        self.gallery.setSelectionMode(QAbstractItemView.SingleSelection)
        gl.addWidget(self.gallery, 1)
        vs.addWidget(gbox)
        vs.setSizes([330, 360])
        ml.addWidget(vs, 1)

    # -- the job ----------------------------------------------------------------------------------
    @property
    def audit_handle(self):
        return self.jobs.handle

    def audit_check(self):
        """(AuditSpec, {}) or (None, {field: message}) for the controls' values."""
        c = self.controls
        gen, train, hold = c.sets()
        v = {"generated": gen, "train": train, "extractor": c.audit_extractor.currentText(),
             "max_memorization_rate": c.max_rate.value()}
        if c.compare_size() is not None:
            v["size"] = c.compare_size()
        if hold:
            v["holdout"] = hold
        return build_spec(AuditSpec, v)

    def run_audit(self):
        """Submit the audit; returns its spec (None when it is not valid)."""
        gen, train, _ = self.controls.sets()
        if not gen or not train:
            self.jobs.say("Choose the generated set and the training set.")
            return None
        spec, errors = self.audit_check()
        if spec is None:
            self.controls.field_errors.show(errors)
            self.jobs.say("Not valid: correct the value named in red.")
            return None
        self.jobs.start()
        self.jobs.submit(spec, name="audit")
        self.jobs.say("Auditing…")
        self.verdict.set(None, "Audit running…")
        return spec

    def _on_audit_done(self, _name: str, h) -> None:
        if h.state != "done":
            self.verdict.set(None, "Audit stopped" if h.state == "cancelled" else "Audit failed")
            return
        spec, res, ws = h.spec, h.result or {}, self.ctx.workspace
        train_ref = spec.train
        if spec.holdout is None and ":" not in train_ref and not Path(train_ref).exists() and res.get("holdout"):
            train_ref = f"{train_ref}:train"  # the job used the dataset's train split (its val/test is held out)
        out, gen_ref = res["out"], spec.generated
        self.jobs.say("Reading the audit report…")
        size = (res.get("image_size") or {}).get("size", spec.size)  # the size the job compared at
        self.jobs.run_io(lambda: dict(load_audit_bundle(out, gen_ref, train_ref, ws, size), result=res),
                         self._show_audit, "Reading the report")

    def _show_audit(self, bundle: dict) -> None:
        self.bundle = bundle
        self._pair_cache.clear()
        self._thresholds = None
        rep, res = bundle["report"], bundle["result"]
        self.live_flags = np.asarray(rep.flagged, bool)
        measures = list(rep.generated.index)
        self.measure.blockSignals(True)
        self.measure.clear()
        self.measure.addItems(measures)
        first = next((m for m in rep.rule.measures if m in measures), measures[0] if measures else "")
        self.measure.setCurrentText(first)
        self.measure.blockSignals(False)
        c = rep.counts
        self.jobs.say(f"Audit of {c.get('generated')} generated vs {c.get('train')} training images, "
                      f"{c.get('holdout')} held-out; features: {rep.extractor}; rule {rep.rule.mode}; "
                      f"{res.get('seconds', 0):.1f} s. "
                      + (size_sentence(res["image_size"]) + " " if res.get("image_size") else "")
                      + f"Report: {res.get('html')}")
        self._show_measure()
        self._update_verdict()
        self.shown.emit()

    @property
    def html(self) -> str | None:
        """The self-contained report of the audit shown (its Done result's ``html``)."""
        return (self.bundle or {}).get("result", {}).get("html") or None

    # -- thresholds -------------------------------------------------------------------------------
    def _show_measure(self) -> None:
        if self.bundle is None:
            return
        rep = self.bundle["report"]
        m = self.measure.currentText()
        if not m:
            return
        hold = rep.holdout.distances.get(m) if rep.holdout else None
        th = self.thresholds().get(m, rep.thresholds.get(m))
        if th is None:
            d = rep.generated.distances[m]
            th = float(np.nanmin(d[np.isfinite(d)])) if np.isfinite(d).any() else 0.0
        self.histogram.set_data(rep.generated.distances[m], hold, th, m)
        self._recount()

    def thresholds(self) -> dict[str, float]:
        """The thresholds in use: the audit's, with the user's moves."""
        return dict(self._thresholds) if self._thresholds is not None else dict(self.bundle["report"].thresholds)

    def set_thresholds(self, thresholds: dict[str, float]) -> None:
        """Use these thresholds per measure (as if each line had been dragged there) and recount."""
        if self.bundle is None:
            return
        self._thresholds = dict(thresholds)
        self._show_measure()

    def reset_thresholds(self) -> None:
        if self.bundle is None:
            return
        self._thresholds = None
        self._show_measure()

    def _on_threshold(self, x: float) -> None:
        if self.bundle is None:
            return
        th = self.thresholds()
        th[self.measure.currentText()] = max(float(x), 0.0)
        self._thresholds = th
        self._recount()

    def _recount(self) -> None:
        """Flags for the current thresholds with the engine's ``flag`` on the stored distances."""
        rep = self.bundle["report"]
        gd = rep.generated.distances
        hd = rep.holdout.distances if rep.holdout else None
        th = {m: t for m, t in self.thresholds().items() if m in gd}
        live = flag(gd, hd, FlagRule(mode="absolute", thresholds=th)) if th else np.zeros(len(rep.flagged), bool)
        if rep.rule.mode != "absolute":
            # the audit's ratio route (lone much-closer neighbour) is not a threshold: its flags stay
            base = flag(gd, hd, FlagRule(mode="absolute", thresholds=dict(rep.thresholds))) if rep.thresholds else live
            live = live | (np.asarray(rep.flagged, bool) & ~base)
        self.live_flags = live
        self.n_flagged = int(live.sum())
        m = self.measure.currentText()
        self.flag_label.setText(f"  {self.n_flagged} of {len(live)} generated images flagged  ·  {m} threshold "
                                f"{th.get(m, float('nan')):.4g}  (drag the red line)")
        self._update_verdict()
        self.flagged_changed.emit(self.n_flagged)
        self._gallery_timer.start()

    def _update_verdict(self) -> None:
        if self.bundle is None or self.live_flags is None:
            return
        rep = self.bundle["report"]
        n = len(self.live_flags)
        rate = self.n_flagged / n if n else 0.0
        passed = rate <= rep.max_memorization_rate
        moved = self.thresholds() != dict(rep.thresholds)
        self.verdict.set(passed, f"{'PASSED' if passed else 'FAILED'} — {self.n_flagged} of {n} generated images "
                         f"flagged as near-copies (allowed {rep.max_memorization_rate:.1%})"
                         + ("  · thresholds edited" if moved else ""))

    # -- gallery and gate -------------------------------------------------------------------------
    def _refresh_gallery(self) -> None:
        if self.bundle is None:
            return
        rep = self.bundle["report"]
        m = self.measure.currentText() or "ncc"
        idx = np.flatnonzero(self.live_flags)
        d = rep.generated.distances[m]
        idx = idx[np.argsort(d[idx], kind="stable")][:GALLERY_MAX]
        need = [int(i) for i in idx if (int(i), m) not in self._pair_cache]
        self._gallery_token += 1
        token = self._gallery_token
        gen, train = self.bundle["generated"].images, self.bundle["train"].images

        def done(figs, m=m, idx=idx, token=token):
            for i, j, fig in figs:
                self._pair_cache[(i, m)] = (i, j, fig)
            if token != self._gallery_token:
                return
            rows = [self._pair_cache[(int(i), m)] for i in idx]
            labels = [f"gen {i} · train {j} · {m} {d[i]:.3g}" + (f"\n{transform_text(rep, i)}" if transform_text(rep, i) else "")
                      for i, j, _ in rows]
            self.gallery.set_images(np.stack([f for _, _, f in rows])[:, None] if rows else np.zeros((0, 1, 4, 4)),
                                    labels=labels, keys=[i for i, _, _ in rows])
            more = f" (first {GALLERY_MAX} shown)" if self.n_flagged > GALLERY_MAX else ""
            self.gallery_title.setText(f"Flagged pairs: generated | nearest training ({m}, or under the transformation "
                                       f"named below) | difference — {len(rows)} sorted by {m} distance{more}")
            self.gallery_updated.emit()

        self.jobs.run_io(lambda: pair_figures(gen, train, rep, need, m), done, "Drawing the pairs")

    def gallery_keys(self) -> list[int]:
        return list(self.gallery.keys)

    def apply_gate(self, out_dir: str | Path | None = None):
        """Write the generated set without the currently flagged images (NPZ through the exporter)."""
        if self.bundle is None:
            return None
        if out_dir is None:
            out_dir = QFileDialog.getExistingDirectory(self, "Folder for the cleaned set")
            if not out_dir:
                return None
        rep = dataclasses.replace(self.bundle["report"], flagged=np.asarray(self.live_flags, bool).copy(),
                                  thresholds=self.thresholds())
        gen = self.bundle["generated"]
        gate = self.controls.gate_button
        gate.setEnabled(False)

        def done(files):
            self.cleaned_files = [Path(f) for f in files]
            gate.setEnabled(True)
            self.jobs.say(f"Cleaned set: {int((~rep.flagged).sum())} of {len(rep.flagged)} images kept, "
                          f"written to {out_dir}")

        def failed(msg, tb):
            gate.setEnabled(True)
            self.jobs.say(f"The gate failed: {msg}")

        return run_in_thread(lambda: write_cleaned_set(gen, rep, out_dir, format="npz",
                                                       provenance={"source": gen.source}), done, failed)
