"""The registered degradation families and their parameter ranges.

* ``da-clip``: the degradation types of UIR-LoRA / DA-CLIP (``DEFAULT_VOCABULARY``), named by the DA-CLIP
  vocabulary. Defaults follow the benchmark protocol where one is stated (Gaussian noise
  sigma 50/255, JPEG quality 10); the other types sample their parameters.
* ``grids``: the 11 degradations of GRIDS (sec. 5).
* ``lira``: LIRA's blended chain (sec. 4.1), alone or with haze or darkness.

Ranges are on the scales the functions document (noise sigma on 0-255, sizes in pixels,
``radius``/``width`` of drops and strokes as fractions of the shorter side).
"""

from __future__ import annotations

import math

from .families import ALL_NAMES, CLEAN
from .registry import Param, names, register

#: depth range (in units of 1/beta) of the depth proxy for LIRA's haze, so that its scattering
#: coefficients beta in [0.05, 0.25] give transmissions down to exp(-1.25) ~ 0.29.
LIRA_HAZE_DEPTH = 5.0
#: airlight of LIRA's haze (white sky).
LIRA_AIRLIGHT = 1.0
_ANGLE = dict(severe_when=None, doc="degrees from vertical")
_FILL = Param("fill", 0.0, 1.0, default=0.0, severe_when=None, levels=dict(mild=0.0, moderate=0.0, severe=0.0),
              doc="value written into missing pixels")


def _fixed(mild, moderate, severe):
    return dict(mild=mild, moderate=moderate, severe=severe)


# --- UIR-LoRA / DA-CLIP -------------------------------------------------------------------
register("motion-blurry", "blur:trajectory_motion_blur", family="da-clip", params=(
    Param("kernel_size", 7, 31, integer=True, doc="PSF support in px"),
    Param("intensity", 0.0, 1.0, doc="trajectory curvature"),
))
register("hazy", "photometric:haze", family="da-clip", fixed=dict(max_depth=1.0), params=(
    Param("beta", 0.5, 2.5, doc="scattering coefficient (depth in [0, 1])"),
    Param("airlight", 0.7, 1.0),
))
register("jpeg-compressed", "noise:jpeg_compression", family="da-clip", params=(
    Param("quality", 5, 95, default=10, integer=True, severe_when="low", levels=_fixed(50, 30, 10)),
))
register("low-light", "photometric:low_light", family="da-clip", params=(
    Param("gamma", 1.5, 3.0),
    Param("scale", 0.15, 0.5, severe_when="low", doc="exposure"),
    Param("noise", 0.0, 0.04, doc="sensor noise level"),
))
register("noisy", "noise:gaussian_noise", family="da-clip", params=(
    Param("sigma", 0.0, 100.0, default=50.0, levels=_fixed(15.0, 25.0, 50.0), doc="on the 0-255 scale"),
))
register("raindrop", "weather:raindrops", family="da-clip", framed=True, params=(
    Param("drops", 5, 40, integer=True),
    Param("radius", 0.03, 0.10, doc="fraction of the shorter side"),
    Param("blur", 1.0, 4.0, doc="defocus sigma of drop content, px"),
))
register("rainy", "weather:rain", family="da-clip", params=(
    Param("density", 0.0005, 0.004, doc="streak seeds per pixel"),
    Param("length", 10.0, 40.0, doc="streak length, px"),
    Param("angle", -30.0, 30.0, **_ANGLE),
    Param("intensity", 0.3, 0.9),
))
register("shadowed", "photometric:shadow", family="da-clip", params=(
    Param("attenuation", 0.3, 0.8, doc="fraction of light blocked"),
    Param("softness", 1.0, 30.0, severe_when=None, doc="penumbra width, px"),
    Param("vertices", 3, 8, integer=True, severe_when=None),
))
register("snowy", "weather:snow", family="da-clip", params=(
    Param("density", 0.0001, 0.001, doc="near-layer flakes per pixel"),
    Param("flake_size", 0.5, 2.5, doc="near-layer flake sigma, px"),
    Param("angle", -30.0, 30.0, **_ANGLE),
    Param("veil", 0.0, 0.3),
))
register("uncompleted", "masks:inpainting", family="da-clip", params=(
    Param("strokes", 1, 8, integer=True),
    Param("width", 0.02, 0.08, doc="brush diameter, fraction of the shorter side"),
    _FILL,
))

# --- GRIDS ---------------------------------------------------------------------------------
register("gaussian-blur", "blur:gaussian_blur", family="grids", params=(Param("sigma", 0.2, 4.0, doc="px"),))
register("motion-blur", "blur:linear_motion_blur", family="grids", params=(
    Param("length", 5.0, 25.0, doc="px"),
    Param("angle", 0.0, 180.0, severe_when=None, doc="degrees"),
))
register("rl-artifacts", "blur:richardson_lucy_artifacts", family="grids", params=(
    Param("radius", 2, 7, integer=True, doc="box PSF is (2r+1)^2"),
))
register("bicubic-sr", "blur:bicubic_down_up", family="grids", params=(Param("scale", 2, 4, integer=True),))
register("ringing", "blur:ringing", family="grids", params=(
    Param("cutoff", math.pi / 6, math.pi / 2, severe_when="low", doc="rad/px"),
    Param("radius", 5, 10, integer=True, severe_when=None, doc="kernel is (2r+1)^2"),
))
register("defocus-blur", "blur:defocus_blur", family="grids", params=(Param("radius", 1.0, 6.0, doc="px"),))
register("jpeg", "noise:jpeg_compression", family="grids", params=(
    Param("quality", 10, 60, integer=True, severe_when="low"),
))
register("poisson-noise", "noise:poisson_noise", family="grids", params=(
    Param("peak", 10.0, 200.0, severe_when="low", doc="photon count at white"),
))
register("inpainting", "masks:inpainting", family="grids", params=(
    Param("strokes", 1, 6, integer=True),
    Param("width", 0.02, 0.06, doc="brush diameter, fraction of the shorter side"),
    _FILL,
))
register("gaussian-noise", "noise:gaussian_noise", family="grids",
         params=(Param("sigma", 5.0, 50.0, doc="on the 0-255 scale"),))
register("salt-pepper", "noise:salt_and_pepper", family="grids", params=(
    Param("amount", 0.01, 0.15),
    Param("salt_ratio", 0.0, 1.0, default=0.5, severe_when=None),
))


# --- LIRA blended distortions ------------------------------------------------------------------
def lira_blend(image, generator, blur_sigma, noise_sigma, quality, haze_beta=None, dark_gamma=None):
    """LIRA's blended distortion (sec. 4.1).

    Scene-level factors first, then the camera chain: optional haze (scattering model with
    beta, white airlight, depth proxy up to ``LIRA_HAZE_DEPTH``) or darkness (``x^gamma``),
    then Gaussian blur ``sigma in [0, 5]``, Gaussian noise ``sigma in [0, 50]`` (0-255 scale)
    and JPEG ``quality in [10, 100]``. The levels mild / moderate / severe are the lower,
    middle and upper thirds of every range (the paper names the levels without giving their
    bounds; this split is our choice).
    """
    from .blur import gaussian_blur
    from .noise import gaussian_noise, jpeg_compression
    from .photometric import darkness, haze

    if haze_beta is not None:
        image = haze(image, generator, haze_beta, LIRA_AIRLIGHT, max_depth=LIRA_HAZE_DEPTH)
    if dark_gamma is not None:
        image = darkness(image, generator, dark_gamma)
    if blur_sigma > 0.05:
        image = gaussian_blur(image, generator, blur_sigma)
    image = gaussian_noise(image, generator, noise_sigma).clamp(0.0, 1.0)
    return jpeg_compression(image, generator, quality)


_LIRA_CHAIN = (
    Param("blur_sigma", 0.0, 5.0, doc="px"),
    Param("noise_sigma", 0.0, 50.0, doc="on the 0-255 scale"),
    Param("quality", 10, 100, integer=True, severe_when="low"),
)
register("lira-blur", "blur:gaussian_blur", family="lira", params=(Param("sigma", 0.1, 5.0, doc="px"),))
register("lira-noise", "noise:gaussian_noise", family="lira",
         params=(Param("sigma", 0.0, 50.0, doc="on the 0-255 scale"),))
register("lira-jpeg", "noise:jpeg_compression", family="lira",
         params=(Param("quality", 10, 100, integer=True, severe_when="low"),))
register("lira-blended", lira_blend, family="lira", params=_LIRA_CHAIN)
register("lira-blended-haze", lira_blend, family="lira", params=_LIRA_CHAIN + (Param("haze_beta", 0.05, 0.25),))
register("lira-blended-dark", lira_blend, family="lira", params=_LIRA_CHAIN + (Param("dark_gamma", 1.5, 2.5),))


def unchanged(image, generator):
    """No degradation: the photo as it is (the router's clean class)."""
    return image


register(CLEAN, unchanged, family="none")


if names() != list(ALL_NAMES):  # the names are listed once, in families.py, for torch-free use
    raise ImportError(f"registered degradations {names()} differ from uir.degradations.families.ALL_NAMES")
