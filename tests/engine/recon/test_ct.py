"""CT: FBP beats naive back-projection on a real head CT slice; torch projector; score methods run."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch

from app.cli import main
from app.engine.diffusion.base import make_process
from app.engine.metrics.image import psnr, ssim
from app.engine.nets.unet import NetConfig, UNet
from app.engine.recon.ct import radon as R
from app.engine.recon.ct.methods import score_denoise, score_sparse_view
from app.engine.recon.mri.operators import inner
from app.engine.recon.mri.score import GaussianScoreNet, ScorePrior
from tests.conftest import shared_file
from tests.engine.recon.conftest import Negated

warnings.filterwarnings("ignore", message="Radon transform")


@pytest.fixture(scope="module")
def head_slice() -> np.ndarray:
    with np.load(shared_file("ct_head_hu.npz")) as z:
        hu = z["volume_hu"][54].astype(np.float32)
    return R.hu_to_unit(hu) * R.circle_mask(hu.shape[0])


def test_fbp_of_a_real_head_ct_beats_naive_backprojection(head_slice):
    angles = R.view_angles(90)
    sino = R.sinogram(head_slice, angles)
    f = np.clip(R.fbp(sino, angles), 0, None)
    bp = R.backprojection(sino, angles)
    bp = bp * head_slice.mean() / bp.mean()
    assert psnr(head_slice, f) > psnr(head_slice, bp) + 10
    assert ssim(head_slice, f) > ssim(head_slice, bp) + 0.1


def test_torch_projector_matches_skimage_and_has_an_exact_adjoint(head_slice, rng):
    angles = R.view_angles(30)
    A = R.RadonOp(head_slice.shape[0], angles)
    ours = A.forward(torch.as_tensor(head_slice)).numpy()
    ref = R.sinogram(head_slice, angles).T
    assert np.corrcoef(ours.ravel(), ref.ravel())[0, 1] > 0.99
    x = torch.as_tensor(rng.standard_normal(A.ishape).astype(np.float32))
    y = torch.as_tensor(rng.standard_normal(A.oshape).astype(np.float32))
    assert np.isclose(inner(A.forward(x), y), inner(x, A.adjoint(y)), rtol=1e-5)


def _tiny_ct_prior() -> ScorePrior:
    torch.manual_seed(0)
    net = UNet(NetConfig(image_size=32, in_channels=1, base_channels=8, channel_mults=(1, 2), num_res_blocks=1,
                         attention_resolutions=()))
    return ScorePrior(net.eval(), make_process("vpsde"), channels=1)


def test_score_sparse_view_and_denoising_give_finite_images_and_uncertainty(head_slice):
    small = head_slice[::8, ::8] * R.circle_mask(32)
    angles = R.view_angles(8)
    A = R.RadonOp(32, angles)
    sino = A.forward(torch.as_tensor(small))
    mean, std, samples = score_sparse_view(_tiny_ct_prior(), A, sino, n_samples=2, steps=3, seed=0)
    assert mean.shape == (32, 32) and np.all(np.isfinite(mean)) and np.all(np.isfinite(std))
    assert samples.shape == (2, 32, 32)
    noisy = small + 0.02 * np.random.default_rng(0).standard_normal(small.shape).astype(np.float32)
    mean, std, _ = score_denoise(_tiny_ct_prior(), noisy, 0.02, n_samples=2, steps=5, seed=0)
    assert np.all(np.isfinite(mean)) and std.max() > 0


def test_ct_recon_job_through_the_cli_scores_fbp_against_the_clean_slice(tmp_path, capsys):
    src = shared_file("ct_head_hu.npz")
    code = main(["ct-recon", "--input", str(src), "--slice", "54", "--views", "45", "--method", "fbp",
                 "backprojection", "--out", str(tmp_path), "--json", "--quiet"])
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0, result
    m = result["methods"]
    assert m["fbp"]["metrics"]["psnr"] > m["backprojection"]["metrics"]["psnr"]
    assert all(np.isfinite(v) for e in m.values() for v in e["metrics"].values())
    assert (tmp_path / "fbp_ct.png").exists()


@pytest.mark.parametrize("process", ["vpsde", "ddpm", "ncsn"])
def test_score_methods_with_a_wrong_network_stay_finite_and_bounded(head_slice, process):
    small = head_slice[::8, ::8] * R.circle_mask(32)
    A = R.RadonOp(32, R.view_angles(8))
    sino = A.forward(torch.as_tensor(small))
    proc = make_process(process)
    oracle = GaussianScoreNet(np.full((1, 32, 32), -0.5, np.float32), np.full((1, 32, 32), 0.3, np.float32), proc)
    prior = ScorePrior(Negated(oracle), proc, channels=1)
    _, _, samples = score_sparse_view(prior, A, sino, n_samples=2, steps=10, seed=0)
    assert np.all(np.isfinite(samples))
    # x0_hat in [-1, 1] (mu in [0, 1]), then one data-consistency step of weight 1 moves it by at most
    # ||A^T (A mu - y)|| / ||A||^2 <= ||mu|| + ||y|| / ||A||
    norm_a = A.norm_estimate(iterations=15)
    bound = 2 * np.sqrt(small.size) + float(sino.norm()) / norm_a
    assert np.all(np.linalg.norm(samples.reshape(2, -1), axis=1) <= bound * 1.01)
    with np.errstate(all="ignore"):  # without the bound the same network drives the samples away
        _, _, unbounded = score_sparse_view(prior, A, sino, n_samples=2, steps=10, seed=0, x0_clip=None)
    assert not np.all(np.isfinite(unbounded)) or np.linalg.norm(unbounded.reshape(2, -1), axis=1).min() > 100 * bound
    noisy = small + 0.02 * np.random.default_rng(0).standard_normal(small.shape).astype(np.float32)
    _, _, den = score_denoise(prior, noisy, 0.02, n_samples=2, steps=10, seed=0)
    assert np.all(np.isfinite(den)) and den.min() >= 0 and den.max() <= 1 + 1e-6


def test_ct_score_methods_evaluate_the_network_once_per_step():
    """The reverse step takes the estimates of the step's one evaluation (it used to evaluate twice)."""
    from app.engine.recon.ct.methods import _times_from, match_time

    n = 32
    phantom = (R.circle_mask(n) * 0.4).astype(np.float32)
    A = R.RadonOp(n, R.view_angles(8))
    prior = _tiny_ct_prior()
    calls = []
    hook = prior.net.register_forward_hook(lambda *_: calls.append(1))
    try:
        score_sparse_view(prior, A, A.forward(torch.as_tensor(phantom)), n_samples=2, steps=5, seed=0)
        assert len(calls) == len(_times_from(prior.process, 5)) == 5
        calls.clear()
        score_denoise(prior, phantom, 0.02, n_samples=2, steps=6, seed=0)
        assert len(calls) == len(_times_from(prior.process, 6, match_time(prior.process, 0.04)))
    finally:
        hook.remove()
