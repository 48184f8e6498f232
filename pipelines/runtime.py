"""The diffusers-free runtime: a saved :class:`~uir.pipelines.RestorerPipeline` folder (the
embedded default is one) restored in plain torch. It is what the ``uir`` command runs.

Most of a cold ``uir restore`` used to be imports, not restoring: diffusers imports
``torch._dynamo`` and transformers, ``DiffusionPipeline`` peft too, and open_clip torchvision,
transformers and ``torch._dynamo``; each costs more than the restore itself
(docs/performance.md, ``python benchmarks/startup.py``).

The runtime builds the same parts from the folder's configs and safetensors files:
- the restorer's plain network (:data:`RUNTIME_RESTORERS`);
- the router's vision tower and bank (:class:`~uir.routing.RuntimeRouter`);
- the experts (:class:`~uir.lora.ExpertList`).

It then restores with the same call (:class:`~uir.pipelines.restoring.RestorerRestoration`).
``tests/test_runtime.py`` checks that its outputs equal those of
``RestorerPipeline.from_pretrained``.

:func:`runtime_loadable` says whether a folder is one the runtime builds. Callers use
:func:`~uir.pipelines.loading.load_pipeline` for anything else (a Hub id, an SD-turbo
pipeline, a restorer class from elsewhere, pickled weights, an open_clip tower variant).
"""

from __future__ import annotations

import inspect
from pathlib import Path

import torch
from torch import nn

from uir.files import load_json_object, load_safetensors
from uir.lora import ExpertList
from uir.networks import load_weights
from uir.networks.nafnet import NAFNetNetwork
from uir.pipelines.restoring import RestorerRestoration
from uir.routing import RuntimeRouter

#: the restorer classes a saved pipeline may name (``model_index.json``), with their plain networks
RUNTIME_RESTORERS = {("uir.models.nafnet", "NAFNet"): NAFNetNetwork}
WEIGHTS_FILE = "diffusion_pytorch_model.safetensors"
ROUTER_CLASS = ("uir.router", "DegradationRouter")
BANK_CLASS = ("uir.lora.bank", "ExpertBank")


def _component(index: dict, name: str) -> tuple | None:
    """``(module, class)`` of a component in ``model_index.json``; ``None`` when it has none."""
    entry = index.get(name)
    return tuple(entry) if entry and entry[0] is not None else None


def why_not_runtime(folder) -> str | None:
    """Why the runtime cannot build ``folder``, in a few words; ``None`` when it can: a saved
    ``RestorerPipeline`` with a restorer class in :data:`RUNTIME_RESTORERS`, a router (or none)
    whose tower :class:`~uir.networks.clip_vision.VisionTower` implements, and safetensors
    weights."""
    folder = Path(str(folder))
    if not (folder / "model_index.json").is_file():
        return "not a saved pipeline folder (a Hub id or an SD-turbo checkpoint)"
    index = load_json_object(folder / "model_index.json")
    name = index.get("_class_name")
    name = name[-1] if isinstance(name, list) and name else name
    if name != "RestorerPipeline":
        return f"a {name} pipeline, not a RestorerPipeline"
    restorer = _component(index, "restorer")
    if restorer not in RUNTIME_RESTORERS:
        return f"restorer class {'.'.join(restorer or ('none',))} has no plain network in RUNTIME_RESTORERS"
    if not (folder / "restorer" / WEIGHTS_FILE).is_file():
        return f"no restorer/{WEIGHTS_FILE} (pickled or sharded weights)"
    router = _component(index, "router")
    if router is not None:
        if router != ROUTER_CLASS or not (folder / "router" / WEIGHTS_FILE).is_file():
            return f"router {'.'.join(router)} is not a DegradationRouter in safetensors"
        if not RuntimeRouter.supports(load_json_object(folder / "router" / "config.json")):
            return "the router's vision tower has options VisionTower lacks"
    if _component(index, "experts") not in (None, BANK_CLASS):
        return f"experts of class {'.'.join(_component(index, 'experts'))}"
    return None


def runtime_loadable(folder) -> bool:
    """Whether the runtime builds ``folder`` (:func:`why_not_runtime` has no reason)."""
    return why_not_runtime(folder) is None


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
    def from_folder(cls, folder) -> "RuntimeRestorerPipeline":
        """Build a folder :func:`runtime_loadable` accepts."""
        folder = Path(str(folder))
        if not runtime_loadable(folder):
            raise ValueError(f"{folder} is not a saved RestorerPipeline the runtime builds; use uir.load_pipeline")
        index = load_json_object(folder / "model_index.json")
        network = RUNTIME_RESTORERS[_component(index, "restorer")]
        config = load_json_object(folder / "restorer" / "config.json")
        accepted = inspect.signature(network).parameters
        restorer = network(**{k: v for k, v in config.items() if k in accepted})
        load_weights(restorer, load_safetensors(folder / "restorer" / WEIGHTS_FILE), folder / "restorer" / WEIGHTS_FILE)
        router = RuntimeRouter.from_folder(folder / "router") if _component(index, "router") else None
        experts = ExpertList.from_folder(folder / "experts") if _component(index, "experts") else ExpertList()
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


__all__ = ["RUNTIME_RESTORERS", "RuntimeRestorerPipeline", "runtime_loadable", "why_not_runtime"]
