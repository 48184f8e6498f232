"""Finding a JPEG trace in a photo: the quantised DCT coefficients that baseline JPEG leaves on
its 8x8 grid, read back as the quality the photo was saved at (:func:`jpeg_quality`).

A baseline JPEG stores each 8x8 block of the luma (JFIF's ``Y = 0.299 R + 0.587 G + 0.114 B``)
as DCT coefficients rounded to multiples of a quantisation step, one step per frequency.
Decoding to 8-bit RGB and recomputing ``Y`` adds well under one unit of rounding error, so the
coefficients of a decoded JPEG still sit on multiples of their steps; a photo that never was a
JPEG, or was resized or filtered since, shows no such comb. The trace is exact evidence, like
the single fill value of missing pixels (:mod:`.masks`), where a learned router has only
appearance to go by. ``DegradationRouter(jpeg_max_quality=Q)`` calls an image whose trace
implies a quality of at most ``Q`` ``jpeg-compressed`` (:mod:`uir.models.router`).
"""

from __future__ import annotations

import math

import torch

from .registry import check_image

BLOCK = 8
#: the vocabulary entry a trace is evidence for
JPEG_CLASS = "jpeg-compressed"
#: JFIF's RGB to (Y, Cb, Cr) without the offsets, the rows of the matrix (baseline JPEG's colour transform)
JFIF_YCBCR = ((0.299, 0.587, 0.114), (-0.168736, -0.331264, 0.5), (0.5, -0.418688, -0.081312))
#: libjpeg's luminance quantisation steps at quality 50 for the two lowest AC frequencies,
#: (row, column) of the 8x8 DCT; other qualities scale them (:func:`libjpeg_quality`)
BASE_STEPS = {(0, 1): 11, (1, 0): 12}
#: the largest step searched for: libjpeg's quality 5 gives 110 and 120 at these frequencies
MAX_STEP = 128


def dct_matrix(n: int = BLOCK, dtype=torch.float64, device=None) -> torch.Tensor:
    """The orthonormal DCT-II matrix ``D`` (n, n): a block's coefficients are ``D @ block @ D.T``."""
    k = torch.arange(n, dtype=dtype, device=device)
    matrix = torch.cos(math.pi * (2 * k[None] + 1) * k[:, None] / (2 * n)) * math.sqrt(2 / n)
    matrix[0] /= math.sqrt(2)
    return matrix


def luma(image: torch.Tensor) -> torch.Tensor:
    """JPEG's level-shifted luma ``255 Y - 128`` (B,H,W), in float64, of images in [0, 1]."""
    batch = check_image(image)
    if batch.shape[1] == 1:
        return batch[:, 0].double() * 255 - 128
    # channel by channel: a 12 Mpx photo is never copied whole in float64
    return sum(w * batch[:, c].double() for c, w in enumerate(JFIF_YCBCR[0])) * 255 - 128


def grid_phase(y: torch.Tensor) -> tuple[int, int]:
    """``(row, column)`` offset of the 8x8 grid in one luma plane (H,W): JPEG's blocks are
    quantised apart, so the mean jump across pixel boundaries, folded modulo 8, peaks at the
    grid's boundaries (a cropped JPEG keeps its trace at another offset)."""
    offsets = []
    for dim in (0, 1):
        jumps = y.diff(dim=dim).abs().mean(dim=1 - dim)  # jumps[i]: between pixels i and i + 1
        folded = jumps[: jumps.shape[0] // BLOCK * BLOCK].view(-1, BLOCK).mean(0)
        offsets.append(int(folded.argmax() + 1) % BLOCK)
    return offsets[0], offsets[1]


def quantization_step(coefficients: torch.Tensor, max_step: int = MAX_STEP, min_count: int = 16,
                      agreement: float = 0.9) -> int:
    """The quantisation step of one DCT frequency's ``coefficients`` (N,), or 0 if they show none.

    A step ``q`` fits when the coefficients with ``|c| >= q / 4``, at least ``min_count`` of
    them, sit on multiples of ``q``: their mean ``cos(2 pi c / q)`` is at least ``agreement`` (1
    exactly on the comb; about 0 for coefficients spread evenly, as in a photo that never was a
    JPEG). Coefficients near 0 are left out, since they fit every step; those from ``q / 4`` on
    are kept, so that a multiple of the true step fails on the odd multiples (``cos(pi) = -1``
    at twice the step). Steps next to the true one fit too when few multiples are populated
    (55 and 110 nearly fit 56), so the answer is the best fit among the largest run of
    consecutive fitting steps; the runs below it are its divisors.
    """
    steps = torch.arange(1, max_step + 1, dtype=coefficients.dtype, device=coefficients.device)[:, None]
    used = coefficients[None].abs() >= steps / 4
    count = used.sum(1)
    fit = (torch.cos(2 * math.pi * coefficients[None] / steps) * used).sum(1) / count.clamp(min=1)
    found = ((fit >= agreement) & (count >= min_count)).tolist()
    if not any(found):
        return 0
    last = max(i for i, ok in enumerate(found) if ok)
    first = last
    while first > 0 and found[first - 1]:
        first -= 1
    return first + 1 + int(fit[first : last + 1].argmax())


def libjpeg_quality(scale: float) -> float:
    """The quality (1-100) at which libjpeg scales its quality-50 steps by ``scale`` percent:
    the inverse of ``scale = 5000 / Q`` below quality 50 and ``200 - 2 Q`` from it on."""
    return 5000 / scale if scale > 100 else (200 - scale) / 2


def libjpeg_scale(quality: float) -> float:
    """The percentage by which libjpeg scales its quality-50 steps at ``quality`` (1-100): the
    inverse of :func:`libjpeg_quality`."""
    return 5000 / quality if quality < 50 else 200 - 2 * quality


def jpeg_quality(image: torch.Tensor, max_blocks: int = 16384) -> torch.Tensor:
    """Per image of ``image`` ((C,H,W) or (B,C,H,W) in [0, 1]), the libjpeg quality its JPEG trace
    implies, rounded to a whole quality as libjpeg takes it, (B,) float; NaN where there is no
    trace. From about quality 90 up the steps (2 and less) drown in the rounding error, so such
    a photo reads as one without a trace.

    On the grid of :func:`grid_phase`, the two lowest AC coefficients of every block give a
    :func:`quantization_step` each, read against :data:`BASE_STEPS`; the coarser reading wins (a
    comb of step ``q`` also fits ``q / 2``, so a reading can only fall short). Blocks with a
    clipped pixel (0 or 1 in any channel) are left out: the decoder's clipping moves their
    luma off the comb. At most ``max_blocks`` blocks, evenly strided, are read per image.
    """
    batch = check_image(image)
    planes = luma(batch)
    clipped = ((batch <= 0) | (batch >= 1)).any(1)
    basis = dct_matrix(device=planes.device)
    qualities = []
    for y, bad in zip(planes, clipped):
        top, left = grid_phase(y)
        rows, cols = (y.shape[0] - top) // BLOCK, (y.shape[1] - left) // BLOCK
        window = (slice(top, top + rows * BLOCK), slice(left, left + cols * BLOCK))
        blocks = y[window].reshape(rows, BLOCK, cols, BLOCK).transpose(1, 2).reshape(-1, BLOCK, BLOCK)
        keep = ~bad[window].reshape(rows, BLOCK, cols, BLOCK).transpose(1, 2).reshape(-1, BLOCK * BLOCK).any(1)
        blocks = blocks[keep]
        blocks = blocks[:: max(1, -(-blocks.shape[0] // max_blocks))]
        scales = []
        for (u, v), base in BASE_STEPS.items():
            step = quantization_step(torch.einsum("i,nij,j->n", basis[u], blocks, basis[v]))
            if step:
                scales.append(100 * step / base)
        qualities.append(round(libjpeg_quality(max(scales))) if scales else math.nan)
    return torch.tensor(qualities, dtype=torch.float32)


__all__ = ["BASE_STEPS", "BLOCK", "JFIF_YCBCR", "JPEG_CLASS", "MAX_STEP", "dct_matrix", "grid_phase", "jpeg_quality",
           "libjpeg_quality", "libjpeg_scale", "luma", "quantization_step"]
