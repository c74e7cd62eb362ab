"""Reconstruction methods by name: zero-filled, CS-TV, L1-wavelet, score-based posterior sampling.

``reconstruct(method, A, y, ...)`` is the one entry point used by the recon job, the sweep, the
GUI panel and the benchmarks. It returns a ``Reconstruction`` with the complex image (A's input
shape), and for the score-based methods the posterior samples' per-pixel standard deviation.
"""

from __future__ import annotations

import dataclasses
import enum
import time
from collections.abc import Callable
from typing import Annotated, Literal

import numpy as np
from pydantic import Field

from app.engine.jobs import UserError
from app.engine.recon.mri.operators import LinearOperator


class Method(str, enum.Enum):
    zero_filled = "zero-filled"
    cs_tv = "cs-tv"
    cs_wavelet = "cs-wavelet"
    score_ald = "score-ald"
    score_pc = "score-pc"
    score_dds = "score-dds"


METHODS = tuple(m.value for m in Method)
SCORE_METHODS = ("score-ald", "score-pc", "score-dds")
#: regularisation weight of the CS methods (and of the CS-TV image a warm start begins from)
DEFAULT_LAM = 0.005
#: the sampler of each score-based method (``score.posterior_sample``'s ``corrector``)
SAMPLERS = {"score-ald": "ald", "score-pc": "pc", "score-dds": "dds"}
#: what the recon and sweep jobs say about their ``warm_start`` option
WARM_START_HELP = ("score-dds: start from the CS-TV image noised to this level sigma/alpha (network units) instead of "
                   "from noise, with fewer steps (0.1 with 10 steps on SIAT); 'auto': the level and steps that follow "
                   "the mask and R (0.1 / 10 for 2D masks, 0.3 / 15 for 1D, 0.5 / 20 above R = 5)")
#: the recon and sweep jobs' ``warm_start`` field: a level, "auto" (``warm.resolve_warm_start``) or none
WarmStart = Annotated[float, Field(gt=0.002, le=20.0)] | Literal["auto"] | None


def check_warm_start(warm_start: float | str | None, methods: list[str]) -> None:
    """A warm start is asked of score-dds; one given without it would silently do nothing."""
    if warm_start is not None and "score-dds" not in methods:
        raise UserError(f"--warm-start applies to score-dds, which is not among the methods ({', '.join(methods)})")


@dataclasses.dataclass
class Reconstruction:
    method: str
    image: np.ndarray  # complex, A.ishape (posterior mean for score-based methods)
    std: np.ndarray | None = None  # per-pixel std of the posterior samples' magnitudes
    samples: np.ndarray | None = None  # (N, ...) complex posterior samples
    seconds: float = 0.0
    info: dict = dataclasses.field(default_factory=dict)


def zero_filled(A: LinearOperator, y) -> np.ndarray:
    """A^H y: inverse FFT of the zero-filled k-space (coil-combined with the maps for SENSE)."""
    return np.asarray(A.adjoint(y))


def hard_data_consistency(A: LinearOperator, x, y) -> np.ndarray:
    """Replace the sampled k-space of a single-coil image by the measurements (Cartesian masks)."""
    from app.engine.recon.mri.fft import fft2c, ifft2c
    from app.engine.recon.mri.operators import MaskedFFT

    if not isinstance(A, MaskedFFT):
        raise ValueError("hard data consistency is defined here for single-coil Cartesian sampling")
    m = A.mask.cpu().numpy()
    return ifft2c((1 - m) * fft2c(np.asarray(x)) + m * np.asarray(y))


def reconstruct(
    method: str,
    A: LinearOperator,
    y,
    *,
    lam: float | None = None,
    iterations: int = 100,
    model=None,
    samples: int = 4,
    steps: int = 100,
    noise_sigma: float = 0.0,
    seed: int = 0,
    callback: Callable[[int, int, np.ndarray], None] | None = None,
    warm_start: float | None = None,
) -> Reconstruction:
    """Run one named method. ``callback(step, total, image)`` streams intermediate complex images.

    ``model`` (a ``checkpoints.LoadedModel``) is needed by the score-based methods. ``warm_start``
    (score-dds only): start the sampler from the CS-TV image (``lam``, ``iterations``) noised to this
    level sigma / alpha in network units instead of from pure noise (``score.posterior_sample``).
    """
    method = str(getattr(method, "value", method))
    if method not in METHODS:
        raise UserError(f"method {method!r} is not one of {', '.join(METHODS)}")
    lam = DEFAULT_LAM if lam is None else lam
    t0 = time.perf_counter()

    def cb(step, total, img):
        if callback is not None:
            callback(step, total, img.detach().cpu().numpy() if hasattr(img, "detach") else np.asarray(img))

    if method == "zero-filled":
        img = zero_filled(A, y)
        cb(1, 1, img)
        return Reconstruction(method, img, seconds=time.perf_counter() - t0)
    if method == "cs-tv":
        from app.engine.recon.mri.cs import tv_recon

        img = tv_recon(A, np.asarray(y), lam=lam, iterations=iterations, callback=cb)
        return Reconstruction(method, img, seconds=time.perf_counter() - t0, info={"lam": lam, "iterations": iterations})
    if method == "cs-wavelet":
        from app.engine.recon.mri.cs import wavelet_recon

        img = wavelet_recon(A, np.asarray(y), lam=lam, iterations=iterations, callback=cb)
        return Reconstruction(method, img, seconds=time.perf_counter() - t0, info={"lam": lam, "iterations": iterations})
    if model is None:
        raise UserError(f"method {method!r} needs a trained checkpoint (--run RUN)")
    if warm_start is not None and method != "score-dds":
        raise UserError(f"a warm start from CS-TV is implemented for score-dds only, not {method!r}")
    from app.engine.recon.mri.score import posterior_sample

    warm = {}
    if warm_start is not None:
        from app.engine.recon.mri.cs import tv_recon

        warm = {"init": tv_recon(A, np.asarray(y), lam=lam, iterations=iterations), "start_sigma": float(warm_start)}
    out = posterior_sample(
        model, A, np.asarray(y), n_samples=samples, steps=steps, corrector=SAMPLERS[method],
        noise_sigma=noise_sigma, seed=seed, callback=cb, **warm,
    )
    out.method = method
    out.seconds = time.perf_counter() - t0
    if warm:
        out.info["warm_start"] = {"from": "cs-tv", "sigma": float(warm_start), "lam": lam, "iterations": iterations}
    return out
