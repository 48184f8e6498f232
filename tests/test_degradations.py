import math

import numpy as np
import pytest
import scipy.ndimage
import torch

import uir.degradations as D
from uir.degradations import filters
from uir.degradations.catalog import lira_blend

from .conftest import seeded

ALL = D.names()


def test_families_cover_the_specified_names():
    assert D.names("da-clip") == [
        "motion-blurry", "hazy", "jpeg-compressed", "low-light", "noisy",
        "raindrop", "rainy", "shadowed", "snowy", "uncompleted",
    ]
    assert len(D.names("grids")) == 11 and len(D.names("lira")) == 6
    assert set(D.DEFAULT_VOCABULARY) | set(D.GRIDS_TYPES) | set(D.LIRA_TYPES) | set(D.LIRA_FACTORS) | {D.CLEAN} == set(ALL)
    assert D.names("none") == [D.CLEAN]


@pytest.mark.parametrize("name", ALL)
def test_docs_read_without_import_are_the_functions_own(name):
    """A function registered by reference documents itself from its source, unimported: the
    same text as its imported docstring's first paragraph."""
    from uir.degradations.registry import plain_text

    function = D.get(name).fn
    function = getattr(function, "func", function)  # a fixed-argument partial
    assert D.get(name).doc == plain_text(function.__doc__.strip().split("\n\n")[0]) != ""


def test_clean_is_the_identity():
    image = torch.rand(3, 16, 16, generator=seeded(1))
    for severity in (None, "mild", "severe", "random"):
        assert torch.equal(D.apply(D.CLEAN, image, generator=seeded(0), severity=severity), image)


def test_parse_names_expands_all_and_rejects_bad_lists():
    import argparse

    assert D.parse_names("all") == list(D.DEFAULT_VOCABULARY)
    assert D.parse_names(" noisy, jpeg ,") == ["noisy", "jpeg"]
    assert D.parse_names("low-light+noisy,hazy") == ["low-light+noisy", "hazy"]
    with pytest.raises(argparse.ArgumentTypeError, match="unknown degradation 'foggy'"):
        D.parse_names("noisy+foggy")
    for spec, message in [("noisy,foggy", "unknown degradation 'foggy'"), ("noisy,noisy", "twice"), (",", "no degradation")]:
        with pytest.raises(argparse.ArgumentTypeError, match=message):
            D.parse_names(spec)


@pytest.mark.parametrize("name", ALL)
def test_deterministic_shape_range_and_no_global_rng(name, sample):
    batch = torch.stack([sample, sample.flip(-1)])
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a, params_a = D.apply(name, batch, generator=seeded(7), severity="random", return_params=True)
    assert torch.equal(torch.get_rng_state(), state), "global RNG state was consumed"
    torch.manual_seed(999)
    b, params_b = D.apply(name, batch, generator=seeded(7), severity="random", return_params=True)
    assert torch.equal(a, b) and params_a == params_b
    assert a.shape == batch.shape and a.dtype == batch.dtype
    assert 0.0 <= a.min() and a.max() <= 1.0
    assert torch.equal(a, batch) == (name == D.CLEAN), "a degradation left the image unchanged, or clean did not"
    c, params_c = D.apply(name, batch, generator=seeded(8), severity="random", return_params=True)
    assert params_c == params_a or not torch.equal(a, c), "another seed gave the same output"
    single = D.apply(name, sample, generator=seeded(7), severity="random")
    assert single.shape == sample.shape


@pytest.mark.parametrize("name", ["noisy", "hazy", "motion-blurry", "jpeg-compressed", "uncompleted", "rainy"])
def test_grayscale_input(name, sample):
    gray = sample.mean(0, keepdim=True)
    out = D.apply(name, gray, generator=seeded())
    assert out.shape == gray.shape


@pytest.mark.parametrize("name", ALL)
def test_sampled_params_lie_in_range_and_levels(name, sample):
    spec = D.get(name)
    for severity in (None, "random", *D.SEVERITIES):
        _, params = D.apply(name, sample, generator=seeded(3), severity=severity, return_params=True)
        for p in spec.params:
            value = params[p.name]
            assert p.low <= value <= p.high
            if severity in D.SEVERITIES:
                level = p.level(severity)
                lo, hi = level if isinstance(level, tuple) else (level, level)
                assert math.floor(lo) - 1e-9 <= value <= hi + 1e-9


def test_benchmark_protocol_defaults(sample):
    _, p = D.apply("noisy", sample, generator=seeded(), return_params=True)
    assert p == {"sigma": 50.0}
    _, p = D.apply("jpeg-compressed", sample, generator=seeded(), return_params=True)
    assert p == {"quality": 10}


def test_gaussian_noise_std():
    flat = torch.full((3, 256, 256), 0.5)
    out = D.apply("noisy", flat, generator=seeded())
    assert abs((out - flat).std().item() - 50 / 255) < 0.02 * 50 / 255
    assert abs((out - flat).mean().item()) < 1e-3


def test_poisson_noise_variance_follows_signal():
    flat = torch.full((1, 256, 256), 0.4)
    out = D.apply("poisson-noise", flat, generator=seeded(), peak=50.0)
    assert abs(out.mean().item() - 0.4) < 0.01
    assert abs(out.var().item() - 0.4 / 50) < 0.1 * 0.4 / 50


def test_salt_and_pepper_fraction():
    flat = torch.full((3, 200, 200), 0.5)
    out = D.apply("salt-pepper", flat, generator=seeded(), amount=0.1, salt_ratio=0.25)
    salt = (out[0] == 1).float().mean().item()
    pepper = (out[0] == 0).float().mean().item()
    assert abs(salt - 0.025) < 0.005 and abs(pepper - 0.075) < 0.008


def _blockiness(image):
    """Mean jump across 8x8 block borders divided by the mean jump inside blocks (columns)."""
    diff = (image[..., 1:] - image[..., :-1]).abs().mean(dim=(0, 1))
    border = torch.arange(diff.shape[0]) % 8 == 7
    return (diff[border].mean() / diff[~border].mean()).item()


def test_jpeg_is_visibly_quantised(sample):
    smooth = D.apply("gaussian-blur", sample, generator=seeded(), sigma=2.0)
    strong = D.apply("jpeg-compressed", smooth, generator=seeded(), quality=10)
    mild = D.apply("jpeg-compressed", smooth, generator=seeded(), quality=95)
    assert _blockiness(strong) > 1.5 > _blockiness(mild)
    assert ((strong - smooth) ** 2).mean() > 5 * ((mild - smooth) ** 2).mean()


def test_gaussian_blur_matches_scipy(sample):
    out = D.apply("gaussian-blur", sample, generator=seeded(), sigma=2.0)
    expected = np.stack([scipy.ndimage.gaussian_filter(c.double().numpy(), 2.0, mode="mirror", truncate=3.0) for c in sample])
    assert np.abs(out.numpy() - expected).max() < 1e-5


def test_kernels_are_normalised_and_shaped():
    for kernel in (
        filters.gaussian_kernel(1.3), filters.disk_kernel(3.5), filters.box_kernel(2),
        filters.line_kernel(11, 30), filters.sinc_kernel(1.0, 8), filters.trajectory_kernel(15, 0.8, seeded()),
    ):
        assert kernel.shape[0] % 2 == 1 and kernel.shape[0] == kernel.shape[1]
        assert abs(kernel.sum().item() - 1.0) < 1e-9
    disk = filters.disk_kernel(4.0)
    assert torch.allclose(disk, disk.T) and torch.allclose(disk, disk.flip(0))
    straight = filters.trajectory_kernel(15, 0.0, seeded(2))
    assert (straight > 1e-3).sum() < 3 * 15, "a zero-intensity trajectory should be a thin line"


def test_sinc_kernel_is_a_low_pass_with_the_given_cutoff():
    kernel = filters.sinc_kernel(math.pi / 3, 30)
    response = torch.fft.fftshift(torch.fft.fft2(kernel, s=(256, 256))).abs()
    freq = torch.fft.fftshift(torch.fft.fftfreq(256)) * 2 * math.pi
    fy, fx = torch.meshgrid(freq, freq, indexing="ij")
    radius = torch.sqrt(fx**2 + fy**2)
    assert response[radius < 0.7 * math.pi / 3].mean() > 0.9
    assert response[radius > 1.3 * math.pi / 3].mean() < 0.1


def test_bicubic_sr_removes_high_frequencies(sample):
    out = D.apply("bicubic-sr", sample, generator=seeded(), scale=4)
    def high(x):
        return (x[..., 1:] - x[..., :-1]).abs().mean()
    assert out.shape == sample.shape and high(out) < 0.6 * high(sample)


def test_haze_pulls_towards_airlight_more_at_the_top():
    black = torch.zeros(3, 128, 128)
    out = D.apply("hazy", black, generator=seeded(), beta=2.0, airlight=0.9)
    assert out.max() <= 0.9 + 1e-6 and out.min() >= 0
    assert out[:, :32].mean() > out[:, -32:].mean()


def test_low_light_darkens_and_shadow_attenuates(sample):
    dark = D.apply("low-light", sample, generator=seeded(), noise=0.0)
    assert dark.mean() < 0.5 * sample.mean()
    shaded = D.apply("shadowed", sample, generator=seeded(), attenuation=0.6)
    assert (shaded <= sample + 1e-6).all()
    ratio = shaded[sample > 0.05] / sample[sample > 0.05]
    assert ratio.min() >= 0.4 - 1e-4 and (ratio < 0.9).float().mean() > 0.05


def test_rain_adds_light_and_inpainting_masks(sample):
    rainy = D.apply("rainy", sample, generator=seeded())
    assert (rainy >= sample - 1e-6).all() and (rainy - sample).mean() > 0.005
    holes = D.apply("uncompleted", sample, generator=seeded(), fill=0.0, strokes=4)
    missing = (holes == 0).all(0)
    assert 0.01 < missing.float().mean() < 0.8
    assert torch.equal(holes[:, ~missing], sample[:, ~missing])


def test_rl_artifacts_leave_flat_images_alone(sample):
    flat = torch.full((3, 64, 64), 0.3)
    assert torch.allclose(D.apply("rl-artifacts", flat, generator=seeded()), flat, atol=1e-6)
    out = D.apply("rl-artifacts", sample, generator=seeded(), radius=4)
    assert ((out - sample) ** 2).mean() > 1e-5


def test_composed_list_equals_sequential_application(sample):
    chain, params = D.apply(["hazy", "noisy"], sample, generator=seeded(5), return_params=True, noisy={"sigma": 20})
    g = seeded(5)
    step = D.apply("hazy", sample, generator=g)
    step = D.apply("noisy", step, generator=g, sigma=20)
    assert torch.equal(chain, step)
    assert params[1] == {"sigma": 20.0} and set(params[0]) == {"beta", "airlight"}


def test_lira_levels_and_order(sample):
    _, mild = D.apply("lira-blended", sample, generator=seeded(), severity="mild", return_params=True)
    _, severe = D.apply("lira-blended", sample, generator=seeded(), severity="severe", return_params=True)
    assert mild["blur_sigma"] <= 5 / 3 and severe["blur_sigma"] >= 10 / 3
    assert mild["quality"] >= 70 and severe["quality"] <= 40
    _, haze = D.apply("lira-blended-haze", sample, generator=seeded(), return_params=True)
    assert 0.05 <= haze["haze_beta"] <= 0.25
    clean_chain = lira_blend(sample[None], seeded(1), 0.0, 0.0, 100)
    assert ((clean_chain[0] - sample) ** 2).mean() < 1e-4


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda x: D.apply("foggy", x, generator=seeded()), "valid choices: bicubic-sr"),
        (lambda x: D.apply("noisy", x, generator=seeded(), sigma=500), "outside its range"),
        (lambda x: D.apply("noisy", x, generator=seeded(), strength=1), "valid parameters: sigma"),
        (lambda x: D.apply("jpeg-compressed", x, generator=seeded(), quality=10.5), "must be an integer"),
        (lambda x: D.apply("noisy", x, generator=seeded(), severity="extreme"), "valid choices: mild"),
        (lambda x: D.apply("noisy", x, generator=None), "explicit torch.Generator"),
        (lambda x: D.apply("noisy", x[:2], generator=seeded()), "1 or 3 channels"),
        (lambda x: D.apply("noisy", x * float("nan"), generator=seeded()), "NaN"),
        (lambda x: D.apply("noisy", x * 3, generator=seeded()), "[0, 1]"),
        (lambda x: D.apply("noisy", x[:, :4, :4], generator=seeded()), "at least 8x8"),
        (lambda x: D.apply(["noisy"], x, generator=seeded(), hazy={}), "not in ['noisy']"),
    ],
)
def test_clear_errors(call, message, sample):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("(", r"\(")):
        call(sample)


def test_a_crop_framed_by_its_photo_gets_the_photos_raindrops():
    """``frame``: a crop is degraded as its part of the photo. On flat grey the drop's alpha is
    ``(y - 0.5) / 0.05``; a 96 px crop framed by a 384 px photo matches the centre crops of the
    photo itself in coverage and in drop size (the alpha's correlation 8 px apart), where an
    unframed crop draws its drops at its own, 4x smaller, scale. The photo's own frame changes nothing."""
    grey, crop = torch.full((1, 3, 384, 384), 0.5), slice(144, 240)
    params = dict(drops=20, radius=0.06, blur=2.0)

    def alpha(image):
        return ((image - 0.5) / 0.05).mean(1)

    def stats(draw) -> tuple[float, float]:
        maps = torch.cat([alpha(draw(torch.Generator().manual_seed(seed))) for seed in range(400)])
        shifted = maps[..., 8:], maps[..., :-8]
        correlation = torch.corrcoef(torch.stack([shifted[0].flatten(), shifted[1].flatten()]))[0, 1]
        return maps.mean().item(), correlation.item()

    photo = stats(lambda g: D.apply("raindrop", grey, generator=g, **params)[..., crop, crop])
    framed = stats(lambda g: D.apply("raindrop", grey[..., crop, crop], generator=g, frame=(384, 384), **params))
    unframed = stats(lambda g: D.apply("raindrop", grey[..., crop, crop], generator=g, **params))
    assert framed[0] == pytest.approx(photo[0], rel=0.15) and framed[1] == pytest.approx(photo[1], abs=0.05)
    assert unframed[1] < photo[1] - 0.2, "the crop's own scale: smaller drops"
    generator = lambda: torch.Generator().manual_seed(7)  # noqa: E731
    assert torch.equal(D.apply("raindrop", grey, generator=generator(), frame=(384, 384)),
                       D.apply("raindrop", grey, generator=generator()))
    assert torch.equal(D.apply("noisy", grey[..., crop, crop], generator=generator(), frame=(384, 384)),
                       D.apply("noisy", grey[..., crop, crop], generator=generator())), "only framed types use it"
    with pytest.raises(ValueError, match="must be the"):
        D.apply("raindrop", grey, generator=generator(), frame=(100, 384))


def test_a_measured_value_reads_as_the_severity_whose_level_is_nearest():
    """Fixed levels (noise sigma 15/25/50, JPEG quality 50/30/10, the milder on a tie), thirds of
    a range (low light's gamma) and a parameter without a direction (rain's angle: None)."""
    sigma = D.get("noisy").param_index["sigma"]
    assert [sigma.severity_of(v) for v in (0, 19, 20, 21, 37, 38, 90)] == ["mild"] * 3 + ["moderate"] * 2 + ["severe"] * 2
    quality = D.get("jpeg-compressed").param_index["quality"]
    assert [quality.severity_of(v) for v in (95, 41, 25, 20, 19, 5)] == ["mild", "mild", "moderate", "moderate", "severe", "severe"]
    assert quality.severity_of(float("nan")) is None
    gamma = D.get("low-light").param_index["gamma"]  # thirds of [1.5, 3.0]: centres 1.75, 2.25, 2.75
    assert [gamma.severity_of(v) for v in (1.6, 2.2, 2.9)] == ["mild", "moderate", "severe"]
    assert D.get("rainy").param_index["angle"].severity_of(10.0) is None
