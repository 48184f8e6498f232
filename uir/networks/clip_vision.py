"""CLIP's vision transformer for inference, in open_clip's parameter layout, without open_clip.

Importing open_clip costs about three times ``import torch`` (it pulls in torchvision,
transformers and ``torch._dynamo``), more than the embedded default takes to restore a photo.
The router's inference needs only the vision tower, a standard ViT::

    x = ln_pre([class token; patches(conv1(image))] + positional embedding)
    x = x + attn(ln_1(x));  x = x + mlp(ln_2(x))          (each block)
    d = ln_post(x)[:, 0] @ proj

Its parameters carry open_clip's ``VisionTransformer`` names (``conv1``, ``class_embedding``,
``transformer.resblocks.N.attn.in_proj_weight``, ...), so a saved router's tower loads into it
as saved; ``tests/test_runtime.py`` checks it against open_clip's on random weights. Towers
with options beyond :data:`SUPPORTED_OPTIONS` (layer scale, attention pooling, ...) are not
built here: :func:`supported_vision_config` says so and the caller uses open_clip.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

#: the open_clip ``vision_cfg`` keys this tower implements; any other key means a variant it does not
SUPPORTED_OPTIONS = frozenset({"width", "layers", "head_width", "patch_size", "image_size", "mlp_ratio"})


def supported_vision_config(vision_cfg: dict) -> bool:
    """Whether :class:`VisionTower` implements this open_clip ``vision_cfg``: a vision transformer
    (an int ``layers``; a list describes open_clip's ConvNet, ``ModifiedResNet``)."""
    return (set(vision_cfg) <= SUPPORTED_OPTIONS and isinstance(vision_cfg.get("image_size", 224), int)
            and isinstance(vision_cfg.get("layers", 12), int))


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


__all__ = ["QuickGELU", "SUPPORTED_OPTIONS", "VisionTower", "supported_vision_config"]
