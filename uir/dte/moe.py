"""MoE adapters with time-based prompts (diffusion-training-enhanced IR, sec. 3.3, Fig. 6(d)).

After a block with output ``h`` (B,C,H,W), ``N_E`` small bottleneck experts (1x1 conv down to
``hidden`` channels, GELU, 1x1 conv back) each propose a correction. A router reads the block's
globally pooled features together with the timestep embedding (the time-based prompt: in
unified training ``t`` is the input degradation's matched timestep) and weighs the experts with
a softmax::

    h' = h + scale * sum_e softmax(W [pool(h), emb(t)])_e * expert_e(h)

``scale`` is a per-channel vector initialised to zero, so adding adapters to a trained network
leaves its output exactly unchanged; training moves ``scale`` away from zero.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class TimePromptMoE(nn.Module):
    """``num_experts`` bottleneck adapters on ``channels`` feature maps, routed by pooled features
    and a timestep embedding of ``embedding_dim``; see the module docstring."""

    def __init__(self, channels: int, embedding_dim: int, num_experts: int = 10, hidden: int = 8):
        super().__init__()
        if num_experts < 1 or hidden < 1:
            raise ValueError(f"num_experts and hidden must be positive, got {num_experts} and {hidden}")
        self.num_experts, self.hidden = num_experts, hidden
        self.router = nn.Linear(channels + embedding_dim, num_experts)
        # all experts in two grouped 1x1 convs: expert e owns hidden channels [e*hidden, (e+1)*hidden)
        self.down = nn.Conv2d(channels, num_experts * hidden, 1)
        self.up = nn.Conv2d(num_experts * hidden, num_experts * channels, 1, groups=num_experts)
        self.scale = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def routing(self, h: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        """(B, N_E) expert weights for features ``h`` and timestep embedding ``embedding``."""
        return self.router(torch.cat([h.mean(dim=(2, 3)), embedding], dim=1)).softmax(dim=1)

    def forward(self, h: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        b, c, height, width = h.shape
        proposals = self.up(F.gelu(self.down(h))).view(b, self.num_experts, c, height, width)
        weights = self.routing(h, embedding)[:, :, None, None, None]
        return h + self.scale * (weights * proposals).sum(dim=1)


__all__ = ["TimePromptMoE"]
