"""Classical restorers, in plain torch: physical priors the expected-gain rule may choose instead
of, or together with, a network (:mod:`uir.lora.strategies`), and that a prior-guided expert
refines (``train_uir_lora.py --prior_input``).

**Dark channel prior** (He, Sun and Tang, CVPR 2009). In a haze-free outdoor photo most patches
have a pixel dark in some channel. Haze follows ``I = J t + A (1 - t)``, so the dark channel of
``I / A`` estimates ``1 - t``::

    dark(x)  = min over a patch of (min over channels of x)
    A        = per channel, the brightest input pixel among the 0.1% with the highest dark channel
    t        = 1 - omega * dark(I / A)
    J        = (I - A) / max(t, t0) + A

``omega < 1`` keeps a little haze for depth, as the paper does. ``refine_radius`` refines ``t``
by the guided filter (He, Sun and Tang, TPAMI 2013, sec. 4), which replaced the 2009 paper's
soft matting: :func:`guided_filter`, guided by the image's grey level. Without it the result
equals ``benchmarks/peers.py``'s OpenCV "dark-channel" tool; with it, its "dark-channel+GF".
The hazy class's prior (:data:`PRIORS`) refines with radius 30 and ``eps`` 0.01: on 52
training photos, hazy alone, three seeds, that is +0.73 ± 0.09 dB over the coarse ``t``
(radius 30 at ``eps`` 0.001: +0.55 ± 0.07; radius 60 at 0.001: +0.51 ± 0.07).

**DCT shrinkage** (BM3D's two stages without its block matching: Dabov, Foi, Katkovnik and
Egiazarian, TIP 2007). Additive white Gaussian noise of standard deviation ``sigma`` spreads
evenly over the orthonormal DCT coefficients of a patch, while a photo's patch puts its energy
in a few. :func:`dct_denoise` estimates ``sigma`` (:func:`noise_sigma`), moves to an opponent
colour space, zeroes the coefficients of every 8x8 patch below ``2.7 sigma``, averages the
overlapping patches back, and then repeats with Wiener gains ``P^2 / (P^2 + sigma^2)`` taken
from that first estimate ``P``. It is the noisy class's prior, with a patch at every pixel in the
second stage and every second pixel in the first (since 2026-12-05; every second pixel in both
was 0.15 dB worse on the training photos, every pixel in both 0.06 dB better for about 1.4x the time;
docs/default-model.md).

**Veil bound** (our addition, the dark channel's argument for a global veil). Snow whitens a
photo by a veil ``y = (1 - v) x + W v`` before its flakes. Since ``x >= 0``, every pixel of ``y``
is at least ``W v``, so the image's darkest pixels cap the veil: ``v <= v_max = dark / W``, with
``dark`` the 0.1% quantile of the channel minimum (a few noisy or flaked pixels do not move it).
A restoration ``x'`` removed the veil ``v' = median((y - x') / (W - x'))`` over its pixels below
0.7 (flakes are few, and bright pixels divide by almost nothing). Where ``v' > v_max`` it
removed more than the image can hold, and :func:`veil_bound` puts the excess back: the veil
``d`` with ``(1 - v') = (1 - v_max)(1 - d)``, so that ``y`` is ``v_max`` of veil over the result.

Haze is a veil too, of thickness ``1 - t`` towards ``A``, and the dark channel is its local
cap: ``t >= t_min = 1 - dark(I / A)``. With ``t`` between ``t_min`` and 1, ``J = A + (I - A) / t``
lies between ``I`` itself and the dark channel's restoration at ``omega = 1``;
:func:`airlight_bound` clamps a restoration into that range, pixel by pixel.

**Light bound** (our addition). Rain streaks and snowflakes only add light: each is a blend
towards white, ``y = (1 - s) y' + s`` (rain's screen blend ``y = x + (1 - x) s`` is one), and
snow's veil whitens towards ``W``. A scene pixel above ``W`` stays above ``W`` under the veil, so
wherever ``y < W`` the scene was no brighter than its input, ``x <= y``. :func:`light_bound`
lowers a restoration to its input wherever it brightened such a pixel; removing streaks,
flakes or veil only darkens. Within the model the truth satisfies the bound, so the clamp can
only bring each pixel closer to it.

**Shadow bound** (our addition). A cast shadow is a veil towards black, ``y = (1 - v) x`` with
``v = a m``: one opacity for the three channels, at most ``a_max``, the largest attenuation the
``shadowed`` degradation draws. So the truth is ``x = g y`` with one gain
``1 <= g <= 1 / (1 - a_max)`` per pixel, and ``g y <= 1``. For each pixel these ``g y`` are a
segment of RGB space, a convex set that holds the truth, and :func:`shadow_bound` projects a
restoration onto it (the least-squares gain ``<y, x'> / <y, y>``, clamped to the segment): the
projection can only bring each pixel closer to the truth.

**JPEG chroma from luma** (our addition). Baseline JPEG keeps the chroma (JFIF's Cb, Cr) at half
resolution and quantises it with coarser steps than the luma, so at low quality it comes back
as flat 16 px blocks that bleed across edges the luma still shows. :func:`chroma_from_luma`
re-estimates Cb and Cr by the guided filter (above) guided by Y, which it keeps: in each window
the chroma is fitted as a linear function of the luma and follows its edges. How far the chroma
was smeared grows with the quantisation scale (libjpeg's percentage of its quality-50 steps,
:func:`~uir.degradations.jpeg_trace.libjpeg_scale`), so :func:`jpeg_chroma` takes the radius
``round(scale / 60)`` from the quality the image's JPEG trace shows (8 px at quality 10, 3 at
30, none above quality 85). Fitted on 20 training photos through the default pipeline:
the best radius of 2, 4, 6, 8 and 12 px was 12 at quality 5, 8 at 10, 4-6 at 15, 4 at 20 and
25, 2 at 30 (+0.39, +0.28, +0.17, +0.13, +0.08, +0.05 dB); a fixed 8 px lost 0.29 dB at
quality 30 (docs/default-model.md). The filter's chroma is then projected onto what the JPEG
data allows (:func:`chroma_cells_projection`): libjpeg averages the chroma over 2x2 pixels
(4:2:0) and rounds each 8x8 block's DCT coefficients to its steps, so the photo's own chroma,
averaged the same way, lies within half a step of the degraded image's rounded coefficients.
That set is convex, and projecting onto a convex set that holds the truth can only bring the
chroma closer to it; it undoes the filter where the chroma did not follow the luma (on the same
photos +0.33 dB at quality 10 instead of +0.28, the worst photo -0.02 instead of -0.21).

**Clipped noise** (Foi, "Clipped noisy images: heteroskedastic modeling and practical denoising",
Signal Processing 2009). A sensor's values are clipped to [0, 1], so noise added before the clip
is not zero-mean after it: ``y = clip(x + n, 0, 1)`` has the mean
``m(x) = x (Phi(b) - Phi(a)) + sigma (phi(a) - phi(b)) + 1 - Phi(b)`` with ``a = -x / sigma`` and
``b = (1 - x) / sigma`` (:func:`clipped_noise_mean`): ``m(0) = 0.08`` at sigma 50/255, where the
scene is black. A denoiser that averages ``y`` estimates ``m(x)``, not ``x``; :func:`unclip_noise`
maps its output back through ``m``, which rises monotonically, with the noise's sigma measured on
the noisy image. The pipeline does so where a dark photo's denoised output is brightened next (a
split call, :mod:`uir.pipelines.restoring`), which would multiply the gap. Clipping also hides
noise from :func:`noise_sigma` (a dark photo's sigma 50 reads 27-43), so the map measures it
with :func:`clipped_noise_sigma` (our variant of Foi's censored-normal moments): in a block whose
share ``z`` of values is 0 (or, by symmetry, 1), a scene ``x`` flat at this scale has ``x / sigma = alpha =
Phi^-1(1 - z)``, and the block's finest diagonal Haar coefficients, which cancel the scene's
slope, have the variance of the censored noise, ``sigma^2 v(alpha)`` with
``v = (alpha^2 + 1) Phi(alpha) + alpha phi(alpha) - (alpha Phi(alpha) + phi(alpha))^2``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Callable

import torch
import torch.nn.functional as F

from .degradations.jpeg_trace import JFIF_YCBCR, dct_matrix, grid_phase, jpeg_quality, libjpeg_scale
from .degradations.weather import SNOW_VEIL_WHITE


def dark_channel(image: torch.Tensor, patch: int = 15) -> torch.Tensor:
    """(B,1,H,W): the minimum over the channels and a ``patch x patch`` window (edges replicated)
    of (B,C,H,W) images."""
    darkest = image.amin(dim=1, keepdim=True)
    pad = patch // 2
    return -F.max_pool2d(F.pad(-darkest, (pad, pad, pad, pad), mode="replicate"), patch, stride=1)


#: the guided filter's window radius and ridge for the hazy prior's transmission (module docstring)
GUIDED_RADIUS, GUIDED_EPS = 30, 1e-2


def box_mean(image: torch.Tensor, radius: int) -> torch.Tensor:
    """The mean of (B,C,H,W) images over every ``(2 radius + 1)^2`` window, edges replicated:
    running sums along each axis (in float64, so the differences of large sums stay exact to
    float32), whose cost does not grow with the radius (4-5x faster than two pooling passes at
    radius 8 and 30 on 512x512, docs/performance.md)."""
    side = 2 * radius + 1
    sums = F.pad(image, (radius + 1, radius, radius + 1, radius), mode="replicate").double()
    sums = sums.cumsum(-1)
    sums = (sums[..., side:] - sums[..., :-side]).cumsum(-2)
    return ((sums[..., side:, :] - sums[..., :-side, :]) / side**2).to(image.dtype)


def guided_filter(guide: torch.Tensor, source: torch.Tensor, radius: int, eps: float) -> torch.Tensor:
    """The guided filter (He, Sun and Tang, TPAMI 2013, eqs. 3-8) of (B,C,H,W) ``source`` by a
    (B,1,H,W) ``guide``: in each window ``w_k`` of :func:`box_mean`, ``source ~ a_k guide + b_k``
    by least squares with the ridge ``eps a_k^2`` (``a_k = cov_k / (var_k + eps)``,
    ``b_k = mean_k(source) - a_k mean_k(guide)``); each output pixel averages ``a_k guide + b_k``
    over the windows that hold it. The output follows the guide's edges and the source's levels."""
    mean_guide, mean_source = box_mean(guide, radius), box_mean(source, radius)
    covariance = box_mean(guide * source, radius) - mean_guide * mean_source
    variance = box_mean(guide * guide, radius) - mean_guide * mean_guide
    a = covariance / (variance + eps)
    b = mean_source - a * mean_guide
    return box_mean(a, radius) * guide + box_mean(b, radius)


def dark_channel_dehaze(image: torch.Tensor, omega: float = 0.85, patch: int = 15, t0: float = 0.1,
                        refine_radius: int | None = None, refine_eps: float = GUIDED_EPS) -> torch.Tensor:
    """Dehaze (B,3,H,W) images in [0, 1] by the dark channel prior (module docstring). ``omega``
    0.85: the setting ``benchmarks/peers.py`` chose for the hazy type on training photos.
    ``refine_radius``: refine the transmission by :func:`guided_filter` with this radius and
    ``refine_eps``, guided by the image's grey level (``None``: the 2009 paper's coarse ``t``)."""
    dark = dark_channel(image, patch).flatten(1)
    count = max(1, dark.shape[1] // 1000)
    brightest = dark.topk(count, dim=1).indices
    pixels = image.flatten(2)
    airlight = pixels.gather(2, brightest[:, None].expand(-1, image.shape[1], -1)).amax(2).clamp(min=1e-3)
    airlight = airlight[:, :, None, None]
    transmission = 1 - omega * dark_channel(image / airlight, patch)
    if refine_radius is not None:
        transmission = guided_filter(image.mean(1, keepdim=True), transmission, refine_radius, refine_eps)
    return ((image - airlight) / transmission.clamp(min=t0) + airlight).clamp(0, 1)


def bilateral_filter(image: torch.Tensor, sigma_color: float = 50 / 255, sigma_space: float = 5.0,
                     diameter: int = 9) -> torch.Tensor:
    """Bilateral filter (Tomasi and Manduchi, ICCV 1998) of (B,C,H,W) images, as OpenCV's
    ``bilateralFilter`` defines it for colour images: each pixel becomes the mean of the pixels
    ``q`` within a disc of radius ``diameter // 2`` (edges mirrored), weighted by
    ``exp(-|p - q|^2 / (2 sigma_space^2)) * exp(-d^2 / (2 sigma_color^2))``, ``d`` the sum over
    the channels of ``|I(p) - I(q)|``. The defaults are the setting ``benchmarks/peers.py`` chose
    for the jpeg-compressed type on training photos."""
    radius = diameter // 2
    height, width = image.shape[-2:]
    padded = F.pad(image, (radius,) * 4, mode="reflect")
    total = torch.zeros_like(image)
    norm = torch.zeros_like(image[:, :1])
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            if dy * dy + dx * dx > radius * radius:
                continue
            shifted = padded[..., radius + dy : radius + dy + height, radius + dx : radius + dx + width]
            distance = (shifted - image).abs().sum(1, keepdim=True)
            weight = torch.exp(-(dy * dy + dx * dx) / (2 * sigma_space**2) - distance**2 / (2 * sigma_color**2))
            total += weight * shifted
            norm += weight
    return total / norm


#: BM3D's hard threshold, in noise standard deviations (Dabov et al., TIP 2007: lambda_3D = 2.7)
HARD_THRESHOLD = 2.7
#: side of the DCT patches of :func:`dct_denoise` (BM3D's 8)
DCT_PATCH = 8
#: an orthonormal opponent colour transform (rows: brightness, red - blue, green against the
#: rest): it decorrelates the colours of a photo, and keeps i.i.d. noise i.i.d. at the same sigma
OPPONENT = torch.tensor([[1, 1, 1], [1, 0, -1], [-1, 2, -1]], dtype=torch.float32)
OPPONENT = OPPONENT / OPPONENT.norm(dim=1, keepdim=True)


def noise_sigma(image: torch.Tensor) -> torch.Tensor:
    """Per image of (B,C,H,W), the standard deviation of additive white Gaussian noise, (B,):
    Donoho's robust estimate, the median absolute finest diagonal Haar wavelet coefficient over
    all channels, divided by 0.6745 (the median of ``|N(0, 1)|``). Image content barely reaches
    that subband, so the noise dominates it."""
    diagonal = _haar_diagonal(image.float()[..., : image.shape[-2] // 2 * 2, : image.shape[-1] // 2 * 2])
    return diagonal.flatten(1).abs().median(1).values / 0.6745


def _haar_diagonal(x: torch.Tensor) -> torch.Tensor:
    """The finest diagonal Haar coefficients of (..., H, W) ``x`` with even sides, one per 2x2
    cell: a scene's slope cancels in them, white noise keeps its variance."""
    return (x[..., 0::2, 0::2] - x[..., 0::2, 1::2] - x[..., 1::2, 0::2] + x[..., 1::2, 1::2]) / 2


def _normal_density(t: torch.Tensor) -> torch.Tensor:
    """The standard normal density ``phi(t)``."""
    return torch.exp(-t * t / 2) / math.sqrt(2 * math.pi)


def _censored_variance(alpha: torch.Tensor) -> torch.Tensor:
    """``Var(max(X, 0)) / sigma^2`` for ``X ~ N(alpha sigma, sigma^2)``: ``v(alpha)`` of the module
    docstring."""
    below, density = torch.special.ndtr(alpha), _normal_density(alpha)
    return (alpha * alpha + 1) * below + alpha * density - (alpha * below + density) ** 2


def clipped_noise_sigma(image: torch.Tensor, block: int = 16, most_clipped: float = 0.6) -> torch.Tensor:
    """Per image of (B,C,H,W), the standard deviation of white Gaussian noise added before the
    values were clipped to [0, 1], (B,) (module docstring, "Clipped noise"): in each ``block`` px
    square of each channel clipped at one end only, on under ``most_clipped`` of its values, the
    mean square of its finest diagonal Haar coefficients over ``v(alpha)``, ``alpha`` from its
    share of clipped values (at 1, by symmetry); the median over those blocks. An image without
    such blocks (one smaller than a block among them) gets :func:`noise_sigma`."""
    sigmas = noise_sigma(image)
    if min(image.shape[-2:]) < block:
        return sigmas
    x = image.float()[..., : image.shape[-2] // block * block, : image.shape[-1] // block * block]
    for row, sample in enumerate(x):
        squares = _block_means(_haar_diagonal(sample).square(), block // 2)
        black, white = _block_means((sample <= 0).float(), block), _block_means((sample >= 1).float(), block)
        clipped = (black + white).double()
        kept = ((black == 0) | (white == 0)) & (clipped < most_clipped)
        if bool(kept.any()):
            alpha = torch.special.ndtri(1 - clipped[kept]).clamp(max=8.0)
            sigmas[row] = (squares[kept].double() / _censored_variance(alpha)).sqrt().median().to(sigmas)
    return sigmas


def _block_means(planes: torch.Tensor, block: int) -> torch.Tensor:
    """The means of the ``block`` px squares of (C,H,W) ``planes`` whose sides ``block`` divides, flat."""
    return F.avg_pool2d(planes[None], block).flatten()


def clipped_noise_mean(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """``m(x) = E[clip(x + n, 0, 1)]`` for ``n ~ N(0, sigma^2)``, elementwise (module docstring)."""
    a, b = -x / sigma, (1 - x) / sigma
    return x * (torch.special.ndtr(b) - torch.special.ndtr(a)) + sigma * (_normal_density(a) - _normal_density(b)) \
        + torch.special.ndtr(-b)


def unclip_noise(degraded: torch.Tensor, restored: torch.Tensor, levels: int = 1025) -> torch.Tensor:
    """The (B,3,H,W) ``restored`` images, estimates of the clipped noisy ``degraded`` images' mean
    ``m(x)``, mapped back to ``x`` (module docstring): ``m`` tabulated at ``levels`` values of
    ``x`` in [0, 1] for each image's :func:`clipped_noise_sigma` and inverted by linear interpolation; a
    value below ``m(0)`` or above ``m(1)``, which no scene gives, maps to 0 or 1."""
    grid = torch.linspace(0, 1, levels, dtype=torch.float64)
    out = restored.clone()
    for row, sigma in enumerate(clipped_noise_sigma(degraded).tolist()):
        if sigma <= 0:
            continue
        means = clipped_noise_mean(grid, sigma)
        y = restored[row].double().clamp(float(means[0]), float(means[-1]))
        upper = torch.searchsorted(means, y.flatten()).clamp(1, levels - 1).view_as(y)
        low, high = means[upper - 1], means[upper]
        out[row] = (grid[upper - 1] + (y - low) / (high - low) * (grid[1] - grid[0])).to(out)
    return out


def _patch_dct(patch: int, dtype: torch.dtype, device) -> torch.Tensor:
    """The orthonormal 2-D DCT of a flattened ``patch x patch`` patch as one (p^2, p^2) matrix,
    ``kron(basis, basis)`` of the 1-D :func:`~uir.degradations.jpeg_trace.dct_matrix`: row
    ``u p + v`` is the frequency (u down, v across), column ``i p + j`` the pixel (i down, j across)."""
    basis = dct_matrix(patch, dtype=dtype, device=device)
    return torch.kron(basis, basis)


def _sliding_dct(planes: torch.Tensor, transform: torch.Tensor, stride: int) -> torch.Tensor:
    """The 2-D DCT (``transform``, :func:`_patch_dct`) of the patches of (N,1,H,W) ``planes``
    every ``stride`` pixels, (N, p^2, rows, columns): one convolution whose p^2 kernels are the
    DCT's basis patches. On a CPU it is faster than the separable transform in 1-D convolutions,
    which does an eighth of the arithmetic (docs/default-model.md, "Noise: the Wiener stage at every pixel")."""
    p = math.isqrt(transform.shape[0])
    return F.conv2d(planes, transform.reshape(p * p, 1, p, p), stride=stride)


def _overlap_add_patches(patches: torch.Tensor, patch: int, stride: int) -> torch.Tensor:
    """The pixels of ``patch x patch`` patches placed every ``stride`` pixels, summed where they
    overlap, (N,1,H,W) with ``H = (rows - 1) stride + patch`` and ``W`` alike. ``patches``
    (N, P, Q, rows, columns) holds the value of pixel (i down, j across) of the patch at
    (row, column); P or Q may be 1 for a value shared by a patch's rows or columns. Shifted adds,
    first across then down: on a CPU several times faster than ``F.fold``'s scatter."""
    n, p, _, rows, columns = patches.shape
    height, width = (rows - 1) * stride + patch, (columns - 1) * stride + patch
    patches = patches.expand(n, p, patch, rows, columns)
    across = patches.new_zeros(n, p, rows, width)
    for j in range(patch):
        across[..., j : j + (columns - 1) * stride + 1 : stride].add_(patches[:, :, j])
    across = across.expand(n, patch, rows, width)
    out = patches.new_zeros(n, 1, height, width)
    for i in range(patch):
        out[:, 0, i : i + (rows - 1) * stride + 1 : stride].add_(across[:, i])
    return out


def _overlap_add(coefficients: torch.Tensor, transform: torch.Tensor, stride: int) -> torch.Tensor:
    """The adjoint of :func:`_sliding_dct`: every patch's inverse DCT (one matrix product), summed
    where patches overlap (:func:`_overlap_add_patches`), (N,1,H,W) with
    ``H = (rows - 1) stride + p`` and ``W`` alike."""
    n, q, rows, columns = coefficients.shape
    p = math.isqrt(q)
    pixels = (transform.T @ coefficients.flatten(2)).view(n, p, p, rows, columns)
    return _overlap_add_patches(pixels, p, stride)


def _spread(weights: torch.Tensor, patch: int, stride: int) -> torch.Tensor:
    """Each patch's weight of (N,1,rows,columns) ``weights`` spread over its ``patch x patch``
    pixels and summed where patches overlap, (N,1,H,W) as :func:`_overlap_add`."""
    return _overlap_add_patches(weights[:, :, None], patch, stride)


def _channel_sum(x: torch.Tensor) -> torch.Tensor:
    """The sum over the channels of (N,C,H,W) ``x``, (N,1,H,W), as one matrix product (a reduction
    across the channels of a contiguous tensor strides through memory)."""
    n, c, h, w = x.shape
    return (x.new_ones(1, c) @ x.reshape(n, c, h * w)).reshape(n, 1, h, w)


def _shrink_patches(planes: torch.Tensor, sigma: torch.Tensor, pilot: torch.Tensor | None, patch: int,
                    stride: int, band: int) -> torch.Tensor:
    """One stage of :func:`dct_denoise` on (B,C,H,W) ``planes``: the DCT coefficients of the
    patches every ``stride`` pixels shrunk (hard threshold, or Wiener against ``pilot``),
    transformed back and averaged where patches overlap, each patch weighted by the inverse of
    its residual noise variance, as BM3D aggregates. ``band`` rows of patches at a time bound
    the memory."""
    b, c, h, w = planes.shape
    pad = patch - 1
    mode = "reflect" if pad < min(h, w) else "replicate"
    # every pixel lies in the same number of patches: pad by a patch less one pixel, then up to the stride
    extra_h, extra_w = -(h + pad - 1) % stride, -(w + pad - 1) % stride
    padding = (pad, pad + extra_w, pad, pad + extra_h)
    transform = _patch_dct(patch, planes.dtype, planes.device)
    noisy = F.pad(planes.reshape(b * c, 1, h, w), padding, mode=mode)
    guide = None if pilot is None else F.pad(pilot.reshape(b * c, 1, h, w), padding, mode=mode)
    variance = sigma.to(planes).clamp(min=1e-4).square().repeat_interleave(c)[:, None, None, None]
    total = torch.zeros_like(noisy)
    norm = torch.zeros_like(noisy)
    patch_rows = (noisy.shape[2] - patch) // stride + 1
    for first in range(0, patch_rows, band):
        rows = slice(first * stride, (min(patch_rows, first + band) - 1) * stride + patch)
        coefficients = _sliding_dct(noisy[:, :, rows], transform, stride)
        if guide is None:  # hard thresholding; the patch's mean is never thresholded away
            gain = (coefficients.abs() > HARD_THRESHOLD * variance.sqrt()).to(coefficients.dtype)
            gain[:, 0] = 1
        else:  # Wiener
            energy = _sliding_dct(guide[:, :, rows], transform, stride).square_()
            gain = energy.div_(energy + variance)
        coefficients.mul_(gain)
        # the residual variance of a patch is sigma^2 times the sum of its squared gains (a 0/1 gain: its count)
        weight = 1 / (_channel_sum(gain.square_()) * variance).clamp(min=1e-12)
        total[:, :, rows].add_(_overlap_add(coefficients.mul_(weight), transform, stride))
        norm[:, :, rows].add_(_spread(weight, patch, stride))
    return (total / norm)[..., pad : pad + h, pad : pad + w].reshape(b, c, h, w)


def dct_denoise(image: torch.Tensor, sigma: float | torch.Tensor | None = None, patch: int = DCT_PATCH,
                stride: int = 1, pilot_stride: int | None = None, band: int = 8) -> torch.Tensor:
    """Remove additive white Gaussian noise from (B,3,H,W) images in [0, 1] by shrinking the DCT
    coefficients of every sliding ``patch x patch`` patch: BM3D's two stages without its block
    matching (Dabov et al., TIP 2007), in an orthonormal opponent colour space (:data:`OPPONENT`).

    1. Hard thresholding: coefficients below :data:`HARD_THRESHOLD` ``* sigma`` are zeroed.
    2. Wiener filtering against the first stage: each coefficient is scaled by
       ``P^2 / (P^2 + sigma^2)``, ``P`` the first stage's coefficient.

    ``sigma`` (0-1 scale; per image, or one for all) defaults to :func:`noise_sigma`. A patch
    starts every ``stride`` pixels (1: at every pixel), in the first stage every ``pilot_stride``
    (default: ``stride``; the noisy prior runs 1 and 2); ``band`` rows of patches are shrunk at a
    time, which bounds the memory (and keeps each band's 64 coefficient planes in cache) and
    changes nothing else.
    """
    if image.dim() != 4 or image.shape[1] != 3:
        raise ValueError(f"dct_denoise needs (B,3,H,W) colour images, got shape {tuple(image.shape)}")
    check = image.float()
    sigma = noise_sigma(check) if sigma is None else torch.as_tensor(sigma, dtype=torch.float32).expand(image.shape[0])
    opponent = OPPONENT.to(check)
    planes = torch.einsum("ij,bjhw->bihw", opponent, check)
    basic = _shrink_patches(planes, sigma, None, patch, stride if pilot_stride is None else pilot_stride, band)
    final = _shrink_patches(planes, sigma, basic, patch, stride, band)
    return torch.einsum("ji,bjhw->bihw", opponent, final).clamp(0, 1).to(image)


def veil_bound(degraded: torch.Tensor, restored: torch.Tensor, white: float, quantile: float = 0.001) -> torch.Tensor:
    """``restored`` (B,3,H,W) with the veil it removed from ``degraded`` capped at what the
    degraded image's darkest pixels allow (module docstring); images within the cap unchanged."""
    out = restored.clone()
    for i, (y, x) in enumerate(zip(degraded.float(), restored.float())):
        darkest = y.amin(0).flatten()
        k = max(1, int(quantile * darkest.numel()))
        v_max = float(darkest.kthvalue(k).values.clamp(min=0)) / white
        below = x < 0.7
        if not bool(below.any()) or v_max >= 1:
            continue
        removed = float(((y - x)[below] / (white - x[below])).median().clamp(max=0.99))
        if removed > v_max:
            d = 1 - (1 - removed) / (1 - v_max)
            out[i] = ((1 - d) * x + white * d).to(out)
    return out


def airlight_bound(degraded: torch.Tensor, restored: torch.Tensor, t0: float = 0.01) -> torch.Tensor:
    """``restored`` (B,3,H,W) clamped, pixel by pixel, between the hazy ``degraded`` image and its
    dark-channel restoration at ``omega = 1`` (module docstring): no more haze removed than the
    dark channel allows, and none added."""
    hazy = degraded.float()
    most = dark_channel_dehaze(hazy, omega=1.0, t0=t0)
    low, high = torch.minimum(hazy, most), torch.maximum(hazy, most)
    return torch.maximum(torch.minimum(restored.float(), high), low).to(restored)


def light_bound(degraded: torch.Tensor, restored: torch.Tensor, white: float = 1.0) -> torch.Tensor:
    """``restored`` (B,3,H,W) no brighter than ``degraded`` wherever ``degraded`` is below ``white``
    (module docstring): the bound of a degradation that only blends towards ``white`` or above."""
    degraded = degraded.to(restored)
    return torch.where(degraded < white, torch.minimum(restored, degraded), restored)


def snow_bound(degraded: torch.Tensor, restored: torch.Tensor) -> torch.Tensor:
    """Snow's two bounds (module docstring): the global veil :func:`veil_bound` caps, then the
    light its veil and flakes added (:func:`light_bound` below the veil's white)."""
    return light_bound(degraded, veil_bound(degraded, restored, white=SNOW_VEIL_WHITE), white=SNOW_VEIL_WHITE)


def shadow_bound(degraded: torch.Tensor, restored: torch.Tensor, deepest: float | None = None) -> torch.Tensor:
    """``restored`` (B,3,H,W) projected, pixel by pixel, onto what lifting a shadow from ``degraded``
    can give (module docstring): ``g y`` with one gain ``g`` for the three channels,
    ``1 <= g <= 1 / (1 - deepest)`` and ``g y <= 1``. ``deepest``: the largest attenuation
    (default: the ``shadowed`` degradation's)."""
    if deepest is None:
        from .degradations import get

        deepest = get("shadowed").param_index["attenuation"].high
    y, x = degraded.float(), restored.float()
    gain = (y * x).sum(1, keepdim=True) / (y * y).sum(1, keepdim=True).clamp(min=1e-12)
    most = torch.minimum(torch.full_like(gain, 1 / (1 - deepest)), 1 / y.amax(1, keepdim=True).clamp(min=1e-12))
    return (gain.clamp(max=most).clamp(min=1) * y).clamp(0, 1).to(restored)


#: libjpeg quantisation scale (percent) per pixel of :func:`jpeg_chroma`'s radius (module docstring)
CHROMA_SCALE_PER_PIXEL = 60
#: libjpeg's chrominance quantisation steps at quality 50 (the JPEG standard's Annex K, Table K.2)
CHROMA_STEPS_Q50 = ((17, 18, 24, 47, 99, 99, 99, 99), (18, 21, 26, 66, 99, 99, 99, 99),
                    (24, 26, 56, 99, 99, 99, 99, 99), (47, 66, 99, 99, 99, 99, 99, 99)) + ((99,) * 8,) * 4
#: how far (0-255 scale) :func:`chroma_cells_projection` lets a coefficient stray beyond its cell:
#: the decoder's chroma upsampling and 8-bit rounding move the degraded image's own coefficients
CHROMA_SLACK = 1.0
#: rows of a photo :func:`jpeg_chroma` works on at once (rounded down to a multiple of 16): a
#: 12 Mpx JPEG's step took 3.6 GB whole
CHROMA_STRIP_ROWS = 256
#: the ridge of :func:`chroma_from_luma`'s guided filter, for images in [0, 1] (1e-3 was 0.02 dB
#: worse at quality 10 on the training photos, 1e-2 0.19 dB worse)
CHROMA_EPS = 1e-4


def _ycbcr(image: torch.Tensor, inverse: bool = False) -> torch.Tensor:
    """(...,3,H,W) RGB to JFIF's (Y, Cb, Cr) without the offsets (:data:`JFIF_YCBCR`), or back
    with ``inverse``, in ``image``'s dtype and scale."""
    matrix = torch.tensor(JFIF_YCBCR, dtype=torch.float64, device=image.device)
    matrix = torch.linalg.inv(matrix) if inverse else matrix
    return torch.einsum("ij,...jhw->...ihw", matrix.to(image.dtype), image)


def chroma_from_luma(image: torch.Tensor, radius: int, eps: float = CHROMA_EPS) -> torch.Tensor:
    """(B,3,H,W) images in [0, 1] with their chroma (JFIF's Cb, Cr) re-estimated from their luma
    by :func:`guided_filter` of ``radius`` and ``eps``; the luma is kept (module docstring)."""
    ycc = _ycbcr(image.float())
    chroma = guided_filter(ycc[:, :1], ycc[:, 1:], radius, eps)
    return _ycbcr(torch.cat([ycc[:, :1], chroma], 1), inverse=True).clamp(0, 1).to(image)


def jpeg_chroma_radius(quality: float) -> int:
    """:func:`jpeg_chroma`'s guided-filter radius for a JPEG of libjpeg ``quality``: 0 (no filter) above quality 85."""
    return round(libjpeg_scale(quality) / CHROMA_SCALE_PER_PIXEL)


def chroma_steps(quality: float) -> torch.Tensor:
    """libjpeg's chrominance quantisation steps (8, 8) at ``quality``: :data:`CHROMA_STEPS_Q50`
    scaled by :func:`~uir.degradations.jpeg_trace.libjpeg_scale`, as libjpeg rounds and bounds them."""
    return ((torch.tensor(CHROMA_STEPS_Q50, dtype=torch.float64) * libjpeg_scale(quality) + 50) // 100).clamp(1, 255)


def _chroma_coefficients(ycc: torch.Tensor, top: int, left: int) -> torch.Tensor:
    """The DCT coefficients (2, rows, cols, 8, 8) of the two chroma planes of one (3,H,W) image in
    JFIF YCbCr (0-255), averaged over 2x2 pixels (4:2:0) from ``(top, left)`` on, in 8x8 blocks."""
    rows, cols = max(0, ycc.shape[1] - top) // 16, max(0, ycc.shape[2] - left) // 16
    if not rows or not cols:  # no whole 16 px block
        return ycc.new_zeros(2, rows, cols, 8, 8)
    half = F.avg_pool2d(ycc[1:, top : top + 16 * rows, left : left + 16 * cols], 2)
    basis = dct_matrix(device=ycc.device)
    return basis @ half.reshape(2, rows, 8, cols, 8).transpose(2, 3) @ basis.T


def chroma_grid(degraded: torch.Tensor, quality: float, size: int = 1024) -> tuple[int, int]:
    """``(top, left)`` of the 16 px grid of the chroma of ``degraded`` (3,H,W), a 4:2:0 JPEG of
    ``quality``: of the four offsets the luma's 8 px grid allows, the one whose 2x2-averaged
    chroma has its DC on multiples of its step (:func:`chroma_steps`) the most, read on a central
    crop of at most ``size`` pixels that starts a multiple of 16 from the corner."""
    h, w = degraded.shape[-2:]
    top, left = (max(0, h - size) // 32) * 16, (max(0, w - size) // 32) * 16
    ycc = _ycbcr(degraded[:, top : top + size, left : left + size].double() * 255)
    step = float(chroma_steps(quality)[0, 0])
    row, col = grid_phase(ycc[0])

    def fit(offset):
        dc = _chroma_coefficients(ycc, *offset)[..., 0, 0].flatten()
        return float(torch.cos(2 * math.pi * dc / step).mean()) if dc.numel() else -1.0

    return max((((row + 8 * a) % 16, (col + 8 * b) % 16) for a in (0, 1) for b in (0, 1)), key=fit)


def chroma_cells_projection(degraded: torch.Tensor, restored: torch.Tensor, quality: float,
                            grid: tuple[int, int] | None = None, slack: float = CHROMA_SLACK) -> torch.Tensor:
    """``restored`` (3,H,W) with its chroma projected onto what ``degraded`` (3,H,W), a 4:2:0 JPEG
    of ``quality``, allows (module docstring): each 8x8 block of the 2x2-averaged Cb and Cr has
    each DCT coefficient within half a :func:`chroma_steps` step (plus ``slack``, on the 0-255
    scale) of the degraded image's, rounded to that step. ``grid``: the 16 px grid's ``(top,
    left)`` (default: :func:`chroma_grid`); only whole 16 px blocks are projected."""
    top, left = chroma_grid(degraded, quality) if grid is None else grid
    ycc_in, ycc_out = _ycbcr(degraded.double() * 255), _ycbcr(restored.double() * 255)
    steps = chroma_steps(quality).to(ycc_in.device)
    cells = torch.round(_chroma_coefficients(ycc_in, top, left) / steps) * steps
    now = _chroma_coefficients(ycc_out, top, left)
    moved = torch.minimum(torch.maximum(now, cells - steps / 2 - slack), cells + steps / 2 + slack) - now
    basis = dct_matrix(device=moved.device)
    change = (basis.T @ moved @ basis).transpose(2, 3).flatten(1, 2).flatten(2, 3)  # (2, H/2, W/2) of the grid
    rows, cols = change.shape[1] * 2, change.shape[2] * 2
    full = change.repeat_interleave(2, 1).repeat_interleave(2, 2)  # each 2x2 pixel average moves by its change
    ycc_out[1:, top : top + rows, left : left + cols] += full
    return (_ycbcr(ycc_out, inverse=True) / 255).clamp(0, 1).to(restored)


def jpeg_chroma(degraded: torch.Tensor, restored: torch.Tensor, qualities: torch.Tensor | None = None,
                strip_rows: int = CHROMA_STRIP_ROWS) -> tuple[torch.Tensor, list[int]]:
    """``(restored, radii)``: ``restored`` (B,3,H,W) with each image's chroma re-estimated from its
    luma (:func:`chroma_from_luma`) at the radius the JPEG trace of its ``degraded`` input implies
    (:func:`jpeg_chroma_radius`), then projected onto what the degraded chroma allows
    (:func:`chroma_cells_projection`), and that radius per image; images without a trace, or of
    a quality that needs none, come back unchanged, with radius 0. ``qualities``: the (B,)
    :func:`~uir.degradations.jpeg_trace.jpeg_quality` of ``degraded`` where the caller already
    read it (NaN: no trace).

    An image is done in strips of about ``strip_rows`` rows that start on its 16 px grid, each
    filtered with the ``2 radius + 1`` rows the guided filter reads around it, so that memory
    does not grow with the photo; the result equals the whole image's (``tests/test_classical.py``)."""
    out, radii = restored, []
    qualities = jpeg_quality(degraded.float()) if qualities is None else qualities
    for row, quality in enumerate(qualities.tolist()):
        radii.append(0 if math.isnan(quality) else jpeg_chroma_radius(quality))
        if radii[-1] == 0:
            continue
        out = out.clone() if out is restored else out
        grid = chroma_grid(degraded[row], quality)
        height, margin = degraded.shape[-2], 2 * radii[-1] + 1
        step = max(16, strip_rows // 16 * 16)
        bounds = [0, *range(grid[0] + step, height, step), height]
        for start, stop in zip(bounds, bounds[1:]):
            low, high = max(0, start - margin), min(height, stop + margin)
            guided = chroma_from_luma(restored[row : row + 1, :, low:high], radii[-1])[0, :, start - low : stop - low]
            local = ((grid[0] - start) % 16, grid[1])
            out[row, :, start:stop] = chroma_cells_projection(degraded[row, :, start:stop], guided, quality, local)
    return out, radii


#: the veil bound of each degradation class whose model veils the photo: a global veil and
#: added light for snow (:func:`snow_bound`), streaks of light for rain (:func:`light_bound`),
#: the airlight for haze (:func:`airlight_bound`), a veil towards black for a cast shadow
#: (:func:`shadow_bound`); each maps ``(degraded, restored)`` to the restored images within the bound
VEIL_BOUNDS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "snowy": snow_bound,
    "rainy": light_bound,
    "hazy": airlight_bound,
    "shadowed": shadow_bound,
}

#: the degradation classes whose restoration estimates the mean of clipped noisy values, each with
#: the map ``(degraded, restored)`` back to the scene's values (:func:`unclip_noise`); the pipeline
#: applies it where a split call restores the result further (:mod:`uir.pipelines.restoring`)
CLIPPED_MEANS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {"noisy": unclip_noise}


@dataclass(frozen=True)
class Prior:
    """A classical restorer for one degradation class: its ``name`` as users read it, and
    ``restore``, (B,3,H,W) in [0, 1] to the same."""

    name: str
    restore: Callable[[torch.Tensor], torch.Tensor]


#: the classical prior of each degradation class that has one; the expected-gain rule may give
#: it a share of an image the router calls that class (:mod:`uir.lora.strategies`)
PRIORS = {"hazy": Prior("dark-channel prior with guided filter",
                        partial(dark_channel_dehaze, refine_radius=GUIDED_RADIUS)),
          "jpeg-compressed": Prior("bilateral filter", bilateral_filter),
          "noisy": Prior("DCT shrinkage", partial(dct_denoise, pilot_stride=2))}


#: the degradation classes whose severity an image shows to a classical measurement: the class's
#: registry parameter and the measure of it, (B,3,H,W) images in [0, 1] to (B,) values on that
#: parameter's scale (the noise's sigma on 0-255 by :func:`noise_sigma`; a JPEG's quality by its
#: trace, NaN where it has none); :func:`measured_severities` reads them as the registry's levels
SEVERITY_MEASURES: dict[str, tuple[str, Callable[[torch.Tensor], torch.Tensor]]] = {
    "noisy": ("sigma", lambda images: noise_sigma(images) * 255),
    "jpeg-compressed": ("quality", jpeg_quality),
}


def measured_severities(names: list[str], images: torch.Tensor, measured: dict[str, torch.Tensor] | None = None
                        ) -> list[str | None]:
    """Per image of (B,3,H,W) ``images``, the severity (:data:`~uir.degradations.SEVERITIES`) that
    its class in ``names`` shows: the registry level of that class's parameter nearest to what
    :data:`SEVERITY_MEASURES` measures (noise sigma 15/25/50, JPEG quality 50/30/10); ``None`` for
    a class without a measure or an image that shows none (a JPEG without a trace). ``measured``:
    by class, the (B,) values the caller already took of every image with that class's measure
    (the pipeline reads each JPEG trace once), which are not taken again."""
    from .degradations import get

    measured = measured or {}
    levels: list[str | None] = [None] * len(names)
    for name, (param, measure) in SEVERITY_MEASURES.items():
        rows = [row for row, called in enumerate(names) if called == name]
        if rows:
            values = (measured[name][rows] if name in measured else measure(images[rows].float())).tolist()
            for row, value in zip(rows, values):
                levels[row] = get(name).param_index[param].severity_of(value)
    return levels


__all__ = ["CHROMA_EPS", "CHROMA_SCALE_PER_PIXEL", "CHROMA_SLACK", "CHROMA_STEPS_Q50", "CHROMA_STRIP_ROWS", "CLIPPED_MEANS", "DCT_PATCH", "GUIDED_EPS", "GUIDED_RADIUS", "HARD_THRESHOLD", "OPPONENT", "PRIORS", "SEVERITY_MEASURES", "VEIL_BOUNDS", "Prior", "airlight_bound",
           "bilateral_filter", "box_mean", "chroma_cells_projection", "chroma_from_luma", "chroma_grid", "chroma_steps", "clipped_noise_mean", "clipped_noise_sigma", "dark_channel", "dark_channel_dehaze", "dct_denoise", "guided_filter", "jpeg_chroma", "jpeg_chroma_radius",
           "light_bound", "measured_severities", "noise_sigma", "shadow_bound", "snow_bound", "unclip_noise", "veil_bound"]
