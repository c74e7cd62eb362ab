"""The network's speed switches keep its numbers: channels-last layout, in-place ops, bfloat16 autocast.

Tolerances stated here (and in docs/ARCHITECTURE.md, "Network speed"):
- layout and in-place ops change results only by float32 rounding (1e-5 of the output's scale);
- bfloat16 autocast ("auto" precision of the training job where the device runs bf16 natively) keeps the
  DDPM training loss within 0.5 % of float32's at the same weights and noise (measured <= 0.05 % on three
  seeded tiny nets) and one network output within 3 % relative RMS (measured <= 1.5 %).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from app.engine.devices import autocast_dtype, bf16_native
from app.engine.diffusion.base import make_process
from app.engine.jobs import UserError
from app.engine.nets.unet import NetConfig, UNet

GOLDEN = Path(__file__).parents[1] / "golden"
TINY = {"image_size": 16, "base_channels": 8, "channel_mults": (1, 2), "num_res_blocks": 1, "attention_resolutions": (8,)}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _perturbed(net: UNet, seed: int = 0) -> UNet:
    """Zero-initialised output layers make a fresh net output 0; give it random weights for tests."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return net


def _convs(net: UNet) -> list[torch.Tensor]:
    return [m.weight for m in net.modules() if isinstance(m, torch.nn.Conv2d)]


def test_a_checkpoint_written_before_the_speed_work_loads_and_gives_the_same_output():
    """Weights and output recorded with the U-Net as it was before channels-last and the in-place ops."""
    from safetensors.torch import load_file

    net = UNet(NetConfig(**json.loads((GOLDEN / "unet_before_speedups.json").read_text())))
    net.load_state_dict(load_file(GOLDEN / "unet_before_speedups.safetensors"))
    io = load_file(GOLDEN / "unet_before_speedups_io.safetensors")
    scale = float(io["out"].abs().max())
    for mode in ("eval", "train"):
        getattr(net, mode)()
        with torch.no_grad():
            out = net(io["x"], io["level"], io["y"])
        torch.testing.assert_close(out, io["out"], rtol=1e-5, atol=1e-5 * scale, msg=mode)
    with torch.inference_mode():
        out = net.eval()(io["x"], io["level"], io["y"])
    torch.testing.assert_close(out, io["out"], rtol=1e-5, atol=1e-5 * scale)


def test_eval_mode_runs_channels_last_and_training_mode_contiguous_with_equal_weights():
    net = _perturbed(UNet(**TINY))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    net.eval()
    assert net.uses_channels_last()
    assert all(w.is_contiguous(memory_format=torch.channels_last) for w in _convs(net))
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), k
    net.train()
    assert not net.uses_channels_last()
    assert all(w.is_contiguous() for w in _convs(net))
    net.channels_last = True  # forced (benchmarks): the next train() lays the weights out for it
    net.train()
    assert all(w.is_contiguous(memory_format=torch.channels_last) for w in _convs(net))


def test_the_output_is_contiguous_and_the_input_untouched_by_the_in_place_ops():
    net = _perturbed(UNet(**TINY, num_classes=2)).eval()
    x = torch.randn(3, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    kept = x.clone()
    with torch.inference_mode():
        out = net(x, torch.tensor([5.0, 50.0, 500.0]), torch.tensor([0, 1, 2]))
    assert out.is_contiguous() and out.shape == x.shape
    assert torch.equal(x, kept)


def test_channels_last_gives_the_contiguous_outputs_and_gradients_within_float_rounding():
    results = []
    for cl in (False, True):
        torch.manual_seed(0)
        net = _perturbed(UNet(**TINY, in_channels=2))
        net.channels_last = cl
        net.train()
        x = torch.randn(2, 2, 16, 16, generator=torch.Generator().manual_seed(2))
        out = net(x, torch.tensor([10.0, 700.0]))
        (out**2).mean().backward()
        results.append((out.detach(), [p.grad.clone() for p in net.parameters()]))
    (o0, g0), (o1, g1) = results
    torch.testing.assert_close(o1, o0, rtol=1e-5, atol=1e-5 * float(o0.abs().max()))
    scale = max(float(g.abs().max()) for g in g0)  # of all gradients: some are ~1e-9, pure rounding
    for a, b in zip(g0, g1, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5 * scale)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bf16_autocast_keeps_the_loss_and_the_output_within_the_stated_tolerance(seed):
    torch.manual_seed(seed)
    net = _perturbed(UNet(**TINY), seed)
    process = make_process("ddpm")
    x0 = torch.rand(8, 1, 16, 16, generator=torch.Generator().manual_seed(5)) * 2 - 1
    losses = []
    for dtype in (None, torch.bfloat16):
        with torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
            losses.append(float(process.loss(net, x0, generator=torch.Generator().manual_seed(7)).loss))
    assert abs(losses[1] - losses[0]) <= 5e-3 * losses[0], losses
    net.eval()
    x = torch.randn(4, 1, 16, 16, generator=torch.Generator().manual_seed(8))
    with torch.inference_mode():
        full = net(x, torch.tensor(300.0))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            half = net(x, torch.tensor(300.0)).float()
    rel_rms = float(((half - full) ** 2).mean().sqrt() / (full**2).mean().sqrt())
    assert 0 < rel_rms <= 0.03  # bf16 did run (not bitwise float32), and stayed within the tolerance


def test_precision_names_map_to_autocast_dtypes_and_auto_follows_the_hardware():
    cpu = torch.device("cpu")
    assert autocast_dtype("fp32", cpu) is None
    assert autocast_dtype("bf16", cpu) is torch.bfloat16
    assert autocast_dtype("fp16", cpu) is torch.float16
    assert autocast_dtype("auto", cpu) is (torch.bfloat16 if bf16_native(cpu) else None)
    with pytest.raises(UserError, match="precision 'half' is not one of auto, fp32, bf16, fp16"):
        autocast_dtype("half", cpu)
