"""The U-Net: shapes for every configuration, class conditioning with a null class, size of the big model."""

from __future__ import annotations

import pytest
import torch

from app.engine.jobs import UserError
from app.engine.nets.unet import NetConfig, UNet, count_parameters, sinusoidal_embedding



@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models run fastest (and do not fight other processes for the cores) on one thread."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


TINY = dict(image_size=16, base_channels=8, channel_mults=(1, 2), num_res_blocks=1, attention_resolutions=(8,))


def _perturbed(net: UNet, seed: int = 0) -> UNet:
    """Zero-initialised output layers make a fresh net output 0; give it random weights for tests."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return net


@pytest.mark.parametrize(
    "cfg",
    [
        TINY,
        dict(TINY, in_channels=2),
        dict(TINY, num_classes=3),
        dict(image_size=32, base_channels=16, channel_mults=(1, 2, 2), num_res_blocks=2, attention_resolutions=(16, 8),
             dropout=0.1, num_heads=2),
        dict(image_size=24, base_channels=8, channel_mults=(1, 2, 2, 2), num_res_blocks=1, attention_resolutions=()),
    ],
)
def test_output_has_the_input_shape_for_each_configuration(cfg):
    torch.manual_seed(0)
    net = UNet(NetConfig(**cfg))
    c = net.in_channels
    x = torch.randn(3, c, cfg["image_size"], cfg["image_size"])
    y = torch.tensor([0, 1, 2]) if net.num_classes else None
    out = net(x, torch.tensor([0.0, 500.0, 999.0]), y)
    assert out.shape == x.shape
    assert torch.isfinite(out).all()


def test_a_fresh_network_outputs_zero_so_training_starts_from_the_mean_prediction():
    net = UNet(NetConfig(**TINY))
    out = net(torch.randn(2, 1, 16, 16), torch.tensor([10.0, 900.0]))
    assert torch.count_nonzero(out) == 0


def test_class_label_changes_the_output_and_no_label_means_the_null_class():
    net = _perturbed(UNet(NetConfig(**TINY, num_classes=2))).eval()
    x = torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    level = torch.tensor([300.0, 300.0])
    out0 = net(x, level, torch.tensor([0, 0]))
    out1 = net(x, level, torch.tensor([1, 1]))
    assert (out0 - out1).abs().max() > 1e-4
    assert net.class_emb.num_embeddings == 3  # two classes plus the null class
    torch.testing.assert_close(net(x, level, None), net(x, level, torch.tensor([2, 2])))


def test_noise_level_changes_the_output():
    net = _perturbed(UNet(NetConfig(**TINY))).eval()
    x = torch.randn(1, 1, 16, 16, generator=torch.Generator().manual_seed(2))
    assert (net(x, torch.tensor([10.0])) - net(x, torch.tensor([800.0]))).abs().max() > 1e-4


def test_sinusoidal_embedding_is_distinct_per_level_and_bounded():
    emb = sinusoidal_embedding(torch.arange(0, 1000, 7).float(), 32)
    assert emb.shape == (143, 32) and emb.abs().max() <= 1.0
    dist = torch.cdist(emb, emb) + torch.eye(143) * 10
    assert dist.min() > 0.05


def test_big_256_config_has_about_fifty_million_parameters():
    cfg = NetConfig(image_size=256, base_channels=80, channel_mults=(1, 1, 2, 2, 4, 4), num_res_blocks=2,
                    attention_resolutions=(16,), num_classes=6)
    with torch.device("meta"):  # count without allocating or initialising 180 MB of weights
        net = UNet(cfg)
    n = count_parameters(net)
    assert 40e6 < n < 60e6, n


def test_image_size_that_cannot_be_halved_per_level_is_a_clear_error():
    with pytest.raises(UserError, match="multiple of 8"):
        UNet(NetConfig(image_size=28, base_channels=8, channel_mults=(1, 2, 2, 2)))


def test_config_round_trips_through_json():
    cfg = NetConfig(**TINY, num_classes=4)
    again = NetConfig.model_validate_json(cfg.model_dump_json())
    assert again == cfg
    assert count_parameters(UNet(again)) == count_parameters(UNet(cfg))
