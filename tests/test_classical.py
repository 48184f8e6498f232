"""uir.classical: the dark channel prior, against scipy and against the haze model it inverts."""

import numpy as np
import pytest
import torch
from scipy.ndimage import minimum_filter

from uir.classical import dark_channel, dark_channel_dehaze


def test_dark_channel_is_scipys_minimum_filter_over_the_channel_minimum():
    image = torch.rand(2, 3, 23, 31, generator=torch.Generator().manual_seed(0))
    expected = np.stack([minimum_filter(sample.amin(0).numpy(), size=7, mode="nearest") for sample in image])
    assert torch.equal(dark_channel(image, patch=7)[:, 0], torch.from_numpy(expected))


def test_dehaze_inverts_the_haze_model_where_the_prior_holds():
    """A scene whose every 15x15 patch has a black pixel, hazed as I = J t + A (1 - t) with one
    transmission and a white airlight (also the brightest dark-channel pixels' colour): omega 1
    recovers J exactly, and omega < 1 leaves some haze in."""
    generator = torch.Generator().manual_seed(1)
    scene = 0.2 + 0.6 * torch.rand(1, 3, 60, 60, generator=generator)
    scene[..., ::5, ::5] = 0.0  # a black pixel in every patch: dark(J) = 0
    airlight, t = 1.0, 0.6
    hazy = scene * t + airlight * (1 - t)
    hazy[..., :2, :2] = airlight  # the sky: the brightest of the haziest pixels gives A
    restored = dark_channel_dehaze(hazy, omega=1.0, t0=0.1)
    inside = (slice(None), slice(None), slice(10, 50), slice(10, 50))
    assert torch.allclose(restored[inside], scene[inside], atol=1e-5)
    partly = dark_channel_dehaze(hazy, omega=0.85)
    assert (partly[inside] - scene[inside]).abs().mean() > 0.01
    assert (partly[inside] - scene[inside]).abs().mean() < (hazy[inside] - scene[inside]).abs().mean()


@pytest.mark.parametrize("omega", [0.7, 0.95])
def test_dehaze_keeps_the_range_and_shape(omega):
    image = torch.rand(2, 3, 17, 40, generator=torch.Generator().manual_seed(2))
    out = dark_channel_dehaze(image, omega=omega)
    assert out.shape == image.shape and out.min() >= 0 and out.max() <= 1
