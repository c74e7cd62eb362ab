"""Score-based posterior sampling against the exact posterior of a Gaussian prior (no training).

With x ~ N(mu, diag(s^2)) (complex 16x16 image as 2 real channels) every process has an exact score
at every noise level (``score.GaussianScoreNet``), and for single-coil masked-FFT measurements
y = M F x + n the posterior is Gaussian with a closed form, computed here with dense linear algebra
in the 512-dim real representation. The samplers must reproduce its mean and per-pixel std, with
the step counts a user would pick (the annealed-Langevin step rule is what makes few levels work).
A deliberately wrong network (the oracle's score negated: it pushes away from the data) must still
give finite samples of bounded magnitude (the x0 bound), where the unbounded sampler blows up.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from app.engine.diffusion.base import make_process
from app.engine.recon.mri.fft import fft2c
from app.engine.recon.mri.masks import make_mask
from app.engine.recon.mri.operators import MaskedFFT, SenseOp
from app.engine.recon.mri.score import X0_CLIP, GaussianScoreNet, ScorePrior, image_scale, posterior_sample
from tests.engine.recon.conftest import Negated

N = 16
SAMPLES = 128
PROCESSES = {"vpsde": {}, "ddpm": {}, "ncsn": {"sigma_min": 0.005, "sigma_max": 20.0, "num_levels": 200}}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors: one intra-op thread is fastest and leaves the shared cores to others."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _prior_image():
    """A smooth complex mean image with a phase ramp and a smooth per-pixel std (real, imag)."""
    yy, xx = np.mgrid[0:N, 0:N] / (N - 1) - 0.5
    mag = np.exp(-(xx**2 + yy**2) / 0.08)
    mean = mag * np.exp(1j * np.pi * (0.8 * xx + 0.3 * yy))
    std = 0.05 + 0.25 * np.exp(-((xx - 0.2) ** 2 + (yy + 0.1) ** 2) / 0.05)
    return mean, np.stack([std, 0.7 * std + 0.02])


def _real_operator(mask: np.ndarray) -> np.ndarray:
    """The masked FFT's rows at sampled locations as a real (2m, 2 N^2) matrix acting on [re, im]."""
    eye = np.eye(N * N).reshape(N * N, N, N)
    F = fft2c(eye).reshape(N * N, N * N).T  # column j = fft2c of basis image j
    Fk = F[mask.ravel() > 0]
    return np.block([[Fk.real, -Fk.imag], [Fk.imag, Fk.real]])


def _exact_posterior(mean, std, mask, y, noise_sigma):
    """Posterior mean (complex image) and per-component std (2, N, N) of x given y."""
    Ar = _real_operator(mask)
    m = np.concatenate([mean.real.ravel(), mean.imag.ravel()])
    d = np.concatenate([std[0].ravel(), std[1].ravel()]) ** 2
    yk = y[mask > 0]
    yr = np.concatenate([yk.real, yk.imag])
    if noise_sigma > 0:  # (D^-1 + A^T A / s^2)^-1, Bishop PRML eq. 2.116-2.117
        cov = np.linalg.inv(np.diag(1 / d) + Ar.T @ Ar / noise_sigma**2)
        mu = cov @ (m / d + Ar.T @ yr / noise_sigma**2)
    else:  # Gaussian conditioning on A x = y, Bishop PRML eq. 2.81-2.82
        K = (d[:, None] * Ar.T) @ np.linalg.inv((Ar * d) @ Ar.T)
        mu = m + K @ (yr - Ar @ m)
        cov = np.diag(d) - K @ (Ar * d)
    sd = np.sqrt(np.clip(np.diag(cov), 0, None)).reshape(2, N, N)
    return (mu[: N * N] + 1j * mu[N * N :]).reshape(N, N), sd, float(np.trace(cov))


def _problem(noise_sigma: float, seed: int = 0):
    mean, std = _prior_image()
    rng = np.random.default_rng(seed)
    x = mean + std[0] * rng.standard_normal((N, N)) + 1j * std[1] * rng.standard_normal((N, N))
    mask, _ = make_mask("random", (N, N), 3, 0.2, seed=seed)
    A = MaskedFFT(mask)
    m2 = A.mask.numpy()
    noise = noise_sigma * (rng.standard_normal((N, N)) + 1j * rng.standard_normal((N, N)))
    y = (m2 * (fft2c(x) + noise)).astype(np.complex64)
    return mean, std, A, m2, y


#: steps per corrector: predictor-corrector needs ~200 levels for the std (0.86 of the exact one at
#: 120 with the VP-SDE); annealed Langevin 100 levels with 4 Langevin steps each (std ratio 1.09-1.11;
#: 1.13 with 80 x 3, 1.05 with 200 x 6)
STEPS = {"pc": (200, 1), "ald": (100, 4), "dds": (20, 1)}


def _oracle(process: str, mean, std, scale: float) -> GaussianScoreNet:
    proc = make_process(process, **PROCESSES[process])
    return GaussianScoreNet(np.stack([mean.real, mean.imag]) / scale, std / scale, proc)


def _sample(process: str, corrector: str, mean, std, A, y, noise_sigma, n_samples=SAMPLES, **kw):
    scale = image_scale(A.adjoint(y))  # the sampler's own normalisation: the prior in network units
    net = _oracle(process, mean, std, scale)
    steps, langevin_steps = STEPS[corrector]
    kw = {"steps": steps, "langevin_steps": langevin_steps, **kw}
    rec = posterior_sample(ScorePrior(net, net.process), A, y, n_samples=n_samples, corrector=corrector,
                           noise_sigma=noise_sigma, seed=1, **kw)
    return rec.samples


def _check_against_exact(samples, mu, sd, trace_cov):
    est = samples.mean(0)
    # Monte-Carlo error of the mean of SAMPLES draws: E ||est - mu||^2 = tr(cov) / SAMPLES
    mc = np.sqrt(trace_cov / SAMPLES)
    err = np.linalg.norm(est - mu)
    assert err < 3.0 * mc, f"posterior mean off by {err:.4f}, Monte-Carlo error {mc:.4f}"
    assert err / np.linalg.norm(mu) < 0.08
    sd_hat = np.stack([samples.real.std(0, ddof=1), samples.imag.std(0, ddof=1)])
    ratio = sd_hat / sd
    assert 0.85 < ratio.mean() < 1.15, f"mean std ratio {ratio.mean():.3f}"
    assert np.percentile(np.abs(ratio - 1), 90) < 0.25, f"90th pct |std ratio - 1| {np.percentile(np.abs(ratio - 1), 90):.3f}"


CASES = [("vpsde", "pc"), ("ncsn", "pc"), ("ncsn", "ald"), ("vpsde", "ald")]


@pytest.mark.parametrize("process, corrector", CASES)
def test_noisy_measurements_give_the_exact_gaussian_posterior_mean_and_std(process, corrector):
    noise_sigma = 0.05
    mean, std, A, mask, y = _problem(noise_sigma)
    mu, sd, tr = _exact_posterior(mean, std, mask, y, noise_sigma)
    samples = _sample(process, corrector, mean, std, A, y, noise_sigma)
    _check_against_exact(samples, mu, sd, tr)


@pytest.mark.parametrize("process, corrector", CASES)
def test_noiseless_measurements_are_reproduced_and_the_rest_follows_the_exact_conditional(process, corrector):
    mean, std, A, mask, y = _problem(0.0)
    mu, sd, tr = _exact_posterior(mean, std, mask, y, 0.0)
    samples = _sample(process, corrector, mean, std, A, y, 0.0)
    for s in samples:  # hard data consistency: every sample holds the measured k-space exactly
        assert np.allclose(mask * fft2c(s), y, atol=1e-5 * np.abs(y).max())
    _check_against_exact(samples, mu, sd, tr)


def _nmse(x, ref) -> float:
    return float(np.linalg.norm(x - ref) ** 2 / np.linalg.norm(ref) ** 2)


@pytest.mark.parametrize("process", ["vpsde", "ddpm", "ncsn"])
@pytest.mark.parametrize("corrector", ["ald", "pc"])
def test_few_steps_with_the_exact_prior_beat_zero_filled(process, corrector):
    """The defaults a user runs (50 levels, 2 Langevin steps) with the exact prior: the mean of 32
    samples must be much closer to the exact posterior mean than zero-filled is (its Monte-Carlo error
    alone is an NMSE of ~0.004 here, zero-filled's 0.048). Annealed Langevin with the fixed step
    2 (0.16 sigma_i)^2 failed this with VP paths (NMSE 0.98 against zero-filled's 0.048: the excess
    noise grew from level to level) and with NCSN (0.23)."""
    mean, std, A, mask, y = _problem(0.0)
    mu, _, _ = _exact_posterior(mean, std, mask, y, 0.0)
    samples = _sample(process, corrector, mean, std, A, y, 0.0, n_samples=32, steps=50, langevin_steps=2)
    assert np.all(np.isfinite(samples))
    zf = _nmse(np.asarray(A.adjoint(y)), mu)
    assert _nmse(samples.mean(0), mu) < 0.5 * zf, (_nmse(samples.mean(0), mu), zf)


@pytest.mark.parametrize("process", ["vpsde", "ddpm", "ncsn"])
@pytest.mark.parametrize("noise_sigma", [0.0, 0.05])
def test_decomposed_diffusion_with_the_exact_prior_beats_zero_filled_in_few_steps(process, noise_sigma):
    """The "dds" sampler (data consistency on each clean estimate, then DDIM) with 20 network
    evaluations: noiseless data goes through the exact projection, noisy data through the CG step on
    (A^H A + lam I). DDS approximates the posterior (its samples' spread is not the exact one), so the
    check is on the mean: much closer to the exact posterior mean than zero-filled, and for noiseless
    data every sample reproduces the measurements."""
    mean, std, A, mask, y = _problem(noise_sigma)
    mu, _, _ = _exact_posterior(mean, std, mask, y, noise_sigma)
    samples = _sample(process, "dds", mean, std, A, y, noise_sigma, n_samples=16, steps=20)
    assert np.all(np.isfinite(samples))
    zf = _nmse(np.asarray(A.adjoint(y)), mu)
    assert _nmse(samples.mean(0), mu) < 0.3 * zf, (_nmse(samples.mean(0), mu), zf)
    if noise_sigma == 0:
        for s in samples:
            assert np.allclose(mask * fft2c(s), y, atol=1e-5 * np.abs(y).max())
    else:  # noisy data is not reproduced: the estimate keeps away from the noise
        assert not np.allclose(mask * fft2c(samples[0]), y, atol=1e-3 * np.abs(y).max())


@pytest.mark.parametrize("noise_sigma", [0.0, 0.05])
def test_warm_start_from_a_first_estimate_reaches_the_posterior_mean_in_fewer_steps(noise_sigma):
    """The "dds" sampler started from the zero-filled image noised to sigma / alpha = 1 (network units)
    instead of from pure noise: 10 network evaluations must still land much closer to the exact
    posterior mean than the zero-filled image it started from, and hold noiseless data exactly."""
    mean, std, A, mask, y = _problem(noise_sigma)
    mu, _, _ = _exact_posterior(mean, std, mask, y, noise_sigma)
    zf_image = np.asarray(A.adjoint(y))
    samples = _sample("vpsde", "dds", mean, std, A, y, noise_sigma, n_samples=16, steps=10, init=zf_image,
                      start_sigma=1.0)
    assert np.all(np.isfinite(samples))
    zf = _nmse(zf_image, mu)
    assert _nmse(samples.mean(0), mu) < 0.3 * zf, (_nmse(samples.mean(0), mu), zf)
    if noise_sigma == 0:
        for s in samples:
            assert np.allclose(mask * fft2c(s), y, atol=1e-5 * np.abs(y).max())


def test_warm_start_asks_for_a_first_estimate_of_the_image_shape_and_a_level():
    from app.engine.jobs import UserError

    mean, std, A, mask, y = _problem(0.0)
    zf_image = np.asarray(A.adjoint(y))
    with pytest.raises(UserError, match="both"):
        _sample("vpsde", "dds", mean, std, A, y, 0.0, n_samples=1, steps=5, init=zf_image)
    with pytest.raises(UserError, match="shape"):
        _sample("vpsde", "dds", mean, std, A, y, 0.0, n_samples=1, steps=5, init=zf_image[:8], start_sigma=1.0)
    with pytest.raises(UserError, match="dds"):
        _sample("vpsde", "pc", mean, std, A, y, 0.0, n_samples=1, init=zf_image, start_sigma=1.0)


def _sense_problem(noise_sigma: float, coils: int = 4, seed: int = 3):
    """The Gaussian prior's image seen by ``coils`` smooth coils (maps normalised to sum |S|^2 = 1)."""
    mean, std = _prior_image()
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:N, 0:N] / (N - 1) - 0.5
    centres = [(0.5 * np.cos(a), 0.5 * np.sin(a)) for a in np.linspace(0, 2 * np.pi, coils, endpoint=False)]
    maps = np.stack([np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 0.3) * np.exp(1j * rng.uniform(0, 2 * np.pi))
                     for cx, cy in centres])
    maps = (maps / np.sqrt((np.abs(maps) ** 2).sum(0))).astype(np.complex64)
    x = mean + std[0] * rng.standard_normal((N, N)) + 1j * std[1] * rng.standard_normal((N, N))
    mask, _ = make_mask("random", (N, N), 4, 0.2, seed=seed)
    A = SenseOp(maps, mask)
    noise = noise_sigma * (rng.standard_normal((coils, N, N)) + 1j * rng.standard_normal((coils, N, N)))
    y = np.asarray(A.forward(x.astype(np.complex64))) + A.mask.numpy() * noise
    return mean, std, A, y.astype(np.complex64)


def _dense_real(A) -> np.ndarray:
    """Any operator on (N, N) complex images as a real matrix acting on [re, im] -> [re, im] of its output."""
    cols = []
    for part in (1.0, 1j):
        for j in range(N * N):
            e = np.zeros(N * N, np.complex64)
            e[j] = part
            out = np.asarray(A.forward(e.reshape(N, N))).ravel()
            cols.append(np.concatenate([out.real, out.imag]))
    return np.stack(cols, axis=1)


def test_decomposed_diffusion_with_sense_follows_the_exact_posterior_mean_and_holds_noiseless_data():
    """Multi-coil (SENSE) data goes through the conjugate-gradient step. Noisy: the mean of the samples
    must be much closer to the exact Gaussian posterior mean than the coil-combined zero-filled image.
    Noiseless: the samples must reproduce the measurements far better than the prior's own estimate
    does (5 CG steps per time, not an exact projection)."""
    from app.engine.recon.mri.score import GaussianScoreNet

    noise_sigma = 0.05
    mean, std, A, y = _sense_problem(noise_sigma)
    keep = np.broadcast_to(A.mask.numpy() > 0, y.shape).ravel()  # the sampled k-space of every coil
    Ar = _dense_real(A)[np.concatenate([keep, keep])]
    yr = np.concatenate([y.ravel().real[keep], y.ravel().imag[keep]])
    d = np.concatenate([std[0].ravel(), std[1].ravel()]) ** 2
    m = np.concatenate([mean.real.ravel(), mean.imag.ravel()])
    cov = np.linalg.inv(np.diag(1 / d) + Ar.T @ Ar / noise_sigma**2)
    mu_r = cov @ (m / d + Ar.T @ yr / noise_sigma**2)
    mu = (mu_r[: N * N] + 1j * mu_r[N * N :]).reshape(N, N)
    samples = _sample("vpsde", "dds", mean, std, A, y, noise_sigma, n_samples=16, steps=20)
    zf = _nmse(np.asarray(A.adjoint(y)), mu)
    assert _nmse(samples.mean(0), mu) < 0.3 * zf, (_nmse(samples.mean(0), mu), zf)

    mean, std, A, y = _sense_problem(0.0)
    samples = _sample("vpsde", "dds", mean, std, A, y, 0.0, n_samples=4, steps=20)
    # the prior alone would give its mean image; the samples must hold the data far better
    res_prior = np.linalg.norm(np.asarray(A.forward(mean.astype(np.complex64))) - y)
    for s in samples:
        res = np.linalg.norm(np.asarray(A.forward(s)) - y)
        assert res < 0.1 * res_prior, (res, res_prior)


def test_conjugate_gradient_solves_the_regularised_normal_equations():
    """``alg.ConjugateGradient`` against a dense solve of (A^H A + lam I) x = A^H y + lam x0 on the real masked FFT."""
    from app.engine.recon.alg import ConjugateGradient, run

    def _cg(normal, rhs, x0, iterations, misfit=None):
        return run(ConjugateGradient(normal, rhs, x0, iterations, misfit))

    mean, std, A, mask, y = _problem(0.05)
    lam = 0.3
    x0 = torch.as_tensor(mean.astype(np.complex64))
    yt = torch.as_tensor(y)
    got = _cg(lambda v: A._adjoint(A._forward(v)) + lam * v, A._adjoint(yt) + lam * x0, x0, 60).numpy()
    Ar = _real_operator(mask)
    yk = y[mask > 0]
    rhs = Ar.T @ np.concatenate([yk.real, yk.imag]) + lam * np.concatenate([mean.real.ravel(), mean.imag.ravel()])
    sol = np.linalg.solve(Ar.T @ Ar + lam * np.eye(2 * N * N), rhs)
    want = (sol[: N * N] + 1j * sol[N * N :]).reshape(N, N)
    assert np.linalg.norm(got - want) < 1e-4 * np.linalg.norm(want)
    # the discrepancy stop, on SENSE (whose normal operator has a spread spectrum; the masked FFT's has
    # two eigenvalues and CG solves it in two steps): CG ends once the misfit is down to the level
    mean, std, S, ys = _sense_problem(0.05)
    ys = torch.as_tensor(ys)

    def f(v):
        return float((S._forward(v) - ys).abs().pow(2).sum())

    def solve(iterations, **kw):
        return _cg(lambda v: S._adjoint(S._forward(v)) + 1e-3 * v, S._adjoint(ys) + 1e-3 * x0, x0, iterations, **kw)

    full = solve(200)
    level = f(full) + 0.2 * (f(x0) - f(full))  # reached after about 3 of the ~20 iterations CG needs
    early = solve(200, misfit=(f, level))
    assert f(early) <= level < f(solve(1))
    assert torch.linalg.norm(early - full) > 0.3 * torch.linalg.norm(full)
    assert torch.equal(_cg(lambda v: v, x0, x0 * 0, 5, misfit=(f, f(x0 * 0) + 1.0)), x0 * 0)  # already fits


@pytest.mark.parametrize("process", ["vpsde", "ddpm", "ncsn"])
@pytest.mark.parametrize("corrector", ["ald", "pc", "dds"])
def test_a_wrong_network_gives_finite_samples_of_bounded_magnitude(process, corrector):
    mean, std, A, mask, y = _problem(0.0)
    scale = image_scale(A.adjoint(y))
    net = Negated(_oracle(process, mean, std, scale))
    prior = ScorePrior(net, net.net.process)

    def run(**kw):
        with np.errstate(all="ignore"):
            return posterior_sample(prior, A, y, n_samples=4, steps=20, langevin_steps=2, corrector=corrector,
                                    seed=1, **kw).samples

    samples = run()
    assert np.all(np.isfinite(samples))
    # every x0 estimate is bounded by X0_CLIP (network units); the final data consistency then swaps
    # the sampled k-space for y, which adds at most ||y|| in the l2 norm
    bound = X0_CLIP * scale * np.sqrt(mask.size) + np.linalg.norm(y)
    norms = np.linalg.norm(samples.reshape(len(samples), -1), axis=1)
    assert np.all(norms <= bound * (1 + 1e-5)), (norms, bound)
    for s in samples:  # and the measurements are still reproduced exactly
        assert np.allclose(mask * fft2c(s), y, atol=1e-5 * np.abs(y).max())
    # the same network without the bound: the samples run away (the test's network really is harmful)
    unbounded = run(x0_clip=None)
    assert not np.all(np.isfinite(unbounded)) or np.abs(unbounded).max() > 100 * bound


def test_gaussian_oracle_net_returns_the_exact_noise_for_every_prediction_type():
    mean, std = _prior_image()
    m2 = np.stack([mean.real, mean.imag]).astype(np.float32)
    g = torch.Generator().manual_seed(0)
    for name, opts in [("vpsde", {"prediction_type": "v"}), ("ddpm", {}), ("flow", {}), ("ncsn", {})]:
        proc = make_process(name, **opts)
        net = GaussianScoreNet(m2, std, proc)
        t = torch.tensor([0.3, 0.7])
        a, s = (v.reshape(-1, 1, 1, 1) for v in proc.alpha_sigma(t))
        x = a * torch.as_tensor(m2) + torch.sqrt(a**2 * torch.as_tensor(std, dtype=torch.float32) ** 2 + s**2) * \
            torch.randn((2, 2, N, N), generator=g)
        pred = proc.predict(net, x, t)
        var = a**2 * torch.as_tensor(std, dtype=torch.float32) ** 2 + s**2
        expected_eps = s * (x - a * torch.as_tensor(m2)) / var
        assert torch.allclose(pred.eps, expected_eps, atol=1e-4), name
        assert torch.allclose(a * pred.x0 + s * pred.eps, x, atol=1e-4), name
