"""The built-in demo dataset: procedural brain-like MR phantoms (synthetic, not patient data).

Axial T2-weighted-looking slices: scalp, a dark skull ring, a bright CSF rim, grey matter with
sulci, white matter, lateral ventricles and deep grey nuclei, a smooth multiplicative bias field
and Rician noise. Class 0 "healthy"; class 1 "lesion" adds a focal lesion (usually T2-bright with a
faint oedema halo, sometimes dark like a haemorrhage). Each phantom "patient" has its own head
shape, folding pattern, contrast and noise and contributes several neighbouring slices, so
patient-grouped splits are meaningful. Everything is drawn from ``np.random.default_rng`` seeded
by (seed, patient): the same seed gives the same images.

``ensure_demo(workspace)`` creates it at first start when the workspace has no dataset yet.
"""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np
from scipy.ndimage import gaussian_filter

from app.engine.jobs import JobContext, register
from app.engine.specs.data import DEMO_NAME, DemoSpec  # noqa: F401 (DEMO_NAME: the demo's dataset name)

CLASS_NAMES = ["healthy", "lesion"]
DEMO_SOURCE = "synthetic phantoms (procedurally generated, not patient data)"


@dataclasses.dataclass
class Phantoms:
    images: np.ndarray  # float32 (N, 1, H, W) in [-1, 1]
    labels: np.ndarray  # int64 (N,): 0 healthy, 1 lesion
    patients: list[str]  # "phantom-007" per image
    slices: np.ndarray  # int32 (N,): slice index within the phantom patient
    class_names: list[str] = dataclasses.field(default_factory=lambda: list(CLASS_NAMES))


def _smooth_field(rng: np.random.Generator, n: int, sigma: float) -> np.ndarray:
    """Zero-mean, unit-std smooth random field (Gaussian-filtered white noise)."""
    f = gaussian_filter(rng.standard_normal((n, n)).astype(np.float32), sigma, mode="wrap")
    return (f - f.mean()) / (f.std() + 1e-8)


def _soft(d: np.ndarray, width: float) -> np.ndarray:
    """Smooth step from 1 (d << 0) to 0 (d >> 0): partial-volume edges instead of jagged ones."""
    return 0.5 * (1.0 - np.tanh(d / width))


class _Patient:
    """One phantom patient's anatomy parameters and fields (drawn once, shared by its slices)."""

    def __init__(self, seed: int, index: int, lesion: bool, n: int):
        rng = np.random.default_rng([seed, index, 7919])
        self.index, self.lesion, self.n = index, lesion, n
        self.a = rng.uniform(0.72, 0.82)  # head half-width
        self.b = rng.uniform(0.86, 0.95)  # head half-height (anterior-posterior)
        self.rot = math.radians(rng.normal(0.0, 4.0))
        self.cx, self.cy = rng.uniform(-0.04, 0.04, size=2)
        self.skull = rng.uniform(0.06, 0.09)  # skull thickness (fraction of the head radius)
        self.vent = rng.uniform(0.8, 1.35)  # ventricle size (atrophy / age)
        self.gm, self.wm, self.csf = rng.uniform(0.52, 0.6), rng.uniform(0.34, 0.42), rng.uniform(0.88, 0.98)
        self.scalp = rng.uniform(0.55, 0.75)
        self.noise = rng.uniform(0.018, 0.035)
        self.folds = rng.integers(13, 18)
        self.z0 = rng.uniform(-0.05, 0.2)  # centre of this patient's slab
        self.fa, self.fb = _smooth_field(rng, n, n / 10), _smooth_field(rng, n, n / 10)
        self.ga, self.gb = _smooth_field(rng, n, n / 24), _smooth_field(rng, n, n / 24)
        self.texture = _smooth_field(rng, n, 1.0)
        self.bias = rng.uniform(-0.12, 0.12, size=4)
        # lesion: inside the brain, away from the midline; bright (oedema-like) or dark
        ang, rad = rng.uniform(0, 2 * math.pi), rng.uniform(0.2, 0.55)
        self.lx, self.ly = rad * math.cos(ang) * 0.75, rad * math.sin(ang) * 0.85
        self.lr = rng.uniform(0.07, 0.14)
        self.bright = rng.random() < 0.7
        self.seed_noise = [seed, index, 104729]
        t = np.linspace(-1, 1, n, dtype=np.float32)
        self.yy, self.xx = np.meshgrid(t, t, indexing="ij")
        c, s = math.cos(self.rot), math.sin(self.rot)
        self.x = c * (self.xx - self.cx) + s * (self.yy - self.cy)
        self.y = -s * (self.xx - self.cx) + c * (self.yy - self.cy)
        self.theta = np.arctan2(self.y, self.x)


def _render_slice(p: _Patient, z: float, slice_index: int) -> np.ndarray:
    """One slice at relative height z (0 ~ ventricles level), intensities ~0..1 before noise."""
    n = p.n
    xx, yy, x, y = p.xx, p.yy, p.x, p.y
    shrink = math.sqrt(max(1.0 - (z / 1.15) ** 2, 0.2))  # the head narrows towards the vertex
    a, b = p.a * (0.8 + 0.2 * shrink), p.b * (0.85 + 0.15 * shrink)
    rho = np.sqrt((x / a) ** 2 + (y / b) ** 2)
    theta = p.theta
    phase = 2.5 * z
    f1 = math.cos(phase) * p.fa + math.sin(phase) * p.fb  # slowly varying through the slab
    f2 = math.cos(phase) * p.ga + math.sin(phase) * p.gb
    w = 1.5 / n  # edge softness ~ one pixel at the render resolution

    inner_skull = 1.0 - p.skull - 0.035
    brain_edge = inner_skull - 0.03
    head = _soft(rho - 1.0, w)
    img = p.scalp * (1 + 0.08 * p.texture) * head
    skull = _soft(rho - (1.0 - 0.035), w) - _soft(rho - inner_skull, w)
    img = img * (1 - skull) + skull * (0.07 + 0.12 * np.exp(-(((rho - (1 - 0.035 - p.skull / 2)) / (p.skull / 5)) ** 2)))
    intracranial = _soft(rho - inner_skull, w)
    img = img * (1 - intracranial) + p.csf * intracranial

    r = rho / brain_edge  # 1 at the brain surface
    surface = 1.0 + 0.015 * f1
    brain = _soft(r - surface, 1.2 * w)
    # cortical folding: gyri are white-matter fingers capped by grey matter, sulci are CSF clefts
    # between them; ``fold`` is +1 on a gyral crown and -1 in the depth of a sulcus
    fold = np.sin(p.folds * theta + 2.2 * f2 + 0.8 * f1)
    core = (0.7 + 0.05 * f1) * (0.9 + 0.1 * shrink)
    wm_edge = core + 0.17 * (0.5 + 0.5 * fold)
    white = _soft(r - wm_edge, 1.5 * w)
    tissue = p.gm + (p.wm - p.gm) * white
    tissue = tissue * (1 + 0.035 * p.texture)
    cleft = _soft(fold + 0.8, 0.05) * _soft(core + 0.06 - r, 0.02)
    tissue = tissue * (1 - cleft) + p.csf * cleft
    # interhemispheric fissure (falx) along the midline, except where the ventricles are
    fissure = _soft(np.abs(x) - 0.01, w) * ((np.abs(y) > 0.35 * b) | (z > 0.35))
    tissue = tissue * (1 - 0.8 * fissure) + p.csf * 0.8 * fissure

    # deep grey nuclei and lateral ventricles near the ventricular level
    vz = math.exp(-(((z - 0.05) / 0.22) ** 2))
    if vz > 0.05:
        for side in (-1, 1):
            dx, dy = x - side * 0.2 * a, y - 0.05 * b
            nuc = _soft(np.sqrt((dx / (0.1 * a)) ** 2 + (dy / (0.16 * b)) ** 2) - 1, 0.08) * vz
            tissue = tissue * (1 - nuc) + (p.gm - 0.02) * nuc
        for side in (-1, 1):
            # a lateral ventricle: a banana bowed outwards, frontal horn near the septum
            # (anterior, -y), body and atrium diverging posteriorly
            u = (y + 0.02 * b) / (0.3 * b * (0.8 + 0.2 * p.vent) * math.sqrt(vz))  # -1..1 along it
            centre = side * (0.035 + 0.05 * (u + 1) + 0.04 * (1 - u**2)) * a
            half_w = (0.035 + 0.02 * (1 - u**2) + 0.015 * np.clip(u, 0, 1)) * a * p.vent * vz
            v = _soft(np.maximum(np.abs(x - centre) / np.maximum(half_w, 1e-3), np.abs(u)) - 1, 0.12)
            tissue = tissue * (1 - v) + p.csf * v
    if p.lesion:
        lz = math.sqrt(max(1.0 - ((z - p.z0) / 0.35) ** 2, 0.0))
        rad = p.lr * (0.55 + 0.45 * lz)
        d = np.sqrt((x - p.lx * a) ** 2 + (y - p.ly * b) ** 2) * (1 + 0.15 * f2)  # irregular outline
        core = _soft(d - rad, 0.012)
        if p.bright:
            halo = _soft(d - 1.7 * rad, 0.04) * 0.45
            tissue = tissue * (1 - halo) + (p.gm + 0.25) * halo
            tissue = tissue * (1 - core) + min(p.csf + 0.05, 1.0) * core
        else:
            rim = _soft(d - 1.25 * rad, 0.01) - core
            tissue = tissue * (1 - rim) + (p.gm + 0.2) * rim
            tissue = tissue * (1 - core) + 0.1 * core
    img = img * (1 - brain) + tissue * brain
    # smooth multiplicative bias field (receive-coil sensitivity), low-order polynomial
    b1, b2, b3, b4 = p.bias
    img = img * (1 + b1 * xx + b2 * yy + b3 * xx * yy + b4 * (xx**2 + yy**2 - 0.5))
    return img


def phantom_slices(n_images: int = 512, size: int = 64, seed: int = 0, slices_per_patient: int = 8) -> Phantoms:
    """Deterministic phantom slices: half the patients healthy, half with a lesion (all slices)."""
    if n_images < 1 or size < 16:
        raise ValueError("need n_images >= 1 and size >= 16")
    n_pat = math.ceil(n_images / slices_per_patient)
    order = np.random.default_rng([seed, 1]).permutation(n_pat)
    lesion = np.zeros(n_pat, bool)
    lesion[order[: n_pat // 2 + (n_pat % 2) * (seed % 2)]] = True
    render = size  # edges are drawn soft (about a pixel wide), so no supersampling is needed
    images, labels, patients, slices = [], [], [], []
    for pi in range(n_pat):
        p = _Patient(seed, pi, bool(lesion[pi]), render)
        noise_rng = np.random.default_rng(p.seed_noise)
        k = min(slices_per_patient, n_images - pi * slices_per_patient)
        for si in range(k):
            z = p.z0 + (si - (slices_per_patient - 1) / 2) * 0.045
            lo = _render_slice(p, z, si)
            # Rician magnitude noise: |signal + complex Gaussian| (Gudbjartsson & Patz 1995, eq. 2)
            n1, n2 = noise_rng.standard_normal((2, size, size), dtype=np.float32) * np.float32(p.noise)
            mag = np.sqrt((lo + n1) ** 2 + n2**2)
            images.append(np.clip(mag / 1.1, 0, 1) * 2 - 1)
            labels.append(int(p.lesion))
            patients.append(f"phantom-{pi:03d}")
            slices.append(si)
    return Phantoms(
        images=np.asarray(images, np.float32)[:, None],
        labels=np.asarray(labels, np.int64),
        patients=patients,
        slices=np.asarray(slices, np.int32),
    )




def write_demo_dataset(workspace, spec: DemoSpec | None = None, ctx: JobContext | None = None):
    """Generate the phantoms and register them as a dataset; returns its DatasetRecord."""
    from app.engine.data.cache import CacheWriter
    from app.engine.data.splits import grouped_split, split_counts
    from app.engine.store import check_name

    spec = spec or DemoSpec()
    check_name(spec.name, "dataset name")
    if workspace.has_dataset(spec.name) and not spec.replace:
        from app.engine.errors import UserError

        raise UserError(f"a dataset named {spec.name!r} already exists; pass --replace to overwrite it")
    t0 = time.perf_counter()
    ph = phantom_slices(spec.n_images, spec.size, spec.seed, spec.slices_per_patient)
    split = grouped_split(ph.patients, ph.labels, spec.val_fraction, spec.test_fraction, spec.seed)
    staging = workspace.staging_dir()
    try:
        w = CacheWriter(
            staging / "cache.h5", spec.size, spec.size, ph.class_names,
            attrs={"normalize": "fixed (phantom intensity / 1.1)", "size": spec.size, "source_root": DEMO_SOURCE,
                   "synthetic": 1},
        )
        try:
            step = 64
            for i in range(0, len(ph.labels), step):
                if ctx is not None:
                    ctx.check()
                    ctx.progress(min(i + step, len(ph.labels)), len(ph.labels), "writing phantoms")
                sl = slice(i, i + step)
                w.append(
                    ph.images[sl], ph.labels[sl], ph.patients[sl],
                    [f"demo:{p}" for p in ph.patients[sl]], ph.slices[sl], "MR",
                )
            w.set_splits(split)
        finally:
            w.close()
        counts = split_counts(split)
        meta = {
            "synthetic": True,
            "description": DEMO_SOURCE,
            "modality": "MR",
            "normalize": "fixed",
            "patients": len(set(ph.patients)),
            "splits": counts,
            "class_counts": {c: int((ph.labels == i).sum()) for i, c in enumerate(ph.class_names)},
            "seed": spec.seed,
            "spec": spec.model_dump(mode="json"),
        }
        rec = workspace.commit_dataset(
            staging, spec.name, n_images=len(ph.labels), height=spec.size, width=spec.size,
            classes=ph.class_names, source=DEMO_SOURCE, meta=meta, replace=spec.replace,
        )
    except BaseException:
        workspace.discard_staging(staging)
        raise
    if ctx is not None:
        ctx.log(f"demo dataset {spec.name!r}: {len(ph.labels)} synthetic phantom slices from "
                f"{meta['patients']} phantom patients in {time.perf_counter() - t0:.1f} s")
    return rec


@register(DemoSpec)
def run_demo(spec: DemoSpec, ctx: JobContext) -> dict:
    rec = write_demo_dataset(ctx.workspace, spec, ctx)
    ctx.artifact("dataset", rec.cache_path)
    return {
        "dataset": rec.name,
        "kept": rec.n_images,
        "classes": rec.classes,
        "class_counts": rec.meta["class_counts"],
        "splits": rec.meta["splits"],
        "groups": rec.meta["patients"],
        "size": [rec.height, rec.width],
        "source": rec.source,
        "synthetic": True,
    }


def ensure_demo(workspace=None):
    """Create the demo dataset when the workspace has no dataset at all; else return None."""
    from app.engine.store import Workspace

    ws = workspace if isinstance(workspace, Workspace) else Workspace.open(workspace)
    if ws.datasets():
        return None
    return write_demo_dataset(ws, DemoSpec())
