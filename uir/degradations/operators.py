"""Linear observation operators ``y = A x + n`` for DL-Net (sec. 3, eq. 1).

Each operator has ``forward(x) = A x``, its exact adjoint ``adjoint(y) = A^T y`` (so that
``<A x, y> = <x, A^T y>``) and ``observe(x, generator) = A x + n`` with white Gaussian noise
of standard deviation ``noise_sigma`` (on the [0, 1] scale).

* :class:`MaskOperator`: ``A x = M . x`` for inpainting (:meth:`MaskOperator.square_hole`) and
  interpolation (:meth:`MaskOperator.bernoulli`); self-adjoint.
* :class:`SISROperator`: ``A x = (k * x) downsampled by s``, blur with zero padding followed
  by keeping every ``s``-th pixel. Its adjoint is the transposed convolution.
* :func:`fill_missing`: the classical (non-learned) fill of a masked image, a baseline.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .filters import gaussian_kernel, randn_like


class LinearOperator:
    """``A`` with ``forward``/``adjoint`` on (B,C,H,W) batches and a noisy ``observe``."""

    noise_sigma: float = 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x)

    def observe(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """``y = A x + n``, ``n ~ N(0, noise_sigma^2)``."""
        y = self.forward(x)
        return y + self.noise_sigma * randn_like(y, generator) if self.noise_sigma > 0 else y


class MaskOperator(LinearOperator):
    """``A x = M . x`` with a binary mask ``M`` (1 = observed) of shape (B or 1, 1, H, W)."""

    def __init__(self, mask: torch.Tensor, noise_sigma: float = 0.0):
        if mask.dim() != 4 or mask.shape[1] != 1:
            raise ValueError(f"mask must have shape (B,1,H,W), got {tuple(mask.shape)}")
        self.mask = mask
        self.noise_sigma = noise_sigma

    def forward(self, x):
        return x * self.mask.to(x)

    adjoint = forward

    @classmethod
    def square_hole(cls, shape, hole: int, generator: torch.Generator, noise_sigma: float = 0.0,
                    max_shift: int | None = None):
        """Inpainting: one ``hole x hole`` square of missing pixels per sample.

        ``shape`` is ``(B, H, W)``. ``max_shift=None`` places the hole anywhere; an integer
        centres it and shifts it by ``U{-max_shift..max_shift}`` pixels on each axis (DL-Net's
        protocol: +-10 pixels at 64 x 64), kept inside the image.
        """
        b, h, w = shape
        if not 0 < hole <= min(h, w):
            raise ValueError(f"hole size must be in [1, {min(h, w)}] for a {w}x{h} image, got {hole}")
        mask = torch.ones(b, 1, h, w)
        if max_shift is None:
            tops = torch.randint(0, h - hole + 1, (b,), generator=generator)
            lefts = torch.randint(0, w - hole + 1, (b,), generator=generator)
        else:
            shifts = torch.randint(-max_shift, max_shift + 1, (2, b), generator=generator)
            tops = ((h - hole) // 2 + shifts[0]).clamp(0, h - hole)
            lefts = ((w - hole) // 2 + shifts[1]).clamp(0, w - hole)
        for i, (top, left) in enumerate(zip(tops.tolist(), lefts.tolist())):
            mask[i, 0, top : top + hole, left : left + hole] = 0
        return cls(mask, noise_sigma)

    @classmethod
    def bernoulli(cls, shape, missing: float, generator: torch.Generator, noise_sigma: float = 0.0):
        """Interpolation: each pixel is missing independently with probability ``missing``."""
        if not 0.0 <= missing < 1.0:
            raise ValueError(f"missing ratio must be in [0, 1), got {missing}")
        b, h, w = shape
        return cls((torch.rand(b, 1, h, w, generator=generator) >= missing).float(), noise_sigma)


def _blur(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Each channel of ``x`` convolved with ``kernel`` (zero padding, same size)."""
    return F.conv2d(x, kernel.expand(x.shape[1], 1, *kernel.shape), padding=kernel.shape[-1] // 2, groups=x.shape[1])


def fill_missing(y: torch.Tensor, mask: torch.Tensor, sigmas=(1.0, 2.0, 4.0, 8.0, 16.0)) -> torch.Tensor:
    """The non-learned fill of masked pixels: normalised convolution, ``(G * (M y)) / (G * M)``.

    Observed pixels (``mask`` = 1, shape (B or 1, 1, H, W)) are kept; each missing pixel takes
    the Gaussian-weighted mean of the observed ones at the smallest ``sigma`` whose window holds
    enough of them (weight above 1e-3), so large holes are filled from wider windows.
    """
    mask = mask.to(y).expand(y.shape[0], 1, *y.shape[-2:])
    filled, done = y * mask, mask.bool()
    for sigma in sigmas:
        kernel = gaussian_kernel(sigma).to(y)
        weight = _blur(mask, kernel)
        estimate = _blur(y * mask, kernel) / weight.clamp_min(1e-12)
        fresh = ~done & (weight > 1e-3)
        filled = torch.where(fresh, estimate, filled)
        done = done | fresh
    return filled


class SISROperator(LinearOperator):
    """Super-resolution: ``A x = (k * x)[::s, ::s]`` with an odd blur kernel ``k`` (zero padding).

    The default kernel is a Gaussian of sigma ``blur_sigma``. The adjoint needs the
    high-resolution size; it defaults to ``s`` times the input size.
    """

    def __init__(self, scale: int, blur_sigma: float = 1.0, kernel: torch.Tensor | None = None, noise_sigma: float = 0.0):
        if int(scale) < 1:
            raise ValueError(f"scale must be a positive integer, got {scale}")
        self.scale = int(scale)
        self.kernel = gaussian_kernel(blur_sigma) if kernel is None else kernel
        if self.kernel.dim() != 2 or self.kernel.shape[0] % 2 == 0 or self.kernel.shape[1] % 2 == 0:
            raise ValueError(f"kernel must be 2-D with odd sides, got {tuple(self.kernel.shape)}")
        self.noise_sigma = noise_sigma

    def _weight(self, x):
        c = x.shape[1]
        return self.kernel.flip(-1, -2).to(x).expand(c, 1, *self.kernel.shape)

    def _padding(self):
        return (self.kernel.shape[0] // 2, self.kernel.shape[1] // 2)

    def forward(self, x):
        return F.conv2d(x, self._weight(x), stride=self.scale, padding=self._padding(), groups=x.shape[1])

    def adjoint(self, y, size: tuple[int, int] | None = None):
        h, w = size if size is not None else (y.shape[-2] * self.scale, y.shape[-1] * self.scale)
        (ph, pw), (kh, kw) = self._padding(), self.kernel.shape
        natural = ((y.shape[-2] - 1) * self.scale - 2 * ph + kh, (y.shape[-1] - 1) * self.scale - 2 * pw + kw)
        extra = (h - natural[0], w - natural[1])
        if not (0 <= extra[0] < self.scale and 0 <= extra[1] < self.scale):
            raise ValueError(f"high-resolution size {(h, w)} does not match a low-resolution input {tuple(y.shape[-2:])}")
        return F.conv_transpose2d(
            y, self._weight(y), stride=self.scale, padding=self._padding(), output_padding=extra, groups=y.shape[1]
        )
