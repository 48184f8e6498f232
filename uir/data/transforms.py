"""Paired augmentations with an explicit generator: the same crop and flip for every image."""

from __future__ import annotations

import torch


def paired_random_crop(images: list[torch.Tensor], size: int, generator: torch.Generator) -> list[torch.Tensor]:
    """Crop the same random ``size x size`` window from each (C,H,W) image of equal size.

    Images smaller than ``size`` are reflect-padded first (replicate where reflection cannot
    reach), so every crop has the requested size.
    """
    h, w = images[0].shape[-2:]
    if any(img.shape[-2:] != (h, w) for img in images):
        raise ValueError("paired images must share a size")
    pad_h, pad_w = max(0, size - h), max(0, size - w)
    if pad_h or pad_w:
        mode = "reflect" if pad_h < h and pad_w < w else "replicate"
        images = [torch.nn.functional.pad(img.unsqueeze(0), (0, pad_w, 0, pad_h), mode=mode)[0] for img in images]
        h, w = h + pad_h, w + pad_w
    top = int(torch.randint(0, h - size + 1, (), generator=generator))
    left = int(torch.randint(0, w - size + 1, (), generator=generator))
    return [img[..., top : top + size, left : left + size] for img in images]


def crop_frame(photo: torch.Tensor, crop: torch.Tensor) -> tuple[int, int]:
    """The (H, W) of the photo ``crop`` was cut from, as :func:`uir.degradations.apply`'s
    ``frame``: the photo's, or the crop's where a smaller photo was padded to it."""
    return tuple(max(p, c) for p, c in zip(photo.shape[-2:], crop.shape[-2:]))


def paired_random_flip(images: list[torch.Tensor], generator: torch.Generator) -> list[torch.Tensor]:
    """Flip all images horizontally with probability 1/2, then vertically with probability 1/2."""
    flips = torch.rand(2, generator=generator) < 0.5
    dims = [d for d, flip in zip((-1, -2), flips.tolist()) if flip]
    return [img.flip(dims) if dims else img for img in images]
