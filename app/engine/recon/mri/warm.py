"""Where decomposed diffusion (score-dds) starts when it starts from the CS-TV image: the level and step count
that follow the mask and the acceleration.

Torch-free on purpose: the Reconstruction panel shows these defaults in its form, and the recon and sweep
jobs resolve ``warm_start="auto"`` with the same function, so the panel, ``radsynth recon`` and
``radsynth recon-sweep`` cannot disagree.
"""

from __future__ import annotations

#: masks that sample k-space in 2D (variable density): CS-TV removes most of their incoherent aliasing
TWO_D_MASKS = ("poisson2d", "radial")
#: ``warm_start`` value that asks for ``warm_default`` of each mask and acceleration
AUTO = "auto"


def warm_default(mask_kind: str, acceleration: float) -> tuple[float, int]:
    """The warm start's level sigma / alpha and step count for a mask: the more aliasing CS-TV leaves, the
    higher decomposed diffusion has to start from it to wash it out (benchmarks/bench_recon_siat.py).

    - 2D mask, R <= 5: 0.1 with 5 steps. With 10 steps, on the 30 SIAT validation slices at R = 4
      (Poisson-disc, 4 samples, a 400-epoch prior) SSIM 0.876 / NMSE 0.0177 (22 s per slice on 2 CPU
      threads), against 0.870 / 0.0185 in 30 steps from pure noise (65 s) and 0.853 / 0.0202 for CS-TV
      alone. Half of those steps lose nothing measurable: on 4 validation slices (120-129, same prior for
      both, the small CPU prior of benchmarks/bench_recon_prior.py) 5 steps gave SSIM 0.8642 / NMSE 0.0227
      against 0.8647 / 0.0224 with 10 (spread 0.0056; CS-TV 0.8486) in 14.4 instead of 29.6 CPU seconds per
      slice (``bench_recon_siat.py --warm-steps 10 5``). The DC of noiseless single-coil data is already
      exact (a projection of every clean estimate), so what the start from CS-TV saves is network steps.
    - 1D Cartesian mask, R <= 5: 0.3 with 15 steps. Random 1D R = 4, three slices: NMSE 0.0577 against
      0.0590 from 0.1 and 0.0581 from noise (SSIM 0.768, 0.768 and 0.766).
    - R > 5: 0.5 with 20 steps. Poisson-disc R = 8, six slices: a start at 0.1 lost to pure noise (SSIM
      0.770 against 0.782); on three slices a start at 0.5 was level with noise (SSIM 0.764 against 0.765,
      NMSE 0.0459 against 0.0462) in two thirds of its time, 0.1 / 0.3 fell short (0.751 / 0.759).

    Any other ``mask_kind`` (e.g. a sampling pattern measured with the data, whose kind is unknown) gets
    the 1D figures: the higher start is the safer one when CS-TV may leave coherent aliasing."""
    if acceleration > 5.0:
        return 0.5, 20
    if mask_kind in TWO_D_MASKS:
        return 0.1, 5
    return 0.3, 15


def resolve_warm_start(warm_start: float | str | None, steps: int, steps_given: bool, mask_kind: str,
                       acceleration: float) -> tuple[float | None, int]:
    """(level, steps) of score-dds for one mask and acceleration. ``warm_start="auto"`` takes the level of
    ``warm_default`` and its step count too, unless the steps were given (``steps_given``); a number is
    used as it is with ``steps``; None (from pure noise) keeps ``steps``."""
    if warm_start == AUTO:
        level, default_steps = warm_default(mask_kind, acceleration)
        return level, (int(steps) if steps_given else default_steps)
    if isinstance(warm_start, str):
        raise ValueError(f"warm_start must be a number or {AUTO!r}, got {warm_start!r}")
    return (None if warm_start is None else float(warm_start)), int(steps)
