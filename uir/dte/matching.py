"""Timestep matching: the ``t_mat`` of a degradation type (Alg. 2, appendix G.3).

A generatively pre-trained ``r_theta`` predicts noise. Treat a degraded image ``x`` as if it
were ``x_t`` and take one reverse step to ``x_{t-1}`` (:meth:`DiffusionProcess.reverse_step`).
The step's change ``x_{t-1} - x_t`` is the reverse-diffusion residual; ``y - x`` (clean minus
degraded) is the degradation residual. ``t_mat`` is the ``t`` in ``1..T`` whose residual best
matches, averaged over pairs::

    t_mat = argmin_t  mean_pairs ||(x_{t-1} - x_t) - (y - x)||^2   with x_t = x

Alg. 2 prints the step residual as ``x_t - x_{t-1}``; with that sign the minimum rewards steps
that move away from the clean image, contrary to G.3 ("subtract the score ... from the degraded
image, and find the time t when the difference best matches the GT"), so the sign here is
G.3's. By default the step is the posterior mean; ``generator`` adds Alg. 2's ``sigma_t z``
(which only adds a content-independent ``sigma_t^2`` per pixel, favouring small ``t``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .diffusion import DiffusionProcess, to_diffusion_space


@dataclass
class TimestepMatch:
    """``t_mat`` and ``errors[t - 1]``, the mean squared residual mismatch at every ``t``."""

    t_mat: int
    errors: list[float]


@torch.no_grad()
def match_timestep(model, process: DiffusionProcess, degraded: torch.Tensor, clean: torch.Tensor,
                   generator: torch.Generator | None = None, batch_size: int = 16) -> TimestepMatch:
    """``t_mat`` for pairs ``degraded``/``clean`` (N,C,H,W) in [0, 1]; see the module docstring."""
    if degraded.shape != clean.shape or degraded.dim() != 4:
        raise ValueError(f"degraded and clean must be (N,C,H,W) of one shape, got {tuple(degraded.shape)} "
                         f"and {tuple(clean.shape)}")
    if not (torch.isfinite(degraded).all() and torch.isfinite(clean).all()):
        raise ValueError("images contain NaN or infinity")
    errors = torch.zeros(process.num_timesteps, dtype=torch.float64)
    for start in range(0, degraded.shape[0], batch_size):
        x = to_diffusion_space(degraded[start : start + batch_size])
        y = to_diffusion_space(clean[start : start + batch_size])
        for t in range(process.num_timesteps, 0, -1):
            step = process.reverse_step(model, x, t, generator) - x
            errors[t - 1] += ((step - (y - x)).pow(2).flatten(1).mean(1)).double().sum()
    errors /= degraded.shape[0]
    return TimestepMatch(int(errors.argmin()) + 1, errors.tolist())


__all__ = ["TimestepMatch", "match_timestep"]
