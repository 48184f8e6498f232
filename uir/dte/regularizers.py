"""The regularisers of Generalization Enhanced Fine-tuning (GEF, eq. 5-10, 16-22, Alg. 6).

**Parameter importance, L_reg (eq. 5/16, Alg. 6).** After generative pre-training (task 0),
``I_k = mean over batches of |dL_gen/dtheta_k|`` (Alg. 6, line 5) is the first-order
importance of parameter ``k``. The second-order term uses the Gauss-Newton approximation of
eq. 25, ``H_k = 2 I_k^2``, so with ``delta_k = theta_k - theta_k^pre``::

    L_reg = sum_k lambda_k [ I_k |delta_k| + 1/2 H_k delta_k^2 ] = sum_k lambda_k [ I_k |delta_k| + I_k^2 delta_k^2 ]

``lambda_k = lambda * exp(-a * l_k)`` decays with the depth ``l_k`` of the layer holding ``k``
(:func:`layer_decay`), our reading of "adjust lambda based on the layer-wise decay of the
network": shallow, domain-invariant layers keep more of the generative prior.

**Gradient orthogonality, L_orthog (eq. 6-9).** With per-sample gradients ``g_i`` of the
generative samples ``B_g`` and the reconstruction samples ``B_r`` and cosine ``<.,.>``::

    s = mean_{i in B_g, j in B_r} <g_i, g_j>
    d = (sum_{i,k in B_g} <g_i, g_k> + sum_{l,j in B_r} <g_l, g_j>) / (|B_g|^2 + |B_r|^2)
    L_orthog = (1 - s) + |d|                                                     (eq. 8)

All pair sums of cosines are inner products of sums of unit vectors, e.g.
``sum_{i,j} <g_i, g_j> = (sum_i g_i/|g_i|) . (sum_j g_j/|g_j|)``, so the loss needs the
per-sample gradients once (O(B P)), never the B x B Gram matrix. Per-sample gradients are
taken by ``torch.func`` (``vmap`` over ``grad``) only over the parameters in scope (by default
the shallow layers that generative training updates), and the loss stays differentiable, so
its own gradient reaches every parameter. As printed, eq. 8 is smallest at ``s = 1``: it
*aligns* the generative and reconstruction gradients, like the authors' public code.
``form="orthogonal"`` uses ``|s| + |d|`` instead, which drives them to be orthogonal.
``form="authors"`` is what the authors' public code computes: ``1 - cos`` of the two *batch*
gradients (the means of the per-sample ones; there over all parameters, here over those in
scope), with no ``d`` term. Their gradients are taken without ``create_graph``, so there the
term is logged but trains nothing; :class:`~uir.dte.GEFObjective`'s ``detach_orthogonality``
reproduces that.

**Generation-sensitive layers (eq. 10).** ``w_decay(t) = exp(-a t)``, ``a = 0.05``. Generative
batches during fine-tuning update only the shallowest ``ceil(w_decay(t_mat) * L)`` of the ``L``
layers (:func:`generation_sensitive_layers`), so the share of layers trained generatively falls
as the task's matched timestep grows (Fig. 3(c)).
"""

from __future__ import annotations

import math
from typing import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

ORTHOGONALITY_FORMS = ("eq8", "orthogonal", "authors")


def w_decay(t: float, a: float = 0.05) -> float:
    """Eq. 10: ``exp(-a t)``."""
    return math.exp(-a * t)


def generation_sensitive_layers(layers: list[list[str]], t_mat: float, a: float = 0.05) -> list[str]:
    """Parameter names of the shallowest ``ceil(w_decay(t_mat) * L)`` layers (at least one)."""
    count = max(1, math.ceil(w_decay(t_mat, a) * len(layers)))
    return [name for layer in layers[:count] for name in layer]


def layer_decay(layers: list[list[str]], lam: float = 0.2, a: float = 0.05) -> dict[str, float]:
    """``lambda * exp(-a * l)`` for every parameter name of layer ``l`` (0 = shallowest)."""
    return {name: lam * math.exp(-a * depth) for depth, layer in enumerate(layers) for name in layer}


def parameter_importance(model: nn.Module, loss_fn: Callable[[], torch.Tensor], num_batches: int,
                         names: Iterable[str] | None = None) -> dict[str, torch.Tensor]:
    """``I_k``: the mean over ``num_batches`` calls of ``loss_fn()`` (each a fresh generative
    batch) of ``|dL/dtheta_k|`` (Alg. 6, lines 3-5)."""
    params = dict(model.named_parameters())
    names = list(params) if names is None else list(names)
    totals = {n: torch.zeros_like(params[n]) for n in names}
    for _ in range(num_batches):
        grads = torch.autograd.grad(loss_fn(), [params[n] for n in names], allow_unused=True)
        for n, g in zip(names, grads):
            if g is not None:
                totals[n] += g.abs()
    return {n: total / num_batches for n, total in totals.items()}


def importance_regularizer(model: nn.Module, reference: dict[str, torch.Tensor], importance: dict[str, torch.Tensor],
                           weights: dict[str, float]) -> torch.Tensor:
    """L_reg (eq. 16 with eq. 25): ``sum_k w_k [I_k |delta_k| + I_k^2 delta_k^2]``, ``delta = theta - reference``."""
    params = dict(model.named_parameters())
    total = torch.zeros((), device=next(iter(params.values())).device)
    for name, weight in weights.items():
        if weight == 0 or name not in importance:
            continue
        delta = params[name] - reference[name]
        i = importance[name]
        total = total + weight * (i * delta.abs() + i.pow(2) * delta.pow(2)).sum()
    return total


def per_sample_gradients(model: nn.Module, names: list[str], sample_loss: Callable, *inputs) -> torch.Tensor:
    """(B, P) gradients of ``sample_loss(forward, *one_sample)`` with respect to the parameters
    ``names`` (flattened in that order), one row per sample of the batched ``inputs``.

    ``forward(*args)`` runs ``model`` on a batch of one; the result stays differentiable with
    respect to every parameter of ``model``."""
    params = dict(model.named_parameters())
    scope = {n: params[n] for n in names}
    rest = {n: p for n, p in params.items() if n not in scope}

    def one(scoped, *sample):
        def forward(*args):
            return functional_call(model, {**rest, **scoped}, args)

        return sample_loss(forward, *(s.unsqueeze(0) for s in sample))

    grads = vmap(grad(one), in_dims=(None,) + (0,) * len(inputs))(scope, *inputs)
    return torch.cat([grads[n].flatten(1) for n in names], dim=1)


def orthogonality_loss(generative: torch.Tensor, reconstruction: torch.Tensor, form: str = "eq8") -> torch.Tensor:
    """Eq. 6-8 from per-sample gradients (n_g, P) and (n_r, P); see the module docstring."""
    if form not in ORTHOGONALITY_FORMS:
        raise ValueError(f"form must be one of {ORTHOGONALITY_FORMS}, got {form!r}")
    n_g, n_r = generative.shape[0], reconstruction.shape[0]
    if n_g == 0 or n_r == 0:
        raise ValueError("L_orthog needs at least one generative and one reconstruction sample")
    if form == "authors":
        return 1 - F.cosine_similarity(generative.mean(0), reconstruction.mean(0), dim=0)
    sum_g = F.normalize(generative, dim=1).sum(0)
    sum_r = F.normalize(reconstruction, dim=1).sum(0)
    s = sum_g @ sum_r / (n_g * n_r)
    d = (sum_g @ sum_g + sum_r @ sum_r) / (n_g**2 + n_r**2)
    return (1 - s) + d.abs() if form == "eq8" else s.abs() + d.abs()


__all__ = [
    "ORTHOGONALITY_FORMS",
    "generation_sensitive_layers",
    "importance_regularizer",
    "layer_decay",
    "orthogonality_loss",
    "parameter_importance",
    "per_sample_gradients",
    "w_decay",
]
