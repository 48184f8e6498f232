"""Raindrops on the lens, found and cleared: a learned map of where the drops are, and the
harmonic fill of what they cover.

A drop (:func:`uir.degradations.weather.raindrops`) replaces the scene under it by a blurred,
flipped copy of its surroundings, ``y = (1 - a) x + a (0.9 J + 0.1)``: nothing of ``x`` is left
where the drop's alpha ``a`` is high, so clearing it is inpainting, as for missing pixels, but
of soft holes no single value marks. :class:`DropDetector` predicts ``a`` per pixel (a NAFNet
with a one-channel output, trained on synthetic drops by ``train/train_drop_detector.py``); the
pipeline fills the pixels it finds as it fills missing ones
(:func:`uir.pipelines.restoring.clear_found_drops`, :func:`~uir.degradations.masks.harmonic_fill`).
"""

from __future__ import annotations

import torch

from ..boundary import pixel_share
from ..tiling import restore_tiled, run_padded
from .nafnet import PlaneMap, channels_last_input

#: the largest side the detector maps at once (:meth:`DropDetector.forward`)
DETECTOR_TILE = 1024
#: the alpha above which a pixel is filled (:meth:`DropDetector.coverage`)
FILL_ALPHA = 0.8
#: the alpha above which a pixel is surely under a drop: the share of such pixels decides whether
#: an image has drops at all (:meth:`uir.networks.router.RouterInference.find_drops`)
SURE_ALPHA = 0.95


class DropDetector(PlaneMap):
    """The alpha of raindrops on the lens, per pixel: a :class:`~uir.networks.nafnet.PlaneMap` whose
    plane is the logit of ``a``. Inputs of any size are reflect-padded to its size multiple."""

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """(B,1,H,W) logits of the drops' alpha for RGB images (B,3,H,W) in [0, 1]: what training fits."""
        return run_padded(self.net, images, self.net.size_multiple)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B,1,H,W): the drops' alpha in [0, 1]. Images with a side above :data:`DETECTOR_TILE`
        run in blended tiles of at most that size, so memory stays bounded on large photos. The
        network runs channels-last (:func:`~uir.networks.nafnet.channels_last_input`), as the restorer does."""
        tile = DETECTOR_TILE if max(images.shape[-2:]) > DETECTOR_TILE else None
        return restore_tiled(lambda x: torch.sigmoid(self.net(channels_last_input(self.net, x)).float()),
                             images, tile, overlap=32, multiple=self.net.size_multiple)

    def coverage(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(the drop mask (B,1,H,W), the share of pixels surely under drops (B,))``: the pixels
        whose alpha is above :data:`FILL_ALPHA`, and the share above :data:`SURE_ALPHA`."""
        alpha = self(images)
        return (alpha > FILL_ALPHA).to(images.dtype), (alpha > SURE_ALPHA).flatten(1).float().mean(1)


#: the check of a router's ``drop_share``
check_drop_share = pixel_share("drop_share")


__all__ = ["DETECTOR_TILE", "FILL_ALPHA", "SURE_ALPHA", "DropDetector", "check_drop_share"]
