"""MSRResNet: an SRResNet without batch norm, as a diffusers model (GRIDS sec. 4.2).

``first conv -> ReLU -> num_blocks x (x + conv(ReLU(conv(x)))) -> PixelShuffle x2 per octave
-> conv -> ReLU -> conv``, plus the bilinear upsampling of the input (global residual).
GRIDS reads its *deep degradation representations* from the residual trunk:
:meth:`SRResNet.degradation_features` returns the trunk output.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin
from diffusers.loaders import PeftAdapterMixin
from diffusers.configuration_utils import register_to_config
from torch import nn


class ResidualBlock(nn.Module):
    """``x + conv(ReLU(conv(x)))``, no batch norm."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x):
        return x + self.conv2(F.relu(self.conv1(x)))


class SRResNet(ModelMixin, ConfigMixin, PeftAdapterMixin):
    """Super-resolves (B,C,H,W) in [0, 1] by ``scale`` (a power of 2).

    Args:
        channels: feature width of the trunk.
        num_blocks: residual blocks in the trunk.
        scale: upscaling factor, 1 (a same-size restorer), 2, 4, 8...

    At ``scale=1`` it is a registered backbone (``srresnet`` in :mod:`uir.backbones`); the
    attributes below are that protocol's.
    """

    size_multiple = 1
    expert_targets = ("first", "conv1", "conv2", "hr_conv", "last")
    dlnet_split = "last"  # DL-Net: z is the last feature map, h the output conv plus the base

    @property
    def time_condition_blocks(self) -> list[str]:
        """DTE: every residual block of the trunk."""
        return [f"trunk.{i}" for i in range(len(self.trunk))]

    @register_to_config
    def __init__(self, in_channels: int = 3, channels: int = 64, num_blocks: int = 16, scale: int = 4):
        super().__init__()
        octaves = math.log2(scale)
        if scale < 1 or octaves != int(octaves):
            raise ValueError(f"scale must be a power of 2, got {scale}")
        self.first = nn.Conv2d(in_channels, channels, 3, padding=1)
        self.trunk = nn.Sequential(*(ResidualBlock(channels) for _ in range(num_blocks)))
        self.upsample = nn.Sequential(*(
            nn.Sequential(nn.Conv2d(channels, 4 * channels, 3, padding=1), nn.PixelShuffle(2), nn.ReLU())
            for _ in range(int(octaves))))
        self.hr_conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.last = nn.Conv2d(channels, in_channels, 3, padding=1)

    def degradation_features(self, x: torch.Tensor) -> torch.Tensor:
        """The trunk output (B, channels, H, W): GRIDS' deep degradation representation."""
        return self.trunk(F.relu(self.first(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.upsample(self.degradation_features(x))
        out = self.last(F.relu(self.hr_conv(features)))
        scale = self.config.scale
        base = x if scale == 1 else F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False)
        return base + out
