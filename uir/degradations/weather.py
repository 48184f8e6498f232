"""Weather degradations synthesised in layers: rain streaks, snow and raindrops on the lens."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .filters import capsule_kernel, filter2d, gaussian_kernel, pixel_grid, rand

# (size scale, density scale, opacity) of the near, middle and far particle layers
_RAIN_LAYERS = ((1.0, 1.0, 1.0), (0.6, 1.5, 0.6))
_SNOW_LAYERS = ((1.0, 1.0, 0.95), (0.6, 2.0, 0.75), (0.35, 4.0, 0.55))
#: the grey level snow's veil whitens towards (:func:`snow`)
SNOW_VEIL_WHITE = 0.9


def _particle_layer(image, generator, density, kernel):
    """Sparse seeds of random brightness in (0.5, 1], splatted with a peak-1 ``kernel``: (B,1,H,W) in [0, 1]."""
    b, _, h, w = image.shape
    seeds = (rand((b, 1, h, w), generator, image) < density).to(image)
    seeds = seeds * (0.5 + 0.5 * rand((b, 1, h, w), generator, image))
    return filter2d(seeds, kernel).clamp(0.0, 1.0)


def rain(image, generator, density, length, angle, intensity):
    """Rain streaks: ``y = x + (1 - x) * intensity * S`` (screen blend, streaks add light).

    ``S`` is the sum of two layers of streak seeds (near and far), each drawn with density
    ``density`` (per pixel) and splatted with a thin capsule ``length`` px long, tilted by
    ``angle`` degrees from vertical.
    """
    streaks = torch.zeros_like(image[:, :1])
    for size, dens, opacity in _RAIN_LAYERS:
        kernel = capsule_kernel(0.6, length * size, 90.0 + angle)
        streaks = streaks + opacity * _particle_layer(image, generator, density * dens, kernel)
    return image + (1.0 - image) * intensity * streaks.clamp(0.0, 1.0)


def snow(image, generator, density, flake_size, angle, veil):
    """Snow: a whitening veil ``x' = (1 - v) x + W v`` (``W``: :data:`SNOW_VEIL_WHITE`) then three
    flake layers composited towards white, ``y = (1 - S_l) y + S_l`` from far to near. Flakes are
    Gaussian blobs of sigma ``flake_size * scale`` smeared over ``3 sigma`` along the fall
    direction ``angle``."""
    out = image * (1.0 - veil) + SNOW_VEIL_WHITE * veil
    for size, dens, opacity in reversed(_SNOW_LAYERS):
        sigma = flake_size * size
        kernel = capsule_kernel(sigma, 3.0 * sigma, 90.0 + angle)
        layer = opacity * _particle_layer(image, generator, density * dens, kernel)
        out = out * (1.0 - layer) + layer
    return out


#: the vocabulary entry raindrops on the lens are (:func:`raindrops`)
RAINDROP_CLASS = "raindrop"
#: the largest extent of a drop, in units of its radius (the ellipse's aspect is at most 1.2)
_DROP_EXTENT = 1.2


def _drops(image, generator, drops, radius, frame):
    """The drops of :func:`raindrops`: ``(alpha, source rows, source columns)``, each (B,1,H,W)."""
    b, _, h, w = image.shape
    y, x = pixel_grid(h, w, image)
    y, x = y.expand(b, 1, h, w), x.expand(b, 1, h, w)
    alpha = torch.zeros_like(y)
    src_y, src_x = y.clone(), x.clone()
    size = radius * min(frame or (h, w))
    reach_y = reach_x = 0.0
    if frame is not None:  # the photo's drops that reach the crop
        reach = _DROP_EXTENT * size
        span_y, span_x = min(h + 2 * reach, frame[0]), min(w + 2 * reach, frame[1])
        reach_y, reach_x = (span_y - h) / 2, (span_x - w) / 2
        share = drops * span_y * span_x / (frame[0] * frame[1])
        drops = int(share) + int(float(rand((), generator, image)) < share % 1)
    for _ in range(drops):
        params = rand((b, 5, 1, 1), generator, image)
        cy = params[:, :1] * (h + 2 * reach_y) - reach_y
        cx = params[:, 1:2] * (w + 2 * reach_x) - reach_x
        r = size * (0.5 + 0.5 * params[:, 2:3])
        aspect = 0.8 + 0.4 * params[:, 3:4]
        rho = torch.sqrt(((y - cy) / (r * aspect)) ** 2 + ((x - cx) / r) ** 2)
        a = ((1.0 - rho) / 0.3).clamp(0.0, 1.0) * (0.85 + 0.15 * params[:, 4:5])
        take = a > alpha
        alpha = torch.where(take, a, alpha)
        src_y = torch.where(take, cy - 0.5 * (y - cy), src_y)
        src_x = torch.where(take, cx - 0.5 * (x - cx), src_x)
    return alpha, src_y, src_x


def raindrops(image, generator, drops, radius, blur, frame=None):
    """Water drops on the lens. Each drop is an ellipse whose alpha falls off softly at its
    rim; inside it the scene is seen through a lens: a blurred, flipped and demagnified copy
    ``J(c - 0.5 (p - c))`` of the surroundings, slightly brightened. The drop with the highest
    alpha wins at each pixel; ``y = (1 - a) x + a (0.9 J + 0.1)``.

    ``radius`` is a fraction of the photo's shorter side (each drop draws 50-100 % of it) and
    ``drops`` the number on the photo; ``blur`` is the Gaussian sigma of the defocused drop
    content. ``frame``: the (H, W) of the photo ``image`` is a crop of. Its drops are then
    those of the photo that can reach the crop: the photo's radius, centres anywhere within a
    drop's reach of the crop (clipped to the photo's size), and of the photo's ``drops`` the
    share that this area is of the photo (rounded at random). What a drop shows comes from the
    crop (clamped at its border), as the photo's drops see only the photo.
    """
    h, w = image.shape[-2:]
    alpha, src_y, src_x = _drops(image, generator, drops, radius, frame)
    grid = torch.cat([src_x / max(w - 1, 1), src_y / max(h - 1, 1)], 1).permute(0, 2, 3, 1) * 2 - 1
    seen = F.grid_sample(filter2d(image, gaussian_kernel(blur)), grid, mode="bilinear", padding_mode="border", align_corners=True)
    return image * (1.0 - alpha) + (0.9 * seen + 0.1) * alpha


def raindrop_alpha(image, generator, drops, radius, blur, frame=None):
    """The alpha ``a`` (B,1,H,W) of the drops :func:`raindrops` draws with the same arguments and
    a generator in the same state: where, and how much, a drop hides the scene (the target of
    :class:`uir.networks.drops.DropDetector`). ``blur`` does not change it."""
    return _drops(image, generator, drops, radius, frame)[0]
