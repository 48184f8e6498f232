"""Noise and compression degradations."""

from __future__ import annotations

import torch

from .filters import jpeg, rand, randn_like


def gaussian_noise(image, generator, sigma):
    """Additive white Gaussian noise ``y = x + n``, ``n ~ N(0, (sigma/255)^2)``; sigma on the 0-255 scale."""
    return image + randn_like(image, generator) * (sigma / 255.0)


def poisson_noise(image, generator, peak):
    """Shot noise ``y = Poisson(peak * x) / peak``; a lower ``peak`` (photons at white) is noisier."""
    counts = torch.poisson((image.clamp(min=0) * peak).to(generator.device), generator=generator)
    return counts.to(image) / peak


def salt_and_pepper(image, generator, amount, salt_ratio):
    """Impulse noise: a fraction ``amount`` of pixels set to 1 (share ``salt_ratio``) or 0."""
    b, _, h, w = image.shape
    u = rand((b, 1, h, w), generator, image)
    salt = u < amount * salt_ratio
    pepper = (u >= amount * salt_ratio) & (u < amount)
    return torch.where(salt, torch.ones_like(image), torch.where(pepper, torch.zeros_like(image), image))


def jpeg_compression(image, generator, quality):
    """JPEG compression at the given quality (1-100, lower is stronger) through libjpeg."""
    return jpeg(image, quality)
