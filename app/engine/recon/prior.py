"""The learned prior of every score-based reconstruction (MRI and CT), loaded once, and how a posterior sampler
runs: a sampler of ``app.engine.sampling`` through the one driver with the reconstruction's hooks.

``load_prior`` is the one way a recon job, the sweep and CT turn a checkpoint (run id or folder) into a
``ScorePrior``; MRI asks for 2-channel (complex) priors, CT for 1-channel ones.
"""

from __future__ import annotations

import dataclasses

import torch

from app.engine.diffusion.base import Prediction
from app.engine.errors import UserError
from app.engine.sampling.base import BatchNoise, Denoiser, Hooks, Monitor, StepContext, clip_x0, drive


@dataclasses.dataclass
class ScorePrior:
    """A trained prior: network, noise process, device (``load_prior`` builds it from a checkpoint)."""

    net: torch.nn.Module
    process: object  # app.engine.diffusion.base.Process
    device: torch.device = torch.device("cpu")
    channels: int = 2
    name: str = ""
    #: the network's intensity unit in multiples of ``image_scale``: 1 for priors trained on
    #: ``complex_training_images``, the dataset's headroom (2) for priors trained by the train job on a
    #: complex dataset (``data.preprocess.normalize_complex``)
    unit: float = 1.0


#: what each kind of reconstruction needs of a prior's images: MRI complex (real, imag), CT one channel
_CHANNEL_NEEDS = {
    2: "MRI reconstruction needs a prior trained on complex images stored as 2 channels (real, imag)",
    1: "CT needs a prior trained on 1-channel CT slices",
}


def load_prior(ref: str, workspace=None, device: str = "auto", ema: bool = True, channels: int = 2) -> ScorePrior:
    """A checkpoint of the generative engine (run id or checkpoint folder) as a reconstruction prior of
    ``channels``-channel images (2: complex MRI, 1: CT), in eval mode, usable at any image size."""
    if not ref:
        raise UserError("score-based methods need a checkpoint: give --run RUN (a run id or a checkpoint folder)")
    from app.engine.devices import resolve_device
    from app.engine.training.checkpoints import load_checkpoint

    dev = resolve_device(device)
    lm = load_checkpoint(ref, workspace=workspace, ema=ema, device=str(dev))
    have = int(getattr(lm, "channels", 1))
    if have != channels:
        raise UserError(f"checkpoint {ref!r} models {have}-channel images; {_CHANNEL_NEEDS[channels]}")
    lm.net.eval()
    unit = float(lm.meta.get("complex_headroom") or 1.0) if channels == 2 else 1.0
    return ScorePrior(any_size(lm.net), lm.process, dev, channels, str(ref), unit)


def any_size(net: torch.nn.Module) -> torch.nn.Module:
    """``net`` wrapped in ``PaddedNet`` when it is a U-Net that halves the image (any matrix size then)."""
    mults = getattr(getattr(net, "config", None), "channel_mults", None)
    return PaddedNet(net, 2 ** (len(mults) - 1)) if mults and len(mults) > 1 else net


class PaddedNet(torch.nn.Module):
    """A U-Net on images of any size: H and W are reflect-padded (centred) up to a multiple of its
    downsampling factor, and the output is cropped back. Measured k-space comes in the scanner's
    matrix size (e.g. 180 x 230), which a U-Net halving twice cannot take as it is."""

    def __init__(self, net: torch.nn.Module, multiple: int):
        super().__init__()
        self.net = net
        self.multiple = int(multiple)

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:  # num_classes, config, ...: the wrapped net's
            return getattr(super().__getattr__("net"), name)

    def forward(self, x: torch.Tensor, level: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h, w = x.shape[-2:]
        ph, pw = (-h) % self.multiple, (-w) % self.multiple
        if ph == 0 and pw == 0:
            return self.net(x, level, y)
        top, left = ph // 2, pw // 2
        padded = torch.nn.functional.pad(x, (left, pw - left, top, ph - top), mode="reflect")
        return self.net(padded, level, y)[..., top : top + h, left : left + w]


class PriorHooks(Hooks):
    """The hooks a posterior sampler starts from (``sampling.base.Hooks``): every x0_hat bounded by ``x0_clip``
    (per complex pixel for 2 channels) with eps re-derived from it (``rederive_eps``, so that x = alpha x0 +
    sigma eps holds) or the network's eps kept, bounded by ``eps_bound``; then ``x0_hook(x0, alpha, sigma)``
    (data consistency of the clean estimate) and, on every new sample, ``sample_hook(x, t, scale)``
    (data consistency of the sample x = x_t / scale)."""

    def __init__(self, process, x0_clip: float | None, channels: int, rederive_eps: bool = True,
                 eps_bound: float | None = None, x0_hook=None, sample_hook=None):
        self.process, self.x0_clip, self.channels = process, x0_clip, int(channels)
        self.rederive_eps, self.eps_bound = bool(rederive_eps), eps_bound
        self.x0_hook, self.sample_hook = x0_hook, sample_hook

    def prediction(self, pred: Prediction, x: torch.Tensor, t: float) -> Prediction:
        a, s = (float(v[0]) for v in self.process.alpha_sigma(torch.tensor([float(t)], dtype=torch.float32)))
        x0 = clip_x0(pred.x0, self.x0_clip, self.channels)
        eps = (x - a * x0) / max(s, 1e-12) if (self.rederive_eps and self.x0_clip is not None) else pred.eps
        if self.eps_bound is not None:
            eps = eps.clamp(-self.eps_bound, self.eps_bound)
        if self.x0_hook is not None:
            x0 = self.x0_hook(x0, a, s)
        return Prediction(x0=x0, eps=eps)

    def sample(self, x: torch.Tensor, t: float, scale: float = 1.0) -> torch.Tensor:
        return x if self.sample_hook is None else self.sample_hook(x, t, scale)


def posterior_run(prior: ScorePrior, x: torch.Tensor, times, hooks: Hooks, generator: torch.Generator,
                  on_step=None, eta: float = 1.0, sampler=None) -> torch.Tensor:
    """A sampler (default: DDIM with ``eta``, 1 = ancestral) through the one sampling driver from x at
    ``times[0]``, with the reconstruction's ``hooks``, noise for the whole batch from ``generator``;
    ``on_step(StepInfo)`` after every step. Returns the last step's clean estimate."""
    from app.engine.sampling.ddim import DDIMSampler

    times = [float(t) for t in times]
    sampler = sampler or DDIMSampler(steps=len(times), eta=eta, clip_x0=False)
    ctx = StepContext(Denoiser(prior.net, prior.process), BatchNoise(generator, x.shape[0], x.device), hooks)
    return drive(sampler, ctx, x, Monitor(len(times), on_step), times)
