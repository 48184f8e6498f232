"""Size handling for restorers: a reflected border margin, padding to a multiple, and
overlapping tiles for large images.

A convolutional restorer sees zeros beyond the image edge; the embedded default drew 1-px lines
along its borders there (edge-row differences up to 0.17 on a flat image whose interior varies
by 1e-4). With a ``margin`` the input is first reflect-padded on every side and the output
cropped back, so the edge rows are computed like interior ones: 8 px brought every edge of flat
and smooth test images, under each expert, within the interior's variation
(``tests/test_tiling.py``).

:func:`restore_tiled` cuts an image into windows of at most ``tile x tile`` pixels, of equal
size, that overlap by at least ``overlap`` pixels, runs ``fn`` on each (each window reflect-padded to a multiple of ``multiple``), and
blends the results with weights that ramp linearly across the overlaps, so seams do not show
and memory stays bounded by one tile.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F


def _pad(x: torch.Tensor, left: int, right: int, top: int, bottom: int) -> torch.Tensor:
    """Reflect padding where the image is large enough for it, else replicate."""
    if not (left or right or top or bottom):
        return x
    h, w = x.shape[-2:]
    mode = "reflect" if max(top, bottom) < h and max(left, right) < w else "replicate"
    return F.pad(x, (left, right, top, bottom), mode=mode)


def pad_to_multiple(x: torch.Tensor, multiple: int, margin: int = 0) -> tuple[torch.Tensor, tuple[int, int]]:
    """Reflect-pad (B,C,H,W) by ``margin`` on every side, then at the bottom and right to
    multiples of ``multiple``; returns the padded tensor and the original ``(H, W)``."""
    h, w = x.shape[-2:]
    x = _pad(x, margin, margin, margin, margin)
    ph, pw = (-(h + 2 * margin)) % multiple, (-(w + 2 * margin)) % multiple
    return _pad(x, 0, pw, 0, ph), (h, w)


def run_padded(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, multiple: int,
               margin: int = 0) -> torch.Tensor:
    """``fn`` on ``x`` padded by :func:`pad_to_multiple`, cropped back to ``x``'s size."""
    padded, (h, w) = pad_to_multiple(x, multiple, margin)
    return fn(padded)[..., margin : margin + h, margin : margin + w]


def _windows(length: int, tile: int, overlap: int, multiple: int) -> list[tuple[int, int]]:
    """``(start, size)`` of the fewest windows of at most ``tile`` pixels (when ``tile`` is a
    multiple of ``multiple``) that cover ``length`` with neighbours sharing at least
    ``overlap``; all of one size, so no window is a thin leftover (1024 px in 512 px tiles is
    three windows of 368, not two of 512 and a third mostly overlapping)."""
    if length <= tile:
        return [(0, length)]
    count = -(-(length - overlap) // (tile - overlap))
    size = min(length, -(-(-(-(length + (count - 1) * overlap) // count)) // multiple) * multiple)
    return [(round(i * (length - size) / (count - 1)), size) for i in range(count)]


def _ramp(length: int, overlap: int, at_start: bool, at_end: bool, like: torch.Tensor) -> torch.Tensor:
    ramp = torch.ones(length, dtype=like.dtype, device=like.device)
    if overlap > 0:
        edge = torch.arange(1, overlap + 1, dtype=like.dtype, device=like.device) / (overlap + 1)
        if not at_start:
            ramp[:overlap] = edge
        if not at_end:
            ramp[-overlap:] = edge.flip(0)
    return ramp


def restore_tiled(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, tile: int | None,
                  overlap: int = 64, multiple: int = 8, margin: int = 0) -> torch.Tensor:
    """Apply a size-preserving ``fn`` to (B,C,H,W) ``x`` in blended tiles (or whole when it fits),
    each run with a reflected ``margin`` (:func:`run_padded`).

    ``overlap`` is capped at a quarter of the tile, so any tile size from ``2 * multiple`` works.
    """
    h, w = x.shape[-2:]
    if tile is None or (h <= tile and w <= tile):
        return run_padded(fn, x, multiple, margin)
    if tile < 2 * multiple:
        raise ValueError(f"tile size must be at least {2 * multiple} pixels, got {tile}")
    if overlap < 0:
        raise ValueError(f"tile overlap must be >= 0, got {overlap}")
    overlap = min(overlap, tile // 4)  # blending ramps from both sides must not meet
    out = None
    total = torch.zeros(1, 1, h, w, dtype=x.dtype, device=x.device)
    for top, height in _windows(h, tile, overlap, multiple):
        for left, width in _windows(w, tile, overlap, multiple):
            window = x[..., top : top + height, left : left + width]
            result = run_padded(fn, window, multiple, margin)
            th, tw = window.shape[-2:]
            wy = _ramp(th, overlap, top == 0, top + th >= h, x)
            wx = _ramp(tw, overlap, left == 0, left + tw >= w, x)
            weight = (wy[:, None] * wx[None, :])[None, None]
            if out is None:
                out = torch.zeros(x.shape[0], result.shape[1], h, w, dtype=result.dtype, device=result.device)
            out[..., top : top + th, left : left + tw] += result * weight
            total[..., top : top + th, left : left + tw] += weight
    return out.div_(total)
