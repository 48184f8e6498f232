"""Missing pixels: free-form brush-stroke masks for inpainting, and finding and filling such
pixels in a photo (:func:`missing_mask`, :func:`harmonic_fill`)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .filters import pixel_grid, rand, segment_distance
from .registry import check_image

#: the vocabulary entry missing pixels are evidence for
MISSING_CLASS = "uncompleted"


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


def _dilate(mask: torch.Tensor, size: int) -> torch.Tensor:
    return F.max_pool2d(mask, size, stride=1, padding=size // 2)


def _erode(mask: torch.Tensor, size: int) -> torch.Tensor:
    return -F.max_pool2d(-mask, size, stride=1, padding=size // 2)


def missing_mask(image: torch.Tensor, min_contrast: float = 0.1, grow: int = 8, candidates: int = 4) -> torch.Tensor:
    """The pixels of ``image`` (B,3,H,W) in [0, 1] that look missing, as (B,1,H,W) in {0, 1}.

    Missing pixels (what :func:`inpainting` writes) carry one exact value ``v`` in every channel.
    The candidates for ``v`` are the values of the "flat exact" pixels, those whose 3x3
    neighbourhood holds one value alone in all channels, the most frequent first (at most
    ``candidates``). For a candidate, those 3x3 cores are the seeds; the mask grows from them,
    ``grow`` steps of one pixel, over pixels equal to it in all channels, so thin parts of a
    stroke join it and lone pixels of that value do not.

    Then a contrast test: the pixels bordering the mask (1 px) must differ from the candidate by
    at least ``min_contrast`` on average. Clipped blacks in a dark photo, or a clipped white sky,
    are flat and exact too, but the pixels next to them ramp into their value; missing pixels cut
    through the content, so their neighbours are whatever the photo shows there. The first
    candidate that passes is ``v``; a clipped region more frequent than the fill (a grey photo's
    black surround one level above a black fill) fails the test and leaves the next its turn.
    """
    batch = check_image(image)
    masks = []
    for x in batch:
        mask = torch.zeros(1, 1, *x.shape[-2:], dtype=x.dtype, device=x.device)
        gray = (x == x[:1]).all(0)[None, None].to(x.dtype)  # every channel holds the same value
        if float(gray.sum()) >= 9:
            level = x[:1][None]
            flat = ((_erode(level, 3) == _dilate(level, 3)) & (_erode(gray, 3) > 0))[0, 0]
            values, counts = level[0, 0][flat].unique(return_counts=True)
            for v in values[counts.argsort(descending=True)[:candidates]]:
                found, window = _grown_mask(gray * (level == v).to(x.dtype), grow)
                ring = _dilate(found, 3) - found
                if float(ring.sum()) > 0:
                    contrast = float(((x[window] - v).abs().mean(0, keepdim=True)[None] * ring).sum() / ring.sum())
                    if contrast >= min_contrast:
                        mask[window] = found
                        break
        masks.append(mask)
    return torch.cat(masks)


def _grown_mask(exact: torch.Tensor, grow: int) -> tuple[torch.Tensor, tuple]:
    """The 3x3 cores of ``exact`` (1,1,H,W) grown ``grow`` steps back over it, within the window
    (its bounding box and a 2 px margin, where the work stays) that is returned with it."""
    rows, cols = exact[0, 0].nonzero(as_tuple=True)
    top, left = max(int(rows.min()) - 2, 0), max(int(cols.min()) - 2, 0)
    window = (..., slice(top, int(rows.max()) + 3), slice(left, int(cols.max()) + 3))
    exact = exact[window]
    found = _erode(exact, 3)
    for _ in range(grow):  # grow back to the thin parts connected to the 3x3 cores
        found = _dilate(found, 3) * exact
    return found, window


def harmonic_fill(image: torch.Tensor, mask: torch.Tensor, iterations: int = 100) -> torch.Tensor:
    """``image`` (B,C,H,W) with its ``mask`` = 1 pixels (B or 1, 1, H, W) replaced by the harmonic
    interpolation of the others: the solution of Laplace's equation ``Delta u = 0`` on the
    missing pixels with the observed ones fixed. Observed pixels are returned unchanged.

    Solved coarse to fine: the observed pixels are averaged down a pyramid (2x2, weighted by
    how many are observed) until the holes close or the image is 8 px; each finer level starts
    from the bilinear upsampling of the coarser solution and runs ``iterations`` Jacobi sweeps
    of the 4-neighbour mean, so the cost is linear in the pixel count.
    """
    known = (1 - mask.to(image.dtype)).expand(image.shape[0], 1, *image.shape[-2:])
    return _harmonic(image * known, known, iterations)


def _harmonic(values: torch.Tensor, known: torch.Tensor, iterations: int) -> torch.Tensor:
    h, w = values.shape[-2:]
    if bool((known > 0).all()):
        return values / known.clamp_min(1e-12)
    observed = values / known.clamp_min(1e-12)
    if min(h, w) > 8:
        pad = (0, w % 2, 0, h % 2)
        coarse_values = F.avg_pool2d(F.pad(values, pad, mode="replicate"), 2)
        coarse_known = F.avg_pool2d(F.pad(known, pad, mode="replicate"), 2)
        coarse = _harmonic(coarse_values, coarse_known, iterations)
        start = F.interpolate(coarse, scale_factor=2, mode="bilinear", align_corners=False)[..., :h, :w]
    else:  # the coarsest level: the mean of what is observed
        mean = values.sum((-2, -1), keepdim=True) / known.sum((-2, -1), keepdim=True).clamp_min(1e-12)
        start = mean.expand_as(values)
    u = torch.where(known > 0, observed, start)
    # Jacobi sweeps over the missing pixels alone (gathered by flat index; borders replicate)
    b, c = u.shape[:2]
    flat = u.transpose(0, 1).reshape(c, -1)
    image, row, col = (known[:, 0] <= 0).nonzero(as_tuple=True)
    base = image * h * w
    neighbours = [base + row.sub(1).clamp_min(0) * w + col, base + row.add(1).clamp_max(h - 1) * w + col,
                  base + row * w + col.sub(1).clamp_min(0), base + row * w + col.add(1).clamp_max(w - 1)]
    missing = base + row * w + col
    for _ in range(iterations):
        flat[:, missing] = 0.25 * sum(flat[:, n] for n in neighbours)
    return flat.reshape(c, b, h, w).transpose(0, 1)
