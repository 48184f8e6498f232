"""Missing pixels: free-form brush-stroke masks for inpainting."""

from __future__ import annotations

import math

import torch

from .filters import pixel_grid, rand, segment_distance


def free_form_mask(image, generator, strokes, width):
    """Random brush strokes (B,1,H,W), 1 where pixels are missing.

    Each stroke is a polyline of 4-9 vertices from a random start; its heading turns by up to
    +-0.9 rad and each segment is 5-15 % of the longer side. The brush diameter is ``width``
    times the shorter side (60-100 %), with round caps.
    """
    b, _, h, w = image.shape
    y, x = pixel_grid(h, w, image)
    mask = torch.zeros(b, 1, h, w, dtype=torch.bool, device=image.device)
    for i in range(b):
        for _ in range(strokes):
            u = rand((4,), generator, torch.zeros(()).double()).tolist()
            point = (u[0] * (h - 1), u[1] * (w - 1))
            heading = u[2] * 2 * math.pi
            brush = width * min(h, w) * (0.6 + 0.4 * u[3])
            vertices = int(torch.randint(4, 10, (), generator=generator, device=generator.device))
            for _ in range(vertices - 1):
                turn, step = rand((2,), generator, torch.zeros(()).double()).tolist()
                heading += (turn - 0.5) * 1.8
                length = (0.05 + 0.1 * step) * max(h, w)
                nxt = (
                    min(max(point[0] + length * math.sin(heading), 0.0), h - 1.0),
                    min(max(point[1] + length * math.cos(heading), 0.0), w - 1.0),
                )
                mask[i, 0] |= segment_distance(y, x, point, nxt) <= brush / 2
                point = nxt
    return mask.to(image.dtype)


def inpainting(image, generator, strokes, width, fill):
    """Missing regions: ``y = (1 - m) x + m * fill`` with a :func:`free_form_mask` ``m``."""
    mask = free_form_mask(image, generator, strokes, width)
    return image * (1.0 - mask) + fill * mask
