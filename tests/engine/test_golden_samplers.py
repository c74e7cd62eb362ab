"""Every sampler and reconstruction method gives the numbers it gave before the sampler refactor.

The cases (tiny seeded U-Nets, the exact Gaussian prior; generation, MRI single- and multi-coil, CT, CS)
are in ``tests/engine/golden/samplers.py``; their recorded outputs in ``samplers.npz``.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.engine.golden.samplers import GOLDEN, compute


@pytest.fixture(scope="module")
def now() -> dict[str, np.ndarray]:
    return compute()


def test_the_same_cases_are_recorded_and_computed(now):
    with np.load(GOLDEN) as z:
        assert sorted(z.files) == sorted(now)


@pytest.mark.parametrize("case", sorted(np.load(GOLDEN).files))
def test_outputs_equal_the_recorded_ones_within_float_tolerance(now, case):
    with np.load(GOLDEN) as z:
        want = z[case]
    got = np.asarray(now[case])
    assert got.shape == want.shape and got.dtype == want.dtype
    assert np.all(np.isfinite(got))
    scale = max(float(np.abs(want).max()), 1e-6)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * scale, err_msg=case)
