"""The diffusers-free runtime: a saved :class:`~uir.pipelines.RestorerPipeline` folder (the
embedded default is one) restored in plain torch. It is what the ``uir`` commands run.

Importing diffusers, open_clip and peft costs more than a restore (docs/performance.md). The
runtime builds the same parts from the folder's :class:`~uir.pipelines.saved.SavedPipeline`
record and safetensors files:

- the restorer's plain torch twin (the backbone registry, :func:`uir.backbones.runtime_network`);
- the router's vision tower and bank (:class:`~uir.networks.router.RuntimeRouter`);
- the experts (:class:`~uir.lora.ExpertList`).

It then restores with the same call (:class:`~uir.pipelines.restoring.RestorerRestoration`).
``tests/test_runtime.py`` checks that its outputs equal those of
``RestorerPipeline.from_pretrained``. :func:`why_not_runtime` says why a folder is not one the
runtime builds; :func:`~uir.pipelines.loading.load_pipeline` makes the choice.
"""

from __future__ import annotations

import inspect

import torch
from torch import nn

from uir.backbones import runtime_network
from uir.files import load_safetensors
from uir.lora import ExpertList
from uir.networks import load_weights
from uir.networks.router import RuntimeRouter
from uir.pipelines.restoring import RestorerRestoration
from uir.pipelines.saved import EXPERTS_CLASS, MODEL_WEIGHTS_FILE, ROUTER_CLASS, SavedPipeline


def why_not_runtime(saved: SavedPipeline | None) -> str | None:
    """Why the runtime cannot build a saved folder, in a few words; ``None`` when it can: a saved
    ``RestorerPipeline`` whose restorer has a plain torch twin in the backbone registry, a router
    (or none) whose tower :class:`~uir.networks.clip_vision.VisionTower` implements, and
    safetensors weights. ``saved=None`` (no ``model_index.json``) is a Hub id or SD-turbo."""
    if saved is None:
        return "not a saved pipeline folder (a Hub id or an SD-turbo checkpoint)"
    if saved.class_name != "RestorerPipeline":
        return f"a {saved.class_name} pipeline, not a RestorerPipeline"
    if runtime_network(saved.class_path("restorer")) is None:
        return f"restorer class {saved.class_path('restorer')} has no plain torch twin in uir.backbones"
    if saved.weights("restorer") is None:
        return f"no restorer/{MODEL_WEIGHTS_FILE} (pickled or sharded weights)"
    if saved.component("router") is not None:
        if saved.component("router") != ROUTER_CLASS or saved.weights("router") is None:
            return f"router {saved.class_path('router')} is not a DegradationRouter in safetensors"
        if not RuntimeRouter.supports(saved.configs.get("router", {})):
            return "the router's vision tower has options the runtime's towers (uir.networks.clip_vision) lack"
    if saved.component("experts") not in (None, EXPERTS_CLASS):
        return f"experts of class {saved.class_path('experts')}"
    return None


class RuntimeRestorerPipeline(RestorerRestoration):
    """A regression restorer, its experts and its router, called as a ``RestorerPipeline`` is.

    Args:
        restorer: the plain restorer network, with its weights.
        router: the router, or ``None`` (then callers pass expert weights).
        experts: the experts, checked against the restorer and installed in it.
    """

    def __init__(self, restorer: nn.Module, router: RuntimeRouter | None, experts: ExpertList):
        self.restorer = restorer.eval().requires_grad_(False)
        self.router = router.eval() if router is not None else None
        self.experts = experts
        self._set_up_experts()

    @classmethod
    def from_saved(cls, saved: SavedPipeline) -> "RuntimeRestorerPipeline":
        """Build a saved folder :func:`why_not_runtime` accepts."""
        reason = why_not_runtime(saved)
        if reason is not None:
            raise ValueError(f"the runtime cannot build {saved.path}: {reason}; use uir.load_pipeline")
        network = runtime_network(saved.class_path("restorer"))
        config = saved.configs.get("restorer", {})
        accepted = inspect.signature(network).parameters
        restorer = network(**{k: v for k, v in config.items() if k in accepted})
        weights = saved.weights("restorer")
        load_weights(restorer, load_safetensors(weights), weights)
        router = (RuntimeRouter.from_config(saved.configs["router"], saved.weights("router"))
                  if saved.component("router") else None)
        experts = (ExpertList.from_folder(saved.path / "experts", config=saved.configs.get("experts"))
                   if saved.component("experts") else ExpertList())
        return cls(restorer, router, experts)

    @property
    def device(self) -> torch.device:
        return next(self.restorer.parameters()).device

    def to(self, device) -> "RuntimeRestorerPipeline":
        """Move the restorer and the router to ``device``; returns ``self``."""
        self.restorer.to(device)
        if self.router is not None:
            self.router.to(device)
        return self


__all__ = ["RuntimeRestorerPipeline", "why_not_runtime"]
