"""uir's pipelines and everything about them, installed as ``uir.pipelines`` (this folder is
mapped in ``setup.py``). Torch-only core modules first, then the diffusers adapters:

* :mod:`.saved`: a saved pipeline folder read once into a :class:`SavedPipeline` record;
* :mod:`.restoring`: the restoring call every pipeline shares, in plain torch (routing, the
  mixture, tiling, batching, expert checks) and :class:`RestorationOutput`;
* :mod:`.runtime`: :class:`RuntimeRestorerPipeline`, a saved ``RestorerPipeline`` run without
  diffusers or open_clip;
* :mod:`.loading`: :func:`load_pipeline`, the one front door: by name (default, folder, Hub id,
  SD-turbo + experts), through the runtime where asked and possible, else diffusers;
* :mod:`.base` (diffusers): :class:`ExpertMixturePipeline`, the restoring call as a
  ``DiffusionPipeline`` (loading, saving, adding experts) and :class:`UIRPipelineOutput`;
* :mod:`.uir_lora` (diffusers): :class:`UIRLoRAPipeline`, frozen SD-turbo + LoRA experts + CLIP router;
* :mod:`.regression` (diffusers): :class:`RestorerPipeline`, the same around a regression
  restorer (the embedded default).

Classes are imported on first use, so ``uir.pipelines.loading`` stays light.
"""

from uir.lazy import lazy_attributes

_LAZY = {
    "ExpertMixturePipeline": ".base",
    "RestorationOutput": ".restoring",
    "RuntimeRestorerPipeline": ".runtime",
    "UIRPipelineOutput": ".base",
    "RestorerPipeline": ".regression",
    "UIRLoRAPipeline": ".uir_lora",
    "SavedPipeline": ".saved",
    "read_saved_pipeline": ".saved",
    "DEFAULT_MODEL": ".loading",
    "default_model_dir": ".loading",
    "load_pipeline": ".loading",
}


__getattr__ = lazy_attributes(__name__, _LAZY)

__all__ = sorted(_LAZY)
