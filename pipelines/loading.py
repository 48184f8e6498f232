"""Finding and loading a restoration pipeline by name: the embedded default, a saved folder,
a Hub id, or SD-turbo plus experts.

* ``None`` or ``"default"``: the :class:`~uir.pipelines.RestorerPipeline` that ships inside the
  package (``uir/assets/default``): a NAFNet, ten LoRA experts and a small CLIP router, all
  trained by ``train/`` on real photos. No network needed.
* a saved pipeline folder or Hub id (``model_index.json``): loaded with its own class.
* an SD-turbo id or folder (``stabilityai/sd-turbo``) with ``experts=`` (folders or Hub ids)
  and ``router=``: :meth:`UIRLoRAPipeline.from_sd_turbo`.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from uir.files import load_json_object
from uir.hub import require_hub

DEFAULT_MODEL = "default"


def default_model_dir() -> Path:
    """The embedded default pipeline's folder."""
    return Path(str(files("uir") / "assets" / "default"))


PIPELINE_CLASSES = ("RestorerPipeline", "UIRLoRAPipeline")


def model_path(model) -> str:
    """``model`` as a path or Hub id: ``None`` and ``"default"`` name the embedded default."""
    return str(default_model_dir()) if model in (None, DEFAULT_MODEL) else str(model)


def saved_pipeline_class(folder) -> str | None:
    """The uir pipeline class a saved folder records in ``model_index.json``, or ``None`` when the
    folder has none (an SD-turbo id or folder). ``["pipeline", NAME]`` reads as ``NAME``.

    Raises:
        ValueError: (one line) the index is not a JSON object, or names a class uir does not have.
    """
    index = Path(str(folder)) / "model_index.json"
    if not index.is_file():
        return None
    name = load_json_object(index).get("_class_name")
    name = name[-1] if isinstance(name, list) and name else name
    if name not in PIPELINE_CLASSES:
        raise ValueError(f"{index} names pipeline class {name!r}; uir pipelines are {', '.join(PIPELINE_CLASSES)}")
    return name


def load_pipeline(model: str | None = None, experts=(), router=None, device: str = "cpu", dtype=None,
                  vae=None, allow_pickle: bool = False, torch_dtype=None):
    """Load a restoration pipeline by name, ready to call.

    Args:
        model: ``None`` or ``"default"`` (the embedded default), a saved pipeline folder or Hub
            id, or an SD-turbo id or folder such as ``"stabilityai/sd-turbo"``.
        experts: expert folders, Hub ids or :class:`~uir.lora.LoRAExpert` objects to add; one
            for a degradation the model already has replaces that expert.
        router: a :class:`~uir.router.DegradationRouter` or its folder / Hub id, to add or replace.
        device: where the pipeline runs (``cpu``, ``cuda``, ``cuda:1``, ``mps``).
        dtype: the weights' dtype, e.g. ``torch.bfloat16`` (default: as saved).
        vae: a trained skip-VAE folder (``train/train_vae_skips.py``), for an SD-turbo ``model`` only.
        allow_pickle: also load weights from pickle files (``.bin``); off by default, since
            unpickling runs code. Experts are safetensors only in any case.
        torch_dtype: the old name of ``dtype``.

    Returns:
        a :class:`~uir.pipelines.RestorerPipeline` or :class:`~uir.pipelines.UIRLoRAPipeline`.

    Example::

        pipe = uir.load_pipeline()                       # offline, the embedded default
        restored = pipe(Image.open("photo.png")).images[0]
    """
    model = model_path(model)
    require_hub(model)  # before the imports: offline, this is the one line a user waits for
    for name, what in [(router, "router"), *((expert, "expert") for expert in experts)]:
        if isinstance(name, (str, Path)):
            require_hub(str(name), what)
    from diffusers.utils import logging as diffusers_logging

    from .restorer import RestorerPipeline
    from .uir_lora import UIRLoRAPipeline

    dtype = dtype if dtype is not None else torch_dtype
    load = {"dtype": dtype} if dtype is not None else {}
    load["use_safetensors"] = None if allow_pickle else True
    kind = saved_pipeline_class(model)
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
        from uir.router import DegradationRouter

        # register_modules, not attribute assignment: only a registered module is saved
        pipe.register_modules(router=DegradationRouter.from_pretrained(router, **load)
                              if isinstance(router, (str, Path)) else router)
    for expert in experts:
        pipe.load_expert(expert, replace=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


__all__ = ["DEFAULT_MODEL", "PIPELINE_CLASSES", "default_model_dir", "load_pipeline", "model_path",
           "saved_pipeline_class"]
