"""The U-Net score / noise network: residual blocks with FiLM noise conditioning and low-res attention.

Architecture (Ho et al. 2020, appendix B; Dhariwal & Nichol 2021, sec. 3; Song et al. 2021, NCSN++
without the progressive parts): conv in -> per resolution level ``num_res_blocks`` residual blocks
(GroupNorm, SiLU, 3x3 conv; the noise embedding modulates the second norm by scale and shift, i.e.
FiLM / "adaptive group norm", Dhariwal & Nichol 2021 eq. in sec. 3) with self-attention at the
resolutions listed in ``attention_resolutions`` -> middle (res, attention, res) -> mirrored decoder
with skip connections -> GroupNorm, SiLU, conv out (zero-initialised).

The noise level (whatever ``process.net_level(t)`` gives, about 0..1000) goes through a
sinusoidal embedding (Vaswani et al. 2017, sec. 3.5) and a two-layer MLP. A class-conditional
net adds a learned class embedding with ``num_classes + 1`` rows; the last row is the null class
(label ``num_classes``, or y=None) used for label dropout and classifier-free guidance.

``in_channels`` is 1 for magnitude images, 2 for complex images as (real, imag).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, field_validator
from torch import nn

from app.engine.errors import UserError


class NetConfig(BaseModel):
    """Shape of a U-Net. Saved with every checkpoint; ``UNet(NetConfig(**saved))`` rebuilds it."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    image_size: int = Field(32, ge=8, le=1024, description="side of the square images the net is built for (pixels)")
    in_channels: int = Field(1, ge=1, le=8, description="image channels: 1 magnitude, 2 complex (real, imag)")
    base_channels: int = Field(64, ge=4, le=512, description="channels at the first resolution level")
    channel_mults: tuple[int, ...] = Field(
        (1, 2, 4, 8), min_length=1, max_length=7, description="channel multiplier per resolution level"
    )
    num_res_blocks: int = Field(2, ge=1, le=8, description="residual blocks per resolution level")
    attention_resolutions: tuple[int, ...] = Field(
        (16,), max_length=7, description="feature-map sides (pixels) at which self-attention is applied"
    )
    num_heads: int = Field(4, ge=1, le=32, description="attention heads")
    dropout: float = Field(0.0, ge=0.0, le=0.9, description="dropout inside residual blocks")
    num_classes: int = Field(0, ge=0, le=10_000, description="classes for conditioning (0: unconditional)")

    @field_validator("channel_mults")
    @classmethod
    def _positive(cls, v):
        if any(m < 1 for m in v):
            raise ValueError("channel multipliers must be >= 1")
        return tuple(v)

    def check(self) -> NetConfig:
        """Raise UserError when the image size cannot be halved once per level."""
        factor = 2 ** (len(self.channel_mults) - 1)
        if self.image_size % factor:
            raise UserError(
                f"image size {self.image_size} cannot be halved {len(self.channel_mults) - 1} times "
                f"(channel_mults {list(self.channel_mults)}): use a multiple of {factor} or fewer levels"
            )
        return self


def _groups(channels: int) -> int:
    """Largest group count <= 32 dividing ``channels`` (GroupNorm needs a divisor)."""
    for g in (32, 16, 8, 4, 2, 1):
        if channels % g == 0:
            return g
    return 1


def _zero(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


def sinusoidal_embedding(level: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """(B,) levels -> (B, dim): [cos(level * w_k), sin(level * w_k)], w_k = max_period^(-k / (dim/2))
    (Vaswani et al. 2017, sec. 3.5; as the timestep embedding of Ho et al. 2020)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=level.device, dtype=torch.float32) / half)
    args = level.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv, FiLM from the embedding (scale, shift), GroupNorm-SiLU-dropout-conv, skip."""

    def __init__(self, cin: int, cout: int, emb_dim: int, dropout: float):
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(cin), cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.film = nn.Linear(emb_dim, 2 * cout)
        self.norm2 = nn.GroupNorm(_groups(cout), cout)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = _zero(nn.Conv2d(cout, cout, 3, padding=1))  # the block starts as the identity
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        # SiLU in place on the fresh GroupNorm / FiLM outputs when no gradient is recorded (their
        # backward needs the input); the residual sum in place on conv2's output (its backward needs
        # neither); FiLM as one fused addcmul instead of a multiply and an add
        inplace = not torch.is_grad_enabled()
        h = self.conv1(F.silu(self.norm1(x), inplace=inplace))
        scale, shift = self.film(F.silu(emb))[:, :, None, None].chunk(2, dim=1)
        h = torch.addcmul(shift, self.norm2(h), 1 + scale)  # FiLM (Perez et al. 2018) / AdaGN (Dhariwal & Nichol 2021)
        h = self.conv2(self.dropout(F.silu(h, inplace=inplace)))
        skip = self.skip(x)
        return h.add_(skip) if skip.dtype == h.dtype else skip + h  # (autocast: the wider dtype, as before)


class Attention(nn.Module):
    """Multi-head self-attention over the pixels of a feature map, residual, output projection zeroed."""

    def __init__(self, channels: int, num_heads: int):
        super().__init__()
        heads = num_heads if channels % num_heads == 0 else 1
        self.heads = heads
        self.norm = nn.GroupNorm(_groups(channels), channels)
        # linear projections over tokens (b, hw, c): measurably faster on CPU than 1x1 convolutions
        self.qkv = nn.Linear(channels, 3 * channels)
        self.proj = _zero(nn.Linear(channels, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        tokens = self.norm(x).flatten(2).transpose(1, 2)  # (b, hw, c)
        qkv = self.qkv(tokens).reshape(b, h * w, 3, self.heads, c // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (b, heads, hw, c/heads), last dim contiguous
        out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, h * w, c)
        return x + self.proj(out).transpose(1, 2).reshape(b, c, h, w)


class Downsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x):
        return self.conv(x)


class Upsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class UNet(nn.Module):
    """``UNet(config)(x, level, y=None) -> (B, in_channels, H, W)``: the network a Process trains."""

    def __init__(self, config: NetConfig | None = None, **fields):
        super().__init__()
        config = (config or NetConfig(**fields)).check()
        self.config = config
        self.in_channels = config.in_channels
        self.num_classes = config.num_classes
        self.image_size = config.image_size
        #: memory layout: None (default) channels-last in eval mode, contiguous in training mode; True / False
        #: force one (benchmarks). Not part of the config: it changes no weight, and results only by float
        #: rounding (tests/engine/gen/test_net_speed.py)
        self.channels_last: bool | None = None
        ch = config.base_channels
        emb_dim = 4 * ch
        self.level_mlp = nn.Sequential(nn.Linear(ch, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        # num_classes + 1 rows: the last is the null class (Ho & Salimans 2022, sec. 3.2)
        self.class_emb = nn.Embedding(config.num_classes + 1, emb_dim) if config.num_classes > 0 else None
        self.conv_in = nn.Conv2d(config.in_channels, ch, 3, padding=1)

        attn_res = set(config.attention_resolutions)
        self.down = nn.ModuleList()
        skips = [ch]
        cur, res = ch, config.image_size
        n_levels = len(config.channel_mults)
        for i, mult in enumerate(config.channel_mults):
            for _ in range(config.num_res_blocks):
                block = nn.ModuleList([ResBlock(cur, ch * mult, emb_dim, config.dropout)])
                cur = ch * mult
                if res in attn_res:
                    block.append(Attention(cur, config.num_heads))
                self.down.append(block)
                skips.append(cur)
            if i < n_levels - 1:
                self.down.append(nn.ModuleList([Downsample(cur)]))
                skips.append(cur)
                res //= 2
        self.mid = nn.ModuleList(
            [ResBlock(cur, cur, emb_dim, config.dropout), Attention(cur, config.num_heads),
             ResBlock(cur, cur, emb_dim, config.dropout)]
        )
        self.up = nn.ModuleList()
        for i, mult in reversed(list(enumerate(config.channel_mults))):
            for _ in range(config.num_res_blocks + 1):
                block = nn.ModuleList([ResBlock(cur + skips.pop(), ch * mult, emb_dim, config.dropout)])
                cur = ch * mult
                if res in attn_res:
                    block.append(Attention(cur, config.num_heads))
                self.up.append(block)
            if i > 0:
                self.up.append(nn.ModuleList([Upsample(cur)]))
                res *= 2
        self.norm_out = nn.GroupNorm(_groups(cur), cur)
        self.conv_out = _zero(nn.Conv2d(cur, config.in_channels, 3, padding=1))

    def embed(self, level: torch.Tensor, y: torch.Tensor | None, batch: int) -> torch.Tensor:
        level = level.reshape(-1).expand(batch) if level.numel() == 1 else level
        emb = self.level_mlp(sinusoidal_embedding(level, self.config.base_channels))
        if self.class_emb is not None:
            if y is None:
                y = torch.full((batch,), self.num_classes, dtype=torch.long, device=emb.device)
            emb = emb + self.class_emb(y.long())
        return emb

    def uses_channels_last(self) -> bool:
        """Whether the net runs in channels-last layout: ``self.channels_last`` when set, else (None) in eval
        mode (sampling, validation, reconstruction). Measured on the CPU (benchmarks/bench_sampling.py,
        bench_training.py): channels-last speeds inference up (oneDNN convolutions, GroupNorm and the
        attention's token views without copies) and slows the training step down (its backward)."""
        return self.channels_last if self.channels_last is not None else not self.training

    def train(self, mode: bool = True) -> UNet:
        """``nn.Module.train`` that also puts the convolution weights in the layout the mode runs in
        (``uses_channels_last``), so they are not reordered at every call. Values are unchanged."""
        super().train(mode)
        fmt = torch.channels_last if self.uses_channels_last() else torch.contiguous_format
        with torch.inference_mode(False), torch.no_grad():
            for m in self.modules():
                if isinstance(m, nn.Conv2d) and not m.weight.is_contiguous(memory_format=fmt):
                    m.weight.data = m.weight.data.contiguous(memory_format=fmt)
        return self

    def forward(self, x: torch.Tensor, level: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        emb = self.embed(torch.as_tensor(level, device=x.device), y, x.shape[0]).to(x.dtype)
        channels_last = self.uses_channels_last()
        if channels_last:  # the layout follows the input through every layer
            x = x.contiguous(memory_format=torch.channels_last)
        h = self.conv_in(x)
        hs = [h]
        for block in self.down:
            for layer in block:
                h = layer(h, emb) if isinstance(layer, ResBlock) else layer(h)
            hs.append(h)
        for layer in self.mid:
            h = layer(h, emb) if isinstance(layer, ResBlock) else layer(h)
        for block in self.up:
            if isinstance(block[0], ResBlock):
                h = torch.cat([h, hs.pop()], dim=1)
            for layer in block:
                h = layer(h, emb) if isinstance(layer, ResBlock) else layer(h)
        out = self.conv_out(F.silu(self.norm_out(h), inplace=not torch.is_grad_enabled()))
        return out.contiguous() if channels_last else out


def count_parameters(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())
