"""DL-Net: a deep likelihood module around any restorer (DL-Net sec. 3.3, eq. 4-5, appendix C).

A reference restorer ``f = h . g`` is split at one of its modules: ``z = g(y)`` is the input
that module receives, and ``h(z)`` is everything the network computes from there on. DL-Net
starts at ``z_0 = g(y)`` and takes ``K`` ADAM-style steps (eq. 5) on the fidelity
``||A h(z) - y||^2`` (eq. 4) with the degradation operator ``A`` of the input
(:mod:`uir.degradations.operators`: inpainting and interpolation masks, SISR blur +
downsampling), then returns ``h(z_K)``. In training the steps stay in the graph, so the loss
back-propagates through them (second-order gradients).

The split is a module name (``split=``); by default the reference's ``dlnet_split`` attribute,
else its last convolution. ``h(z)`` is evaluated by re-running the reference with that module's
input replaced by ``z`` (a forward pre-hook), which is exact for any graph (skips, residuals)
at the cost of one reference forward per step; the layers before the split see the same ``y``
and recompute ``g(y)``. In training mode, batch-norm layers before the split therefore update
their running statistics once per step with the same batch.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn

from ..models.wrapping import import_model_class, wrap_model


class ChannelwiseFC(nn.Module):
    """The context encoder's bottleneck: a fully connected layer within each channel's map
    (``channels`` independent ``(hw x hw)`` matrices), so information spreads across the image
    without mixing channels."""

    def __init__(self, channels: int, size: int):
        super().__init__()
        self.size = size
        self.weight = nn.Parameter(torch.randn(channels, size * size, size * size) / size)
        self.bias = nn.Parameter(torch.zeros(channels, size * size))

    def forward(self, x):
        b, c, h, w = x.shape
        if (h, w) != (self.size, self.size):
            raise ValueError(f"channel-wise FC expects {self.size}x{self.size} maps, got {h}x{w}")
        flat = torch.einsum("bci,cio->bco", x.reshape(b, c, h * w), self.weight) + self.bias
        return flat.view(b, c, h, w)


class ContextEncoder(ModelMixin, ConfigMixin):
    """DL-Net's reference for inpainting and interpolation (appendix C): four 4x4 stride-2 convs
    (width, 2w, 4w, 8w; batch norm + leaky ReLU), a channel-wise FC, and four 4x4 stride-1/2
    transposed convs (batch norm + ReLU) back to RGB with a sigmoid, for square images of
    ``image_size`` (64) in [0, 1]. ``dlnet_split = "head"``: ``z`` is the last hidden
    representation before its ReLU, ``h`` that ReLU and the last transposed conv (sec. 3.3)."""

    dlnet_split = "head"

    @register_to_config
    def __init__(self, in_channels: int = 3, width: int = 64, image_size: int = 64):
        super().__init__()
        if image_size % 16:
            raise ValueError(f"image_size must be a multiple of 16, got {image_size}")
        widths = [width, 2 * width, 4 * width, 8 * width]
        layers, channels = [], in_channels
        for i, out in enumerate(widths):
            layers += [nn.Conv2d(channels, out, 4, stride=2, padding=1)]
            layers += [nn.BatchNorm2d(out)] if i else []  # no norm on the first layer, as in context encoders
            layers += [nn.LeakyReLU(0.2)]
            channels = out
        self.encoder = nn.Sequential(*layers)
        self.bottleneck = ChannelwiseFC(channels, image_size // 16)
        layers = []
        for i, out in enumerate(reversed(widths[:-1])):
            layers += [nn.ReLU()] if i else []
            layers += [nn.ConvTranspose2d(channels, out, 4, stride=2, padding=1), nn.BatchNorm2d(out)]
            channels = out
        self.decoder = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.ReLU(), nn.ConvTranspose2d(channels, in_channels, 4, stride=2, padding=1),
                                  nn.Sigmoid())

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        size = self.config.image_size
        if y.dim() != 4 or tuple(y.shape[-2:]) != (size, size):
            raise ValueError(f"ContextEncoder expects (B,C,{size},{size}), got {tuple(y.shape)}")
        return self.head(self.decoder(F.relu(self.bottleneck(self.encoder(y)))))


class VDSR(ModelMixin, ConfigMixin):
    """DL-Net's SISR reference (sec. 4.2, appendix C), small: VDSR's stack of 3x3 conv + ReLU
    layers run on the low-resolution luma, as the paper adapts it, with the global skip made a
    bicubic upscaling layer (as in IDN): ``x = bicubic(y) + shuffle(tail(body(y)))``.

    ``dlnet_split = "tail"``: ``z`` is the last hidden map before its ReLU, ``h`` that ReLU, the
    last conv, the pixel shuffle and the skip (sec. 3.3).
    """

    dlnet_split = "tail"

    @register_to_config
    def __init__(self, scale: int = 3, in_channels: int = 1, width: int = 64, depth: int = 20):
        super().__init__()
        if scale < 1 or depth < 2:
            raise ValueError(f"scale must be >= 1 and depth >= 2, got {scale} and {depth}")
        layers, channels = [], in_channels
        for i in range(depth - 1):
            layers += [nn.ReLU()] if i else []
            layers += [nn.Conv2d(channels, width, 3, padding=1)]
            channels = width
        self.body = nn.Sequential(*layers)
        self.tail = nn.Sequential(nn.ReLU(), nn.Conv2d(width, in_channels * scale * scale, 3, padding=1),
                                  nn.PixelShuffle(scale))
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")  # "MSRA", as the paper initialises
                nn.init.zeros_(module.bias)
        nn.init.zeros_(self.tail[1].weight)  # starts as bicubic upscaling

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        skip = F.interpolate(y, scale_factor=self.config.scale, mode="bicubic", align_corners=False)
        return skip + self.tail(self.body(y))


VARIANTS = ("paper", "authors")


def variant_settings(variant: str, steps: int) -> dict:
    """``DLNet`` keyword arguments for ``K = steps`` likelihood gradients: ``"paper"`` (eq. 5 as
    printed: ``K`` updates, ``1 - beta``) or ``"authors"`` (their TF code: ``K - 1`` updates,
    ADAM's ``1 - beta^k``)."""
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    if variant == "paper":
        return {"steps": steps, "bias_correction": "paper"}
    return {"steps": max(steps - 1, 0), "bias_correction": "adam"}


class DLNet(ModelMixin, ConfigMixin):
    """A reference restorer wrapped with ``steps`` unrolled likelihood steps (eq. 4-5).

    Build one with :meth:`wrap` (it copies the reference's weights); ``from_pretrained``
    rebuilds the reference from ``reference_class`` and ``reference_config``.

    Args:
        reference_class: the dotted path of the reference's class (a ``ModelMixin``).
        reference_config: its config.
        split: the module whose input is ``z``; ``None``: the reference's ``dlnet_split``, else
            its last ``Conv2d``/``ConvTranspose2d``.
        steps: ``K`` (5).
        step_size: ``gamma`` (1e-3; the paper uses 1e-2 for interpolation).
        betas: ADAM's ``beta_1``, ``beta_2`` (defaults, as in the paper).
        bias_correction: ``"paper"`` divides by ``1 - beta`` as eq. 5 is printed; ``"adam"`` by
            ``1 - beta^k``, ADAM's own correction.

    The authors' TF code differs from the printed eq. 5 in two ways: it uses ADAM's ``1 - beta^k``
    and, of its ``K`` likelihood gradients, returns ``h(z)`` after ``K - 1`` updates (the last
    update is computed and dropped). ``DLNet(steps=K - 1, bias_correction="adam")`` is that
    variant exactly (:func:`variant_settings`).
    """

    @register_to_config
    def __init__(self, reference_class: str = "uir.dlnet.network.ContextEncoder", reference_config: dict | None = None,
                 split: str | None = None, steps: int = 5, step_size: float = 1e-3, betas: tuple = (0.9, 0.999),
                 bias_correction: str = "paper"):
        super().__init__()
        if bias_correction not in ("paper", "adam"):
            raise ValueError(f"bias_correction must be 'paper' or 'adam', got {bias_correction!r}")
        if steps < 0:
            raise ValueError(f"steps must be >= 0, got {steps}")
        self.reference = import_model_class(reference_class)(**(reference_config or {}))
        # None until the first forward when the default (the last convolution run) applies
        self.split_name = split or getattr(self.reference, "dlnet_split", None)
        if self.split_name is not None:
            self._split_module()  # fails now, not at the first forward, on an unknown name

    def _split_module(self) -> nn.Module:
        module = dict(self.reference.named_modules()).get(self.split_name)
        if module is None:
            raise ValueError(f"the reference has no module {self.split_name!r} to split at")
        return module

    def _find_last_conv(self, y: torch.Tensor) -> str:
        """The name of the convolution the reference runs last on ``y`` (execution order, not
        registration order)."""
        order, handles = [], []
        for name, module in self.reference.named_modules():
            if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
                handles.append(module.register_forward_pre_hook(lambda m, i, name=name: order.append(name)))
        try:
            with torch.no_grad():
                self.reference(y)
        finally:
            for handle in handles:
                handle.remove()
        if not order:
            raise ValueError("the reference runs no convolution; pass split=")
        return order[-1]

    @classmethod
    def wrap(cls, reference: ModelMixin, **kwargs) -> "DLNet":
        """A DL-Net around ``reference`` (its class, config and weights)."""
        return wrap_model(cls, reference, "reference", **kwargs)

    @contextmanager
    def _split_hook(self, hook):
        handle = self._split_module().register_forward_pre_hook(hook)
        try:
            yield
        finally:
            handle.remove()

    def encode(self, y: torch.Tensor) -> torch.Tensor:
        """``z_0 = g(y)``: the input the split module receives."""
        if self.split_name is None:
            self.split_name = self._find_last_conv(y)
        captured = []
        with self._split_hook(lambda module, inputs: captured.append(inputs[0])):
            self.reference(y)
        return captured[0]

    def decode(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``h(z)``: the reference on ``y`` with the split module's input replaced by ``z``."""
        with self._split_hook(lambda module, inputs: (z,) + tuple(inputs[1:])):
            return self.reference(y)

    def forward(self, y: torch.Tensor, operator=None) -> torch.Tensor:
        """Restore ``y``; with ``operator`` (``A``, e.g. a ``MaskOperator``), run the ``K`` steps."""
        if operator is None or self.config.steps == 0:
            return self.reference(y)
        beta1, beta2 = self.config.betas
        create_graph = self.training and torch.is_grad_enabled()
        with torch.enable_grad():
            z = self.encode(y)
            if not create_graph:
                z = z.detach()
            m = torch.zeros_like(z)
            v = torch.zeros_like(z)
            for k in range(1, self.config.steps + 1):
                if not z.requires_grad:
                    z = z.requires_grad_()
                fidelity = 0.5 * (operator(self.decode(z, y)) - y).pow(2).sum()
                (grad,) = torch.autograd.grad(fidelity, z, create_graph=create_graph)
                m = beta1 * m + (1 - beta1) * grad
                v = beta2 * v + (1 - beta2) * grad * grad
                if self.config.bias_correction == "paper":
                    m_hat, v_hat = m / (1 - beta1), v / (1 - beta2)
                else:
                    m_hat, v_hat = m / (1 - beta1**k), v / (1 - beta2**k)
                step = -self.config.step_size * m_hat / v_hat.clamp_min(1e-16).sqrt()
                z = z + step if create_graph else (z + step).detach()
        return self.decode(z, y)  # in the caller's grad mode; outside training z_K is a constant


__all__ = ["VARIANTS", "ChannelwiseFC", "ContextEncoder", "DLNet", "VDSR", "variant_settings"]
