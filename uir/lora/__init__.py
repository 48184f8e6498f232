"""LoRA experts and their output-space mixture (UIR-LoRA sec. 3.4, eq. 4-5)."""

from .experts import (
    EXPERT_FORMAT,
    FINGERPRINT_KEY,
    ExpertComponent,
    ExpertError,
    ExpertList,
    LoRAExpert,
    base_fingerprint,
    extract_expert,
    install_experts,
    lora_config,
)
from .mixture import LoRAMixtureLayer, fused, inject_mixture, mixture_layers, mixture_weights, remove_mixture

__all__ = [
    "EXPERT_FORMAT",
    "FINGERPRINT_KEY",
    "ExpertComponent",
    "ExpertError",
    "ExpertList",
    "LoRAExpert",
    "LoRAMixtureLayer",
    "base_fingerprint",
    "extract_expert",
    "fused",
    "inject_mixture",
    "install_experts",
    "lora_config",
    "mixture_layers",
    "mixture_weights",
    "remove_mixture",
]
