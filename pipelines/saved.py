"""A saved pipeline folder, read once.

:func:`read_saved_pipeline` parses ``model_index.json`` and the component configs of a folder
written by ``save_pretrained`` into one :class:`SavedPipeline` record: the pipeline class, each
component's ``(module, class)`` and their configs (the expert list's names included). Everything in uir that
asks what a folder holds asks the record: the loading decision
(:func:`~uir.pipelines.loading.load_pipeline`), the diffusers-free runtime
(:mod:`uir.pipelines.runtime`) and training (:func:`uir.training.restoration.load_uir_lora_pipeline`).
diffusers, when it loads the folder, reads the files itself.

Class paths that a saved folder recorded before a class moved are read as the class's
current home (:data:`MOVED_CLASSES`); the old modules stay importable, so diffusers loads such
folders too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from uir.files import load_json_object

MODEL_INDEX = "model_index.json"
CONFIG_FILE = "config.json"
#: the safetensors file of a diffusers model component (restorer, router)
MODEL_WEIGHTS_FILE = "diffusion_pytorch_model.safetensors"
PIPELINE_CLASSES = ("RestorerPipeline", "UIRLoRAPipeline")

#: ``(module, class)`` of the router and the expert list components, as saved today
ROUTER_CLASS = ("uir.models.router", "DegradationRouter")
EXPERTS_CLASS = ("uir.models.experts", "ExpertListModel")
#: ``(module, class)`` recorded by folders saved before a class moved -> where it lives now
MOVED_CLASSES = {("uir.router", "DegradationRouter"): ROUTER_CLASS, ("uir.lora.bank", "ExpertBank"): EXPERTS_CLASS}


@dataclass(frozen=True)
class SavedPipeline:
    """What a saved pipeline folder holds.

    Attributes:
        path: the folder.
        class_name: ``"RestorerPipeline"`` or ``"UIRLoRAPipeline"``.
        components: component name -> ``(module, class)`` (current homes, see
            :data:`MOVED_CLASSES`), or ``None`` for an optional component saved empty.
        configs: component name -> its ``config.json`` (components that have one).
    """

    path: Path
    class_name: str
    components: dict = field(default_factory=dict)
    configs: dict = field(default_factory=dict)

    def component(self, name: str) -> tuple | None:
        """``(module, class)`` of component ``name``; ``None`` when the folder has none."""
        return self.components.get(name)

    def class_path(self, name: str) -> str:
        """Component ``name``'s class as a dotted path (``"none"`` when it has none)."""
        return ".".join(self.components.get(name) or ("none",))

    def weights(self, name: str) -> Path | None:
        """The component's safetensors weights, or ``None`` when it has no such single file
        (pickled or sharded weights)."""
        path = self.path / name / MODEL_WEIGHTS_FILE
        return path if path.is_file() else None


def read_saved_pipeline(folder) -> SavedPipeline | None:
    """The record of a saved pipeline folder; ``None`` when ``folder`` has no ``model_index.json``
    (a Hub id, an SD-turbo checkpoint). ``_class_name = ["pipeline", NAME]`` reads as ``NAME``.

    Raises:
        ValueError: (one line) a file is not a JSON object, or the index names a class uir does
            not have.
    """
    folder = Path(str(folder))
    index_path = folder / MODEL_INDEX
    if not index_path.is_file():
        return None
    index = load_json_object(index_path)
    name = index.get("_class_name")
    name = name[-1] if isinstance(name, list) and name else name
    if name not in PIPELINE_CLASSES:
        raise ValueError(f"{index_path} names pipeline class {name!r}; uir pipelines are {', '.join(PIPELINE_CLASSES)}")
    components = {}
    for key, entry in index.items():
        if key.startswith("_") or not isinstance(entry, list) or len(entry) != 2:
            continue
        components[key] = MOVED_CLASSES.get(tuple(entry), tuple(entry)) if entry[0] is not None else None
    configs = {key: load_json_object(folder / key / CONFIG_FILE) for key in components
               if (folder / key / CONFIG_FILE).is_file()}
    return SavedPipeline(folder, name, components, configs)


__all__ = ["CONFIG_FILE", "EXPERTS_CLASS", "MODEL_INDEX", "MODEL_WEIGHTS_FILE", "MOVED_CLASSES", "PIPELINE_CLASSES",
           "ROUTER_CLASS", "SavedPipeline", "read_saved_pipeline"]
