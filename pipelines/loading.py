"""The one front door: finding, choosing how to build and loading a restoration pipeline by name.

* ``None`` or ``"default"``: the :class:`~uir.pipelines.RestorerPipeline` that ships inside the
  package (``uir/assets/default``): a NAFNet, one LoRA expert per type of
  :data:`~uir.degradations.DEFAULT_VOCABULARY` and a small CLIP router, all trained by
  ``train/`` on real photos. No network needed.
* a saved pipeline folder or Hub id (``model_index.json``): loaded with its own class.
* an SD-turbo id or folder (``stabilityai/sd-turbo``) with ``experts=`` (folders or Hub ids)
  and ``router=``: :meth:`UIRLoRAPipeline.from_sd_turbo`.

:func:`load_pipeline` makes the one decision of how: the torch-only runtime
(:mod:`uir.pipelines.runtime`) when asked for (``runtime=True``, what every ``uir`` command
asks) and it can build the model, else diffusers. When it cannot, :func:`runtime_refusal`
says why, and the choice is logged at debug level (``uir --debug``): never a silent switch.
"""

from __future__ import annotations

import logging
from importlib.resources import files
from pathlib import Path

from uir.hub import require_hub
from uir.pipelines.saved import SavedPipeline, read_saved_pipeline

logger = logging.getLogger("uir.pipelines")

DEFAULT_MODEL = "default"


def default_model_dir() -> Path:
    """The embedded default pipeline's folder."""
    return Path(str(files("uir") / "assets" / "default"))


def model_path(model) -> str:
    """``model`` as a path or Hub id: ``None`` and ``"default"`` name the embedded default."""
    return str(default_model_dir()) if model in (None, DEFAULT_MODEL) else str(model)


def runtime_refusal(saved: SavedPipeline | None, experts=(), router=None, vae=None, dtype=None,
                    allow_pickle: bool = False) -> str | None:
    """Why :func:`load_pipeline` builds a model with diffusers rather than the runtime, in a few
    words; ``None`` when the runtime builds it. The runtime cannot add experts or a router (a
    new degradation needs the router's text tower), cast weights, or read pickles."""
    from .runtime import why_not_runtime

    added = [option for option, value in (("experts", experts), ("router", router), ("vae", vae), ("dtype", dtype),
                                          ("allow_pickle", allow_pickle)) if value]
    if added:
        return f"{', '.join(added)}= asks for what only the diffusers pipeline does"
    return why_not_runtime(saved)


def load_pipeline(model: str | None = None, experts=(), router=None, device: str = "cpu", dtype=None,
                  vae=None, allow_pickle: bool = False, torch_dtype=None, runtime: bool = False):
    """Load a restoration pipeline by name, ready to call.

    Args:
        model: ``None`` or ``"default"`` (the embedded default), a saved pipeline folder or Hub
            id, or an SD-turbo id or folder such as ``"stabilityai/sd-turbo"``.
        experts: expert folders, Hub ids or :class:`~uir.lora.LoRAExpert` objects to add; one
            for a degradation the model already has replaces that expert.
        router: a :class:`~uir.models.router.DegradationRouter` or its folder / Hub id, to add or replace.
        device: where the pipeline runs (``cpu``, ``cuda``, ``cuda:1``, ``mps``).
        dtype: the weights' dtype, e.g. ``torch.bfloat16`` (default: as saved).
        vae: a trained skip-VAE folder (``train/train_vae_skips.py``), for an SD-turbo ``model`` only.
        allow_pickle: also load weights from pickle files (``.bin``); off by default, since
            unpickling runs code. Experts are safetensors only in any case.
        torch_dtype: the old name of ``dtype``.
        runtime: build the model in the torch-only runtime when it can (:func:`runtime_refusal`):
            the same outputs from a third of the start-up, without ``save_pretrained``,
            ``load_expert`` or training. What every ``uir`` command runs.

    Returns:
        a :class:`~uir.pipelines.RestorerPipeline` or :class:`~uir.pipelines.UIRLoRAPipeline`; with
        ``runtime=True``, a :class:`~uir.pipelines.RuntimeRestorerPipeline` where it can.

    Example::

        pipe = uir.load_pipeline()                       # offline, the embedded default
        restored = pipe(Image.open("photo.png")).images[0]
    """
    model = model_path(model)
    require_hub(model)  # before the imports: offline, this is the one line a user waits for
    for name, what in [(router, "router"), *((expert, "expert") for expert in experts)]:
        if isinstance(name, (str, Path)):
            require_hub(str(name), what)
    dtype = dtype if dtype is not None else torch_dtype
    saved = read_saved_pipeline(model)
    if runtime:
        reason = runtime_refusal(saved, experts, router, vae, dtype, allow_pickle)
        if reason is None:
            from .runtime import RuntimeRestorerPipeline

            return RuntimeRestorerPipeline.from_saved(saved).to(device)
        logger.debug("loading %s with diffusers, not the runtime: %s", model, reason)
    from diffusers.utils import logging as diffusers_logging

    from .regression import RestorerPipeline
    from .uir_lora import UIRLoRAPipeline

    load = {"dtype": dtype} if dtype is not None else {}
    load["use_safetensors"] = None if allow_pickle else True
    kind = saved.class_name if saved is not None else None
    if kind is not None and vae is not None:
        raise ValueError("vae= applies to an SD-turbo model, not to a saved pipeline")
    bar_was_enabled = diffusers_logging.is_progress_bar_enabled()
    diffusers_logging.disable_progress_bar()  # loading takes a second; no bar for it
    try:
        if kind == "RestorerPipeline":
            pipe = RestorerPipeline.from_pretrained(model, **load)
        elif kind == "UIRLoRAPipeline":
            pipe = UIRLoRAPipeline.from_pretrained(model, **load)
        else:
            pipe = UIRLoRAPipeline.from_sd_turbo(model, router=router, vae=vae, **load)
            router = None
    finally:
        if bar_was_enabled:
            diffusers_logging.enable_progress_bar()
    if router is not None:
        from uir.models.router import DegradationRouter

        # register_modules, not attribute assignment: only a registered module is saved
        pipe.register_modules(router=DegradationRouter.from_pretrained(router, **load)
                              if isinstance(router, (str, Path)) else router)
    for expert in experts:
        pipe.load_expert(expert, replace=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


__all__ = ["DEFAULT_MODEL", "default_model_dir", "load_pipeline", "model_path", "runtime_refusal"]
