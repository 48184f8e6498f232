"""CLIP's vision towers for inference, in open_clip's parameter layout, without open_clip.

Importing open_clip costs about three times ``import torch`` (it pulls in torchvision,
transformers and ``torch._dynamo``), more than the embedded default takes to restore a photo.
The router's inference needs only the vision tower, a standard ViT::

    x = ln_pre([class token; patches(conv1(image))] + positional embedding)
    x = x + attn(ln_1(x));  x = x + mlp(ln_2(x))          (each block)
    d = ln_post(x)[:, 0] @ proj

Its parameters carry open_clip's ``VisionTransformer`` names (``conv1``, ``class_embedding``,
``transformer.resblocks.N.attn.in_proj_weight``, ...), so a saved router's tower loads into it
as saved. A ``vision_cfg`` whose ``layers`` is a list is open_clip's ConvNet, ``ModifiedResNet``
(CLIP's RN50 family): :class:`ResNetTower`, in eval mode (BatchNorm's running statistics)::

    x = avgpool(stem(image));  x = layer4(layer3(layer2(layer1(x))))   (bottlenecks, avgpool strides)
    d = attention pooling of [mean(x); x] + positional embedding, one query: the mean

``tests/test_runtime.py`` checks both against open_clip's on random weights. Towers with options
beyond :data:`SUPPORTED_OPTIONS` (layer scale, attention pooling, ...) are not built here:
:func:`supported_vision_config` says so and the caller uses open_clip.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

#: the open_clip ``vision_cfg`` keys this tower implements; any other key means a variant it does not
SUPPORTED_OPTIONS = frozenset({"width", "layers", "head_width", "patch_size", "image_size", "mlp_ratio"})


#: the ``vision_cfg`` keys of open_clip's ``ModifiedResNet`` that :class:`ResNetTower` implements
SUPPORTED_RESNET_OPTIONS = frozenset({"width", "layers", "head_width", "image_size"})


def is_resnet_config(vision_cfg: dict) -> bool:
    """An open_clip ``vision_cfg`` of its ConvNet, ``ModifiedResNet``: ``layers`` is a list of four."""
    return isinstance(vision_cfg.get("layers"), (list, tuple))


def supported_vision_config(vision_cfg: dict) -> bool:
    """Whether :func:`vision_tower` builds this open_clip ``vision_cfg``: a vision transformer (an
    int ``layers``, :class:`VisionTower`) or a ``ModifiedResNet`` (four stages, :class:`ResNetTower`)."""
    if not isinstance(vision_cfg.get("image_size", 224), int):
        return False
    if is_resnet_config(vision_cfg):
        return set(vision_cfg) <= SUPPORTED_RESNET_OPTIONS and len(vision_cfg["layers"]) == 4
    return set(vision_cfg) <= SUPPORTED_OPTIONS and isinstance(vision_cfg.get("layers", 12), int)


class QuickGELU(nn.Module):
    """``x * sigmoid(1.702 x)``: the activation of OpenAI's original CLIP weights."""

    def forward(self, x):
        return x * torch.sigmoid(1.702 * x)


class AttentionBlock(nn.Module):
    """A pre-norm transformer block: ``x + attn(ln_1(x))``, then ``+ mlp(ln_2(x))``."""

    def __init__(self, width: int, heads: int, mlp_ratio: float, quick_gelu: bool):
        super().__init__()
        hidden = int(width * mlp_ratio)
        self.ln_1 = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(OrderedDict([("c_fc", nn.Linear(width, hidden)),
                                              ("gelu", QuickGELU() if quick_gelu else nn.GELU()),
                                              ("c_proj", nn.Linear(hidden, width))]))

    def forward(self, x):
        q = self.ln_1(x)
        x = x + self.attn(q, q, q, need_weights=False)[0]
        return x + self.mlp(self.ln_2(x))


class VisionTower(nn.Module):
    """The vision transformer of an open_clip ``vision_cfg`` (see the module docstring).

    Args:
        vision_cfg: open_clip's ``vision_cfg`` (``width``, ``layers``, ``head_width``,
            ``patch_size``, ``image_size``, ``mlp_ratio``; open_clip's defaults otherwise).
        embed_dim: the output embedding size (``proj``'s columns).
        quick_gelu: QuickGELU instead of GELU, as open_clip's ``quick_gelu``.
    """

    def __init__(self, vision_cfg: dict, embed_dim: int, quick_gelu: bool = False):
        super().__init__()
        if not supported_vision_config(vision_cfg):
            raise ValueError(f"VisionTower implements vision_cfg keys {sorted(SUPPORTED_OPTIONS)} with an int "
                             f"image_size; got {vision_cfg}")
        width, patch = vision_cfg.get("width", 768), vision_cfg.get("patch_size", 16)
        self.image_size = vision_cfg.get("image_size", 224)
        tokens = (self.image_size // patch) ** 2 + 1
        self.conv1 = nn.Conv2d(3, width, patch, stride=patch, bias=False)
        self.class_embedding = nn.Parameter(torch.zeros(width))
        self.positional_embedding = nn.Parameter(torch.zeros(tokens, width))
        self.ln_pre = nn.LayerNorm(width)
        self.transformer = nn.Module()
        self.transformer.resblocks = nn.ModuleList(
            AttentionBlock(width, width // vision_cfg.get("head_width", 64), vision_cfg.get("mlp_ratio", 4.0),
                           quick_gelu)
            for _ in range(vision_cfg.get("layers", 12)))
        self.ln_post = nn.LayerNorm(width)
        self.proj = nn.Parameter(torch.zeros(width, embed_dim))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """Pooled embeddings (B, embed_dim) of normalised (B,3,S,S) images, S = ``image_size``."""
        x = self.conv1(pixels).flatten(2).transpose(1, 2)
        x = torch.cat([self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1), x], dim=1)
        x = self.ln_pre(x + self.positional_embedding.to(x.dtype))
        for block in self.transformer.resblocks:
            x = block(x)
        return self.ln_post(x[:, 0]) @ self.proj


class Bottleneck(nn.Module):
    """A ``ModifiedResNet`` bottleneck: 1x1, 3x3, (avgpool when strided), 1x1 with BatchNorm, plus
    a shortcut that is average-pooled and projected when the shape changes."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1):
        super().__init__()
        out = planes * self.expansion
        self.conv1, self.bn1 = nn.Conv2d(inplanes, planes, 1, bias=False), nn.BatchNorm2d(planes)
        self.conv2, self.bn2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False), nn.BatchNorm2d(planes)
        self.avgpool = nn.AvgPool2d(stride) if stride > 1 else nn.Identity()
        self.conv3, self.bn3 = nn.Conv2d(planes, out, 1, bias=False), nn.BatchNorm2d(out)
        self.downsample = None
        if stride > 1 or inplanes != out:
            self.downsample = nn.Sequential(OrderedDict([("-1", nn.AvgPool2d(stride)),
                                                         ("0", nn.Conv2d(inplanes, out, 1, bias=False)),
                                                         ("1", nn.BatchNorm2d(out))]))

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.avgpool(torch.relu(self.bn2(self.conv2(out))))
        out = self.bn3(self.conv3(out))
        return torch.relu(out + (x if self.downsample is None else self.downsample(x)))


class AttentionPool(nn.Module):
    """``ModifiedResNet``'s pooling: multi-head attention of the mean feature over [mean; every
    position], with a learned positional embedding."""

    def __init__(self, spatial: int, channels: int, heads: int, embed_dim: int):
        super().__init__()
        self.positional_embedding = nn.Parameter(torch.zeros(spatial ** 2 + 1, channels))
        self.q_proj, self.k_proj = nn.Linear(channels, channels), nn.Linear(channels, channels)
        self.v_proj, self.c_proj = nn.Linear(channels, channels), nn.Linear(channels, embed_dim)
        self.heads = heads

    def forward(self, x):
        x = x.flatten(2).transpose(1, 2)  # (B, HW, C)
        x = torch.cat([x.mean(1, keepdim=True), x], dim=1) + self.positional_embedding.to(x.dtype)
        b, n, c = x.shape
        split = lambda t: t.view(b, -1, self.heads, c // self.heads).transpose(1, 2)  # noqa: E731
        query, key, value = split(self.q_proj(x[:, :1])), split(self.k_proj(x)), split(self.v_proj(x))
        pooled = nn.functional.scaled_dot_product_attention(query, key, value)
        return self.c_proj(pooled.transpose(1, 2).reshape(b, c))


class ResNetTower(nn.Module):
    """open_clip's ``ModifiedResNet`` of a ``vision_cfg`` with a list ``layers`` (see the module
    docstring), for inference; the names of its parameters and buffers are open_clip's."""

    def __init__(self, vision_cfg: dict, embed_dim: int):
        super().__init__()
        if not (is_resnet_config(vision_cfg) and supported_vision_config(vision_cfg)):
            raise ValueError(f"ResNetTower implements vision_cfg keys {sorted(SUPPORTED_RESNET_OPTIONS)} with four "
                             f"stages in layers; got {vision_cfg}")
        width, self.image_size = vision_cfg.get("width", 64), vision_cfg.get("image_size", 224)
        self.conv1, self.bn1 = nn.Conv2d(3, width // 2, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(width // 2)
        self.conv2, self.bn2 = nn.Conv2d(width // 2, width // 2, 3, padding=1, bias=False), nn.BatchNorm2d(width // 2)
        self.conv3, self.bn3 = nn.Conv2d(width // 2, width, 3, padding=1, bias=False), nn.BatchNorm2d(width)
        inplanes = width
        for stage, blocks in enumerate(vision_cfg["layers"]):
            planes = width * 2 ** stage
            layer = [Bottleneck(inplanes, planes, stride=1 if stage == 0 else 2)]
            inplanes = planes * Bottleneck.expansion
            layer += [Bottleneck(inplanes, planes) for _ in range(1, blocks)]
            self.add_module(f"layer{stage + 1}", nn.Sequential(*layer))
        heads = width * 32 // vision_cfg.get("head_width", 64)
        self.attnpool = AttentionPool(self.image_size // 32, width * 32, heads, embed_dim)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """Pooled embeddings (B, embed_dim) of normalised (B,3,S,S) images, S = ``image_size``."""
        x = torch.relu(self.bn1(self.conv1(pixels)))
        x = torch.relu(self.bn2(self.conv2(x)))
        x = nn.functional.avg_pool2d(torch.relu(self.bn3(self.conv3(x))), 2)
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
        return self.attnpool(x)


def vision_tower(vision_cfg: dict, embed_dim: int, quick_gelu: bool = False) -> nn.Module:
    """The tower an open_clip ``vision_cfg`` describes: :class:`ResNetTower` or :class:`VisionTower`."""
    return ResNetTower(vision_cfg, embed_dim) if is_resnet_config(vision_cfg) else VisionTower(vision_cfg, embed_dim,
                                                                                                quick_gelu)


__all__ = ["QuickGELU", "ResNetTower", "SUPPORTED_OPTIONS", "SUPPORTED_RESNET_OPTIONS", "VisionTower",
           "is_resnet_config", "supported_vision_config", "vision_tower"]
