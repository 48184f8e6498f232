"""LoRA experts and their output-space mixture (UIR-LoRA sec. 3.4, eq. 4-5)."""

from .experts import (
    DIFFUSERS_METADATA_KEY,
    EXPERT_FORMAT,
    INPUT_BLEND_KEY,
    PEFT_KEY_PREFIX,
    PRIOR_BLEND_KEY,
    PRIOR_INPUT_KEY,
    VEIL_BOUND_KEY,
    ExpertComponent,
    ExpertError,
    ExpertList,
    LoRAExpert,
    blend_output,
    extract_expert,
    install_experts,
    lora_config,
)
from .fingerprint import FINGERPRINT_KEY, base_fingerprint, fingerprints_match, short_fingerprint
from .mixture import LoRAMixtureLayer, fused, inject_mixture, mixture_layers, mixture_weights, remove_mixture

__all__ = [
    "DIFFUSERS_METADATA_KEY",
    "EXPERT_FORMAT",
    "FINGERPRINT_KEY",
    "INPUT_BLEND_KEY",
    "PEFT_KEY_PREFIX",
    "PRIOR_BLEND_KEY",
    "PRIOR_INPUT_KEY",
    "VEIL_BOUND_KEY",
    "ExpertComponent",
    "ExpertError",
    "ExpertList",
    "LoRAExpert",
    "LoRAMixtureLayer",
    "base_fingerprint",
    "blend_output",
    "extract_expert",
    "fingerprints_match",
    "fused",
    "inject_mixture",
    "install_experts",
    "lora_config",
    "mixture_layers",
    "mixture_weights",
    "remove_mixture",
    "short_fingerprint",
]
