"""The set of experts a pipeline holds, as a diffusers-loadable component.

Saved as one folder per expert (the :mod:`uir.lora.experts` format) plus ``config.json`` naming
them, so a pipeline folder reads ``experts/noisy/...``, ``experts/hazy/...``. It is a
``ModelMixin`` only so that diffusers' ``from_pretrained``/``save_pretrained`` treat it as a
component; the weights themselves live in the mixture layers of the adapted models.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config

from .experts import ExpertError, LoRAExpert


class ExpertBank(ModelMixin, ConfigMixin):
    """An ordered list of :class:`LoRAExpert` for one base model."""

    config_name = "config.json"

    @register_to_config
    def __init__(self, base_model: str = "", names: list | None = None):
        super().__init__()
        self.experts: list[LoRAExpert] = []
        # diffusers asks every pipeline module for its device and dtype through its tensors;
        # the experts' tensors live in the mixture layers, so the bank carries an empty one.
        self.register_buffer("_device_anchor", torch.zeros(0), persistent=False)

    @property
    def names(self) -> list[str]:
        return [e.degradation for e in self.experts]

    def add(self, expert: LoRAExpert) -> None:
        if expert.degradation in self.names:
            raise ExpertError(f"an expert for {expert.degradation!r} is already loaded")
        base = self.config.base_model
        if base and expert.base_model and expert.base_model != base:
            raise ExpertError(
                f"expert {expert.degradation!r} was made for base model {expert.base_model!r}, not {base!r}"
            )
        self.experts.append(expert)
        self.register_to_config(names=self.names)

    def set_experts(self, experts: list[LoRAExpert]) -> None:
        """Replace the list (already checked experts, e.g. a previous state)."""
        self.experts = list(experts)
        self.register_to_config(names=self.names)

    def save_pretrained(self, save_directory, **kwargs) -> None:
        directory = Path(save_directory)
        directory.mkdir(parents=True, exist_ok=True)
        for expert in self.experts:
            expert.save(directory / expert.degradation)
        self.save_config(directory)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, subfolder: str | None = None, **kwargs) -> "ExpertBank":
        directory = Path(pretrained_model_name_or_path) / (subfolder or "")
        config_path = directory / cls.config_name
        if not config_path.is_file():
            raise ExpertError(f"{directory}: missing {cls.config_name} of an expert bank")
        config = json.loads(config_path.read_text())
        bank = cls(base_model=config.get("base_model", ""))
        dtype = kwargs.get("dtype") or kwargs.get("torch_dtype")
        if dtype is not None:  # the pipeline reports its dtype from its first component: this one
            bank._device_anchor = bank._device_anchor.to(dtype)
        for name in config.get("names") or []:
            bank.add(LoRAExpert.load(directory / name))
        return bank


__all__ = ["ExpertBank"]
