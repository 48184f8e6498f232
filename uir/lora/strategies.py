"""How the per-image expert weights ``s`` are chosen (UIR-LoRA eq. 4 and the Table 3 ablation).

* ``router``: the router's ``s_o`` (eq. 3) restricted to the loaded experts, then Top-K::

      s = M_K * s_o / sum(M_K * s_o)                          (eq. 4)

  with ``M_K`` the mask of the ``K`` largest entries; ``K`` defaults to :data:`DEFAULT_TOP_K`
  everywhere (pipelines, CLI, evaluation).
* ``manual``: weights given by the user, a ``{degradation: weight}`` dict or a (B,K)/(K,) tensor,
  used as given (the paper lets users specify ``s``).
* ``average``: ``1/K`` for every expert.
* ``random``: one expert drawn uniformly per image (weight 1), from ``generator``.
"""

from __future__ import annotations

import torch

STRATEGIES = ("router", "manual", "average", "random")
#: experts the router keeps per image unless told otherwise: the single best one measured best
#: on the embedded default (README, "default (router, top-1)")
DEFAULT_TOP_K = 1


def top_k_weights(probabilities: torch.Tensor, k: int) -> torch.Tensor:
    """Eq. 4: keep the ``k`` largest entries of each row and renormalise them to sum 1."""
    if not 1 <= k <= probabilities.shape[-1]:
        raise ValueError(f"top_k must be in [1, {probabilities.shape[-1]}], got {k}")
    keep = torch.zeros_like(probabilities).scatter(-1, probabilities.topk(k, dim=-1).indices, 1.0)
    masked = probabilities * keep
    return masked / masked.sum(-1, keepdim=True).clamp(min=1e-12)


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
                   vocabulary=None, weights=None, top_k: int = DEFAULT_TOP_K, generator=None) -> torch.Tensor:
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
