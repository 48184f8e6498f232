"""A regression restorer with per-degradation LoRA experts and a degradation router.

The same machinery as :class:`~uir.pipelines.UIRLoRAPipeline` (the shared
:class:`uir.pipelines.base.ExpertMixturePipeline`: the eq. 5 mixture with per-image weights,
the eq. 3-4 router, strategies, tiling, saving and both loading paths), around any restorer
``f(x) -> x`` on images in [0, 1] instead of a frozen SD-turbo. uir's embedded default model
is one: a NAFNet, an expert per degradation type and a small CLIP router, all trained on real
photos.

``save_pretrained`` copies this file into the saved folder as ``pipeline.py``, so
``DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)`` finds the class. In a
fresh process that file is all diffusers runs before loading the components, and diffusers
loads a component only from a module already imported: hence
:func:`~uir.backbones.import_backbones` below, which imports every registered backbone. A
restorer from elsewhere needs its module imported before ``from_pretrained``.
"""

from __future__ import annotations

from diffusers import ModelMixin

from uir.backbones import import_backbones, require
from uir.models.experts import ExpertListModel
from uir.models.router import DegradationRouter
from uir.pipelines.base import ExpertMixturePipeline, UIRPipelineOutput
from uir.pipelines.restoring import RestorerRestoration

EXPERT_RANK = 8

import_backbones()  # the restorer classes diffusers must find by module name


class RestorerPipeline(RestorerRestoration, ExpertMixturePipeline):
    """Components: ``restorer`` (a backbone, :class:`uir.backbones.Backbone`: a ``ModelMixin``
    mapping (B,3,H,W) in [0, 1] to the same), ``router`` (optional) and ``experts``. The
    restorer's ``expert_targets`` names the layers new experts adapt; ``size_multiple``
    (default 8) the padding."""

    model_cpu_offload_seq = "router->restorer"
    _optional_components = ["router", "experts"]
    card_title = "uir regression restorer with LoRA experts"
    card_description = ("A regression image restorer with one LoRA expert per degradation, mixed per image in "
                        "output space by a CLIP degradation router (the UIR-LoRA recipe on a small base).")

    def __init__(self, restorer: ModelMixin, router: DegradationRouter | None = None,
                 experts: ExpertListModel | None = None):
        super().__init__()
        self.register_modules(restorer=restorer, router=router, experts=experts)
        restorer.requires_grad_(False)
        self._set_up_experts()

    @property
    def expert_targets(self) -> dict:
        return {"restorer": (tuple(require(self.restorer, "expert_targets")), EXPERT_RANK)}


__all__ = ["RestorerPipeline", "UIRPipelineOutput"]
