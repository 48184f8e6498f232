"""The diffusion-training-enhanced framework for regression restorers (paper 004, sec. 2-3).

* :mod:`~uir.dte.time_conditioning`: ``r_theta(x, t)`` around any backbone (NAFNet by default).
* :mod:`~uir.dte.diffusion`: generative pre-training (Alg. 1, eq. 11) and the reverse step.
* :mod:`~uir.dte.matching`: the matched timestep ``t_mat`` of a degradation type (Alg. 2).
* :mod:`~uir.dte.finetuning`: the GEF loss of a batch (Alg. 3, eq. 22).
* :mod:`~uir.dte.regularizers`: GEF's L_reg, L_orthog and generation-sensitive layers (eq. 5-10).
* :mod:`~uir.dte.incremental`: time-sequential incremental training (Alg. 4-5).
* :mod:`~uir.dte.moe`: MoE adapters with time-based prompts.

``train/train_dte.py`` runs the stages.
"""

from .finetuning import SCHEDULES, GEFObjective, check_timestep, read_out, restore
from .diffusion import NOISE_MODELS, PREDICTION_TYPES, DiffusionProcess, from_diffusion_space, to_diffusion_space
from .incremental import incremental_stages, time_sequential_order
from .matching import TimestepMatch, match_timestep
from .moe import TimePromptMoE
from .regularizers import (
    ORTHOGONALITY_FORMS,
    generation_sensitive_layers,
    importance_regularizer,
    layer_decay,
    orthogonality_loss,
    parameter_importance,
    per_sample_gradients,
    w_decay,
)
from .time_conditioning import TimeConditionedRestorer

__all__ = [
    "DiffusionProcess",
    "GEFObjective",
    "NOISE_MODELS",
    "ORTHOGONALITY_FORMS",
    "PREDICTION_TYPES",
    "SCHEDULES",
    "TimeConditionedRestorer",
    "TimePromptMoE",
    "TimestepMatch",
    "check_timestep",
    "from_diffusion_space",
    "generation_sensitive_layers",
    "importance_regularizer",
    "incremental_stages",
    "layer_decay",
    "match_timestep",
    "orthogonality_loss",
    "parameter_importance",
    "per_sample_gradients",
    "read_out",
    "restore",
    "time_sequential_order",
    "to_diffusion_space",
    "w_decay",
]
