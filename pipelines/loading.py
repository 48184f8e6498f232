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

import json
from importlib.resources import files
from pathlib import Path

DEFAULT_MODEL = "default"


def default_model_dir() -> Path:
    """The embedded default pipeline's folder."""
    return Path(str(files("uir") / "assets" / "default"))


def saved_pipeline_class(folder) -> str | None:
    """The pipeline class name a saved folder records in ``model_index.json`` (``None`` when the
    folder has none: an SD-turbo id or folder). ``["pipeline", NAME]`` reads as ``NAME``."""
    index = Path(str(folder)) / "model_index.json"
    if not index.is_file():
        return None
    name = json.loads(index.read_text()).get("_class_name")
    return name[-1] if isinstance(name, list) else name


def load_pipeline(model: str | None = None, experts=(), router=None, device: str = "cpu", torch_dtype=None,
                  vae=None):
    """Load the pipeline ``model`` names (see the module docstring), on ``device``; ``vae`` is a
    trained skip VAE folder for an SD-turbo ``model``."""
    from .restorer import RestorerPipeline
    from .uir_lora import UIRLoRAPipeline

    load = {"torch_dtype": torch_dtype} if torch_dtype is not None else {}
    model = str(default_model_dir()) if model in (None, DEFAULT_MODEL) else str(model)
    kind = saved_pipeline_class(model)
    if kind is not None and vae is not None:
        raise ValueError("vae= applies to an SD-turbo model, not to a saved pipeline")
    if kind == "RestorerPipeline":
        pipe = RestorerPipeline.from_pretrained(model, **load)
    elif kind == "UIRLoRAPipeline":
        pipe = UIRLoRAPipeline.from_pretrained(model, **load)
    else:
        pipe = UIRLoRAPipeline.from_sd_turbo(model, router=router, vae=vae, **load)
        router = None
    if router is not None:
        from uir.router import DegradationRouter

        # register_modules, not attribute assignment: only a registered module is saved
        pipe.register_modules(router=DegradationRouter.from_pretrained(router, **load)
                              if isinstance(router, (str, Path)) else router)
    for expert in experts:
        pipe.load_expert(expert)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


__all__ = ["DEFAULT_MODEL", "default_model_dir", "load_pipeline", "saved_pipeline_class"]
