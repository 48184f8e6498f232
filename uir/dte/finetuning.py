"""Generalization Enhanced Fine-tuning, GEF (Alg. 3, eq. 12/22): the loss of one batch.

A batch of degraded/clean pairs of one degradation type with matched timestep ``t_mat`` is
split (``schedule="split"``): the first ``round(generative_fraction * B)`` clean images (at
least one when the fraction is positive; about 10% in the paper) become generative samples,
the rest stay reconstruction pairs. (``schedule="iterations"`` is the authors' code instead: a
whole iteration is generative with probability ``generative_fraction``.) Then::

    L_fine = L_content + L_gen + L_reg + L_orthog                             (eq. 22)

* ``L_content``: L1 between the read-out of ``r_theta(y, t_mat)`` (:func:`restore`) and the clean
  image (reconstruction samples).
* ``L_gen``: eq. 11 on the generative samples, with gradients reaching only the
  generation-sensitive (shallow) layers for ``t_mat`` (eq. 10); the deeper parameters enter
  that forward pass detached.
* ``L_reg``: parameter-importance regularisation toward the pre-trained weights (eq. 16).
* ``L_orthog``: eq. 8 over per-sample gradients on the generation-sensitive parameters, times
  ``orthogonality_weight`` (1 in the paper); ``detach_orthogonality`` keeps its value out of
  the gradient (the authors' code: logged, not trained on).

Every term can be switched off (``generative_fraction=0``, ``importance=None``,
``orthogonality=None``), which gives plain L1 fine-tuning.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.func import functional_call

from .diffusion import DiffusionProcess, from_diffusion_space, to_diffusion_space
from .regularizers import (
    generation_sensitive_layers,
    importance_regularizer,
    layer_decay,
    orthogonality_loss,
    per_sample_gradients,
)


def read_out(model, process: DiffusionProcess, x: torch.Tensor, timestep) -> torch.Tensor:
    """The image ``r_theta`` restores from ``x`` at ``timestep``, both in the diffusion space:
    the network's output read by ``process`` (x0-hat for eps prediction, the output itself for
    a residual denoiser)."""
    return process.estimate_clean(model(x, timestep), x, timestep)


def restore(model, image: torch.Tensor, timestep) -> torch.Tensor:
    """The restored [0, 1] image from a [0, 1] input at ``timestep`` (``t_mat``), read out as the
    model's configured diffusion prescribes; the network works in the diffusion space [-1, 1]."""
    process = DiffusionProcess.for_model(model)
    check_timestep(process, timestep)
    return from_diffusion_space(read_out(model, process, to_diffusion_space(image), timestep))


def check_timestep(process: DiffusionProcess, timestep) -> None:
    """Refuse ``t`` = 0 for an eps-predicting network: its x0-hat read-out there is the input itself."""
    if process.prediction_type == "epsilon" and bool(torch.as_tensor(timestep).eq(0).any()):
        raise ValueError("an eps-predicting network restores nothing at t = 0 (its read-out is the input); "
                         "give it the matched timesteps")


SCHEDULES = ("split", "iterations")


class GEFObjective:
    """The GEF loss of a time-conditioned ``model``; see the module docstring.

    Args:
        model: a :class:`~uir.dte.TimeConditionedRestorer` (its ``depth_layers`` define depth).
        process: the diffusion process of pre-training (it reads the model's output out).
        reference, importance: pre-trained weights and ``I_k`` (``None``: no L_reg).
        lam: lambda of eq. 16 (0.2); decay_rate: ``a`` of eq. 10 (0.05), also the layer decay of lambda.
        generative_fraction: share of each batch trained generatively (0: none).
        orthogonality: ``"eq8"``, ``"orthogonal"``, ``"authors"`` or ``None`` (no L_orthog;
            :func:`~uir.dte.regularizers.orthogonality_loss`).
        orthogonality_weight: the weight of L_orthog in the sum (eq. 22: 1).
        detach_orthogonality: compute L_orthog without its gradient (the authors' code).
        schedule: ``"split"`` (our reading of Alg. 3): every batch gives ``generative_fraction``
            of its samples to L_gen, and L_reg applies at every step. ``"iterations"`` (the
            authors' code): the content loss uses the whole batch, and with probability
            ``generative_fraction`` (drawn from ``generator``) an iteration is generative and adds
            L_gen on all the batch's clean images, L_orthog and L_reg; other iterations have no
            L_reg.
    """

    def __init__(self, model, process: DiffusionProcess, *, reference: dict | None = None,
                 importance: dict | None = None, lam: float = 0.2, decay_rate: float = 0.05,
                 generative_fraction: float = 0.1, orthogonality: str | None = "eq8", schedule: str = "split",
                 generator: torch.Generator | None = None, orthogonality_weight: float = 1.0,
                 detach_orthogonality: bool = False):
        if not 0 <= generative_fraction < 1:
            raise ValueError(f"generative_fraction must lie in [0, 1), got {generative_fraction}")
        if orthogonality is not None and generative_fraction == 0:
            raise ValueError("L_orthog compares generative and reconstruction gradients; it needs generative_fraction > 0")
        if (reference is None) != (importance is None):
            raise ValueError("L_reg needs both the pre-trained weights and their importance")
        if schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
        self.model, self.process = model, process
        self.layers = model.depth_layers()
        self.reference = reference
        self.importance = importance
        self.reg_weights = layer_decay(self.layers, lam, decay_rate) if importance is not None and lam else {}
        self.decay_rate, self.generative_fraction, self.orthogonality = decay_rate, generative_fraction, orthogonality
        self.schedule, self.generator = schedule, generator
        self.orthogonality_weight, self.detach_orthogonality = orthogonality_weight, detach_orthogonality

    def generative_count(self, batch: int) -> int:
        """Generative samples in a ``"split"`` batch."""
        if not self.generative_fraction:
            return 0
        count = max(1, round(self.generative_fraction * batch))
        if count >= batch:
            raise ValueError(f"a batch of {batch} leaves no reconstruction sample; use a larger batch")
        return count

    def _generative_iteration(self) -> bool:
        return bool(self.generative_fraction) and torch.rand((), generator=self.generator).item() < self.generative_fraction

    def __call__(self, lq: torch.Tensor, gt: torch.Tensor, t_mat: int) -> dict[str, torch.Tensor]:
        """The loss terms for pairs ``lq``/``gt`` (B,C,H,W) in [0, 1] of one type; ``"loss"`` is their sum."""
        model, process = self.model, self.process
        check_timestep(process, t_mat)
        if self.schedule == "split":
            n_g = self.generative_count(lq.shape[0])
            rec, clean_for_gen, regularize = slice(n_g, None), gt[:n_g], True
        else:
            generative = self._generative_iteration()
            rec, clean_for_gen, regularize = slice(None), gt[: lq.shape[0] if generative else 0], generative
        t_rec = torch.full((lq[rec].shape[0],), t_mat, device=lq.device)
        x_rec, y_rec = to_diffusion_space(lq[rec]), gt[rec]
        terms = {"content": F.l1_loss(from_diffusion_space(read_out(model, process, x_rec, t_rec)), y_rec)}
        if clean_for_gen.shape[0]:
            shallow = generation_sensitive_layers(self.layers, t_mat, self.decay_rate)
            x0 = to_diffusion_space(clean_for_gen)
            x_t, t_gen, noise = process.noised(x0)
            params = dict(model.named_parameters())
            kept = set(shallow)
            mixed = {n: p if n in kept else p.detach() for n, p in params.items()}
            prediction = functional_call(model, mixed, (x_t, t_gen))
            terms["generative"] = process.prediction_loss(prediction, x0, noise, t_gen).mean()
            if self.orthogonality is not None:
                def generative_sample(forward, x, t, eps, clean):
                    return process.prediction_loss(forward(x, t), clean, eps, t).sum()

                def reconstruction_sample(forward, x, t, y):
                    return F.l1_loss(from_diffusion_space(read_out(forward, process, x, t)), y)

                g_gen = per_sample_gradients(model, shallow, generative_sample, x_t, t_gen, noise, x0)
                g_rec = per_sample_gradients(model, shallow, reconstruction_sample, x_rec, t_rec, y_rec)
                if self.detach_orthogonality:
                    g_gen, g_rec = g_gen.detach(), g_rec.detach()
                terms["orthog"] = self.orthogonality_weight * orthogonality_loss(g_gen, g_rec, self.orthogonality)
        if self.reg_weights and regularize:
            terms["reg"] = importance_regularizer(model, self.reference, self.importance, self.reg_weights)
        terms["loss"] = sum(terms.values())
        return terms

    def term_gradient_norms(self, terms: dict[str, torch.Tensor]) -> dict[str, float]:
        """The L2 norm of each loss term's gradient over the model's parameters
        (``grad_norm/<term>``), from the terms of one ``__call__``; the graph is kept for the
        backward pass of ``"loss"``. A detached term's norm is 0."""
        params = [p for p in self.model.parameters() if p.requires_grad]
        norms = {}
        for name, term in terms.items():
            if name == "loss":
                continue
            grads = (torch.autograd.grad(term, params, retain_graph=True, allow_unused=True)
                     if term.requires_grad else [])
            squares = [(g.detach() ** 2).sum() for g in grads if g is not None]
            norms[f"grad_norm/{name}"] = float(torch.stack(squares).sum().sqrt()) if squares else 0.0
        return norms


__all__ = ["GEFObjective", "SCHEDULES", "check_timestep", "read_out", "restore"]
