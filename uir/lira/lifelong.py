"""Lifelong-learning losses for LIRA's growing stage and its baselines (LIRA sec. 3.3, 4.5).

* :func:`pseudo_replay_gan_loss`: eq. 15-17, the generator ``G`` (clean -> old blended
  distortion) against a discriminator, with the cycle through the frozen base ``R``.
* :func:`fisher_diagonal` and :func:`ewc_penalty`: Elastic Weight Consolidation, the baseline
  that keeps weights important to the old task (by the diagonal empirical Fisher) near their
  old values.

The incremental objective itself (eq. 18, ``L_new + lambda_2 L_old``) and LwF's distillation
are one line each in ``train/train_lira.py``.
"""

from __future__ import annotations

from typing import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call


def pseudo_replay_gan_loss(generator: nn.Module, discriminator: nn.Module, base: Callable[[torch.Tensor], torch.Tensor],
                           clean: torch.Tensor, degraded: torch.Tensor, cycle_weight: float = 10.0) -> tuple[torch.Tensor, dict]:
    """Eq. 17 for ``G`` plus the discriminator's eq. 15 loss, as one sum to minimise.

    ``clean`` (``y1``) and ``degraded`` (``x1``) are unpaired batches of the old task. The
    generator's adversarial term runs the discriminator with *detached* parameters, and the
    discriminator sees a detached fake, so one backward gives each network only its own
    gradient (simultaneous gradient descent on both players). The generator uses the
    non-saturating form ``-log D(G(y))`` of eq. 15's second term. ``base`` (``R``) is frozen.
    """
    fake = generator(clean)
    frozen = {name: p.detach() for name, p in discriminator.named_parameters()}
    fooled = functional_call(discriminator, frozen, (fake,))
    adversarial = F.binary_cross_entropy_with_logits(fooled, torch.ones_like(fooled))
    cycle = F.l1_loss(base(fake), clean)
    real_logits, fake_logits = discriminator(degraded), discriminator(fake.detach())
    critic = 0.5 * (F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits)) +
                    F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits)))
    parts = {"adversarial": adversarial.detach(), "cycle": cycle.detach(), "discriminator": critic.detach()}
    return adversarial + cycle_weight * cycle + critic, parts


def fisher_diagonal(loss: Callable[[dict], torch.Tensor], params: dict[str, nn.Parameter],
                    batches: Iterable[dict]) -> dict[str, torch.Tensor]:
    """The empirical Fisher diagonal ``E[(d loss / d theta)^2]`` over ``batches`` of the old task."""
    fisher = {name: torch.zeros_like(p) for name, p in params.items()}
    count = 0
    for batch in batches:
        grads = torch.autograd.grad(loss(batch), list(params.values()), allow_unused=True)
        for (name, _), grad in zip(params.items(), grads):
            if grad is not None:
                fisher[name] += grad.detach() ** 2
        count += 1
    if count == 0:
        raise ValueError("fisher_diagonal needs at least one batch")
    return {name: value / count for name, value in fisher.items()}


def ewc_penalty(params: dict[str, nn.Parameter], anchor: dict[str, torch.Tensor],
                fisher: dict[str, torch.Tensor]) -> torch.Tensor:
    """``sum_i F_i (theta_i - theta*_i)^2`` over the anchored parameters."""
    return sum((fisher[name] * (params[name] - anchor[name]) ** 2).sum() for name in anchor)


__all__ = ["ewc_penalty", "fisher_diagonal", "pseudo_replay_gan_loss"]
