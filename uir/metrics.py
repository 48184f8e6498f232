"""Image quality metrics on batched tensors: PSNR, SSIM and LPIPS.

Conventions (they explain most disagreements between papers):

* Inputs are floats in [0, 1], (C,H,W) or (B,C,H,W); one value per image is returned.
* ``crop_border=n`` drops ``n`` pixels on every side before measuring (SR papers crop the
  scale factor).
* ``y_channel=True`` measures the luma of ITU-R BT.601 in studio range,
  ``Y = 16/255 + (65.481 R + 128.553 G + 24.966 B) / 255``, the MATLAB ``rgb2ycbcr``
  convention used by most restoration papers (and ``skimage.color.rgb2ycbcr``). Values are
  not re-quantised to 8 bits.
* PSNR is ``10 log10(1 / MSE)`` with ``data_range = 1``; identical images give ``inf``.
* SSIM follows Wang et al. 2004: an 11x11 Gaussian window with sigma 1.5, constants
  ``K1 = 0.01``, ``K2 = 0.03``, population (not sample) covariances, computed only where the
  window fits ("valid"), averaged over the map and then over channels. This equals
  ``skimage.metrics.structural_similarity(..., gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False, data_range=1)``.
* LPIPS needs pretrained network weights; see :func:`lpips`.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F

_BT601 = (65.481, 128.553, 24.966)


def rgb_to_y(image: torch.Tensor) -> torch.Tensor:
    """BT.601 studio-range luma in [16/255, 235/255] of an RGB batch (B,3,H,W) -> (B,1,H,W)."""
    weights = torch.tensor(_BT601, dtype=image.dtype, device=image.device).view(1, 3, 1, 1)
    return 16.0 / 255.0 + (image * weights).sum(1, keepdim=True) / 255.0


def _prepare(x: torch.Tensor, y: torch.Tensor, crop_border: int, y_channel: bool):
    if x.shape != y.shape:
        raise ValueError(f"images must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    if x.dim() == 3:
        x, y = x.unsqueeze(0), y.unsqueeze(0)
    if x.dim() != 4:
        raise ValueError(f"expected (C,H,W) or (B,C,H,W) images, got {tuple(x.shape)}")
    x, y = x.double(), y.double()
    if crop_border:
        if 2 * crop_border >= min(x.shape[-2:]):
            raise ValueError(f"crop_border={crop_border} leaves nothing of a {x.shape[-1]}x{x.shape[-2]} image")
        x = x[..., crop_border:-crop_border, crop_border:-crop_border]
        y = y[..., crop_border:-crop_border, crop_border:-crop_border]
    if y_channel:
        if x.shape[1] != 3:
            raise ValueError(f"y_channel=True needs RGB images, got {x.shape[1]} channels")
        x, y = rgb_to_y(x), rgb_to_y(y)
    return x, y


def psnr(x: torch.Tensor, y: torch.Tensor, crop_border: int = 0, y_channel: bool = False) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB per image, ``10 log10(1 / MSE)`` (module conventions)."""
    x, y = _prepare(x, y, crop_border, y_channel)
    mse = ((x - y) ** 2).mean(dim=(1, 2, 3))
    return (10.0 * torch.log10(1.0 / mse)).float()


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    axis = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-(axis**2) / (2 * sigma**2))
    return g / g.sum()


def ssim(x: torch.Tensor, y: torch.Tensor, crop_border: int = 0, y_channel: bool = False) -> torch.Tensor:
    """Structural similarity per image (module conventions: Gaussian 11x11, sigma 1.5, valid)."""
    x, y = _prepare(x, y, crop_border, y_channel)
    if min(x.shape[-2:]) < 11:
        raise ValueError(f"SSIM needs images of at least 11x11 pixels, got {x.shape[-1]}x{x.shape[-2]}")
    b, c, h, w = x.shape
    g = _gaussian_window().to(x.device)
    window_h, window_w = g.view(1, 1, -1, 1), g.view(1, 1, 1, -1)

    def blur(t):
        t = t.reshape(b * c, 1, *t.shape[-2:])
        return F.conv2d(F.conv2d(t, window_h), window_w)

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = 0.01**2, 0.03**2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return ssim_map.reshape(b, c, -1).mean(dim=2).mean(dim=1).float()


class LPIPSUnavailableError(RuntimeError):
    """LPIPS cannot be computed here: its package or its pretrained weights are missing."""


#: torchvision's ImageNet AlexNet weights, which the ``lpips`` package loads as its backbone.
ALEXNET_WEIGHTS = "alexnet-owt-7be5be79.pth"


def _lpips_backbone_path() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / ALEXNET_WEIGHTS


def lpips(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """LPIPS (AlexNet, v0.1) per image, lower is closer; inputs in [0, 1].

    It never returns a number from random weights: when the ``lpips`` package or the
    pretrained AlexNet backbone weights are missing it raises
    :class:`LPIPSUnavailableError` naming what is missing. Set ``UIR_ALLOW_DOWNLOAD=1`` to let
    torchvision download the backbone.
    """
    try:
        import lpips as lpips_package
    except ImportError:
        raise LPIPSUnavailableError("LPIPS needs the 'lpips' package: pip install lpips") from None
    backbone = _lpips_backbone_path()
    if not backbone.is_file() and os.environ.get("UIR_ALLOW_DOWNLOAD") != "1":
        raise LPIPSUnavailableError(
            f"LPIPS needs torchvision's pretrained AlexNet weights at {backbone}; "
            "they are missing (set UIR_ALLOW_DOWNLOAD=1 to download them)"
        )
    model = _LPIPS_CACHE.get("alex")
    if model is None:
        model = _LPIPS_CACHE.setdefault("alex", lpips_package.LPIPS(net="alex", verbose=False).eval())
    x = x.unsqueeze(0) if x.dim() == 3 else x
    y = y.unsqueeze(0) if y.dim() == 3 else y
    with torch.no_grad():
        return model.to(x.device)(x * 2 - 1, y * 2 - 1).flatten()


_LPIPS_CACHE: dict = {}
