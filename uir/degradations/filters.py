"""Building blocks shared by the degradations: kernels, filtering, JPEG and random fields.

Every kernel is a float64 tensor of odd size ``(2r+1, 2r+1)`` normalised to sum 1 unless a
docstring says otherwise. :func:`filter2d` applies one kernel to every channel of a batch
with reflection padding (replicate padding where the image is smaller than the kernel).
"""

from __future__ import annotations

import io
import math

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image


def _grid(radius: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Integer pixel offsets ``(y, x)`` of a ``(2r+1, 2r+1)`` kernel, centre at 0."""
    axis = torch.arange(-radius, radius + 1, dtype=torch.float64)
    return torch.meshgrid(axis, axis, indexing="ij")


def _normalise(kernel: torch.Tensor) -> torch.Tensor:
    return kernel / kernel.sum()


def gaussian_kernel(sigma: float, radius: int | None = None) -> torch.Tensor:
    """Isotropic Gaussian ``exp(-(x^2+y^2) / (2 sigma^2))``; radius defaults to ``ceil(3 sigma)``."""
    sigma = max(float(sigma), 1e-3)
    radius = max(1, math.ceil(3 * sigma)) if radius is None else radius
    y, x = _grid(radius)
    return _normalise(torch.exp(-(x**2 + y**2) / (2 * sigma**2)))


def disk_kernel(radius: float) -> torch.Tensor:
    """Defocus (pill-box) PSF of the given radius, anti-aliased: ``clip(r + 0.5 - |p|, 0, 1)``."""
    y, x = _grid(max(1, math.ceil(radius)))
    return _normalise((radius + 0.5 - torch.sqrt(x**2 + y**2)).clamp(0.0, 1.0))


def box_kernel(radius: int) -> torch.Tensor:
    """Uniform ``(2r+1)^2`` box PSF."""
    size = 2 * int(radius) + 1
    return torch.full((size, size), 1.0 / size**2, dtype=torch.float64)


def segment_distance(y: torch.Tensor, x: torch.Tensor, p0, p1) -> torch.Tensor:
    """Euclidean distance from points ``(y, x)`` to the segment ``p0 -> p1`` (each ``(y, x)``)."""
    dy, dx = p1[0] - p0[0], p1[1] - p0[1]
    length2 = dy * dy + dx * dx
    if length2 == 0:
        t = torch.zeros_like(y)
    else:
        t = (((y - p0[0]) * dy + (x - p0[1]) * dx) / length2).clamp(0.0, 1.0)
    return torch.sqrt((y - p0[0] - t * dy) ** 2 + (x - p0[1] - t * dx) ** 2)


def line_kernel(length: float, angle_deg: float) -> torch.Tensor:
    """Linear motion PSF: a one-pixel-wide anti-aliased segment of ``length`` px at ``angle_deg``."""
    half = max(float(length), 1.0) / 2.0
    y, x = _grid(max(1, math.ceil(half)))
    theta = math.radians(angle_deg)
    end = (half * math.sin(theta), half * math.cos(theta))
    dist = segment_distance(y, x, (-end[0], -end[1]), end)
    return _normalise((1.0 - dist).clamp(min=0.0))


def trajectory_kernel(size: int, intensity: float, generator: torch.Generator) -> torch.Tensor:
    """Motion PSF from a random camera trajectory (a curved random walk), rasterised bilinearly.

    The walk takes ``8 * size`` unit steps whose heading changes by ``N(0, (0.6 intensity)^2)``
    radians per step (``intensity = 0`` is a straight line); it is then scaled so that its
    longer extent spans ``size - 1`` pixels and centred on the kernel.
    """
    size = int(size) | 1
    steps = 8 * size
    heading0 = 2 * math.pi * torch.rand((), generator=generator, dtype=torch.float64)
    turns = torch.randn(steps, generator=generator, dtype=torch.float64) * 0.6 * intensity
    heading = heading0 + torch.cumsum(turns, 0)
    path = torch.cumsum(torch.stack([torch.sin(heading), torch.cos(heading)], 1), 0)
    path = path - (path.max(0).values + path.min(0).values) / 2
    extent = (path.max(0).values - path.min(0).values).max().clamp(min=1e-6)
    path = path * ((size - 1) / extent) + (size - 1) / 2
    kernel = torch.zeros(size, size, dtype=torch.float64)
    base = path.floor().long().clamp(0, size - 2)
    frac = path - base
    for dy in (0, 1):
        for dx in (0, 1):
            w = (frac[:, 0] if dy else 1 - frac[:, 0]) * (frac[:, 1] if dx else 1 - frac[:, 1])
            kernel.index_put_((base[:, 0] + dy, base[:, 1] + dx), w.clamp(min=0), accumulate=True)
    return _normalise(kernel)


def sinc_kernel(cutoff: float, radius: int) -> torch.Tensor:
    """Circular low-pass (2-D sinc) ``k(r) = w_c J1(w_c r) / (2 pi r)``, ``k(0) = w_c^2 / (4 pi)``.

    Sharp cut-off at angular frequency ``cutoff`` (radians/pixel); truncating it causes ringing.
    """
    y, x = _grid(int(radius))
    r = torch.sqrt(x**2 + y**2)
    safe = torch.where(r == 0, torch.ones_like(r), r)
    kernel = cutoff * torch.special.bessel_j1(cutoff * safe) / (2 * math.pi * safe)
    kernel = torch.where(r == 0, torch.full_like(r, cutoff**2 / (4 * math.pi)), kernel)
    return _normalise(kernel)


def filter2d(image: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Convolve every channel of ``image`` (B,C,H,W) with ``kernel`` (kh,kw) or per-sample (B,kh,kw).

    The kernel is flipped, so this is a true convolution; borders are reflected.
    """
    b, c, h, w = image.shape
    kernel = kernel.to(image)
    if kernel.dim() == 2:
        kernel = kernel.expand(b, *kernel.shape)
    kh, kw = kernel.shape[-2:]
    ph, pw = kh // 2, kw // 2
    mode = "reflect" if ph < h and pw < w else "replicate"
    padded = F.pad(image.reshape(1, b * c, h, w), (pw, pw, ph, ph), mode=mode)
    weight = kernel.flip(-1, -2).repeat_interleave(c, 0).unsqueeze(1)
    return F.conv2d(padded, weight, groups=b * c).reshape(b, c, h, w)


def jpeg(image: torch.Tensor, quality: int) -> torch.Tensor:
    """Round-trip each image through a baseline JPEG codec: libjpeg via Pillow (4:2:0 chroma),
    or, for images on a CUDA device, torchvision's nvJPEG codec there (the training device's
    synthesis, :meth:`uir.data.SyntheticDegradationDataset.degrade_batch`)."""
    if image.is_cuda:
        from torchvision.io import decode_jpeg, encode_jpeg

        pixels = (image.detach().clamp(0, 1) * 255.0).round().to(torch.uint8)
        decoded = decode_jpeg(encode_jpeg(list(pixels), quality=int(quality)), device=image.device)
        return torch.stack(decoded).to(image) / 255.0
    out = []
    for sample in image:
        array = (sample.detach().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255.0).round().astype(np.uint8)
        pil = Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array)
        buffer = io.BytesIO()
        pil.save(buffer, format="JPEG", quality=int(quality))
        decoded = np.asarray(Image.open(buffer)).astype(np.float32) / 255.0
        decoded = decoded[..., None] if decoded.ndim == 2 else decoded
        out.append(torch.from_numpy(decoded).permute(2, 0, 1))
    return torch.stack(out).to(image)


def randn_like(image: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Standard normal noise shaped like ``image``, drawn on the generator's device."""
    return torch.randn(image.shape, generator=generator, device=generator.device).to(image)


def rand(shape, generator: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    """Uniform [0, 1) samples of ``shape``, drawn on the generator's device, cast like ``like``."""
    return torch.rand(shape, generator=generator, device=generator.device).to(like)


def smooth_field(batch: int, height: int, width: int, generator: torch.Generator, like: torch.Tensor, cells: int = 4):
    """A low-frequency random field in [0, 1] of shape (B,1,H,W): bicubic upsampling of a
    ``cells x cells`` uniform grid, min-max normalised per sample."""
    coarse = rand((batch, 1, cells, cells), generator, like)
    field = F.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=True)
    low = field.amin(dim=(2, 3), keepdim=True)
    high = field.amax(dim=(2, 3), keepdim=True)
    return (field - low) / (high - low).clamp(min=1e-6)


def pixel_grid(height: int, width: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel-centre coordinates ``(y, x)`` of an image, each (H, W)."""
    ys = torch.arange(height, device=like.device, dtype=like.dtype)
    xs = torch.arange(width, device=like.device, dtype=like.dtype)
    return torch.meshgrid(ys, xs, indexing="ij")


def capsule_kernel(sigma: float, length: float, angle_deg: float) -> torch.Tensor:
    """Soft elongated blob with peak 1: ``exp(-d^2 / (2 sigma^2))``, ``d`` the distance to a
    centred segment of ``length`` px at ``angle_deg``. Used for rain streaks and snowflakes."""
    half = max(float(length), 0.0) / 2.0
    y, x = _grid(max(1, math.ceil(half + 3 * sigma)))
    theta = math.radians(angle_deg)
    end = (half * math.sin(theta), half * math.cos(theta))
    dist = segment_distance(y, x, (-end[0], -end[1]), end)
    return torch.exp(-(dist**2) / (2 * max(sigma, 1e-3) ** 2))
