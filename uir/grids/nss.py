"""Natural-scene-statistics features: a hand-made feature function for GRIDS.

A pluggable alternative to the SRResNet representation (:mod:`uir.grids.representations`
accepts any feature function). MSCN coefficients (mean-subtracted, contrast-normalised
luminance) of a clean photo follow a near-Gaussian law, and each degradation bends that law
in its own way: blur narrows it, noise widens it, JPEG and inpainting make it peaky. The
products of neighbouring coefficients capture the direction of the damage. Both are
classic GGD-fitted quality features, so they suit the GGD statistics of GRIDS eq. 1 directly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

#: horizontal, vertical and the two diagonal neighbours
NEIGHBOURS = ((0, 1), (1, 0), (1, 1), (1, -1))


def _gaussian_window(sigma: float, radius: int) -> torch.Tensor:
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    g = torch.exp(-x ** 2 / (2 * sigma ** 2))
    g = g / g.sum()
    return (g[:, None] * g[None, :])[None, None]


def mscn(gray: torch.Tensor, sigma: float = 7 / 6, radius: int = 3, c: float = 1 / 255) -> torch.Tensor:
    """``(I - mu) / (s + c)`` of (B,1,H,W) luminance, with ``mu`` and ``s`` the local mean and
    standard deviation under a Gaussian window (zero padding at the borders)."""
    window = _gaussian_window(sigma, radius).to(gray)
    mean = F.conv2d(gray, window, padding=radius)
    variance = F.conv2d(gray * gray, window, padding=radius) - mean * mean
    return (gray - mean) / (variance.clamp(min=0).sqrt() + c)


def _shifted_products(m: torch.Tensor) -> torch.Tensor:
    """(B,5,H-2,W-2): the coefficients and their products with each neighbour, on the interior."""
    h, w = m.shape[-2:]
    centre = m[..., 1:h - 1, 1:w - 1]
    maps = [centre] + [centre * m[..., 1 + dy:h - 1 + dy, 1 + dx:w - 1 + dx] for dy, dx in NEIGHBOURS]
    return torch.cat(maps, 1)


@torch.no_grad()
def nss_features(images: torch.Tensor, scales: int = 2) -> torch.Tensor:
    """(B, 5 * scales, h, w) features of (B,3,H,W) images in [0, 1]: MSCN coefficients and
    neighbour products at ``scales`` dyadic scales; coarser maps are repeated (nearest) up to
    the finest grid, so every pixel is one sample."""
    gray = (0.299 * images[:, 0:1] + 0.587 * images[:, 1:2] + 0.114 * images[:, 2:3]).float()
    maps = []
    for scale in range(scales):
        if scale:
            gray = F.avg_pool2d(gray, 2)
        features = _shifted_products(mscn(gray))
        maps.append(F.interpolate(features, scale_factor=2 ** scale, mode="nearest") if scale else features)
    height = min(m.shape[-2] for m in maps)
    width = min(m.shape[-1] for m in maps)
    return torch.cat([m[..., :height, :width] for m in maps], 1)
