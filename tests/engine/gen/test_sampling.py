"""Samplers: right distribution on Gaussian data, right shape / range, seeded, batch-independent, stoppable."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from app.engine.diffusion.base import expand_as_image, make_process
from app.engine.jobs import JobCancelled, UserError
from app.engine.nets.unet import UNet
from app.engine.sampling.api import SAMPLERS, generate, generate_with_info, make_sampler
from app.engine.sampling.base import time_grid



@pytest.fixture(autouse=True)
def one_thread():
    """Tiny networks: one intra-op thread is fastest and keeps the shared cores free."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


PROCESS_OPTIONS = {"ddpm": {}, "vpsde": {}, "ncsn": {"num_levels": 10}, "flow": {}}
COMBOS = [(s, p) for s, cls in SAMPLERS.items() for p in PROCESS_OPTIONS if p in cls.processes]


class GaussianDataDenoiser(torch.nn.Module):
    """The exact optimal network when every pixel of the data is N(mean, std^2) independently.

    E[x0 | x_t] = m + a tau^2 / (a^2 tau^2 + s^2) (x_t - a m); the output is that estimate
    expressed in the process's prediction type. A sampler run with it must reproduce the data
    distribution up to its discretisation error.
    """

    def __init__(self, process, mean=0.3, std=0.2, size=8):
        super().__init__()
        self.process, self.m, self.tau = process, mean, std
        self.image_size, self.in_channels, self.num_classes = size, 1, 0

    def forward(self, x, level, y=None):
        p = self.process
        t = (level.float() + 1) / p.T if p.name == "ddpm" else level.float() / 1000
        a, s = p.alpha_sigma(t)
        a, s = expand_as_image(a, x), expand_as_image(s, x)
        x0 = self.m + a * self.tau**2 / (a * a * self.tau**2 + s * s) * (x - a * self.m)
        eps = (x - a * x0) / s
        return {"epsilon": eps, "score": -eps, "v": a * eps - s * x0, "velocity": eps - x0}[p.prediction_type.value]


def tiny_unet(num_classes: int = 0, seed: int = 0) -> UNet:
    """A tiny U-Net with random (not zero-initialised) weights so its output depends on its input."""
    net = UNet(image_size=16, base_channels=8, channel_mults=(1, 2), num_res_blocks=1, attention_resolutions=(8,),
               num_classes=num_classes)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    return net.eval()


# steps per sampler in the distribution test: enough for the discretisation error to be small
GAUSS_STEPS = {"ancestral": 200, "ddim": 100, "pc": 100, "heun": 20, "dpmpp2m": 20, "dpmpp3m": 20, "unipc": 20, "euler": 100,
               "langevin": 30}


@pytest.mark.parametrize("sampler,process_name", COMBOS)
def test_sampler_reproduces_gaussian_data_with_the_exact_denoiser(sampler, process_name):
    opts = dict(PROCESS_OPTIONS[process_name])
    if process_name == "ncsn":
        opts = {"num_levels": 30, "sigma_max": 20.0}  # prior far wider than the data, few levels
    proc = make_process(process_name, **opts)
    net = GaussianDataDenoiser(proc)
    # Langevin: step_lr = eps with eps / (2 sigma_L^2) = 0.5, stable at every level (Song & Ermon 2020, sec. 3.3)
    extra = {"n_steps_each": 10, "step_lr": 1e-4} if sampler == "langevin" else {}
    x = generate((net, proc), 64, sampler, steps=GAUSS_STEPS[sampler], seed=3, batch_size=64, **extra)
    assert x.shape == (64, 1, 8, 8)
    # 4096 independent pixels: the sample mean is good to ~0.003, the std to ~2 %
    assert abs(float(x.mean()) - 0.3) < 0.02
    assert abs(float(x.std()) - 0.2) < 0.025


def test_second_order_solvers_beat_ddim_at_twenty_steps_on_gaussian_data():
    proc = make_process("ddpm")
    net = GaussianDataDenoiser(proc)
    err = {s: abs(float(generate((net, proc), 64, s, steps=20, seed=1).std()) - 0.2) for s in ("ddim", "heun", "dpmpp2m")}
    assert err["dpmpp2m"] < err["ddim"] and err["heun"] < err["ddim"]


@pytest.mark.parametrize("sampler,process_name", COMBOS)
def test_each_sampler_returns_finite_images_in_range_with_the_unet(sampler, process_name):
    proc = make_process(process_name, **PROCESS_OPTIONS[process_name])
    extra = {"n_steps_each": 1} if sampler in ("langevin", "pc") else {}
    x = generate((tiny_unet(), proc), 3, sampler, steps=3, seed=0, batch_size=2, **extra)
    assert x.shape == (3, 1, 16, 16) and x.dtype == np.float32
    assert np.isfinite(x).all() and x.min() >= -1.0 and x.max() <= 1.0
    assert x.std() > 0


@pytest.mark.parametrize("sampler", ["ddim", "ancestral", "pc"])
def test_same_seed_gives_the_same_images_twice_and_whatever_the_batch_size(sampler):
    proc = make_process("ddpm")
    net = tiny_unet()
    kw = dict(steps=4, seed=11, eta=1.0 if sampler == "ddim" else None)
    a = generate((net, proc), 5, sampler, batch_size=5, **kw)
    b = generate((net, proc), 5, sampler, batch_size=5, **kw)
    c = generate((net, proc), 5, sampler, batch_size=2, **kw)
    np.testing.assert_array_equal(a, b)
    # per-image noise: a different batching only changes float rounding inside the network
    np.testing.assert_allclose(a, c, atol=1e-4)
    d = generate((net, proc), 3, sampler, batch_size=3, **kw)
    np.testing.assert_allclose(a[:3], d, atol=1e-4)  # image i does not depend on how many are drawn


def test_different_seeds_give_different_images():
    proc = make_process("ddpm")
    net = tiny_unet()
    a = generate((net, proc), 2, "ddim", steps=3, seed=0)
    b = generate((net, proc), 2, "ddim", steps=3, seed=1)
    assert np.abs(a - b).mean() > 0.05


class ClassGaussianDenoiser(GaussianDataDenoiser):
    """Exact denoiser for class c ~ N(means[c], std^2) per pixel; the null class is N(0, std^2)."""

    def __init__(self, process, means=(-0.4, 0.4), std=0.2, size=8):
        super().__init__(process, 0.0, std, size)
        self.means = torch.tensor([*means, 0.0])
        self.num_classes = len(means)

    def forward(self, x, level, y=None):
        if y is None:
            y = torch.full((x.shape[0],), self.num_classes)
        self.m = self.means[y.cpu()].reshape(-1, 1, 1, 1).to(x.device)
        return super().forward(x, level, None)


def test_class_labels_select_the_class_and_guidance_pushes_further_towards_it():
    proc = make_process("ddpm")
    net = ClassGaussianDenoiser(proc)
    labels = [0, 1] * 16
    plain = generate((net, proc), 32, "dpmpp2m", steps=20, seed=0, class_labels=labels)
    guided = generate((net, proc), 32, "dpmpp2m", steps=20, seed=0, class_labels=labels, guidance=1.0)
    assert abs(plain[0::2].mean() + 0.4) < 0.02 and abs(plain[1::2].mean() - 0.4) < 0.02
    # w = 1: eps = 2 eps(c) - eps(null) moves each class away from the null class's mean (0)
    assert guided[0::2].mean() < plain[0::2].mean() - 0.1 and guided[1::2].mean() > plain[1::2].mean() + 0.1
    one = generate((net, proc), 32, "dpmpp2m", steps=20, seed=0, class_labels=1, guidance=1.0)
    np.testing.assert_allclose(one[1::2], guided[1::2], atol=1e-5)  # same class, same noise: same image


def test_guidance_runs_on_the_class_conditional_unet():
    proc = make_process("ddpm")
    x = generate((tiny_unet(num_classes=2), proc), 4, "ddim", steps=3, seed=0, class_labels=[0, 1, 0, 1], guidance=3.0)
    assert np.isfinite(x).all() and x.shape == (4, 1, 16, 16)


def test_bad_class_requests_raise_user_errors():
    proc = make_process("ddpm")
    with pytest.raises(UserError, match="unconditional"):
        generate((tiny_unet(), proc), 2, "ddim", steps=2, class_labels=0)
    with pytest.raises(UserError, match="out of range"):
        generate((tiny_unet(2), proc), 2, "ddim", steps=2, class_labels=[0, 5])
    with pytest.raises(UserError, match="needs class labels"):
        generate((tiny_unet(2), proc), 2, "ddim", steps=2, guidance=2.0)
    with pytest.raises(UserError, match="one per image"):
        generate((tiny_unet(2), proc), 3, "ddim", steps=2, class_labels=[0, 1])


def test_should_stop_cancels_a_sampler_early():
    proc = make_process("ddpm")
    seen = []
    with pytest.raises(JobCancelled):
        generate((tiny_unet(), proc), 2, "ancestral", steps=50, callback=lambda s: seen.append(s.step),
                 should_stop=lambda: len(seen) >= 3)
    assert seen == [1, 2, 3]


def test_callback_reports_progress_and_a_clean_image_estimate_for_previews():
    proc = make_process("vpsde")
    steps = []
    generate((tiny_unet(), proc), 3, "dpmpp2m", steps=4, batch_size=2, callback=steps.append)
    assert [s.step for s in steps] == list(range(1, 9)) and all(s.total == 8 for s in steps)
    assert [s.batch_start for s in steps] == [0] * 4 + [2] * 4
    assert steps[0].info.x0.shape == (2, 1, 16, 16) and steps[-1].info.x0.shape == (1, 1, 16, 16)
    assert all(torch.isfinite(s.info.x0).all() for s in steps)


@pytest.mark.parametrize("sampler,process_name", COMBOS)
def test_every_sampler_reports_each_step_with_its_clean_image_estimate(sampler, process_name):
    """Live previews: one report per progress step; ``x0`` is the denoised estimate, not the noisy state.

    With the exact denoiser of N(0.3, 0.2^2) data, E[x0 | x_T] at the prior is the data mean with almost
    no spread while x_T is pure noise; at the last step the estimate is the image the sampler returns."""
    opts = {"num_levels": 10, "sigma_max": 20.0} if process_name == "ncsn" else PROCESS_OPTIONS[process_name]
    proc = make_process(process_name, **opts)
    extra = {"n_steps_each": 2} if sampler in ("langevin", "pc") else {}
    steps = []
    x = generate((GaussianDataDenoiser(proc), proc), 8, sampler, steps=6, seed=0, callback=steps.append, **extra)
    assert len(steps) == make_sampler(sampler, 6, **extra).progress_steps(proc) == steps[0].total
    assert [s.step for s in steps] == list(range(1, len(steps) + 1))
    assert all(s.info.x0.shape == (8, 1, 8, 8) and torch.isfinite(s.info.x0).all() for s in steps)
    first = steps[0].info
    assert abs(float(first.x0.mean()) - 0.3) < 0.01 and float(first.x0.std()) < 0.01
    assert float(first.x.std()) > 0.5  # the state itself is still noise
    np.testing.assert_allclose(steps[-1].info.x0.clamp(-1, 1).numpy(), x, atol=0.05)


@pytest.mark.parametrize("sampler,process_name", [("langevin", "ddpm"), ("langevin", "flow"), ("euler", "ddpm"),
                                                   ("pc", "flow"), ("ancestral", "flow")])
def test_sampler_process_mismatch_is_a_clear_error(sampler, process_name):
    proc = make_process(process_name)
    with pytest.raises(UserError, match=f"does not support the '{process_name}' process"):
        generate((tiny_unet(), proc), 1, sampler, steps=2)


def test_unknown_sampler_and_options_are_refused():
    with pytest.raises(UserError, match="not one of"):
        make_sampler("plms")
    with pytest.raises(UserError, match="takes no option 'eta'"):
        make_sampler("heun", 10, eta=0.5)
    with pytest.raises(UserError, match="eta"):
        make_sampler("ddim", 10, eta=2.0)


def test_time_grids_start_at_the_prior_and_never_evaluate_a_clean_time():
    ddpm = make_process("ddpm")
    full = time_grid(ddpm, 1000)
    assert len(full) == 1000 and full[0] == 1.0 and abs(full[-1] - 1 / 1000) < 1e-9  # Ho et al. Alg. 2
    for spacing in ("linspace", "logsnr", "process"):
        for name in ("ddpm", "vpsde", "ncsn", "flow"):
            proc = make_process(name)
            times = time_grid(proc, 10, spacing)
            assert len(times) == 10 and times[0] == pytest.approx(proc.t_max)
            assert all(a > b for a, b in zip(times, times[1:], strict=False))
            _, s = proc.alpha_sigma(torch.tensor(times))
            assert bool((s > 0).all())


def test_half_precision_runs_on_cpu_in_bfloat16_and_compile_without_a_compiler_is_a_clear_error(monkeypatch):
    proc = make_process("ddpm")
    net = tiny_unet(2)
    full = generate((net, proc), 2, "ddim", steps=3, seed=0, class_labels=[0, 1])
    half, info = generate_with_info((net, proc), 2, "ddim", steps=3, seed=0, class_labels=[0, 1], half=True)
    assert info.dtype == "bfloat16" and half.dtype == np.float32 and np.isfinite(half).all()
    assert 0 < np.abs(half - full).max() < 0.1  # computed in bf16, yet the same images
    import torch._inductor.config as inductor_config

    # a machine without a C++ tool-chain, for real: inductor is pointed at a compiler that does not exist
    monkeypatch.setattr(inductor_config.cpp, "cxx", ("/nonexistent/c++",))
    with pytest.raises(UserError, match="compile: torch.compile on the CPU needs a working C\\+\\+ compiler.*"
                                        "run without compile"):
        generate((net, proc), 2, "ddim", steps=3, seed=0, class_labels=[0, 1], compile=True)


def test_sampling_precision_fp32_is_the_old_default_bit_for_bit_and_bf16_stays_close():
    """``precision="fp32"`` is exactly what sampling gave before the option (no ``half``, no precision);
    ``"bf16"`` runs the network under bfloat16 autocast (the sampler's state float32) and stays within
    0.1 of it on every pixel ([-1, 1] scale) on a seeded tiny U-Net; "auto" is bf16 where the device runs
    it natively (``devices.autocast_dtype``), else fp32; ``half`` keeps working and cannot be combined."""
    from app.engine.devices import autocast_dtype

    proc = make_process("ddpm")
    net = tiny_unet(2)
    args = {"n": 3, "sampler": "dpmpp2m", "steps": 4, "seed": 2, "class_labels": [0, 1, 1]}
    before, info0 = generate_with_info((net, proc), **args)
    fp32, info32 = generate_with_info((net, proc), **args, precision="fp32")
    np.testing.assert_array_equal(fp32, before)
    assert info0.dtype == info32.dtype == "float32"
    layouts = []
    bf16, info16 = generate_with_info((net, proc), **args, precision="bf16",
                                      callback=lambda step: layouts.append(net.uses_channels_last()))
    assert layouts and not any(layouts)
    assert info16.dtype == "bfloat16" and bf16.dtype == np.float32
    assert 0 < np.abs(bf16 - fp32).max() < 0.1
    auto, info_auto = generate_with_info((net, proc), **args, precision="auto")
    expected = autocast_dtype("auto", torch.device("cpu"))
    assert info_auto.dtype == str(expected or torch.float32).replace("torch.", "")
    np.testing.assert_array_equal(auto, bf16 if expected is torch.bfloat16 else fp32)
    half, info_half = generate_with_info((net, proc), **args, half=True)
    assert info_half.dtype == "bfloat16"
    np.testing.assert_array_equal(half, bf16)
    # a narrow U-Net samples bf16 contiguous on the CPU (bf16 + channels-last is the slow layout there); the
    # caller's net keeps its own layout rule and eval-mode weights
    assert net.channels_last is None and not net.training
    assert net.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    with pytest.raises(UserError, match="either half or precision"):
        generate((net, proc), **args, half=True, precision="fp32")
    with pytest.raises(UserError, match="precision 'fp64' is not one of auto, fp32, bf16, fp16"):
        generate((net, proc), **args, precision="fp64")


def test_sample_spec_has_a_precision_option_on_the_command_line_defaulting_to_auto():
    from app.cli import build_parser, spec_from_args
    from app.engine.specs.generate import SampleSpec

    assert SampleSpec(run="RUN").precision == "auto" and SampleSpec(run="RUN").half is False
    parser = build_parser("sample", SampleSpec)
    assert "--precision" in parser.format_help()
    spec = spec_from_args(SampleSpec, parser.parse_args(["--run", "RUN", "--precision", "fp32"]))
    assert spec.precision == "fp32"
    with pytest.raises(SystemExit):  # argparse refuses a precision that is not one of the four
        parser.parse_args(["--run", "RUN", "--precision", "fp64"])


def test_deterministic_samplers_start_where_the_log_snr_reaches_its_floor():
    """Cosine DDPM's t_max has alpha = 5e-5: DDIM / Heun / DPM-Solver start at lambda = -5.1 instead
    (diffusers' lambda_min_clipped); ancestral keeps the full chain; linear DDPM, NCSN, flow unchanged."""
    from app.engine.sampling.base import LAMBDA_MIN_DETERMINISTIC, log_snr_half

    cosine = make_process("ddpm", schedule="cosine")
    for name, steps in (("ddim", 50), ("heun", 10), ("dpmpp2m", 20)):
        times = make_sampler(name, steps).times(cosine)
        a, s = cosine.alpha_sigma(torch.tensor(times[:1]))
        assert times[0] < 1.0 and log_snr_half(float(a[0]), float(s[0])) >= LAMBDA_MIN_DETERMINISTIC - 0.05
        assert len(times) == steps and times[-1] == pytest.approx(1 / 1000)
    assert make_sampler("ancestral", 1000).times(cosine)[0] == 1.0
    for proc in (make_process("ddpm"), make_process("ncsn"), make_process("flow")):
        assert make_sampler("ddim", 10).times(proc)[0] == pytest.approx(proc.t_max)


class BiasedGaussianDenoiser(GaussianDataDenoiser):
    """The exact network plus a fixed error pattern on its output (an imperfectly trained network)."""

    def __init__(self, process, error: float, **kw):
        super().__init__(process, **kw)
        self.pattern = error * torch.randn(1, 1, self.image_size, self.image_size, generator=torch.Generator().manual_seed(5))

    def forward(self, x, level, y=None):
        return super().forward(x, level, y) + self.pattern


def test_heun_stays_on_the_data_distribution_with_an_imperfect_network_on_the_cosine_schedule():
    """Heun's grid is uniform in log(sigma / alpha): uniform in t, the first Euler step of a cosine
    DDPM goes from sigma~ 160 to 10 and multiplies any eps_hat error by ~150 (an eps error of 0.03
    gave std 0.82 for data of std 0.5, half the pixels saturated; on a trained model every image
    came out as noise)."""
    proc = make_process("ddpm", schedule="cosine")
    net = BiasedGaussianDenoiser(proc, 0.03, mean=0.0, std=0.5)
    x = generate((net, proc), 64, "heun", steps=18, seed=1)
    assert abs(float(x.std()) - 0.5) < 0.05
    assert float((np.abs(x) > 0.999).mean()) < 0.1  # N(0, 0.5^2) has 4.6 % beyond +-1


def test_ddim_keeps_the_networks_eps_beside_the_clipped_clean_estimate():
    """One DDIM step from a point whose x0_hat is out of range: x' = a' clip(x0_hat) + s' eps_hat with
    the network's own eps_hat (Song et al.'s and diffusers' update), not one re-derived from the
    clipped x0_hat, which would carry the clipped-away part of x into the next step."""
    from app.engine.sampling.base import Denoiser, ImageNoise, Monitor

    proc = make_process("ddpm", schedule="cosine")
    net = GaussianDataDenoiser(proc, mean=0.0, std=3.0)  # x0_hat often beyond +-1
    smp = make_sampler("ddim", 2)
    t0, t1 = smp.times(proc)
    den = Denoiser(net, proc)
    x = 100 * torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))  # far out: x0_hat beyond +-1
    pred = den(x, t0)
    assert float(pred.x0.abs().max()) > 1.0
    a1, s1 = den.alpha_sigma(t1)
    expected = a1 * pred.x0.clamp(-1, 1) + s1 * pred.eps

    class OneStep(Monitor):
        def step(self, t, sigma, x_now, x0):
            if t == t0:
                self.after_first = x_now.clone()

    mon = OneStep(2)
    smp.sample(den, x, ImageNoise(0, range(4)), mon)
    torch.testing.assert_close(mon.after_first, expected)


def test_generation_info_counts_network_evaluations():
    proc = make_process("ddpm")
    _, info = generate_with_info((tiny_unet(), proc), 2, "heun", steps=5)
    assert info.network_evals == 9 and info.images_per_second > 0 and info.sampler["sampler"] == "heun"


# --------------------------------------------------------------------------------------------
# the sample job, end to end through the command line
# --------------------------------------------------------------------------------------------


def make_checkpoint(workspace, process_name: str = "ddpm", num_classes: int = 2, seed: int = 0) -> str:
    """Register a run holding one checkpoint of a tiny random U-Net, written by the trainer's own writer."""
    from app.engine.training.loop import TrainSpec, write_checkpoint

    spec = TrainSpec(dataset="pneumonia-demo", process=process_name, base_channels=8, channel_mults=[1, 2],
                     num_res_blocks=1, attention_resolutions=[8], class_conditional=num_classes > 0)
    run = workspace.create_run(process_name, spec.model_dump(mode="json"), dataset="pneumonia-demo")
    net = tiny_unet(num_classes=num_classes, seed=seed)
    proc = make_process(process_name)
    meta = {"run": run.id, "epoch": 3, "step": 30, "class_names": ["normal", "pneumonia"][:num_classes],
            "num_classes": num_classes, "image_size": 16, "channels": 1, "dataset": "pneumonia-demo",
            "process": proc.config(), "net": net.config.model_dump(mode="json")}
    write_checkpoint(workspace.root / run.path / "checkpoints" / "epoch-0003", net=net, ema_net=net,
                     state={"step": 30}, spec=spec, meta=meta)
    return run.id


def _cli_json(capsys, argv: list[str]) -> tuple[int, dict]:
    import json

    from app.cli import main

    code = main(argv)
    out = capsys.readouterr().out.strip().splitlines()
    return code, json.loads(out[-1])


def test_sample_command_as_the_issue_writes_it_class_by_name_or_index_and_clear_errors(workspace, tmp_path, capsys):
    """``radsynth sample --run RUN --n N --sampler NAME --steps S --class K --guidance W --seed S --out DIR
    --format png|dicom|npz --json``: a class name and its index give the same images; an unknown class,
    and a class or a guidance on an unconditional model, fail (exit 1) with a message saying why."""
    from PIL import Image

    run_id = make_checkpoint(workspace)
    base = ["sample", "--workspace", str(workspace.root), "--run", run_id, "--n", "2", "--sampler", "ddim",
            "--steps", "3", "--guidance", "1.5", "--seed", "4", "--json", "-q"]
    arrays = {}
    for cls in ("pneumonia", "1", "0"):
        code, res = _cli_json(capsys, [*base, "--class", cls, "--out", str(tmp_path / cls), "--format", "npz"])
        assert code == 0, res
        with np.load(res["files"][0]) as z:
            arrays[cls] = z["images"]
    np.testing.assert_array_equal(arrays["pneumonia"], arrays["1"])
    assert np.abs(arrays["1"] - arrays["0"]).max() > 1e-3  # the class changes the images
    code, res = _cli_json(capsys, [*base, "--class", "normal", "--out", str(tmp_path / "png"), "--format", "png"])
    assert code == 0 and len(res["files"]) == 2 and res["class_labels"] == [0]
    assert Image.open(res["files"][0]).size == (16, 16)
    for bad in ("cat", "2"):
        code, res = _cli_json(capsys, [*base, "--class", bad, "--out", str(tmp_path / "bad"), "--format", "npz"])
        assert code == 1 and f"class '{bad}' is not a class of this model" in res["error"]
        assert "0=normal, 1=pneumonia" in res["error"]
    assert not (tmp_path / "bad").exists()

    uncond = make_checkpoint(workspace, num_classes=0)
    args = ["sample", "--workspace", str(workspace.root), "--run", uncond, "--n", "2", "--sampler", "ddim",
            "--steps", "3", "--seed", "4", "--out", str(tmp_path / "u"), "--format", "npz", "--json", "-q"]
    code, res = _cli_json(capsys, [*args, "--guidance", "2"])
    assert code == 1 and "guidance 2" in res["error"] and "unconditional" in res["error"]
    code, res = _cli_json(capsys, [*args, "--class", "1"])
    assert code == 1 and "unconditional" in res["error"] and "leave the class out" in res["error"]
    code, res = _cli_json(capsys, args)
    assert code == 0 and len(res["files"]) == 1 and res["class_labels"] is None


def test_numeric_class_names_resolve_as_index_first_then_as_name():
    from app.engine.sampling.job import resolve_class_labels

    assert resolve_class_labels(["1"], ["3", "5"], 2) == [1, 1]  # a valid index
    assert resolve_class_labels(["5", 0], ["3", "5"], 2) == [1, 0]  # not an index: the class named 5
    with pytest.raises(UserError, match="'7' is not a class.*0=3, 1=5"):
        resolve_class_labels(["7"], ["3", "5"], 1)


def test_sample_command_writes_dicom_that_reads_back_valid_and_synthetic(workspace, tmp_path, capsys):
    import pydicom

    from app.engine.export import read_dicom_provenance

    run_id = make_checkpoint(workspace)
    out = tmp_path / "dicom"
    code, res = _cli_json(capsys, ["sample", "--run", run_id, "--n", "3", "--sampler", "ddim", "--steps", "4",
                                   "--class", "pneumonia", "--guidance", "1.5", "--seed", "5", "--out", str(out),
                                   "--format", "dicom", "--batch-size", "2", "--device", "cpu", "--json", "-q"])
    assert code == 0, res
    assert res["n"] == 3 and len(res["files"]) == 3 and res["images_per_second"] > 0
    assert res["sampler"] == "ddim" and res["steps"] == 4 and res["seed"] == 5 and res["class_labels"] == [1]
    assert len(res["checkpoint_sha256"]) == 64
    uids = set()
    for f in res["files"]:
        ds = pydicom.dcmread(f)
        assert ds.pixel_array.shape == (16, 16)
        assert "SYNTHETIC" in ds.SeriesDescription and ds.ConversionType == "SYN"
        prov = read_dicom_provenance(ds)
        assert prov["checkpoint_sha256"] == res["checkpoint_sha256"] and prov["run"] == run_id
        assert prov["sampler"] == "ddim" and prov["steps"] == 4 and prov["seed"] == 5
        assert prov["image"]["class_name"] == "pneumonia" and prov["guidance"] == 1.5
        uids.add(ds.SOPInstanceUID)
    assert len(uids) == 3
    assert (out / "provenance.json").exists()


def test_sample_job_is_reproducible_and_reports_previews_progress_and_artifacts(workspace, tmp_path):
    from app.engine import jobs as J
    from app.engine.sampling.job import SampleSpec

    run_id = make_checkpoint(workspace, "flow", num_classes=0)
    arrays = []
    for i, bs in enumerate((4, 3)):
        spec = SampleSpec(run=run_id, n_images=4, sampler="heun", steps=3, seed=9, format="npz",
                          out=str(tmp_path / f"s{i}"), batch_size=bs, device="cpu", preview_every=1)
        events = J.run_collect(spec, workspace=workspace)
        assert isinstance(events[-1], J.Done), events[-1]
        kinds = {type(e).__name__ for e in events}
        assert {"Progress", "Image", "Artifact"} <= kinds
        previews = [e for e in events if isinstance(e, J.Image) and e.name == "preview"]
        assert previews and all(e.kind == "grid" for e in previews)
        with np.load(events[-1].result["files"][0]) as z:
            arrays.append(z["images"])
    np.testing.assert_allclose(arrays[0], arrays[1], atol=1e-4)


def test_sample_job_can_be_cancelled_and_refuses_bad_requests(workspace, tmp_path):
    from app.engine import jobs as J
    from app.engine.sampling.job import SampleSpec

    run_id = make_checkpoint(workspace)
    calls = {"n": 0}

    def stop():
        calls["n"] += 1
        return calls["n"] > 3

    spec = SampleSpec(run=run_id, n_images=2, sampler="ancestral", steps=100, out=str(tmp_path / "c"), device="cpu")
    assert isinstance(J.run_collect(spec, stop, workspace=workspace)[-1], J.Cancelled)
    assert not (tmp_path / "c").exists()  # nothing half-exported
    bad = SampleSpec(run=run_id, n_images=2, sampler="langevin", steps=3, out=str(tmp_path / "b"), device="cpu")
    final = J.run_collect(bad, workspace=workspace)[-1]
    assert isinstance(final, J.Failed) and "does not support the 'ddpm' process" in final.message
    bad = SampleSpec(run=run_id, n_images=2, class_label=["cat"], out=str(tmp_path / "b"), device="cpu")
    final = J.run_collect(bad, workspace=workspace)[-1]
    assert isinstance(final, J.Failed) and "'cat' is not a class" in final.message


def test_sample_job_registers_its_images_as_a_synthetic_dataset_with_their_provenance(workspace, tmp_path):
    from app.engine import jobs as J
    from app.engine.data.imagesets import load_image_set
    from app.engine.sampling.job import SampleSpec

    run_id = make_checkpoint(workspace)
    spec = SampleSpec(run=run_id, n_images=3, sampler="ddim", steps=3, seed=5, class_label=["pneumonia"],
                      guidance=1.5, format="npz", out=str(tmp_path / "s"), device="cpu", preview_every=0)
    final = J.run_collect(spec, workspace=workspace, job_id="20250101-120000-abc123")[-1]
    assert isinstance(final, J.Done), final
    name = final.result["dataset"]
    assert name == f"{run_id}-samples-abc123"
    rec = workspace.dataset(name)
    assert rec.synthetic and rec.n_images == 3 and (rec.height, rec.width) == (16, 16)
    gen = rec.meta["generated"]
    assert gen["run"] == run_id and gen["checkpoint_epoch"] == 3 and gen["sampler"] == "ddim"
    assert gen["steps"] == 3 and gen["guidance"] == 1.5 and gen["seed"] == 5
    assert gen["class_per_image"] == ["pneumonia"] * 3
    s = load_image_set(name, workspace)
    with np.load(final.result["files"][0]) as z:
        np.testing.assert_allclose(s.images, z["images"], atol=1e-6)  # the same images as the exported set
    assert s.labels.tolist() == [1, 1, 1] and s.class_names == ["normal", "pneumonia"]

    # a name of the spec's choice; a taken name fails before any sampling
    named = spec.model_copy(update={"dataset": "my-samples", "out": str(tmp_path / "t")})
    assert J.run_collect(named, workspace=workspace)[-1].result["dataset"] == "my-samples"
    again = spec.model_copy(update={"dataset": "my-samples", "out": str(tmp_path / "u")})
    final = J.run_collect(again, workspace=workspace)[-1]
    assert isinstance(final, J.Failed) and "already exists" in final.message
    assert not (tmp_path / "u").exists()
