"""Reconstruction methods by name: zero-filled, CS-TV, L1-wavelet, score-based posterior sampling.

``reconstruct(method, A, y, ...)`` is the one entry point used by the recon job, the sweep, the
GUI panel and the benchmarks. It returns a ``Reconstruction`` with the complex image (A's input
shape), and for the score-based methods the posterior samples' per-pixel standard deviation.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from app.engine.errors import UserError
from app.engine.recon.mri.operators import LinearOperator
from app.engine.recon.mri.result import Reconstruction
from app.engine.specs.options import DEFAULT_LAM, METHODS, SCORE_METHODS, WARM_START_HELP, Method, WarmStart  # noqa: F401
from app.engine.specs.recon import check_warm_start  # noqa: F401

#: the sampler of each score-based method (``score.posterior_sample``'s ``corrector``)
SAMPLERS = {"score-ald": "ald", "score-pc": "pc", "score-dds": "dds"}




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
    check: Callable[[], None] | None = None,
) -> Reconstruction:
    """Run one named method. ``callback(step, total, image)`` streams intermediate complex images;
    ``check()`` is called at every iteration of the CS methods (the job's stop point: it raises to stop).

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

        img = tv_recon(A, np.asarray(y), lam=lam, iterations=iterations, callback=cb, check=check)
        return Reconstruction(method, img, seconds=time.perf_counter() - t0, info={"lam": lam, "iterations": iterations})
    if method == "cs-wavelet":
        from app.engine.recon.mri.cs import wavelet_recon

        img = wavelet_recon(A, np.asarray(y), lam=lam, iterations=iterations, callback=cb, check=check)
        return Reconstruction(method, img, seconds=time.perf_counter() - t0, info={"lam": lam, "iterations": iterations})
    if model is None:
        raise UserError(f"method {method!r} needs a trained checkpoint (--run RUN)")
    if warm_start is not None and method != "score-dds":
        raise UserError(f"a warm start from CS-TV is implemented for score-dds only, not {method!r}")
    from app.engine.recon.mri.score import posterior_sample

    warm = {}
    if warm_start is not None:
        from app.engine.recon.mri.cs import tv_recon

        warm = {"init": tv_recon(A, np.asarray(y), lam=lam, iterations=iterations, check=check),
                "start_sigma": float(warm_start)}
    out = posterior_sample(
        model, A, np.asarray(y), n_samples=samples, steps=steps, corrector=SAMPLERS[method],
        noise_sigma=noise_sigma, seed=seed, callback=cb, **warm,
    )
    out.method = method
    out.seconds = time.perf_counter() - t0
    if warm:
        out.info["warm_start"] = {"from": "cs-tv", "sigma": float(warm_start), "lam": lam, "iterations": iterations}
    return out
