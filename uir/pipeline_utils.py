"""Pieces shared by uir's restoration pipelines: choosing expert weights and formatting outputs."""

from __future__ import annotations

import numpy as np
import torch

from .images import to_pil
from .lora.strategies import expert_weights


def postprocess(images: torch.Tensor, output_type: str):
    """(B,3,H,W) in [0, 1] to ``pil`` (list), ``np`` (B,H,W,3 float32) or ``pt``."""
    if output_type == "pt":
        return images
    if output_type == "np":
        return images.permute(0, 2, 3, 1).float().cpu().numpy().astype(np.float32)
    if output_type == "pil":
        return to_pil(images)
    raise ValueError(f"unknown output_type {output_type!r}; valid choices: pil, np, pt")


def route(pipe, images: torch.Tensor, weights, top_k: int, strategy: str, generator):
    """Expert weights (B,K) and router verdicts for a batch; shared by uir's pipelines."""
    names = pipe.experts.names
    probabilities, degradations, confidence = None, None, None
    if pipe.router is not None and strategy == "router" and weights is None:
        routed = pipe.router(images.to(device=pipe.router.device, dtype=pipe.router.dtype), top_k=1)
        probabilities, degradations, confidence = routed.probabilities, routed.names, routed.confidence
    vocabulary = pipe.router.vocabulary if pipe.router is not None else None
    chosen = expert_weights(strategy, names, images.shape[0], probabilities=probabilities, vocabulary=vocabulary,
                            weights=weights, top_k=top_k, generator=generator)
    return chosen, degradations, confidence
