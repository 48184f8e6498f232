"""A regression restorer with per-degradation LoRA experts and a degradation router.

The same machinery as :class:`~uir.pipelines.UIRLoRAPipeline` (the shared
:class:`uir.pipelines.base.ExpertMixturePipeline`: the eq. 5 mixture with per-image weights,
the eq. 3-4 router, strategies, tiling, saving and both loading paths), around any restorer
``f(x) -> x`` on images in [0, 1] instead of a frozen SD-turbo. uir's embedded default model
is one: a NAFNet, ten experts and a small CLIP router, all trained on real photos.

``save_pretrained`` copies this file into the saved folder as ``pipeline.py``, so
``DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)`` finds the class. In a
fresh process that file is all diffusers runs before loading the components, and diffusers
loads a component only from a module already imported: hence the import of
:mod:`uir.models` (NAFNet, SRResNet) below. A restorer from elsewhere needs its module
imported before ``from_pretrained``.
"""

from __future__ import annotations

from diffusers import ModelMixin

import uir.models  # noqa: F401  (the restorer classes diffusers must find by module name)
from uir.lora.bank import ExpertBank
from uir.pipelines.base import ExpertMixturePipeline, UIRPipelineOutput
from uir.pipelines.restoring import RestorerRestoration
from uir.router import DegradationRouter

EXPERT_RANK = 8


class RestorerPipeline(RestorerRestoration, ExpertMixturePipeline):
    """Components: ``restorer`` (a ``ModelMixin`` mapping (B,3,H,W) in [0, 1] to the same),
    ``router`` (optional) and ``experts``. The restorer's class attribute ``expert_targets``
    names the layers new experts adapt; ``size_multiple`` (default 8) the padding."""

    model_cpu_offload_seq = "router->restorer"
    _optional_components = ["router", "experts"]
    card_title = "uir regression restorer with LoRA experts"
    card_description = ("A regression image restorer with one LoRA expert per degradation, mixed per image in "
                        "output space by a CLIP degradation router (the UIR-LoRA recipe on a small base).")

    def __init__(self, restorer: ModelMixin, router: DegradationRouter | None = None,
                 experts: ExpertBank | None = None):
        super().__init__()
        self.register_modules(restorer=restorer, router=router, experts=experts)
        restorer.requires_grad_(False)
        self._set_up_experts()

    @property
    def expert_targets(self) -> dict:
        targets = getattr(self.restorer, "expert_targets", None)
        if not targets:
            raise AttributeError(f"{type(self.restorer).__name__} has no expert_targets: set the class attribute to "
                                 "the PEFT target_modules suffixes experts should adapt")
        return {"restorer": (tuple(targets), EXPERT_RANK)}


__all__ = ["RestorerPipeline", "UIRPipelineOutput"]
