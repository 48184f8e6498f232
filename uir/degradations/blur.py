"""Blur and resampling degradations: ``y = k * x`` for a PSF ``k``, or down-up resampling."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .filters import (
    box_kernel,
    disk_kernel,
    filter2d,
    gaussian_kernel,
    line_kernel,
    sinc_kernel,
    trajectory_kernel,
)


def gaussian_blur(image, generator, sigma):
    """Isotropic Gaussian blur ``y = G_sigma * x``."""
    return filter2d(image, gaussian_kernel(sigma))


def trajectory_motion_blur(image, generator, kernel_size, intensity):
    """Camera-shake blur ``y = k_i * x_i`` with a random-trajectory PSF drawn per sample.

    ``intensity`` in [0, 1] bends the trajectory (0 is linear motion); see
    :func:`uir.degradations.filters.trajectory_kernel`.
    """
    kernels = torch.stack([trajectory_kernel(kernel_size, intensity, generator) for _ in range(image.shape[0])])
    return filter2d(image, kernels)


def linear_motion_blur(image, generator, length, angle):
    """Uniform linear motion blur: ``y = L_{length,angle} * x``."""
    return filter2d(image, line_kernel(length, angle))


def defocus_blur(image, generator, radius):
    """Out-of-focus blur with a pill-box PSF of the given radius (px)."""
    return filter2d(image, disk_kernel(radius))


def ringing(image, generator, cutoff, radius):
    """Ringing from an ideal circular low-pass (2-D sinc, cut-off ``cutoff`` rad/px) truncated
    to ``(2 radius + 1)^2`` taps."""
    return filter2d(image, sinc_kernel(cutoff, radius))


def richardson_lucy_artifacts(image, generator, radius):
    """One Richardson-Lucy iteration with a box PSF ``k`` started from the image itself:

    ``x_1 = x * (k^T * (x / (k * x)))``. On a sharp image this over-sharpens edges and leaves
    the halo and ringing artefacts typical of R-L deconvolution. The box is symmetric, so
    ``k^T = k``.
    """
    kernel = box_kernel(radius)
    ratio = image / filter2d(image, kernel).clamp(min=1e-3)
    return image * filter2d(ratio, kernel)


def bicubic_down_up(image, generator, scale):
    """Super-resolution degradation: anti-aliased bicubic down-sampling by ``scale`` then bicubic
    up-sampling back to the input size."""
    h, w = image.shape[-2:]
    small = F.interpolate(
        image, size=(max(1, round(h / scale)), max(1, round(w / scale))), mode="bicubic", antialias=True, align_corners=False
    )
    return F.interpolate(small, size=(h, w), mode="bicubic", align_corners=False)
