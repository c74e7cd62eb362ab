"""The few-step solvers (DPM-Solver++ 2M / 3M, UniPC): their order of convergence against a many-step reference,
their agreement with diffusers' schedulers of the same name on the same grid and noise, and their grids."""

from __future__ import annotations

import functools
import itertools
import math

import numpy as np
import pytest
import torch

from app.engine.diffusion.base import expand_as_image, make_process
from app.engine.errors import UserError
from app.engine.sampling.api import make_sampler, options_for
from app.engine.sampling.base import KARRAS_RHO, Denoiser, StepContext, drive, log_snr_half, time_grid

#: diffusers 0.42 on numpy 2 warns about np.array(copy=False) inside set_timesteps
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:diffusers.*")


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class MixtureDenoiser(torch.nn.Module):
    """The exact denoiser when every pixel is independently 1/2 N(-0.5, 0.15^2) + 1/2 N(0.5, 0.15^2).

    E[x0 | x_t] = sum_k w_k(x_t) (m_k + a tau^2 / v_k (x_t - a m_k)), v_k = a^2 tau^2 + s^2, with the posterior
    component weights w_k proportional to N(x_t; a m_k, v_k): a non-linear probability-flow ODE, so the
    solvers' orders show (for Gaussian data the ODE is linear)."""

    means, tau = (-0.5, 0.5), 0.15

    def __init__(self, process, size: int = 8):
        super().__init__()
        self.process = process
        self.image_size, self.in_channels, self.num_classes = size, 1, 0

    def forward(self, x, level, y=None):
        p = self.process
        t = (level.float() + 1) / p.T if p.name == "ddpm" else level.float() / 1000
        a, s = p.alpha_sigma(t)
        a, s = expand_as_image(a, x).double(), expand_as_image(s, x).double()
        xd = x.double()
        v = a * a * self.tau**2 + s * s
        logw = torch.stack([-((xd - a * m) ** 2) / (2 * v) for m in self.means])
        w = torch.softmax(logw, 0)
        x0 = sum(w[k] * (m + a * self.tau**2 / v * (xd - a * m)) for k, m in enumerate(self.means))
        eps = (xd - a * x0) / s
        out = {"epsilon": eps, "v": a * eps - s * x0}[p.prediction_type.value]
        return out.float()


def solve(sampler: str, steps: int, process, x_start: torch.Tensor, times=None, **options) -> torch.Tensor:
    """Run a sampler of the registry with the exact mixture denoiser from ``x_start`` (no clipping)."""
    net = MixtureDenoiser(process)
    smp = make_sampler(sampler, steps, clip_x0=False, **options)
    with torch.no_grad():
        return drive(smp, StepContext(Denoiser(net, process), None), x_start.clone(), None, times=times)


def start_point(process, n: int = 64) -> torch.Tensor:
    return torch.randn(n, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * process.prior_std()


@functools.cache
def reference() -> tuple[object, torch.Tensor, torch.Tensor]:
    """(process, start, end): a 1024-step DPM-Solver++(3M) solution on the VP-SDE's log-SNR grid."""
    proc = make_process("vpsde")
    x = start_point(proc)
    return proc, x, solve("dpmpp3m", 1024, proc, x)


def errors(sampler: str, step_counts, **options) -> list[float]:
    """RMS distance to the many-step reference over the same interval (the grid's ends do not depend on
    the number of steps), for each number of steps."""
    proc, x, ref = reference()
    return [float((solve(sampler, n, proc, x, **options) - ref).pow(2).mean().sqrt()) for n in step_counts]


def orders(errs: list[float]) -> list[float]:
    """Observed orders log2(e(n) / e(2n)) of successive doublings."""
    return [math.log2(a / b) for a, b in itertools.pairwise(errs)]


def test_the_many_step_reference_is_converged():
    proc, x, ref = reference()
    assert float((solve("unipc", 1024, proc, x, order=3) - ref).abs().max()) < 1e-4


#: (sampler, options, lowest observed order from 32 to 64 steps). DDIM is first order and DPM-Solver++(2M)
#: second. DPM-Solver++(3M)'s first step is Euler (no history yet), whose O(h^2) local error bounds any
#: multistep method's global order by 2, so 3M is second order with a smaller constant. UniPC-p's corrector
#: raises each step's order by one (Zhao et al. 2023, Thm. 3.3), its first step's too: UniPC-2 is at least
#: second and UniPC-3 at least third order (observed here: 1.0, 1.8, 2.2, 2.4, 4.1).
ORDERS = [("ddim", {}, 0.8), ("dpmpp2m", {}, 1.6), ("dpmpp3m", {}, 1.8), ("unipc", {"order": 2}, 2.0),
          ("unipc", {"order": 3}, 3.0)]


@pytest.mark.parametrize("sampler,options,lowest", ORDERS)
def test_each_solver_converges_at_least_at_its_order(sampler, options, lowest):
    errs = errors(sampler, (32, 64), **options)
    (got,) = orders(errs)
    assert got >= lowest, (errs, got)
    if sampler == "ddim":
        assert got < 1.3  # and no better: DDIM is Euler's method in lambda


def test_higher_order_solvers_are_closer_to_the_ode_solution_at_equal_steps():
    for n in (16, 64):
        e = {f"{name}{opts}": errors(name, (n,), **opts)[0] for name, opts, _ in ORDERS}
        assert e["dpmpp3m{}"] < e["dpmpp2m{}"] < e["ddim{}"], (n, e)
        assert e["unipc{'order': 3}"] < e["dpmpp2m{}"] and e["unipc{'order': 2}"] < e["dpmpp2m{}"], (n, e)


def test_unipc_corrector_makes_it_more_accurate_at_no_extra_cost():
    # from 32 steps on; at 16 steps on this strongly bimodal toy UniP alone happened to be 6 % closer
    with_c = errors("unipc", (32, 64), order=3)
    without = errors("unipc", (32, 64), order=3, corrector=False)
    assert with_c[0] < without[0] and with_c[1] < without[1] / 2
    assert make_sampler("unipc", 10).network_evals(make_process("vpsde")) == 10


# -- agreement with diffusers' schedulers of the same name ---------------------------------------


DIFFUSERS_SAME = [
    ("dpmpp2m", {}, "DPMSolverMultistepScheduler", {"solver_order": 2}),
    ("dpmpp3m", {}, "DPMSolverMultistepScheduler", {"solver_order": 3}),
    ("unipc", {"order": 2}, "UniPCMultistepScheduler", {"solver_order": 2}),
    ("unipc", {"order": 3}, "UniPCMultistepScheduler", {"solver_order": 3}),
    ("unipc", {"order": 3, "corrector": False}, "UniPCMultistepScheduler", {"solver_order": 3, "disable_corrector": list(range(30))}),
]


@pytest.mark.parametrize("ours,our_options,scheduler,config", DIFFUSERS_SAME)
@pytest.mark.parametrize("steps", [5, 12, 20])
def test_solver_gives_what_the_diffusers_scheduler_of_the_same_name_gives(ours, our_options, scheduler, config, steps):
    diffusers = pytest.importorskip("diffusers", reason="diffusers (the bench extra) is not installed")
    proc = make_process("ddpm", schedule="linear")
    net = MixtureDenoiser(proc)
    sched = getattr(diffusers, scheduler)(num_train_timesteps=proc.T, trained_betas=proc.betas.double().numpy(),
                                          prediction_type="epsilon", **config)
    sched.set_timesteps(steps)
    x0 = start_point(proc, 16)
    x = x0.clone()
    with torch.no_grad():
        for k in sched.timesteps:
            eps = proc.predict(net, x, (int(k) + 1) / proc.T).eps
            x = sched.step(eps, k, x).prev_sample
    # the same evaluation times: diffusers' timestep k is our t = (k + 1) / T
    got = solve(ours, steps, proc, x0, times=[(int(k) + 1) / proc.T for k in sched.timesteps], **our_options)
    # float32 arithmetic in a different order; x0_hat = (x - sigma eps) / alpha at alpha(t = 1) = 0.006
    np.testing.assert_allclose(got.numpy(), x.numpy(), atol=2e-4)
    assert float(x.std()) > 0.3  # a real image distribution, not a collapsed one


# -- grids and options --------------------------------------------------------------------------


def test_karras_grid_is_uniform_in_the_seventh_root_of_the_odes_noise_level():
    proc = make_process("vpsde")
    times = time_grid(proc, 12, "karras", lambda_min=-5.1)
    logsnr = time_grid(proc, 12, "logsnr", lambda_min=-5.1)
    assert times[0] == pytest.approx(logsnr[0]) and times[-1] == pytest.approx(logsnr[-1])
    assert all(a > b for a, b in itertools.pairwise(times))
    # sigma~ = sigma / alpha = e^{-lambda}; its 1/rho-th power falls by the same amount at every step
    r = [math.exp(-log_snr_half(*map(float, proc.alpha_sigma(torch.tensor([t])))) / KARRAS_RHO) for t in times]
    steps = np.diff(r)
    np.testing.assert_allclose(steps, steps.mean(), rtol=1e-3)
    # finer than the log-SNR grid at high noise, coarser near the clean end
    assert times[1] > logsnr[1] and times[-2] > logsnr[-2]


def test_solver_options_are_checked_and_picked_from_the_form_values():
    with pytest.raises(UserError, match="order must be 1, 2 or 3"):
        make_sampler("unipc", 10, order=4)
    with pytest.raises(UserError, match="variant 'bh3' is not one of bh1, bh2"):
        make_sampler("unipc", 10, variant="bh3")
    with pytest.raises(UserError, match="takes no option 'eta'"):
        make_sampler("dpmpp3m", 10, eta=0.5)
    assert options_for("unipc", {"eta": 0.0, "order": 2, "spacing": "karras"}) == {"order": 2, "spacing": "karras"}
    assert make_sampler("unipc", 8, order=2, variant="bh1").describe() == {
        "sampler": "unipc", "steps": 8, "spacing": "logsnr", "order": 2, "variant": "bh1", "corrector": True,
        "clip_x0": True}


def test_the_sample_spec_offers_the_new_solvers():
    from app.engine.specs.generate import SampleSpec

    for name in ("dpmpp3m", "unipc"):
        assert SampleSpec(run="RUN", sampler=name, steps=8).sampler == name
