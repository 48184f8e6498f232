"""How the per-image expert weights ``s`` are chosen (UIR-LoRA Table 3 ablation).

* ``router``: the router's ``s_o`` restricted to the loaded experts, then Top-K (eq. 4).
* ``manual``: weights given by the user, a ``{degradation: weight}`` dict or a (B,K)/(K,) tensor,
  used as given (the paper lets users specify ``s``).
* ``average``: ``1/K`` for every expert.
* ``random``: one expert drawn uniformly per image (weight 1), from ``generator``.
"""

from __future__ import annotations

import torch

from ..router import top_k_weights

STRATEGIES = ("router", "manual", "average", "random")


def manual_weights(weights, expert_names: list[str], batch: int) -> torch.Tensor:
    """(B, K) weights from a ``{name: weight}`` dict or a tensor."""
    k = len(expert_names)
    if isinstance(weights, dict):
        unknown = sorted(set(weights) - set(expert_names))
        if unknown:
            raise ValueError(f"no expert loaded for {', '.join(unknown)}; loaded experts: {', '.join(expert_names)}")
        row = torch.tensor([float(weights.get(name, 0.0)) for name in expert_names])
        rows = row.expand(batch, k)
    else:
        rows = torch.as_tensor(weights, dtype=torch.float32)
        rows = rows.expand(batch, k) if rows.dim() == 1 else rows
        if rows.shape != (batch, k):
            raise ValueError(f"weights must have shape ({k},) or ({batch}, {k}) for {k} experts, got {tuple(rows.shape)}")
    if not torch.isfinite(rows).all():
        raise ValueError("weights contain NaN or infinite values")
    return rows.float().contiguous()


def expert_weights(strategy: str, expert_names: list[str], batch: int, *, probabilities=None,
                   vocabulary=None, weights=None, top_k: int = 2, generator=None) -> torch.Tensor:
    """(B, K) expert weights for a batch, by ``strategy`` (see module docstring)."""
    k = len(expert_names)
    if k == 0 and weights is None and strategy in STRATEGIES:  # no experts: the base model alone
        return torch.zeros(batch, 0)
    if strategy == "manual" or (weights is not None and strategy == "router"):
        if weights is None:
            raise ValueError("strategy='manual' needs weights=")
        return manual_weights(weights, expert_names, batch)
    if strategy == "average":
        return torch.full((batch, k), 1.0 / k)
    if strategy == "random":
        choice = torch.randint(0, k, (batch,), generator=generator)
        return torch.nn.functional.one_hot(choice, k).float()
    if strategy == "router":
        if probabilities is None:
            raise ValueError("strategy='router' needs a router; load one or pass weights=")
        columns = [vocabulary.index(name) for name in expert_names]
        return top_k_weights(probabilities[:, columns].float(), min(top_k, k))
    raise ValueError(f"unknown strategy {strategy!r}; valid choices: {', '.join(STRATEGIES)}")
