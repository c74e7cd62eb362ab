"""What every MRI reconstruction method returns (its own module: the methods and the posterior samplers
both produce it, and neither imports the other for it)."""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass
class Reconstruction:
    method: str
    image: np.ndarray  # complex, A.ishape (posterior mean for score-based methods)
    std: np.ndarray | None = None  # per-pixel std of the posterior samples' magnitudes
    samples: np.ndarray | None = None  # (N, ...) complex posterior samples
    seconds: float = 0.0
    info: dict = dataclasses.field(default_factory=dict)
