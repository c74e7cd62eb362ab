"""Golden outputs of every sampler and reconstruction method on tiny, seeded models (issue 23's pin).

``compute()`` runs each case from fixed seeds on tiny networks (a seeded, untrained U-Net, the exact
Gaussian prior) and returns {case: array}; ``samplers.npz`` beside this file holds what the code gave
before the sampler refactor. ``tests/engine/test_golden_samplers.py`` compares the two within float
tolerance. Regenerate only on purpose (an intended change of numbers, said in the commit):

    .venv/bin/python -m tests.engine.golden.samplers --write
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

GOLDEN = Path(__file__).with_name("samplers.npz")
N = 16  # image side of the tiny problems


def _unet(channels: int, size: int, seed: int = 0):
    from app.engine.nets.unet import NetConfig, UNet

    torch.manual_seed(seed)
    return UNet(NetConfig(image_size=size, in_channels=channels, base_channels=8, channel_mults=(1, 2),
                          num_res_blocks=1, attention_resolutions=())).eval()


#: (sampler, process, steps, options): every generation sampler on a process it supports
GENERATION = [
    ("ddim", "ddpm", 5, {}), ("ddim", "ddpm", 5, {"eta": 0.5}), ("ancestral", "ddpm", 5, {}),
    ("pc", "vpsde", 4, {}), ("langevin", "ncsn", 3, {"n_steps_each": 2}), ("heun", "vpsde", 4, {}),
    ("dpmpp2m", "vpsde", 4, {}), ("euler", "flow", 4, {}), ("ddim", "flow", 4, {}),
]


def generation_cases() -> dict[str, np.ndarray]:
    from app.engine.diffusion.base import make_process
    from app.engine.sampling.api import generate

    out = {}
    for sampler, process, steps, opts in GENERATION:
        net = _unet(1, N)
        proc = make_process(process)
        key = f"gen-{sampler}-{process}" + "".join(f"-{k}{v}" for k, v in opts.items())
        out[key] = generate((net, proc), 2, sampler=sampler, steps=steps, seed=3, precision="fp32", **opts)
    return out


def _gaussian_problem():
    """The exact Gaussian prior of a smooth complex image and masked-FFT measurements of one draw."""
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[0:N, 0:N] / (N - 1) - 0.5
    mean = (np.exp(-(xx**2 + yy**2) / 0.08) * (1 + 0.3j)).astype(np.complex64)
    std = np.stack([0.05 + 0.1 * np.abs(mean), 0.05 + 0.1 * np.abs(mean)]).astype(np.float32)
    x = mean + std[0] * rng.standard_normal((N, N)) + 1j * std[1] * rng.standard_normal((N, N))
    return mean, std, x.astype(np.complex64), rng


def mri_cases() -> dict[str, np.ndarray]:
    from app.engine.diffusion.base import make_process
    from app.engine.recon.mri.masks import make_mask
    from app.engine.recon.mri.methods import reconstruct
    from app.engine.recon.mri.operators import MaskedFFT, SenseOp
    from app.engine.recon.mri.score import GaussianScoreNet, ScorePrior, image_scale, posterior_sample

    out = {}
    mean, std, x, rng = _gaussian_problem()
    mask, _ = make_mask("random", (N, N), 4, 0.2, seed=0)
    A = MaskedFFT(mask)
    y = (np.asarray(A.forward(x)) + A.mask.numpy() * 0.01 * (rng.standard_normal((N, N))
                                                             + 1j * rng.standard_normal((N, N)))).astype(np.complex64)
    scale = image_scale(A.adjoint(y))
    for process in ("vpsde", "ncsn"):
        net = GaussianScoreNet(np.stack([mean.real, mean.imag]) / scale, std / scale, make_process(process))
        prior = ScorePrior(net, net.process)
        for corrector, steps in (("ald", 6), ("pc", 6), ("dds", 5)):
            rec = posterior_sample(prior, A, y, n_samples=2, steps=steps, corrector=corrector, langevin_steps=2,
                                   noise_sigma=0.01, seed=1)
            out[f"mri-{corrector}-{process}-single"] = rec.samples
    net = GaussianScoreNet(np.stack([mean.real, mean.imag]) / scale, std / scale, make_process("vpsde"))
    prior = ScorePrior(net, net.process)
    rec = posterior_sample(prior, A, y, n_samples=2, steps=5, corrector="dds", noise_sigma=0.0, seed=2,
                           init=np.asarray(A.adjoint(y)), start_sigma=0.3)
    out["mri-dds-warm-single"] = rec.samples
    # a seeded (untrained) U-Net prior: the x0 bound is reached
    unet_prior = ScorePrior(_unet(2, N, seed=1), make_process("vpsde"))
    for corrector, steps in (("ald", 4), ("pc", 4), ("dds", 4)):
        rec = posterior_sample(unet_prior, A, y, n_samples=2, steps=steps, corrector=corrector, langevin_steps=1,
                               noise_sigma=0.01, seed=4)
        out[f"mri-{corrector}-unet-single"] = rec.samples
    # multi-coil (SENSE): the conjugate-gradient data consistency of dds, and the projection of ald / pc
    yy, xx = np.mgrid[0:N, 0:N] / (N - 1) - 0.5
    maps = np.stack([np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 0.3) * np.exp(1j * ph)
                     for cx, cy, ph in ((0.5, 0.0, 0.3), (-0.5, 0.0, 1.1), (0.0, 0.5, 2.0))])
    maps = (maps / np.sqrt((np.abs(maps) ** 2).sum(0))).astype(np.complex64)
    S = SenseOp(maps, mask)
    ys = (np.asarray(S.forward(x)) + S.mask.numpy() * 0.01 * rng.standard_normal((3, N, N))).astype(np.complex64)
    scale = image_scale(S.adjoint(ys))
    net = GaussianScoreNet(np.stack([mean.real, mean.imag]) / scale, std / scale, make_process("vpsde"))
    prior = ScorePrior(net, net.process)
    for corrector, steps in (("ald", 6), ("pc", 6), ("dds", 5)):
        rec = posterior_sample(prior, S, ys, n_samples=2, steps=steps, corrector=corrector, langevin_steps=2,
                               noise_sigma=0.01, seed=5)
        out[f"mri-{corrector}-vpsde-sense"] = rec.samples
    for method in ("zero-filled", "cs-tv", "cs-wavelet"):
        out[f"mri-{method}-single"] = reconstruct(method, A, y, iterations=20).image
        out[f"mri-{method}-sense"] = reconstruct(method, S, ys, iterations=20).image
    return out


def ct_cases() -> dict[str, np.ndarray]:
    from app.engine.diffusion.base import make_process
    from app.engine.recon.ct import radon as R
    from app.engine.recon.ct.methods import score_denoise, score_sparse_view
    from app.engine.recon.mri.score import ScorePrior

    n = 32
    yy, xx = np.mgrid[0:n, 0:n] / (n - 1) - 0.5
    phantom = ((xx**2 + yy**2 < 0.16) * 0.5 + (xx**2 + (yy - 0.1) ** 2 < 0.02) * 0.3).astype(np.float32)
    phantom *= R.circle_mask(n)
    A = R.RadonOp(n, R.view_angles(8))
    sino = A.forward(torch.as_tensor(phantom))
    prior = ScorePrior(_unet(1, n, seed=2), make_process("vpsde"), channels=1)
    out = {"ct-sparse-view": score_sparse_view(prior, A, sino, n_samples=2, steps=4, seed=0)[2]}
    noisy = phantom + 0.02 * np.random.default_rng(0).standard_normal(phantom.shape).astype(np.float32)
    out["ct-denoise"] = score_denoise(prior, noisy, 0.02, n_samples=2, steps=5, seed=0)[2]
    return out


def compute() -> dict[str, np.ndarray]:
    torch.set_num_threads(1)  # the same reductions in the same order on every machine
    return {**generation_cases(), **mri_cases(), **ct_cases()}


if __name__ == "__main__":
    if "--write" not in sys.argv:
        sys.exit("usage: python -m tests.engine.golden.samplers --write   (overwrites samplers.npz)")
    values = compute()
    np.savez_compressed(GOLDEN, **{k: np.asarray(v) for k, v in values.items()})
    print(f"wrote {len(values)} cases to {GOLDEN}")
