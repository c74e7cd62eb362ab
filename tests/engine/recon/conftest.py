"""Fixtures of the reconstruction tests: one real SIAT slice (fully sampled, complex)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import shared_file


@pytest.fixture(scope="module")
def siat_slice() -> np.ndarray:
    """A validation-series SIAT brain slice, complex64 (256, 256)."""
    with np.load(shared_file("siat_brain_t2_complex_dev.npz")) as z:
        return np.asarray(z["images"][125], np.complex64)
