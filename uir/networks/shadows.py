"""Cast shadows, found and lifted: a learned map of the light a shadow blocks, and its inverse.

A cast shadow (:func:`uir.degradations.photometric.shadow`) is ``y = x (1 - a m)``: the scene
is all there, dimmed by the attenuation ``a m`` (``a`` the share of light blocked, ``m`` the
shadow's soft mask), so once the attenuation is known the photo comes back by one division,
``x = y / (1 - a m)`` (:func:`lift_shadows`). :class:`ShadowDetector` predicts the attenuation
per pixel. A shadow spans a quarter to most of the photo and its inside looks like any darker
surface: only the whole photo shows where it starts and ends, so the detector sees a global view
(the photo resized to :data:`VIEW`) and its map is upsampled back to the photo's size (the
penumbra is soft, 1-30 px, and the map is smooth elsewhere). Trained on synthetic shadows by
``train/train_shadow_detector.py``; the pipeline lifts what it finds
(:func:`uir.pipelines.restoring.lift_found_shadows`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..boundary import pixel_share
from ..tiling import run_padded
from .nafnet import PlaneMap

#: (height, width) of the global view the detector maps: every photo is resized to it
VIEW = (128, 160)
#: the largest attenuation the detector predicts (the synthesis blocks at most 0.8 of the light):
#: lifting divides by ``1 - a``, so the bound keeps the division finite
MAX_ATTENUATION = 0.9
#: the attenuation above which a pixel is surely shadowed: the share of such pixels decides whether
#: an image has a shadow at all (:meth:`uir.networks.router.RouterInference.find_shadows`); the
#: synthesis blocks at least 0.3 of the light inside a shadow
SURE_ATTENUATION = 0.25


def global_view(images: torch.Tensor) -> torch.Tensor:
    """(B,3,H,W) images as the detector sees them: resized to :data:`VIEW` by area averaging, in float32."""
    return F.interpolate(images.float(), size=VIEW, mode="area")


class ShadowDetector(PlaneMap):
    """The attenuation ``a m`` of cast shadows, per pixel, in ``[0, MAX_ATTENUATION]``: a
    :class:`~uir.networks.nafnet.PlaneMap` on the :func:`global_view`, whose plane is the logit of
    ``a m / MAX_ATTENUATION``."""

    def view_attenuation(self, views: torch.Tensor) -> torch.Tensor:
        """(B,1,h,w) attenuation of global views (B,3,h,w) (:func:`global_view`): what training fits."""
        return MAX_ATTENUATION * torch.sigmoid(run_padded(self.net, views, self.net.size_multiple))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B,1,H,W): the attenuation of RGB images (B,3,H,W) in [0, 1], any size: mapped on their
        global view and upsampled bilinearly to their size."""
        weight = self.net.intro.weight
        views = global_view(images).to(device=weight.device, dtype=weight.dtype)
        return F.interpolate(self.view_attenuation(views).float(), size=images.shape[-2:], mode="bilinear",
                             align_corners=False)

    def coverage(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(the attenuation (B,1,H,W), the share of pixels surely shadowed (B,))``: the pixels
        whose attenuation is above :data:`SURE_ATTENUATION`."""
        attenuation = self(images)
        return attenuation, (attenuation > SURE_ATTENUATION).flatten(1).float().mean(1)


def lift_shadows(images: torch.Tensor, attenuation: torch.Tensor) -> torch.Tensor:
    """``y / (1 - a m)`` clipped to [0, 1]: the inverse of a cast shadow whose attenuation
    (B,1,H,W) is ``attenuation`` (:func:`uir.degradations.photometric.shadow`)."""
    return (images / (1.0 - attenuation.to(images))).clamp(0.0, 1.0)


#: the check of a router's ``shadow_share``
check_shadow_share = pixel_share("shadow_share")


__all__ = ["MAX_ATTENUATION", "SURE_ATTENUATION", "VIEW", "ShadowDetector", "check_shadow_share", "global_view",
           "lift_shadows"]
