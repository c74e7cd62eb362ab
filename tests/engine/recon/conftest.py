"""Fixtures of the reconstruction tests: one real SIAT slice (fully sampled, complex)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.conftest import shared_file


@pytest.fixture(scope="module")
def siat_slice() -> np.ndarray:
    """A validation-series SIAT brain slice, complex64 (256, 256)."""
    with np.load(shared_file("siat_brain_t2_complex_dev.npz")) as z:
        return np.asarray(z["images"][125], np.complex64)


class Negated(torch.nn.Module):
    """A deliberately wrong network for robustness tests: another network's output negated, so its
    score points away from the data."""

    num_classes = 0

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x, level, y=None):
        return -self.net(x, level, y)
