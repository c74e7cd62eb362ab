"""Specification of the MRI conventions, masks and linear operators."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from app.engine.recon.mri.coils import espirit_maps, gram_factors, gram_rows, sense_combine, simulated_coil_maps
from app.engine.recon.mri.fft import fft2c, ifft2c
from app.engine.recon.mri.masks import MASK_KINDS, center_is_sampled, make_mask
from app.engine.recon.mri.operators import FiniteDifference, MaskedFFT, SenseOp, inner
from tests.conftest import shared_file


def _crandn(rng, shape):
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)


def test_fft2c_is_unitary_and_centred(rng):
    x = _crandn(rng, (3, 32, 40))
    k = fft2c(x)
    assert np.allclose(np.linalg.norm(k), np.linalg.norm(x), rtol=1e-5)
    assert np.allclose(ifft2c(k), x, atol=1e-5)
    delta = np.zeros((32, 40), np.complex64)
    delta[16, 20] = 1.0  # an image-centre delta has a flat spectrum; a constant image has DC at (H//2, W//2)
    assert np.allclose(np.abs(fft2c(delta)), 1 / np.sqrt(32 * 40))
    ones = np.ones((32, 40), np.complex64)
    assert np.argmax(np.abs(fft2c(ones))) == 16 * 40 + 20
    assert torch.allclose(fft2c(torch.as_tensor(x)), torch.as_tensor(k), atol=1e-5)


def _operators(rng):
    mask, _ = make_mask("poisson2d", (24, 28), 3, 0.2, seed=1)
    maps = _crandn(rng, (4, 24, 28))
    return {
        "masked_fft": MaskedFFT(mask),
        "sense": SenseOp(maps, mask),
        "sense_two_sets": SenseOp(np.stack([maps, _crandn(rng, (4, 24, 28))]), mask),
        "finite_difference": FiniteDifference((24, 28)),
        "masked_fft_uncentred": MaskedFFT(mask).uncentred(),
        "sense_uncentred": SenseOp(maps, mask).uncentred(),
    }


@pytest.mark.parametrize("name", ["masked_fft", "sense", "sense_two_sets", "finite_difference", "masked_fft_uncentred",
                                  "sense_uncentred"])
def test_every_operator_has_an_exact_adjoint(name, rng):
    A = _operators(rng)[name]
    x = _crandn(rng, A.ishape)
    y = _crandn(rng, A.oshape)
    lhs = inner(A.forward(x), y)
    rhs = inner(x, A.adjoint(y))
    assert np.isclose(lhs, rhs, rtol=1e-5), (lhs, rhs)


@pytest.mark.parametrize("shape", [(24, 28), (23, 27)])
def test_uncentred_operators_are_the_same_sampling_on_ifftshifted_images_and_kspace(shape, rng):
    """B = A.uncentred() has B(ifftshift(x)) == ifftshift(A x) (odd sizes too), and periodic finite differences
    commute with the shift: CS-TV solves the same problem in those coordinates."""
    mask, _ = make_mask("poisson2d", shape, 3, 0.2, seed=2)
    maps = torch.as_tensor(_crandn(rng, (3, *shape)))
    x = torch.as_tensor(_crandn(rng, shape))
    y = torch.as_tensor(_crandn(rng, (3, *shape)))

    def shift(t):
        return torch.fft.ifftshift(t, dim=(-2, -1))

    for A in (MaskedFFT(mask), SenseOp(maps, mask)):
        B = A.uncentred()
        assert torch.allclose(B.forward(shift(x)), shift(A.forward(x)), atol=1e-5)
        k = y[0] if isinstance(A, MaskedFFT) else y
        assert torch.allclose(B.adjoint(shift(k)), shift(A.adjoint(k)), atol=1e-5)
    assert MaskedFFT(mask).norm_estimate() == 1.0  # exact for a 0/1 mask: the FFT is unitary
    D = FiniteDifference(shape)
    assert torch.equal(D.forward(shift(x)), shift(D.forward(x)))


def test_finite_differences_are_the_periodic_ones_exactly(rng):
    x = torch.as_tensor(_crandn(rng, (2, 9, 11)))
    q = torch.as_tensor(_crandn(rng, (2, 2, 9, 11)))
    D = FiniteDifference((9, 11))
    assert torch.equal(D.forward(x), torch.stack([torch.roll(x, -1, dims=-2) - x, torch.roll(x, -1, dims=-1) - x]))
    assert torch.equal(D.adjoint(q), (torch.roll(q[0], 1, dims=-2) - q[0]) + (torch.roll(q[1], 1, dims=-1) - q[1]))


def test_sense_with_espirit_maps_of_real_8coil_data_has_an_exact_adjoint(rng):
    with np.load(shared_file("bart_brain_8coil_kspace.npz")) as z:
        ks = z["kspace"]
    maps = espirit_maps(ks)
    mask = (np.abs(ks) > 0).any(0).astype(np.float32)
    A = SenseOp(maps, mask)
    x, y = _crandn(rng, A.ishape), _crandn(rng, A.oshape)
    assert np.isclose(inner(A.forward(x), y), inner(x, A.adjoint(y)), rtol=1e-5)
    # inside the head the maps are normalised (sum_c |S_c|^2 = 1) and the object covers a good part
    energy = (np.abs(maps) ** 2).sum(0)
    assert np.allclose(energy[energy > 0.5], 1.0, atol=1e-3)
    assert 0.3 < (energy > 0.5).mean() < 0.95


@pytest.mark.parametrize("kind", MASK_KINDS)
@pytest.mark.parametrize("acceleration", [4, 8])
def test_masks_are_deterministic_reach_the_acceleration_and_sample_the_centre(kind, acceleration):
    state = np.random.get_state()
    m1, r1 = make_mask(kind, (96, 128), acceleration, 0.08, seed=3)
    m2, r2 = make_mask(kind, (96, 128), acceleration, 0.08, seed=3)
    m3, _ = make_mask(kind, (96, 128), acceleration, 0.08, seed=4)
    after = np.random.get_state()
    assert np.array_equal(m1, m2) and r1 == r2
    assert not np.array_equal(m1, m3)
    assert abs(r1 - acceleration) / acceleration < 0.05
    assert np.isclose(r1, m1.size / m1.sum())
    assert center_is_sampled(m1, 0.08)
    assert state[0] == after[0] and np.array_equal(state[1], after[1]) and state[2:] == after[2:]


def test_one_dimensional_masks_select_whole_phase_encode_lines():
    for kind in ("random", "equispaced", "gaussian1d"):
        m, _ = make_mask(kind, (64, 80), 4, 0.08, seed=0)
        assert (m == m[:1]).all(), kind


def test_poisson_disc_mask_is_denser_at_the_centre_than_at_the_edge():
    m, _ = make_mask("poisson2d", (128, 128), 6, 0.08, seed=0)
    yy, xx = np.mgrid[-64:64, -64:64]
    r = np.hypot(yy, xx)
    assert m[(r > 12) & (r < 30)].mean() > 1.5 * m[r > 50].mean()


def test_espirit_gram_matrices_equal_their_kernel_by_kernel_definition(rng):
    # G(x) = (HW / k^2) sum_j w_j(x)^* w_j(x)^T, w_j = ifft2c of kernel j zero-padded to the k-space size
    for h, w, c, k, n in [(32, 40, 3, 6, 10), (33, 27, 4, 5, 7)]:  # even and odd grids
        kernels = _crandn(rng, (n, c, k, k))
        want = np.zeros((h, w, c, c), np.complex128)
        for ker in kernels:
            padded = np.zeros((c, h, w), np.complex64)
            padded[:, h // 2 - k // 2 : h // 2 - k // 2 + k, w // 2 - k // 2 : w // 2 - k // 2 + k] = ker
            img = ifft2c(padded).transpose(1, 2, 0)
            want += img[..., :, None].conj() * img[..., None, :]
        want *= h * w / (k * k)
        ey, half = gram_factors(kernels, h, w)
        got = np.concatenate([gram_rows(ey[r : r + 5], half) for r in range(0, h, 5)])
        np.testing.assert_allclose(got, want, atol=1e-5 * np.abs(want).max())


def test_espirit_recovers_known_coil_sensitivities_of_a_real_brain_slice():
    with np.load(shared_file("siat_brain_t2_complex_dev.npz")) as z:
        x = z["images"][125].astype(np.complex64)
    true = simulated_coil_maps(*x.shape)
    maps = espirit_maps(fft2c(true * x))
    inside = np.abs(x) > 0.1 * np.abs(x).max()
    want = true * np.exp(-1j * np.angle(true[0]))  # ESPIRiT's phase is relative to coil 0
    err = np.linalg.norm((maps - want)[:, inside]) / np.linalg.norm(want[:, inside])
    assert err < 0.05, err
    combined, _ = sense_combine(fft2c(true * x), maps)
    assert np.linalg.norm((combined - x * np.exp(1j * np.angle(true[0])))[inside]) < 0.05 * np.linalg.norm(x[inside])
