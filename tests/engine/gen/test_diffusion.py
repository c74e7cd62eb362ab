"""Noise processes: the forward path and its inverse, schedules, losses that learn on real X-rays."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from app.engine.diffusion.base import PROCESS_NAMES, expand_as_image, make_process
from app.engine.jobs import UserError
from app.engine.nets.unet import NetConfig, UNet
from tests.conftest import shared_file


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


ALL = [
    ("ncsn", {}),
    ("ncsn", {"prediction_type": "epsilon"}),
    ("ddpm", {}),
    ("ddpm", {"schedule": "cosine", "prediction_type": "v"}),
    ("vpsde", {}),
    ("vpsde", {"prediction_type": "v"}),
    ("flow", {}),
    ("flow", {"t_sampling": "logit_normal"}),
]


class Oracle(torch.nn.Module):
    """A 'network' that knows x0 and z and returns the exact regression target of the process."""

    num_classes = 0

    def __init__(self, process, x0, z):
        super().__init__()
        self.process, self.x0, self.z = process, x0, z
        self.seen_level = None

    def forward(self, x, level, y=None):
        self.seen_level = level
        t = self.t
        a, s = self.process.alpha_sigma(t)
        return self.process.target(self.x0, self.z, expand_as_image(a, x), expand_as_image(s, x))


@pytest.mark.parametrize("name,opts", ALL)
def test_predict_inverts_the_forward_process_given_the_true_noise(name, opts):
    p = make_process(name, **opts)
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(4, 1, 8, 8, generator=g) * 2 - 1
    z = torch.randn(4, 1, 8, 8, generator=g)
    # times away from the ends where alpha or sigma is 0 and one of the two is undetermined
    t = torch.tensor([0.1, 0.35, 0.6, 0.9])
    if p.discrete and name == "ddpm":
        t = p.t_of_index(p.index_of_t(t))
    a, s = p.alpha_sigma(t)
    x = expand_as_image(a, x0) * x0 + expand_as_image(s, x0) * z
    net = Oracle(p, x0, z)
    net.t = t
    pred = p.predict(net, x, t)
    torch.testing.assert_close(pred.x0, x0, atol=2e-4, rtol=1e-3)
    torch.testing.assert_close(pred.eps, z, atol=2e-4, rtol=1e-3)
    torch.testing.assert_close(net.seen_level, p.net_level(t))
    # score of the Gaussian perturbation kernel: -(x - alpha x0) / sigma^2
    torch.testing.assert_close(p.score(pred, x, t), -z / expand_as_image(s, x0), atol=1e-3, rtol=1e-3)


@pytest.mark.parametrize("name", PROCESS_NAMES)
def test_times_run_from_noise_to_clean_and_the_path_ends_at_the_prior(name):
    p = make_process(name)
    ts = p.sampling_times(10)
    assert ts.shape == (10,) and ts[0] == pytest.approx(p.t_max)
    assert (ts[1:] < ts[:-1]).all() and ts[-1] >= p.t_min - 1e-6
    train_t = p.sample_train_t(2000, torch.Generator().manual_seed(0))
    assert train_t.min() >= p.t_min - 1e-6 and train_t.max() <= p.t_max + 1e-6
    a, s = p.alpha_sigma(torch.tensor([p.t_min, p.t_max]))
    assert a[0] > 0.99 and s[0] < 0.02  # clean end
    assert s[1] / a[1] > 40  # noise end: the signal is buried
    x = p.prior((512, 1, 8, 8), torch.Generator().manual_seed(3))
    assert float(x.std()) == pytest.approx(p.prior_std(), rel=0.03)


def test_prior_is_drawn_on_cpu_from_the_seed_so_it_repeats():
    p = make_process("ddpm")
    a = p.prior((2, 1, 8, 8), torch.Generator().manual_seed(7))
    b = p.prior((2, 1, 8, 8), torch.Generator().manual_seed(7), device="cpu")
    c = p.prior((2, 1, 8, 8), torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_ddpm_linear_and_cosine_schedules_follow_the_papers():
    lin = make_process("ddpm", schedule="linear")
    assert lin.betas[0] == pytest.approx(1e-4) and lin.betas[-1] == pytest.approx(0.02)
    assert lin.alphas_cumprod[-1] < 1e-4  # Ho et al. 2020: x_T is almost pure noise
    cos = make_process("ddpm", schedule="cosine")
    t = torch.arange(0, 1001) / 1000
    s = 0.008
    f = torch.cos((t.double() + s) / (1 + s) * math.pi / 2) ** 2
    expected = (f / f[0])[1:]  # Nichol & Dhariwal 2021, eq. 17
    torch.testing.assert_close(cos.alphas_cumprod[:990].double(), expected[:990], atol=1e-5, rtol=1e-4)
    # on the grid, alpha(t) is exactly sqrt(alpha_bar) of the index
    idx = torch.tensor([0, 10, 500, 999])
    a, sg = lin.alpha_sigma(lin.t_of_index(idx))
    torch.testing.assert_close(a**2, lin.alphas_cumprod[idx], rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(a**2 + sg**2, torch.ones(4))
    assert lin.net_level(lin.t_of_index(idx)).round().long().tolist() == idx.tolist()
    assert make_process("ddpm").sampling_times(50)[:2].tolist() == pytest.approx([1.0, 0.98])


def test_ncsn_levels_are_a_geometric_sequence_from_sigma_max_to_sigma_min():
    p = make_process("ncsn", sigma_min=0.01, sigma_max=50, num_levels=20)
    sig = p.sigmas
    assert sig.shape == (20,)
    assert sig[0] == pytest.approx(50, rel=1e-5) and sig[-1] == pytest.approx(0.01, rel=1e-5)
    ratios = sig[1:] / sig[:-1]
    torch.testing.assert_close(ratios, torch.full_like(ratios, float(ratios[0])), rtol=1e-4, atol=0)
    levels = p.sample_train_t(400, torch.Generator().manual_seed(0))
    assert len(torch.unique(levels)) == 20  # training sees the L levels only
    torch.testing.assert_close(p.sampling_times(20), p.level_times())


@pytest.mark.parametrize("name", PROCESS_NAMES)
def test_sde_coefficients_match_the_closed_forms(name):
    p = make_process(name)
    t = torch.tensor([0.2, 0.5, 0.8])
    f, g2 = p.sde(t)
    a, s = p.alpha_sigma(t)
    if name == "ncsn":  # VE: f = 0, g^2 = d sigma^2 / dt (Song et al. 2021, eq. 9 / 30)
        torch.testing.assert_close(f, torch.zeros(3))
        torch.testing.assert_close(g2, 2 * s**2 * math.log(50 / 0.01), rtol=1e-4, atol=1e-4)
    elif name == "flow":
        torch.testing.assert_close(f, -1 / (1 - t))
        torch.testing.assert_close(g2, 2 * t / (1 - t), rtol=1e-4, atol=1e-5)
    else:  # VP: f = -beta / 2, g^2 = beta (Song et al. 2021, eq. 11)
        torch.testing.assert_close(g2, -2 * f, rtol=1e-3, atol=1e-4)
        assert (g2 > 0).all()


def test_classifier_free_guidance_combines_conditional_and_null_outputs():
    torch.manual_seed(0)
    net = UNet(NetConfig(image_size=16, base_channels=8, channel_mults=(1, 2), num_res_blocks=1,
                         attention_resolutions=(), num_classes=2))
    with torch.no_grad():
        for prm in net.parameters():
            prm.add_(0.05 * torch.randn_like(prm))
    net.eval()
    p = make_process("ddpm")
    x = torch.randn(2, 1, 16, 16)
    y = torch.tensor([0, 1])
    with torch.no_grad():
        cond = p.predict(net, x, 0.5, y)
        uncond = p.predict(net, x, 0.5, None)
        guided = p.predict(net, x, 0.5, y, guidance=2.0)
        zero = p.predict(net, x, 0.5, y, guidance=0.0)
    torch.testing.assert_close(zero.eps, cond.eps)
    torch.testing.assert_close(guided.eps, 3.0 * cond.eps - 2.0 * uncond.eps, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(cond.eps, uncond.eps)


def test_unknown_process_option_or_prediction_type_is_a_clear_error():
    with pytest.raises(UserError, match="not one of ncsn, ddpm, vpsde, flow"):
        make_process("edm")
    with pytest.raises(UserError, match="no option 'sigma_max'"):
        make_process("ddpm", sigma_max=10)
    with pytest.raises(UserError, match="prediction_type 'v' is not valid for process 'ncsn'"):
        make_process("ncsn", prediction_type="v")
    with pytest.raises(UserError, match="schedule"):
        make_process("ddpm", schedule="sigmoid")


def test_vpsde_frequency_term_adds_to_the_loss_and_can_be_switched_off():
    torch.manual_seed(0)
    net = UNet(NetConfig(image_size=16, base_channels=8, channel_mults=(1, 2), num_res_blocks=1,
                         attention_resolutions=()))
    x0 = torch.rand(4, 1, 16, 16) * 2 - 1
    t = torch.tensor([0.1, 0.3, 0.5, 0.7])
    with_freq = make_process("vpsde", freq_loss_weight=0.1).loss(net, x0, generator=torch.Generator().manual_seed(1), t=t)
    without = make_process("vpsde", freq_loss_weight=0.0).loss(net, x0, generator=torch.Generator().manual_seed(1), t=t)
    assert (with_freq.per_sample > without.per_sample).all()
    assert torch.isfinite(with_freq.loss)


def _xray_batch(n: int, size: int = 16) -> torch.Tensor:
    data = np.load(shared_file("pneumoniamnist_balanced_28.npz"))
    imgs = torch.from_numpy(data["train_images"][:n].astype(np.float32) / 127.5 - 1.0)[:, None]
    return F.interpolate(imgs, size=(size, size), mode="area")


@pytest.mark.parametrize("name", PROCESS_NAMES)
def test_loss_is_finite_and_drops_by_a_fifth_in_40_steps_on_real_chest_xrays(name):
    x = _xray_batch(128)
    torch.manual_seed(0)
    net = UNet(NetConfig(image_size=16, base_channels=8, channel_mults=(1, 2), num_res_blocks=1,
                         attention_resolutions=()))
    p = make_process(name, **({"num_levels": 10, "sigma_max": 20.0} if name == "ncsn" else {}))
    eval_t = p.sample_train_t(128, torch.Generator().manual_seed(123))

    def held_out_loss() -> float:  # same images, times and noise every time
        with torch.no_grad():
            return float(p.loss(net, x, generator=torch.Generator().manual_seed(5), t=eval_t).loss)

    before = held_out_loss()
    opt = torch.optim.AdamW(net.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(1)
    for step in range(40):
        idx = torch.randint(0, 128, (16,), generator=g)
        out = p.loss(net, x[idx], generator=g)
        assert torch.isfinite(out.loss)
        assert out.per_sample.shape == (16,) and out.t.shape == (16,)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    after = held_out_loss()
    assert math.isfinite(after) and after < 0.8 * before, (before, after)
