"""uir.classical: the dark channel prior, against scipy and against the haze model it inverts; the
bilateral filter against its definition, pixel by pixel, and OpenCV's; the veil bound against the
veil model it caps, the airlight bound against the haze model, the shadow bound against a
brute-force projection and the shadow model; the DCT denoiser's patch transform
against scipy's DCT, its noise estimate against skimage's, and its output against skimage's
wavelet denoiser; JPEG's chroma re-estimated from the luma against photos Pillow's libjpeg saved;
the severity measures against photos degraded at each of the registry's levels."""

import numpy as np
import pytest
import torch
from scipy.fft import dctn
from scipy.ndimage import minimum_filter, uniform_filter

from uir import degradations
from uir.classical import (CLIPPED_MEANS, SEVERITY_MEASURES, _overlap_add, _patch_dct, _sliding_dct, _spread, airlight_bound, bilateral_filter, box_mean,
                           chroma_cells_projection, chroma_from_luma, clipped_noise_mean, clipped_noise_sigma, dark_channel, dark_channel_dehaze, dct_denoise, guided_filter, jpeg_chroma,
                           jpeg_chroma_radius, light_bound, measured_severities, noise_sigma, shadow_bound, snow_bound, unclip_noise, veil_bound)
from uir.degradations.filters import jpeg
from uir.degradations.jpeg_trace import JFIF_YCBCR, jpeg_quality
from uir.images import load_image
from uir.degradations.weather import SNOW_VEIL_WHITE
from uir.metrics import psnr


@pytest.mark.parametrize("radius", [1, 8, 30])
def test_box_mean_is_scipys_uniform_filter_with_edges_replicated(radius):
    image = torch.rand(2, 3, 47, 70, generator=torch.Generator().manual_seed(radius))
    expected = uniform_filter(image.double().numpy(), size=(1, 1, 2 * radius + 1, 2 * radius + 1), mode="nearest")
    assert torch.allclose(box_mean(image, radius).double(), torch.from_numpy(expected), atol=1e-6)


def test_dark_channel_is_scipys_minimum_filter_over_the_channel_minimum():
    image = torch.rand(2, 3, 23, 31, generator=torch.Generator().manual_seed(0))
    expected = np.stack([minimum_filter(sample.amin(0).numpy(), size=7, mode="nearest") for sample in image])
    assert torch.equal(dark_channel(image, patch=7)[:, 0], torch.from_numpy(expected))


@pytest.mark.parametrize("refine_radius", [None, 4])
def test_dehaze_inverts_the_haze_model_where_the_prior_holds(refine_radius):
    """A scene whose every 15x15 patch has a black pixel, hazed as I = J t + A (1 - t) with one
    transmission and a white airlight (also the brightest dark-channel pixels' colour): omega 1
    recovers J exactly, and omega < 1 leaves some haze in; the guided filter keeps a constant
    transmission constant, away from the sky's corner."""
    generator = torch.Generator().manual_seed(1)
    scene = 0.2 + 0.6 * torch.rand(1, 3, 60, 60, generator=generator)
    scene[..., ::5, ::5] = 0.0  # a black pixel in every patch: dark(J) = 0
    airlight, t = 1.0, 0.6
    hazy = scene * t + airlight * (1 - t)
    hazy[..., :2, :2] = airlight  # the sky: the brightest of the haziest pixels gives A
    restored = dark_channel_dehaze(hazy, omega=1.0, t0=0.1, refine_radius=refine_radius)
    inside = (slice(None), slice(None), slice(20, 50), slice(20, 50))
    assert torch.allclose(restored[inside], scene[inside], atol=1e-5)
    partly = dark_channel_dehaze(hazy, omega=0.85, refine_radius=refine_radius)
    assert (partly[inside] - scene[inside]).abs().mean() > 0.01
    assert (partly[inside] - scene[inside]).abs().mean() < (hazy[inside] - scene[inside]).abs().mean()


@pytest.mark.parametrize("omega", [0.7, 0.95])
def test_dehaze_keeps_the_range_and_shape(omega):
    image = torch.rand(2, 3, 17, 40, generator=torch.Generator().manual_seed(2))
    out = dark_channel_dehaze(image, omega=omega)
    assert out.shape == image.shape and out.min() >= 0 and out.max() <= 1


def _bilateral_by_definition(image, sigma_color, sigma_space, radius):
    """One (C,H,W) image, pixel by pixel: the disc of radius ``radius``, mirrored edges, the
    spatial and colour (sum of channel differences) Gaussian weights."""
    channels, height, width = image.shape
    mirrored = np.pad(image, ((0, 0), (radius, radius), (radius, radius)), mode="reflect")
    out = np.zeros_like(image)
    for y in range(height):
        for x in range(width):
            total, norm = np.zeros(channels), 0.0
            for dy in range(-radius, radius + 1):
                for dx in range(-radius, radius + 1):
                    if dy * dy + dx * dx > radius * radius:
                        continue
                    q = mirrored[:, y + radius + dy, x + radius + dx]
                    d = np.abs(q - image[:, y, x]).sum()
                    w = np.exp(-(dy * dy + dx * dx) / (2 * sigma_space**2) - d * d / (2 * sigma_color**2))
                    total, norm = total + w * q, norm + w
            out[:, y, x] = total / norm
    return out


def test_bilateral_filter_is_its_definition_and_opencvs():
    image = torch.rand(1, 3, 12, 15, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    ours = bilateral_filter(image, sigma_color=0.2, sigma_space=2.0, diameter=7)
    expected = _bilateral_by_definition(image[0].numpy(), 0.2, 2.0, 3)
    assert np.allclose(ours[0].numpy(), expected, atol=1e-12)
    cv2 = pytest.importorskip("cv2")
    image = image.float()
    theirs = cv2.bilateralFilter(image[0].permute(1, 2, 0).numpy().copy(), 9, 50 / 255, 5)
    assert np.allclose(bilateral_filter(image)[0].permute(1, 2, 0).numpy(), theirs, atol=1e-5)


def test_bilateral_filter_keeps_a_flat_image_and_an_edge():
    flat = torch.full((1, 3, 20, 20), 0.4)
    assert torch.allclose(bilateral_filter(flat), flat)
    step = torch.zeros(1, 3, 20, 20)
    step[..., 10:] = 1.0  # far beyond sigma_color: no pixel is averaged across the edge
    assert torch.allclose(bilateral_filter(step), step, atol=1e-6)


def test_guided_filter_is_the_mean_of_each_windows_ridge_regression():
    """He et al.'s definition, window by window: ``(a_k, b_k)`` minimise
    ``sum_i (a guide_i + b - source_i)^2 + eps a^2`` over the window's ``|w|`` pixels (the ridge
    counted once per pixel, the paper's eq. 3), solved by numpy's least squares, with windows at
    the edges made of replicated pixels; each pixel averages ``a_k guide + b_k`` over the windows
    that hold it, those beyond the edge replicating the edge's."""
    generator = torch.Generator().manual_seed(8)
    height, width, radius, eps = 9, 11, 2, 0.05
    guide = torch.rand(1, 1, height, width, generator=generator, dtype=torch.float64)
    source = torch.rand(1, 2, height, width, generator=generator, dtype=torch.float64)
    g = guide[0, 0].numpy()

    def window(y, x):
        rows = [min(max(v, 0), height - 1) for v in range(y - radius, y + radius + 1)]
        cols = [min(max(v, 0), width - 1) for v in range(x - radius, x + radius + 1)]
        return np.ix_(rows, cols)

    expected = np.zeros((2, height, width))
    for c in range(2):
        p = source[0, c].numpy()
        coefficients = {}
        for y in range(height):
            for x in range(width):
                gw, pw = g[window(y, x)].ravel(), p[window(y, x)].ravel()
                design = np.vstack([np.stack([gw, np.ones_like(gw)], 1), [np.sqrt(gw.size * eps), 0.0]])
                coefficients[y, x] = np.linalg.lstsq(design, np.append(pw, 0.0), rcond=None)[0]
        for y in range(height):
            for x in range(width):
                centres = window(y, x)
                total = sum(coefficients[cy, cx] for cy in centres[0].ravel() for cx in centres[1].ravel())
                expected[c, y, x] = (total[0] * g[y, x] + total[1]) / (2 * radius + 1) ** 2
    assert torch.allclose(guided_filter(guide, source, radius, eps)[0], torch.from_numpy(expected), atol=1e-10)


def test_veil_bound_caps_the_veil_a_restoration_removed_at_what_the_darkest_pixels_allow():
    """Snow's veil ``y = (1 - v) x + W v`` over a scene whose darkest 2% of pixels are 0.05: the
    cap is ``v_max = ((1 - v) 0.05 + W v) / W``. Removing the true veil (``x`` itself) or less is
    left alone, bit for bit; removing a thicker one, ``(y - W u) / (1 - u)`` with ``u > v_max``,
    comes back as the inversion at the cap, ``(y - W v_max) / (1 - v_max)``."""
    from uir.degradations.weather import SNOW_VEIL_WHITE as W

    scene = 0.1 + 0.6 * torch.rand(2, 3, 50, 50, generator=torch.Generator().manual_seed(2))
    scene[..., :1, :] = 0.05  # the darkest 2% of the pixels, in every channel
    v = torch.tensor([0.1, 0.25]).view(2, 1, 1, 1)
    snowy = (1 - v) * scene + W * v
    v_max = ((1 - v) * 0.05 + W * v) / W

    def inverted(u):
        return (snowy - W * u) / (1 - u)

    assert torch.equal(veil_bound(snowy, scene, W), scene)
    milder = inverted(v * 0.5)
    assert torch.equal(veil_bound(snowy, milder, W), milder)
    thicker = inverted(v_max + 0.15)
    assert torch.allclose(veil_bound(snowy, thicker, W), inverted(v_max), atol=1e-5)
    mixed = torch.cat([scene[:1], thicker[1:]])  # per image: the first is within its cap
    assert torch.allclose(veil_bound(snowy, mixed, W), torch.cat([scene[:1], inverted(v_max)[1:]]), atol=1e-5)


def test_airlight_bound_keeps_a_restoration_between_the_hazy_image_and_the_dark_channels():
    """The scene of the dehazing test (a black pixel in every patch, one transmission, white
    airlight): there the dark channel at omega 1 is the scene itself. A restoration between the
    hazy image and the scene is kept; one that removes more haze than that (darker than the
    scene) comes back as the scene; one that adds haze (brighter than the hazy image) comes back
    as the hazy image."""
    generator = torch.Generator().manual_seed(1)
    scene = 0.2 + 0.6 * torch.rand(1, 3, 60, 60, generator=generator)
    scene[..., ::5, ::5] = 0.0
    hazy = scene * 0.6 + 1.0 * 0.4
    hazy[..., :2, :2] = 1.0
    inside = (slice(None), slice(None), slice(10, 50), slice(10, 50))
    halfway = 0.5 * (scene + hazy)
    assert torch.equal(airlight_bound(hazy, halfway)[inside], halfway[inside])
    assert torch.allclose(airlight_bound(hazy, scene - 0.1)[inside], scene[inside], atol=1e-5)
    assert torch.equal(airlight_bound(hazy, hazy + 0.1)[inside], hazy[inside])


@pytest.mark.parametrize("name, white", [("rainy", 1.0), ("snowy", SNOW_VEIL_WHITE)])
def test_light_bound_keeps_the_truth_and_brings_a_brightened_restoration_closer(name, white):
    """Rain and snow as uir synthesises them (severe): the clean scene already lies within the bound
    and comes back bit for bit. A restoration that brightens every pixel by 0.1 is lowered to the
    input wherever the input is below ``white`` (the veil's white for snow), and left alone above
    it; no pixel moves away from the truth and the whole image moves closer."""
    scene = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    degraded = degradations.apply(name, scene, generator=torch.Generator().manual_seed(4), severity="severe")
    assert torch.equal(light_bound(degraded, scene, white), scene)
    brighter = (scene + 0.1).clamp(max=1)
    bounded = light_bound(degraded, brighter, white)
    below = degraded < white
    assert bool(below.any()) and bool((degraded >= white).any()) == (name == "snowy")
    assert torch.equal(bounded[below], torch.minimum(brighter, degraded)[below])
    assert torch.equal(bounded[~below], brighter[~below])
    assert bool(((bounded - scene).abs() <= (brighter - scene).abs()).all())
    assert bool((psnr(bounded, scene) > psnr(brighter, scene) + 1).all())


def test_snow_bound_is_the_veil_bound_then_the_light_bound_below_the_veils_white():
    scene = 0.1 + 0.6 * torch.rand(1, 3, 40, 40, generator=torch.Generator().manual_seed(5))
    snowy = degradations.apply("snowy", scene, generator=torch.Generator().manual_seed(6), severity="severe")
    restored = (scene - 0.2 + 0.4 * torch.rand(scene.shape, generator=torch.Generator().manual_seed(7))).clamp(0, 1)
    expected = light_bound(snowy, veil_bound(snowy, restored, SNOW_VEIL_WHITE), SNOW_VEIL_WHITE)
    assert torch.equal(snow_bound(snowy, restored), expected)


def test_shadow_bound_projects_each_pixel_onto_the_gains_a_shadow_allows():
    """Against a brute-force projection: for each pixel, the nearest of ``g y`` over 20001 gains
    from 1 to the brightest allowed (``1 / (1 - a_max)``, or what keeps every channel at most 1)."""
    degraded = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(8)) * 0.9 + 0.01
    restored = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(9))
    bounded = shadow_bound(degraded, restored, deepest=0.8)
    y, x = degraded.double(), restored.double()
    top = torch.minimum(torch.full((1, 1, 8, 8), 5.0, dtype=torch.float64), 1 / y.amax(1, keepdim=True))
    gains = 1 + (top - 1) * torch.linspace(0, 1, 20001, dtype=torch.float64)[:, None, None, None, None]
    candidates = gains * y  # (G, 1, 3, 8, 8)
    nearest = candidates.gather(0, ((candidates - x) ** 2).sum(2, keepdim=True).argmin(0, keepdim=True)
                                .expand(1, 1, 3, 8, 8))[0]
    assert torch.allclose(bounded.double(), nearest, atol=1e-3)
    assert torch.allclose(shadow_bound(degraded, bounded, deepest=0.8), bounded, atol=1e-6)  # a projection


def test_shadow_bound_keeps_the_truth_and_brings_a_restoration_closer():
    """A shadow as uir synthesises it (severe, its default deepest attenuation): the clean scene
    lies within the bound and comes back; a restoration with a colour cast and a wrong brightness
    moves closer to the truth at every pixel, and the input itself (gain 1) is kept."""
    scene = 0.05 + 0.9 * torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(10))
    shaded = degradations.apply("shadowed", scene, generator=torch.Generator().manual_seed(11), severity="severe")
    assert bool((shaded < scene - 0.05).any())
    assert torch.allclose(shadow_bound(shaded, scene), scene, atol=1e-5)
    assert torch.allclose(shadow_bound(shaded, shaded), shaded, atol=1e-6)
    cast = torch.tensor([1.15, 0.9, 1.0])[None, :, None, None]
    wrong = (scene * cast * (1 + 0.3 * torch.rand(2, 1, 64, 64, generator=torch.Generator().manual_seed(12))))
    bounded = shadow_bound(shaded, wrong)
    assert bool((((bounded - scene) ** 2).sum(1) <= ((wrong - scene) ** 2).sum(1) + 1e-6).all())
    assert bool((psnr(bounded, scene) > psnr(wrong, scene) + 1).all())


@pytest.mark.parametrize("stride", [1, 2, 3])
def test_sliding_dct_is_scipys_dct_of_every_patch_and_overlap_add_its_adjoint(stride):
    planes = torch.rand(2, 1, 19, 23, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    transform = _patch_dct(8, torch.float64, "cpu")
    coefficients = _sliding_dct(planes, transform, stride)
    rows, columns = coefficients.shape[2:]
    assert (rows, columns) == ((19 - 8) // stride + 1, (23 - 8) // stride + 1)
    for n, i, j in [(0, 0, 0), (1, rows - 1, columns - 1), (1, 1, columns // 2)]:
        patch = planes[n, 0, i * stride : i * stride + 8, j * stride : j * stride + 8].numpy()
        expected = dctn(patch, norm="ortho")  # expected[u, v]: u down, v across
        got = coefficients[n, :, i, j].reshape(8, 8).numpy()  # channel u * 8 + v
        np.testing.assert_allclose(got, expected, atol=1e-12)
    other = torch.randn(coefficients.shape, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    back = _overlap_add(other, transform, stride)
    assert back.shape[2:] == ((rows - 1) * stride + 8, (columns - 1) * stride + 8)
    window = planes[..., : back.shape[2], : back.shape[3]]
    assert torch.allclose((coefficients * other).sum(), (window * back).sum())
    weights = torch.rand(2, 1, rows, columns, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    spread_as_patches = _overlap_add(weights * torch.eye(64, dtype=torch.float64)[0, :, None, None] * 8, transform, stride)
    assert torch.allclose(_spread(weights, 8, stride), spread_as_patches)  # the DC basis patch is 1/8 everywhere


def test_noise_sigma_finds_the_noise_level_as_skimage_does():
    from skimage.restoration import estimate_sigma

    clean = _smooth_photo()
    for sigma in (0.1, 0.2, 0.3):  # the photo's own texture reads as 0.015: it barely counts here
        noisy = clean + sigma * torch.randn(clean.shape, generator=torch.Generator().manual_seed(7))
        found = float(noise_sigma(noisy))
        theirs = estimate_sigma(noisy[0].permute(1, 2, 0).numpy(), channel_axis=-1, average_sigmas=True)
        assert abs(found - sigma) < 0.05 * sigma and abs(found - theirs) < 0.05 * sigma


def test_clipped_noise_mean_is_the_mean_of_clipped_gaussian_noise_and_unclip_inverts_it():
    """``m(x) = E[clip(x + n, 0, 1)]`` against scipy's numerical integration over the Gaussian; a
    denoised estimate of ``m(x)`` is mapped back to ``x`` with the noisy image's clipped-noise sigma, and what no
    scene gives (below ``m(0)``) to 0. The noise class's map is this one."""
    from scipy import integrate
    from scipy.stats import norm

    for sigma in (15 / 255, 50 / 255):
        for x in (0.0, 0.02, 0.1, 0.5, 0.93, 1.0):
            oracle, _ = integrate.quad(lambda n: min(max(x + n, 0.0), 1.0) * norm.pdf(n, scale=sigma), -10 * sigma,
                                       10 * sigma, points=[-x, 1 - x])
            assert float(clipped_noise_mean(torch.tensor(x, dtype=torch.float64), sigma)) == pytest.approx(oracle, abs=1e-9)
    noisy = (torch.full((1, 3, 64, 64), 0.5) + 0.2 * torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(3))).clamp(0, 1)
    sigma = float(clipped_noise_sigma(noisy))
    scene = torch.linspace(0, 1, 3 * 64 * 64).view(1, 3, 64, 64)
    means = clipped_noise_mean(scene.double(), sigma).float()
    assert torch.allclose(unclip_noise(noisy, means), scene, atol=1e-4)
    assert bool((unclip_noise(noisy, torch.zeros_like(scene)) == 0).all())  # below m(0) = 0.08: black
    assert CLIPPED_MEANS["noisy"] is unclip_noise


def test_clipped_noise_sigma_measures_noise_that_clipping_hid_from_noise_sigma():
    """The censored variance ``v(alpha)`` against scipy's integration of ``max(X, 0)``'s moments;
    on a dark ramp whose noise (sigma 50) was clipped at black, :func:`noise_sigma` reads low and
    the censored measure finds sigma; on a mid-grey ramp, where nothing clips, both agree; an image
    without a block it can read, or smaller than one, falls back to :func:`noise_sigma`."""
    from scipy import integrate
    from scipy.stats import norm

    from uir.classical import _censored_variance

    for alpha in (-1.0, 0.0, 0.7, 3.0):
        first, _ = integrate.quad(lambda t: max(t, 0.0) * norm.pdf(t, loc=alpha), -12, 12, points=[0.0])
        second, _ = integrate.quad(lambda t: max(t, 0.0) ** 2 * norm.pdf(t, loc=alpha), -12, 12, points=[0.0])
        assert float(_censored_variance(torch.tensor(alpha, dtype=torch.float64))) == pytest.approx(second - first**2, abs=1e-9)
    sigma, generator = 50 / 255, torch.Generator().manual_seed(4)
    ramp = torch.linspace(0, 1, 256).view(1, 1, 1, 256).expand(1, 3, 256, 256)
    noise = sigma * torch.randn(1, 3, 256, 256, generator=generator)
    dark, grey = (0.25 * ramp + noise).clamp(0, 1), (0.35 + 0.3 * ramp + noise).clamp(0, 1)
    assert float(noise_sigma(dark)) < 0.8 * sigma
    assert float(clipped_noise_sigma(dark)) == pytest.approx(sigma, rel=0.03)
    assert float(clipped_noise_sigma(grey)) == pytest.approx(float(noise_sigma(grey)), rel=0.03)
    assert float(clipped_noise_sigma(grey)) == pytest.approx(sigma, rel=0.03)
    black = torch.zeros(2, 3, 32, 32)
    black[1, :, ::2] = 0.5
    assert torch.equal(clipped_noise_sigma(black), noise_sigma(black))
    assert torch.equal(clipped_noise_sigma(dark[..., :10, :]), noise_sigma(dark[..., :10, :]))  # below one block


@pytest.mark.parametrize("stride", [1, 2])
def test_dct_denoise_keeps_a_clean_image_and_the_bands_change_nothing(stride):
    clean = _smooth_photo()
    assert torch.allclose(dct_denoise(clean, sigma=1e-6, stride=stride), clean, atol=1e-3)
    noisy = (clean + 0.1 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(8))).clamp(0, 1)
    assert torch.allclose(dct_denoise(noisy, stride=stride, band=3), dct_denoise(noisy, stride=stride, band=1000),
                          atol=1e-5)
    with pytest.raises(ValueError, match="needs"):
        dct_denoise(clean[:, :1], stride=stride)


@pytest.mark.parametrize("sigma", [0.05, 0.2])
def test_dct_denoise_beats_skimages_wavelet_denoiser(sigma):
    from skimage.restoration import denoise_wavelet

    clean = _smooth_photo()
    noisy = (clean + sigma * torch.randn(clean.shape, generator=torch.Generator().manual_seed(9))).clamp(0, 1)
    wavelet = denoise_wavelet(noisy[0].permute(1, 2, 0).numpy(), channel_axis=-1, convert2ycbcr=True,
                              rescale_sigma=True)
    theirs = float(psnr(torch.from_numpy(wavelet).permute(2, 0, 1)[None].float().clamp(0, 1), clean))
    scores = {strides: float(psnr(dct_denoise(noisy, stride=strides[0], pilot_stride=strides[1]), clean))
              for strides in ((1, 1), (1, 2), (2, 2))}
    assert min(scores.values()) > theirs + 1.0
    assert scores[(1, 1)] >= scores[(1, 2)] >= scores[(2, 2)]  # the more patches, the better
    assert float(psnr(dct_denoise(noisy, stride=2), clean)) == scores[(2, 2)]  # the pilot's stride follows the stride


def _smooth_photo() -> torch.Tensor:
    """A 128 px crop of skimage's astronaut photo, (1,3,H,W) in [0, 1]."""
    from skimage import data

    return torch.from_numpy(data.astronaut()[:128, 160:288].copy()).permute(2, 0, 1)[None].float() / 255


def test_chroma_from_luma_keeps_the_luma_and_a_chroma_linear_in_it():
    """The guided filter fits the chroma as a linear function of the luma in every window: a
    chroma that is one (here, Cb = 0.3 Y - 0.1 and Cr = -0.2 Y + 0.05) comes back as it was, and
    the luma is never changed."""
    y = 0.3 + 0.4 * torch.rand(1, 1, 40, 48, generator=torch.Generator().manual_seed(0))
    ycc = torch.cat([y, 0.3 * y - 0.1, -0.2 * y + 0.05], 1)
    image = torch.einsum("ij,bjhw->bihw", torch.linalg.inv(torch.tensor(JFIF_YCBCR)), ycc)
    assert float(image.amin()) > 0 and float(image.amax()) < 1
    restored = chroma_from_luma(image, radius=4)
    luma = torch.tensor(JFIF_YCBCR[0])
    assert torch.allclose(torch.einsum("j,bjhw->bhw", luma, restored), y[:, 0], atol=1e-5)
    assert torch.allclose(restored, image, atol=2e-3)


def test_jpeg_chroma_radius_shrinks_with_the_quality_and_vanishes_for_fine_steps():
    radii = [jpeg_chroma_radius(quality) for quality in range(1, 101)]
    assert all(a >= b for a, b in zip(radii, radii[1:]))
    assert jpeg_chroma_radius(10) == 8 and jpeg_chroma_radius(30) == 3 and radii[85:] == [0] * 15


@pytest.mark.parametrize("quality", [10, 20, 30])
def test_jpeg_chroma_brings_a_decoded_jpeg_closer_to_its_photo(photos_dir, quality):
    """Photos saved by Pillow's libjpeg (4:2:0 chroma) at low quality: re-estimating the decoded
    image's chroma from its luma, at the radius its trace implies, raises its PSNR against the
    photo; a photo that never was a JPEG has no trace and comes back unchanged."""
    for name in ("scikit-image__rocket.png", "opencv-doc__aloeR.png"):
        photo = load_image(photos_dir / name)[None]
        photo = photo[..., : photo.shape[-2] // 16 * 16, : photo.shape[-1] // 16 * 16]
        decoded = jpeg(photo, quality)
        restored, radii = jpeg_chroma(decoded, decoded)
        assert float(psnr(restored, photo)) > float(psnr(decoded, photo)) and radii == [jpeg_chroma_radius(quality)]
        assert torch.equal(jpeg_chroma(decoded, decoded, jpeg_quality(decoded))[0], restored)  # the quality given
    assert jpeg_chroma(photo, photo) == (photo, [0])


@pytest.mark.parametrize("quality", [10, 30])
@pytest.mark.parametrize("crop", [(0, 0), (5, 11)])
def test_chroma_cells_hold_the_photo_a_jpeg_came_from_and_pull_a_wrong_chroma_towards_it(photos_dir, quality, crop):
    """The projection onto the chroma's quantisation cells (Pillow's libjpeg, 4:2:0): the photo a
    JPEG was saved from lies in them, so it comes back in place, also from a crop off the 16 px
    grid; a restoration whose chroma is off (Cb raised by 20 levels) is brought closer to it;
    projecting twice changes nothing more."""
    photo = load_image(photos_dir / "scikit-image__rocket.png")
    decoded = jpeg(photo[None], quality)[0][:, crop[0] :, crop[1] :]
    photo = photo[:, crop[0] :, crop[1] :]
    assert float(psnr(chroma_cells_projection(decoded, photo, quality)[None], photo[None])) > 60
    to_rgb = torch.linalg.inv(torch.tensor(JFIF_YCBCR))
    wrong = (photo + (20 / 255) * to_rgb[:, 1, None, None]).clamp(0, 1)
    projected = chroma_cells_projection(decoded, wrong, quality)
    assert float(psnr(projected[None], photo[None])) > float(psnr(wrong[None], photo[None])) + 3
    assert torch.allclose(chroma_cells_projection(decoded, projected, quality), projected, atol=1e-3)


@pytest.mark.parametrize("crop", [(0, 0), (5, 11)])
def test_jpeg_chroma_in_strips_equals_the_whole_image(photos_dir, crop):
    """Strips of 32 rows (each filtered with the rows the guided filter reads around it) give the
    whole image's result, also when the 16 px grid does not start at the corner."""
    photo = load_image(photos_dir / "scikit-image__rocket.png")[None]
    decoded = jpeg(photo, 10)[..., crop[0] :, crop[1] :]
    restored = torch.nn.functional.avg_pool2d(decoded, 3, 1, 1, count_include_pad=False)
    whole, radii = jpeg_chroma(decoded, restored, strip_rows=10**6)
    strips, _ = jpeg_chroma(decoded, restored, strip_rows=32)
    assert radii == [8] and torch.allclose(strips, whole, atol=1e-5)
    assert not torch.allclose(whole, restored, atol=1e-3)


@pytest.mark.parametrize("name", sorted(SEVERITY_MEASURES))
def test_a_photo_degraded_at_each_registry_level_measures_as_that_level(name, photos_dir):
    """Noise at sigma 15/25/50 and JPEG at quality 50/30/10 (uir's own degradations, two photos),
    read back by :func:`measured_severities`; a class without a measure, and a photo without a
    JPEG trace, measure as None."""
    photos = torch.stack([load_image(photos_dir / f"scikit-image__{photo}.png")[:, :256, :256]
                          for photo in ("rocket", "astronaut")])
    for severity in degradations.SEVERITIES:
        degraded = degradations.apply(name, photos, generator=torch.Generator().manual_seed(1), severity=severity)
        assert measured_severities([name, name], degraded) == [severity, severity]
    assert measured_severities(["hazy", "jpeg-compressed"], photos) == [None, None]
