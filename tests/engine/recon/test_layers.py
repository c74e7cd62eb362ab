"""Reconstruction in layers: operators with exact adjoints and composition, proximal operators, algorithms
stepped one iteration at a time (each step a stop point)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from app.engine.errors import JobCancelled
from app.engine.recon import alg as Alg
from app.engine.recon.ct.radon import RadonOp, view_angles
from app.engine.recon.linop import Compose, Diagonal, Identity, LinearOperator, inner
from app.engine.recon.mri.cs import tv_recon, wavelet_recon
from app.engine.recon.mri.masks import make_mask
from app.engine.recon.mri.operators import FiniteDifference, MaskedFFT, SenseOp
from app.engine.recon.prox import HardDataConsistency, L1BallProjection

N = 16


def _rand(shape, rng, real=False):
    x = rng.standard_normal(shape)
    if not real:
        x = x + 1j * rng.standard_normal(shape)
    return torch.as_tensor(x.astype(np.float32 if real else np.complex64))


def _operators(rng):
    mask, _ = make_mask("poisson2d", (N, N), 3, 0.2, seed=1)
    maps = _rand((3, N, N), rng)
    maps = maps / torch.sqrt((maps.abs() ** 2).sum(0))
    F = MaskedFFT(mask)
    S = SenseOp(maps.numpy(), mask)
    D = FiniteDifference((N, N))
    W = Diagonal(_rand((N, N), rng))
    return {
        "masked FFT": F, "SENSE": S, "finite differences": D, "diagonal": W,
        "F * W": F * W, "S * W": S * W, "D * F.H": D * F.H, "(F * W).H": (F * W).H, "F.H * F + 0.5 I": F.H * F + 0.5 * Identity((N, N)),
        "2j * S": 2j * S,
    }


@pytest.mark.parametrize("name", list(_operators(np.random.default_rng(0))))
def test_every_operator_and_composition_has_an_exact_adjoint(name):
    rng = np.random.default_rng(5)
    A = _operators(np.random.default_rng(0))[name]
    x, y = _rand(A.ishape, rng), _rand(A.oshape, rng)
    lhs, rhs = inner(A.forward(x), y), inner(x, A.adjoint(y))
    assert abs(lhs - rhs) <= 1e-4 * abs(lhs), (name, lhs, rhs)


def test_the_ct_projector_composes_with_a_support_and_keeps_its_adjoint():
    rng = np.random.default_rng(2)
    R = RadonOp(N, view_angles(6))
    A = R * Diagonal(torch.ones(N, N) * 0.5)
    x, y = _rand(A.ishape, rng, real=True), _rand(A.oshape, rng, real=True)
    assert np.isclose(inner(A.forward(x), y), inner(x, A.adjoint(y)), rtol=1e-4)


def test_composition_checks_shapes_and_the_adjoint_of_the_adjoint_is_the_operator():
    F = MaskedFFT(np.ones((N, N)))
    assert F.H.H is F and isinstance(F * F.H, Compose) and isinstance(F * F.H, LinearOperator)
    with pytest.raises(ValueError, match="cannot compose"):
        FiniteDifference((N, N)) * FiniteDifference((N, N))


def test_hard_data_consistency_puts_the_measurements_back_and_the_l1_ball_projection_bounds():
    rng = np.random.default_rng(3)
    mask, _ = make_mask("random", (N, N), 4, 0.2, seed=0)
    F = MaskedFFT(mask)
    y = F._forward(_rand((N, N), rng))
    x = HardDataConsistency(F.mask, y)(1.0, _rand((N, N), rng))
    assert torch.allclose(F._forward(x), y, atol=1e-5)
    q = L1BallProjection(0.3, isotropic=True)(1.0, _rand((2, N, N), rng))
    assert float(torch.sqrt((q.abs() ** 2).sum(0)).max()) <= 0.3 + 1e-6


class StopAfter:
    """A stop check that asks to stop once it has been called ``n`` times."""

    def __init__(self, n: int):
        self.n, self.calls = n, 0

    def __call__(self):
        self.calls += 1
        if self.calls > self.n:
            raise JobCancelled()


@pytest.mark.parametrize("recon", [tv_recon, wavelet_recon])
def test_cs_reconstructions_stop_within_one_iteration_of_a_stop_request(recon):
    rng = np.random.default_rng(4)
    mask, _ = make_mask("random", (N, N), 3, 0.2, seed=0)
    F = MaskedFFT(mask)
    y = F._forward(_rand((N, N), rng)).numpy()
    seen = []
    stop = StopAfter(7)
    with pytest.raises(JobCancelled):
        recon(F, y, iterations=100, check=stop, callback=lambda it, total, img: seen.append(it), callback_every=1)
    assert seen == list(range(1, 8))  # the 8th check stopped it before an 8th iteration


def test_every_algorithm_is_stepped_one_iteration_at_a_time():
    rng = np.random.default_rng(6)
    S = SenseOp(_rand((2, N, N), rng).numpy(), np.ones((N, N)))
    y = S._forward(_rand((N, N), rng))
    x0 = torch.zeros(N, N, dtype=torch.complex64)
    cg = Alg.ConjugateGradient(lambda v: S._adjoint(S._forward(v)) + 0.1 * v, S._adjoint(y), x0, 50)
    stop = StopAfter(3)
    with pytest.raises(JobCancelled):
        Alg.run(cg, stop)
    assert cg.iter == 3
    # resuming the same object carries on from where it stopped, to the same answer as an uninterrupted run
    rest = Alg.run(cg)
    whole = Alg.run(Alg.ConjugateGradient(lambda v: S._adjoint(S._forward(v)) + 0.1 * v, S._adjoint(y), x0, 50))
    assert torch.allclose(rest, whole, atol=1e-5)


def test_cs_tv_with_either_step_rule_reaches_the_same_minimiser_and_shows_it_in_centred_coordinates():
    """tv_recon iterates on ifftshift-ed coordinates (no shifts around its FFTs); its previews and its result are
    the centred image. Its default steps (tau = sigma) and sigpy's (sigma = 1) solve the same problem."""
    rng = np.random.default_rng(8)
    mask, _ = make_mask("poisson2d", (N, N), 3, 0.2, seed=0)
    F = MaskedFFT(mask)
    truth = torch.zeros(N, N, dtype=torch.complex64)
    truth[N // 4: N // 2, N // 3: 2 * N // 3] = 1.0  # piecewise constant, off centre: a shift would show
    y = F._forward(truth) + 0.01 * _rand((N, N), rng)
    seen = []
    ours = tv_recon(F, y, lam=0.01, iterations=1500, callback=lambda it, total, img: seen.append(img),
                    callback_every=1500)
    sigpy_rule = tv_recon(F, y, lam=0.01, iterations=1500, sigma=1.0)
    assert torch.equal(seen[-1], ours)
    # 0.002 against zero-filling's 0.087; the same image shifted by half the field of view is 0.16 off
    assert float((ours - truth).abs().mean()) < 0.1 * float((F._adjoint(y) - truth).abs().mean())
    assert float((ours - sigpy_rule).abs().max()) < 1e-3  # 5e-5
    with pytest.raises(ValueError, match="sigma"):
        tv_recon(F, y, sigma=0.0)
