"""Restorer backbones: what uir asks of a restorer network, and the registry of them by name.

A backbone maps (B,3,H,W) images in [0, 1] to restored images of the same shape. It is a
diffusers model (``ModelMixin`` + ``ConfigMixin``), so pipelines save and load it; one with a
plain torch twin (:mod:`uir.networks`) also runs in the diffusers-free runtime.

:class:`Backbone` declares the protocol. ``size_multiple`` is required; each other attribute
switches on one feature, and :func:`require` names the backbone and the feature when it is
missing:

=========================  ==================================================================
attribute                  used by
=========================  ==================================================================
``size_multiple``          every caller: inputs are reflect-padded to a multiple of it
``expert_targets``         LoRA experts (:class:`~uir.pipelines.RestorerPipeline`,
                           ``train/train_uir_lora.py``): PEFT ``target_modules`` suffixes;
                           training them also needs diffusers' ``PeftAdapterMixin``
``dlnet_split``            DL-Net (:class:`~uir.dlnet.DLNet`): the module whose input is ``z``
``time_condition_blocks``  DTE (:class:`~uir.dte.TimeConditionedRestorer`): the modules that
                           receive the timestep
=========================  ==================================================================

:data:`BACKBONES` maps a name (``train_restorer.py --backbone NAME``,
``train_dte.py pretrain --backbone NAME``, ``train_dlnet.py --reference NAME``) to a
:class:`BackboneSpec`. Classes are named by dotted path and imported on use, so this module
imports neither diffusers nor any backbone. docs/adding-a-backbone.md walks through adding one.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Protocol, Sequence

import torch


class Backbone(Protocol):
    """A restorer network uir can train, adapt and run. ``size_multiple`` and ``forward`` are
    required; each other attribute is optional and switches on the feature that reads it (see
    the module docstring), so a backbone without ``dlnet_split`` still trains and restores."""

    #: input heights and widths must be multiples of this (the pipelines pad)
    size_multiple: int
    #: PEFT ``target_modules`` suffixes LoRA experts adapt (groups=1 convs or linears)
    expert_targets: Sequence[str]
    #: DL-Net: the name of the module whose input is the feature map ``z``
    dlnet_split: str
    #: DTE: names of the modules whose outputs receive the timestep embedding
    time_condition_blocks: Sequence[str]

    def forward(self, x: torch.Tensor) -> torch.Tensor: ...


#: the attributes of :class:`Backbone` beyond ``size_multiple``, and the feature that reads each
FEATURES = {"expert_targets": "LoRA experts", "dlnet_split": "DL-Net", "time_condition_blocks": "DTE"}


@dataclass(frozen=True)
class BackboneSpec:
    """A registered backbone.

    Attributes:
        name: the registry name.
        model: dotted path of the diffusers model class (training, pipelines, research ports).
        network: dotted path of its plain torch twin, which the runtime builds for a saved
            pipeline whose restorer is ``model``; ``None``: such pipelines load through diffusers.
        width_argument: the constructor argument that sets the channel width (``--width``).
        defaults: constructor arguments that differ from the class's own defaults.
        summary: one line for ``--help`` and the docs.
    """

    name: str
    model: str
    network: str | None = None
    width_argument: str = "width"
    defaults: dict = field(default_factory=dict)
    summary: str = ""

    def model_class(self) -> type:
        return import_class(self.model)

    def network_class(self) -> type | None:
        return import_class(self.network) if self.network else None

    def build(self, width: int | None = None, **config):
        """A fresh model: ``defaults``, then ``config``, then ``width`` when given."""
        arguments = {**self.defaults, **config}
        if width is not None:
            arguments[self.width_argument] = width
        return self.model_class()(**arguments)


BACKBONES: dict[str, BackboneSpec] = {}


def register_backbone(spec: BackboneSpec) -> BackboneSpec:
    """Add ``spec`` to :data:`BACKBONES` (a name already there is an error)."""
    if spec.name in BACKBONES:
        raise ValueError(f"a backbone named {spec.name!r} is registered already")
    BACKBONES[spec.name] = spec
    return spec


def import_class(path: str) -> type:
    """The class at dotted ``path``."""
    module, _, name = path.rpartition(".")
    cls = getattr(importlib.import_module(module), name, None)
    if not isinstance(cls, type):
        raise ValueError(f"{path} is not a class")
    return cls


def get_backbone(name: str) -> BackboneSpec:
    """The registered backbone ``name``; a one-line ``ValueError`` listing the names otherwise."""
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; registered: {', '.join(sorted(BACKBONES))}")
    return BACKBONES[name]


def import_backbones() -> None:
    """Import every registered backbone's model class (diffusers loads a saved component only
    from a module already imported)."""
    for spec in BACKBONES.values():
        spec.model_class()


def runtime_network(model_class_path: str) -> type | None:
    """The plain torch network the runtime builds for a saved restorer of class
    ``model_class_path`` (``"uir.models.nafnet.NAFNet"``); ``None`` when no registered backbone
    has one."""
    for spec in BACKBONES.values():
        if spec.model == model_class_path and spec.network:
            return spec.network_class()
    return None


def require(model, attribute: str):
    """``model``'s protocol ``attribute``; a one-line ``AttributeError`` naming the backbone and
    the feature that needs it when the attribute is missing or empty."""
    value = getattr(model, attribute, None)
    if value is None or (not isinstance(value, (str, int)) and len(value) == 0):
        feature = FEATURES.get(attribute, attribute)
        raise AttributeError(f"{type(model).__name__} has no {attribute}, which {feature} needs: set it on the class "
                             "(see uir.backbones.Backbone)")
    return value


register_backbone(BackboneSpec(
    "nafnet", model="uir.models.nafnet.NAFNet", network="uir.networks.nafnet.NAFNet",
    summary="NAFNet, a nonlinear-activation-free U-Net (the embedded default's)"))
register_backbone(BackboneSpec(
    "srresnet", model="uir.models.srresnet.SRResNet", defaults={"scale": 1}, width_argument="channels",
    summary="MSRResNet at scale 1: a plain residual trunk (GRIDS' representation network)"))
register_backbone(BackboneSpec(
    "lira", model="uir.lira.network.LIRANetwork", width_argument="channels",
    summary="LIRA's base network (fork-join experts, one task)"))


__all__ = ["BACKBONES", "FEATURES", "Backbone", "BackboneSpec", "get_backbone", "import_backbones", "import_class",
           "register_backbone", "require", "runtime_network"]
