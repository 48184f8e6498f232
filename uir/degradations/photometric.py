"""Illumination and atmosphere: haze, low light, darkness and cast shadows."""

from __future__ import annotations

import math

import torch

from .filters import pixel_grid, rand, randn_like, smooth_field


def depth_proxy(image, generator, max_depth):
    """Scene-depth proxy in ``[0, max_depth]`` (B,1,H,W): a ramp that is far at the top of the
    frame (0.6) plus a smooth random field (0.4), as outdoor scenes tend to be."""
    b, _, h, w = image.shape
    y, _ = pixel_grid(h, w, image)
    ramp = 1.0 - y / max(h - 1, 1)
    field = smooth_field(b, h, w, generator, image)
    return max_depth * (0.6 * ramp + 0.4 * field)


def haze(image, generator, beta, airlight, max_depth=1.0):
    """Atmospheric scattering model ``I = J t + A (1 - t)``, ``t = exp(-beta d)`` with the
    depth proxy ``d`` of :func:`depth_proxy` and global airlight ``A``."""
    transmission = torch.exp(-beta * depth_proxy(image, generator, max_depth))
    return image * transmission + airlight * (1.0 - transmission)


def darkness(image, generator, gamma):
    """Gamma darkening ``y = x^gamma`` (MATLAB ``imadjust`` with gamma > 1, as in LIRA)."""
    return image.clamp(min=0) ** gamma


def low_light(image, generator, gamma, scale, noise):
    """Under-exposure: ``y = s x^gamma + n`` with heteroscedastic sensor noise
    ``n ~ N(0, noise^2 * y_0 + (noise/4)^2)`` (shot plus read noise), ``y_0 = s x^gamma``."""
    dark = scale * darkness(image, generator, gamma)
    std = torch.sqrt(noise**2 * dark + (noise / 4.0) ** 2)
    return dark + std * randn_like(image, generator)


#: the class of cast shadows, which a router's shadow detector finds (:mod:`uir.networks.shadows`)
SHADOW_CLASS = "shadowed"


def shadow(image, generator, attenuation, softness, vertices):
    """A cast shadow: ``y = x (1 - a m)`` with a soft mask ``m`` of a random star-shaped region.

    The region is centred at a random point; its boundary radius ``r(theta)`` is interpolated
    linearly between ``vertices`` random radii at sorted random angles. The mask is
    ``sigmoid((r(theta) - |p - c|) / softness)``, a penumbra ``softness`` px wide.
    """
    b, _, h, w = image.shape
    y, x = pixel_grid(h, w, image)
    short = min(h, w)
    centre = rand((b, 2), generator, image) * torch.tensor([h, w]).to(image)
    radii = short * (0.25 + 0.45 * rand((b, vertices), generator, image))
    angles, order = torch.sort(rand((b, vertices), generator, image) * 2 * math.pi, dim=1)
    radii = torch.gather(radii, 1, order)
    # wrap the polygon: one vertex before 0 and one after 2 pi
    angles = torch.cat([angles[:, -1:] - 2 * math.pi, angles, angles[:, :1] + 2 * math.pi], 1)
    radii = torch.cat([radii[:, -1:], radii, radii[:, :1]], 1)
    dy = y.unsqueeze(0) - centre[:, 0, None, None]
    dx = x.unsqueeze(0) - centre[:, 1, None, None]
    theta = torch.atan2(dy, dx).remainder(2 * math.pi).reshape(b, -1)
    hi = torch.searchsorted(angles.contiguous(), theta.contiguous()).clamp(1, angles.shape[1] - 1)
    a0, a1 = torch.gather(angles, 1, hi - 1), torch.gather(angles, 1, hi)
    r0, r1 = torch.gather(radii, 1, hi - 1), torch.gather(radii, 1, hi)
    boundary = (r0 + (theta - a0) / (a1 - a0).clamp(min=1e-6) * (r1 - r0)).reshape(b, h, w)
    mask = torch.sigmoid((boundary - torch.sqrt(dy**2 + dx**2)) / max(softness, 1e-3)).unsqueeze(1)
    return image * (1.0 - attenuation * mask)
