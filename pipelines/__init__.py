"""uir's diffusers pipelines and everything about them, installed as ``uir.pipelines`` (this
folder is mapped in ``setup.py``):

* :mod:`.restoring`: the call both pipelines share, in plain torch (routing, the mixture,
  tiling, batching, expert checks) and :class:`RestorationOutput`;
* :mod:`.base`: :class:`ExpertMixturePipeline`, that call as a ``DiffusionPipeline`` (loading,
  saving, adding experts) and :class:`UIRPipelineOutput`;
* :mod:`.uir_lora`: :class:`UIRLoRAPipeline`, frozen SD-turbo + LoRA experts + CLIP router;
* :mod:`.restorer`: :class:`RestorerPipeline`, the same around a regression restorer (the
  embedded default);
* :mod:`.loading`: :func:`load_pipeline` by name (default, folder, Hub id, SD-turbo + experts)
  and :func:`saved_pipeline_class`;
* :mod:`.runtime`: :class:`RuntimeRestorerPipeline`, a saved ``RestorerPipeline`` run without
  diffusers or open_clip (what the ``uir`` command runs).

Classes are imported on first use, so ``uir.pipelines.loading`` stays light.
"""

from uir.lazy import lazy_attributes

_LAZY = {
    "ExpertMixturePipeline": ".base",
    "RestorationOutput": ".restoring",
    "RuntimeRestorerPipeline": ".runtime",
    "UIRPipelineOutput": ".base",
    "RestorerPipeline": ".restorer",
    "UIRLoRAPipeline": ".uir_lora",
    "DEFAULT_MODEL": ".loading",
    "default_model_dir": ".loading",
    "load_pipeline": ".loading",
    "saved_pipeline_class": ".loading",
}


__getattr__ = lazy_attributes(__name__, _LAZY)

__all__ = sorted(_LAZY)
