"""NAFNet: a nonlinear-activation-free U-Net restorer, in plain torch.

Each block is ``x + beta * project(SCA(SimpleGate(depthwise(expand(LN(x))))))`` followed by
``y + gamma * ffn_project(SimpleGate(ffn_expand(LN(y))))``, where SimpleGate splits the
channels in two halves and multiplies them, and SCA scales channels by a 1x1 conv of their
global average. ``beta`` and ``gamma`` start at zero, so every block starts as the identity.
Encoders halve the resolution with a stride-2 2x2 conv and double the channels; decoders undo
it (:data:`UPSAMPLINGS`) and add the encoder skip. The output adds the input
(global residual), so the network predicts a correction; with another ``out_channels`` it maps
the image to that many planes instead (:class:`PlaneMap`: one).

The 1x1 convolutions (``expand``, ``project``, ``ffn_expand``, ``ffn_project``) and the
``intro``/``ending`` convs are where uir's LoRA experts go (:data:`EXPERT_TARGETS`).

:class:`uir.models.NAFNet` is this network as a diffusers model (config, ``from_pretrained``,
PEFT adapters); :mod:`uir.pipelines.runtime` builds this class directly, without diffusers.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: PEFT ``target_modules`` suffixes for LoRA experts on a NAFNet (all are groups=1 convs).
EXPERT_TARGETS = ("intro", "ending", "expand", "project", "ffn_expand", "ffn_project")


class LayerNorm2d(nn.Module):
    """LayerNorm over the channels of every pixel of (B,C,H,W).

    Without autograd (inference) it is one fused ``layer_norm`` kernel over the channels-last
    view, which on a channels-last input (how the pipelines run) is contiguous, and faster
    (docs/performance.md). With autograd it
    is spelled out: per-sample second-order gradients (``torch.func``, GEF's L_orthog) through
    the fused kernel differ from plain autograd's by 1e-4 relative in float64 (torch 2.14)."""

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(1, channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x):
        if not torch.is_grad_enabled():
            normed = F.layer_norm(x.permute(0, 2, 3, 1), x.shape[1:2], self.weight.view(-1), self.bias.view(-1),
                                  self.eps)
            return normed.permute(0, 3, 1, 2)
        mean = x.mean(1, keepdim=True)
        var = (x - mean).pow(2).mean(1, keepdim=True)
        return (x - mean) * torch.rsqrt(var + self.eps) * self.weight + self.bias


def channels_last_input(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``x`` on ``net``'s device and dtype, laid out channels-last (NHWC), as inference runs a
    network of convolutions: faster on CPU for NAFNet (docs/performance.md). Outside training,
    ``net``'s weights are converted to that layout too, in place (a no-op once they are)."""
    if not net.training:
        net.to(memory_format=torch.channels_last)
    weight = next(net.parameters())
    return x.to(device=weight.device, dtype=weight.dtype).contiguous(memory_format=torch.channels_last)


#: without autograd, a block runs in bands of rows whose widest map (the expansion) holds about
#: this many values (8 MiB in float32), so that each band's maps stay in the CPU's cache
BAND_VALUES = 1 << 21


class NAFBlock(nn.Module):
    """One NAFNet block (see the module docstring).

    Only the 3x3 depthwise conv mixes neighbouring pixels, and only the channel attention (SCA)
    sees the whole map; the rest is per pixel. So without autograd, a map taller than a band
    (:data:`BAND_VALUES`) runs band by band: each band of ``SimpleGate(depthwise(...))`` with a
    one-row halo, then SCA over the whole map, then the per-pixel rest band by band. The output
    is the whole map's up to float rounding, and the full-resolution maps stay in cache
    (docs/performance.md)."""

    def __init__(self, channels: int, expansion: int = 2):
        super().__init__()
        hidden = channels * expansion
        self.norm1, self.norm2 = LayerNorm2d(channels), LayerNorm2d(channels)
        self.expand = nn.Conv2d(channels, hidden, 1)
        self.depthwise = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)
        self.attention = nn.Conv2d(hidden // 2, hidden // 2, 1)
        self.project = nn.Conv2d(hidden // 2, channels, 1)
        self.ffn_expand = nn.Conv2d(channels, hidden, 1)
        self.ffn_project = nn.Conv2d(hidden // 2, channels, 1)
        self.beta = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.gamma = nn.Parameter(torch.zeros(1, channels, 1, 1))

    @staticmethod
    def gate(x, out=None):
        """SimpleGate: the product of the two channel halves."""
        a, b = x.chunk(2, dim=1)
        return torch.mul(a, b, out=out)

    def expanded(self, x):
        """``depthwise(expand(LN(x)))``: the one part that mixes neighbouring pixels (3x3)."""
        return self.depthwise(self.expand(self.norm1(x)))

    def pointwise(self, x, y, scale, out=None):
        """``x + beta * project(y * scale)``, then ``+ gamma * ffn_project(SimpleGate(ffn_expand(LN(.))))``."""
        x = torch.addcmul(x, self.beta, self.project(y * scale))  # x + beta * project(y), one pass
        return torch.addcmul(x, self.gamma, self.ffn_project(self.gate(self.ffn_expand(self.norm2(x)))), out=out)

    def forward(self, x):
        height = x.shape[-2]
        rows = max(1, BAND_VALUES // (self.depthwise.out_channels * x.shape[-1]))
        if torch.is_grad_enabled() or rows >= height:
            y = self.gate(self.expanded(x))
            return self.pointwise(x, y, self.attention(y.mean(dim=(2, 3), keepdim=True)))
        shape = (x.shape[0], self.attention.in_channels, height, x.shape[-1])
        y = torch.empty(shape, dtype=x.dtype, device=x.device, memory_format=torch.channels_last)
        for top in range(0, height, rows):
            first = max(top - 1, 0)  # a row of halo on each side of the band; the image edge pads as before
            band = self.expanded(x[:, :, first : top + rows + 1])
            self.gate(band[:, :, top - first : top - first + rows], out=y[:, :, top : top + rows])
        scale = self.attention(y.mean(dim=(2, 3), keepdim=True))
        out = torch.empty_like(x)
        for top in range(0, height, rows):
            self.pointwise(x[:, :, top : top + rows], y[:, :, top : top + rows], scale, out=out[:, :, top : top + rows])
        return out


#: how a decoder doubles the resolution and halves the channels. ``pixel-shuffle`` (the published
#: NAFNet): a 1x1 conv to twice the channels, then PixelShuffle(2), which puts four different
#: channels at the four pixels of every 2x2 cell, so even a flat map comes back with a
#: 2-px pattern (the periodic grid of docs/default-model.md). ``bilinear``: a 1x1 conv to half
#: the channels, then bilinear interpolation (the two commute), which maps a flat map to a flat
#: one.
UPSAMPLINGS = ("pixel-shuffle", "bilinear")


def upsampler(channels: int, upsampling: str) -> nn.Module:
    """A decoder's upsampling from ``channels`` to ``channels // 2`` at twice the resolution."""
    if upsampling == "pixel-shuffle":
        return nn.Sequential(nn.Conv2d(channels, channels * 2, 1, bias=False), nn.PixelShuffle(2))
    if upsampling == "bilinear":
        return nn.Sequential(nn.Conv2d(channels, channels // 2, 1, bias=False),
                             nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False))
    raise ValueError(f"upsampling must be one of {', '.join(UPSAMPLINGS)}, got {upsampling!r}")


def bilinear_from_pixel_shuffle(up: nn.Sequential) -> nn.Sequential:
    """The ``bilinear`` upsampler nearest a trained ``pixel-shuffle`` one, without retraining:
    output channel ``c`` gets the mean of the 1x1 weights of the four channels PixelShuffle
    spreads over one 2x2 cell as ``c``. Its map before the interpolation is exactly the
    pixel-shuffle output averaged over each 2x2 cell (the four phases of the grid), since both
    are linear; the interpolation then brings it back to full size without the pattern."""
    weight = up[0].weight.detach()
    channels = weight.shape[1]
    bilinear = upsampler(channels, "bilinear").to(weight)
    bilinear[0].weight.data.copy_(weight.view(channels // 2, 4, channels, 1, 1).mean(1))
    return bilinear


class NAFNet(nn.Module):
    """A NAFNet image restorer; inputs and outputs are (B,C,H,W) in [0, 1].

    Args:
        in_channels: image channels.
        width: channels at full resolution (doubled at each level).
        encoder_blocks: blocks per encoder level (its length is the number of levels).
        middle_blocks: blocks at the lowest resolution.
        decoder_blocks: blocks per decoder level, same length as ``encoder_blocks``.
        upsampling: the decoders' upsampling, one of :data:`UPSAMPLINGS`.
        out_channels: output channels; ``None``: ``in_channels``, with the global residual. Any
            other number makes a plain map of the image, without the residual (a mask predictor,
            :class:`uir.networks.drops.DropDetector`).

    Input sizes must be multiples of ``size_multiple`` (``2 ** levels``); the pipelines pad.
    """

    expert_targets = EXPERT_TARGETS
    dlnet_split = "ending"  # DL-Net: z is the last feature map, h the output conv plus the residual

    def __init__(self, in_channels: int = 3, width: int = 16, encoder_blocks: tuple = (1, 1, 2),
                 middle_blocks: int = 2, decoder_blocks: tuple = (1, 1, 1), upsampling: str = "pixel-shuffle",
                 out_channels: int | None = None):
        super().__init__()
        if len(encoder_blocks) != len(decoder_blocks):
            raise ValueError("encoder_blocks and decoder_blocks need the same number of levels")
        self.intro = nn.Conv2d(in_channels, width, 3, padding=1)
        self.residual = out_channels is None
        self.ending = nn.Conv2d(width, in_channels if self.residual else out_channels, 3, padding=1)
        self.encoders, self.downs, self.ups, self.decoders = (nn.ModuleList() for _ in range(4))
        channels = width
        for count in encoder_blocks:
            self.encoders.append(nn.Sequential(*(NAFBlock(channels) for _ in range(count))))
            self.downs.append(nn.Conv2d(channels, channels * 2, 2, stride=2))
            channels *= 2
        self.middle = nn.Sequential(*(NAFBlock(channels) for _ in range(middle_blocks)))
        for count in decoder_blocks:
            self.ups.append(upsampler(channels, upsampling))
            channels //= 2
            self.decoders.append(nn.Sequential(*(NAFBlock(channels) for _ in range(count))))

    def use_bilinear_upsampling(self) -> None:
        """Turn a trained network's ``pixel-shuffle`` upsamplers into ``bilinear`` ones in place
        (:func:`bilinear_from_pixel_shuffle`): the cure for the periodic grid of a network
        already trained, measured in docs/default-model.md. The experts' layers
        (:data:`EXPERT_TARGETS`) are not touched."""
        if not all(isinstance(up[-1], nn.PixelShuffle) for up in self.ups):
            raise ValueError("this NAFNet's upsampling is already bilinear")
        if not all(type(up[0]) is nn.Conv2d for up in self.ups):
            raise ValueError("an adapter is installed on this NAFNet's upsampling; it cannot be converted")
        for i, up in enumerate(self.ups):
            self.ups[i] = bilinear_from_pixel_shuffle(up)

    @property
    def time_condition_blocks(self) -> list[str]:
        """Every NAFBlock: where :class:`~uir.dte.TimeConditionedRestorer` adds the timestep."""
        return [name for name, module in self.named_modules() if isinstance(module, NAFBlock)]

    @property
    def size_multiple(self) -> int:
        return 2 ** len(self.downs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if h % self.size_multiple or w % self.size_multiple:
            raise ValueError(f"NAFNet input {h}x{w} is not a multiple of {self.size_multiple}; pad it first")
        feature = self.intro(x)
        skips = []
        for encoder, down in zip(self.encoders, self.downs):
            feature = encoder(feature)
            skips.append(feature)
            feature = down(feature)
        feature = self.middle(feature)
        for decoder, up, skip in zip(self.decoders, self.ups, reversed(skips)):
            feature = decoder(up(feature).add_(skip))  # in place: the fresh upsampled map, no third map
        out = self.ending(feature)
        return out.add_(x) if self.residual else out


class PlaneMap(nn.Module):
    """A NAFNet (``bilinear`` upsampling, no global residual) that maps RGB images to one plane of
    logits, ``self.net``: the network of the router's detectors
    (:class:`~uir.networks.drops.DropDetector`, :class:`~uir.networks.shadows.ShadowDetector`).

    Args: those of :class:`NAFNet` (``width``, ``encoder_blocks``, ``middle_blocks``,
    ``decoder_blocks``), for RGB inputs."""

    def __init__(self, width: int = 16, encoder_blocks: tuple = (1, 1, 1, 1), middle_blocks: int = 1,
                 decoder_blocks: tuple = (1, 1, 1, 1)):
        super().__init__()
        self.net = NAFNet(3, width, tuple(encoder_blocks), middle_blocks, tuple(decoder_blocks), "bilinear",
                          out_channels=1)


__all__ = ["BAND_VALUES", "EXPERT_TARGETS", "UPSAMPLINGS", "LayerNorm2d", "NAFBlock", "NAFNet", "PlaneMap", "bilinear_from_pixel_shuffle",
           "channels_last_input", "upsampler"]
