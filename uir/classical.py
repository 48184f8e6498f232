"""Classical restorers, in plain torch: physical priors the expected-gain rule may choose instead
of, or together with, a network (:mod:`uir.lora.strategies`), and that a prior-guided expert
refines (``train_uir_lora.py --prior_input``).

**Dark channel prior** (He, Sun and Tang, CVPR 2009). In a haze-free outdoor photo most patches
have a pixel dark in some channel. Haze follows ``I = J t + A (1 - t)``, so the dark channel of
``I / A`` estimates ``1 - t``::

    dark(x)  = min over a patch of (min over channels of x)
    A        = per channel, the brightest input pixel among the 0.1% with the highest dark channel
    t        = 1 - omega * dark(I / A)
    J        = (I - A) / max(t, t0) + A

``omega < 1`` keeps a little haze for depth, as the paper does. There is no soft-matting or
guided-filter refinement of ``t``: the same as ``benchmarks/peers.py``'s OpenCV version, the
classical tool uir is measured against.

**Veil bound** (our addition, the dark channel's argument for a global veil). Snow whitens a
photo by a veil ``y = (1 - v) x + W v`` before its flakes. Since ``x >= 0``, every pixel of ``y``
is at least ``W v``, so the image's darkest pixels cap the veil: ``v <= v_max = dark / W``, with
``dark`` the 0.1% quantile of the channel minimum (a few noisy or flaked pixels do not move it).
A restoration ``x'`` removed the veil ``v' = median((y - x') / (W - x'))`` over its pixels below
0.7 (flakes are few, and bright pixels divide by almost nothing). Where ``v' > v_max`` it
removed more than the image can hold, and :func:`veil_bound` puts the excess back: the veil
``d`` with ``(1 - v') = (1 - v_max)(1 - d)``, so that ``y`` is ``v_max`` of veil over the result.

Haze is a veil too, of thickness ``1 - t`` towards ``A``, and the dark channel is its local
cap: ``t >= t_min = 1 - dark(I / A)``. With ``t`` between ``t_min`` and 1, ``J = A + (I - A) / t``
lies between ``I`` itself and the dark channel's restoration at ``omega = 1``;
:func:`airlight_bound` clamps a restoration into that range, pixel by pixel.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Callable

import torch
import torch.nn.functional as F

from .degradations.weather import SNOW_VEIL_WHITE


def dark_channel(image: torch.Tensor, patch: int = 15) -> torch.Tensor:
    """(B,1,H,W): the minimum over the channels and a ``patch x patch`` window (edges replicated)
    of (B,C,H,W) images."""
    darkest = image.amin(dim=1, keepdim=True)
    pad = patch // 2
    return -F.max_pool2d(F.pad(-darkest, (pad, pad, pad, pad), mode="replicate"), patch, stride=1)


def dark_channel_dehaze(image: torch.Tensor, omega: float = 0.85, patch: int = 15, t0: float = 0.1) -> torch.Tensor:
    """Dehaze (B,3,H,W) images in [0, 1] by the dark channel prior (module docstring). ``omega``
    0.85: the setting ``benchmarks/peers.py`` chose for the hazy type on training photos."""
    dark = dark_channel(image, patch).flatten(1)
    count = max(1, dark.shape[1] // 1000)
    brightest = dark.topk(count, dim=1).indices
    pixels = image.flatten(2)
    airlight = pixels.gather(2, brightest[:, None].expand(-1, image.shape[1], -1)).amax(2).clamp(min=1e-3)
    airlight = airlight[:, :, None, None]
    transmission = 1 - omega * dark_channel(image / airlight, patch)
    return ((image - airlight) / transmission.clamp(min=t0) + airlight).clamp(0, 1)


def bilateral_filter(image: torch.Tensor, sigma_color: float = 50 / 255, sigma_space: float = 5.0,
                     diameter: int = 9) -> torch.Tensor:
    """Bilateral filter (Tomasi and Manduchi, ICCV 1998) of (B,C,H,W) images, as OpenCV's
    ``bilateralFilter`` defines it for colour images: each pixel becomes the mean of the pixels
    ``q`` within a disc of radius ``diameter // 2`` (edges mirrored), weighted by
    ``exp(-|p - q|^2 / (2 sigma_space^2)) * exp(-d^2 / (2 sigma_color^2))``, ``d`` the sum over
    the channels of ``|I(p) - I(q)|``. The defaults are the setting ``benchmarks/peers.py`` chose
    for the jpeg-compressed type on training photos."""
    radius = diameter // 2
    height, width = image.shape[-2:]
    padded = F.pad(image, (radius,) * 4, mode="reflect")
    total = torch.zeros_like(image)
    norm = torch.zeros_like(image[:, :1])
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            if dy * dy + dx * dx > radius * radius:
                continue
            shifted = padded[..., radius + dy : radius + dy + height, radius + dx : radius + dx + width]
            distance = (shifted - image).abs().sum(1, keepdim=True)
            weight = torch.exp(-(dy * dy + dx * dx) / (2 * sigma_space**2) - distance**2 / (2 * sigma_color**2))
            total += weight * shifted
            norm += weight
    return total / norm


def veil_bound(degraded: torch.Tensor, restored: torch.Tensor, white: float, quantile: float = 0.001) -> torch.Tensor:
    """``restored`` (B,3,H,W) with the veil it removed from ``degraded`` capped at what the
    degraded image's darkest pixels allow (module docstring); images within the cap unchanged."""
    out = restored.clone()
    for i, (y, x) in enumerate(zip(degraded.float(), restored.float())):
        darkest = y.amin(0).flatten()
        k = max(1, int(quantile * darkest.numel()))
        v_max = float(darkest.kthvalue(k).values.clamp(min=0)) / white
        below = x < 0.7
        if not bool(below.any()) or v_max >= 1:
            continue
        removed = float(((y - x)[below] / (white - x[below])).median().clamp(max=0.99))
        if removed > v_max:
            d = 1 - (1 - removed) / (1 - v_max)
            out[i] = ((1 - d) * x + white * d).to(out)
    return out


def airlight_bound(degraded: torch.Tensor, restored: torch.Tensor, t0: float = 0.01) -> torch.Tensor:
    """``restored`` (B,3,H,W) clamped, pixel by pixel, between the hazy ``degraded`` image and its
    dark-channel restoration at ``omega = 1`` (module docstring): no more haze removed than the
    dark channel allows, and none added."""
    hazy = degraded.float()
    most = dark_channel_dehaze(hazy, omega=1.0, t0=t0)
    low, high = torch.minimum(hazy, most), torch.maximum(hazy, most)
    return torch.maximum(torch.minimum(restored.float(), high), low).to(restored)


#: the veil bound of each degradation class whose model veils the photo: a global veil for
#: snow (:func:`veil_bound`), the airlight for haze (:func:`airlight_bound`); each maps
#: ``(degraded, restored)`` to the restored images within the bound
VEIL_BOUNDS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "snowy": partial(veil_bound, white=SNOW_VEIL_WHITE),
    "hazy": airlight_bound,
}


@dataclass(frozen=True)
class Prior:
    """A classical restorer for one degradation class: its ``name`` as users read it, and
    ``restore``, (B,3,H,W) in [0, 1] to the same."""

    name: str
    restore: Callable[[torch.Tensor], torch.Tensor]


#: the classical prior of each degradation class that has one; the expected-gain rule may give
#: it a share of an image the router calls that class (:mod:`uir.lora.strategies`)
PRIORS = {"hazy": Prior("dark-channel prior", dark_channel_dehaze),
          "jpeg-compressed": Prior("bilateral filter", bilateral_filter)}


__all__ = ["PRIORS", "VEIL_BOUNDS", "Prior", "airlight_bound", "bilateral_filter", "dark_channel", "dark_channel_dehaze",
           "veil_bound"]
