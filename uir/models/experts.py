"""The set of experts a pipeline holds, as a diffusers-loadable component.

Saved as one folder per expert (the :mod:`uir.lora.experts` format) plus ``config.json`` naming
them, so a pipeline folder reads ``experts/noisy.expert/...``, ``experts/hazy.expert/...``
(``experts/noisy.fp16.expert/...`` when saved with ``variant="fp16"``). It is a
``ModelMixin`` only so that diffusers' ``from_pretrained``/``save_pretrained`` treat it as a
component; the list itself is :class:`~uir.lora.experts.ExpertList`, and the weights live in the
mixture layers of the adapted models.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config

from ..lora.experts import ExpertList, expert_folder_name


class ExpertListModel(ExpertList, ModelMixin, ConfigMixin):
    """An :class:`ExpertList` that diffusers saves and loads as a pipeline component."""

    @register_to_config
    def __init__(self, base_model: str = "", names: list | None = None):
        super().__init__(base_model)
        # diffusers asks every pipeline module for its device and dtype through its tensors;
        # the experts' tensors live in the mixture layers, so the list carries an empty one.
        self.register_buffer("_device_anchor", torch.zeros(0), persistent=False)

    def _names_changed(self) -> None:
        self.register_to_config(names=self.names)

    def save_pretrained(self, save_directory, variant: str | None = None, **kwargs) -> None:
        directory = Path(save_directory)
        directory.mkdir(parents=True, exist_ok=True)
        for expert in self.experts:
            expert.save(directory / expert_folder_name(expert.degradation, variant))
        self.save_config(directory)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, subfolder: str | None = None, variant: str | None = None,
                        **kwargs) -> "ExpertListModel":
        bank = cls.from_folder(Path(pretrained_model_name_or_path) / (subfolder or ""), variant=variant)
        dtype = kwargs.get("dtype") or kwargs.get("torch_dtype")
        if dtype is not None:  # the pipeline reports its dtype from its first component: this one
            bank._device_anchor = bank._device_anchor.to(dtype)
        return bank


__all__ = ["ExpertListModel"]
