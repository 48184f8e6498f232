"""What uir's diffusers pipelines share: experts, routing, saving, loading and the call.

:class:`ExpertMixturePipeline` is a ``DiffusionPipeline`` whose adapted components (the
SD-turbo UNet and VAE, or a regression restorer) carry a per-image mixture of LoRA experts
(:mod:`uir.lora`, eq. 5), weighted by a :class:`~uir.models.router.DegradationRouter` (eq. 3-4) or
by the caller. The call itself (routing, mixture, tiling, batching) is
:class:`~uir.pipelines.restoring.MixtureRestoration`, in plain torch; this class adds loading,
saving, adding and removing experts. A subclass names its adapted components and implements
``restore_tensor(x, weights, generator, sample_posterior)``, so the SD-turbo pipeline and the
regression pipeline behave the same way.
"""

from __future__ import annotations

import inspect
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from diffusers import DiffusionPipeline
from diffusers.pipelines.pipeline_utils import ImagePipelineOutput

import uir.lora.bank  # noqa: F401  (class paths older saved folders record; diffusers loads only from imported modules)
import uir.router  # noqa: F401
from uir.hub import upload_folder, write_model_card
from uir.lora import ExpertError, LoRAExpert, extract_expert
from uir.lora.mixture import remove_mixture
from uir.models.experts import ExpertListModel
from uir.pipelines.restoring import MixtureRestoration, RestorationOutput


@dataclass
class UIRPipelineOutput(ImagePipelineOutput, RestorationOutput):
    """:class:`~uir.pipelines.restoring.RestorationOutput` as a diffusers ``ImagePipelineOutput``:
    restored ``images``, the expert ``weights`` over ``expert_names``, the ``clean_weight`` and
    the router's ``degradations``, ``confidence`` and ``known``."""


class ExpertMixturePipeline(MixtureRestoration, DiffusionPipeline):
    """Base of uir's pipelines; see the module docstring.

    Subclasses set ``adapted_components`` (names of the components experts adapt),
    ``size_multiple`` (inputs are reflect-padded to it), ``card_title`` and
    ``card_description``, and register ``router`` and ``experts`` components.
    """

    output_class = UIRPipelineOutput
    card_title = "uir restoration pipeline"
    card_description = ""

    @classmethod
    def load_config(cls, *args, **kwargs):
        """As diffusers', but ``_class_name = ["pipeline", NAME]`` reads as ``NAME``: loading through
        the installed class uses its own code and never runs the folder's ``pipeline.py`` copy
        (which ``DiffusionPipeline.from_pretrained(..., trust_remote_code=True)`` uses)."""
        loaded = super().load_config(*args, **kwargs)
        config = loaded[0] if isinstance(loaded, tuple) else loaded
        if isinstance(config.get("_class_name"), (list, tuple)):
            config["_class_name"] = config["_class_name"][1]
        return loaded

    @classmethod
    def from_pipe(cls, pipeline, **kwargs):
        """As diffusers', keeping every component whose class fits this pipeline's annotation.
        diffusers hands a model component over only when its class *is* the annotation, and
        ``restorer`` is annotated with the base class ``ModelMixin`` (any restorer fits)."""
        expected = cls._get_signature_types()
        for name, component in pipeline.components.items():
            classes = expected.get(name, ())
            if classes and all(inspect.isclass(c) for c in classes) and isinstance(component, classes):
                kwargs.setdefault(name, component)
        return super().from_pipe(pipeline, **kwargs)

    # --- experts ---------------------------------------------------------------------------
    def load_expert(self, expert, replace: bool = False, **hub_kwargs) -> None:
        """Add an expert and rebuild the mixture.

        Args:
            expert: a :class:`LoRAExpert`, an expert folder or a Hub id.
            replace: replace a loaded expert of the same degradation (else that is an error).
            hub_kwargs: passed to the Hub download (``revision``, ``token``, ...).

        A degradation missing from the router's vocabulary is added to its bank.
        """
        if not isinstance(expert, LoRAExpert):
            expert = LoRAExpert.load(expert, **hub_kwargs)
        self._check_expert(expert)
        if self.experts is None:  # the optional component was left out: this expert starts a bank
            self.register_modules(experts=ExpertListModel(base_model=expert.base_model))
        if expert.degradation in self.experts.names and not replace:
            raise ExpertError(f"an expert for {expert.degradation!r} is already loaded; pass replace=True "
                              "(uir restore --experts always replaces)")
        self.sync_experts()
        previous = list(self.experts.experts)
        try:
            self.experts.set_experts([e for e in previous if e.degradation != expert.degradation])
            self.experts.add(expert)
            self._install_experts()
        except Exception:  # the pipeline keeps the experts it had
            self.experts.set_experts(previous)
            self._install_experts()
            raise
        if self.router is not None and expert.degradation not in self.router.vocabulary:
            self.router.add_degradation(expert.degradation, expert.text)

    def remove_experts(self, names=None) -> None:
        """Remove the experts of ``names`` (default: all) and rebuild the mixture; with none left,
        the adapted components are the plain base models again (what training a new expert on a
        finished pipeline starts from)."""
        if self.experts is None:
            return
        self.sync_experts()
        names = self.experts.names if names is None else list(names)
        self.experts.set_experts([e for e in self.experts.experts if e.degradation not in names])
        self._install_experts()

    def sync_experts(self) -> None:
        """Copy the (possibly trained) mixture weights back into the expert objects."""
        for k, expert in enumerate(self.expert_list.experts):
            for name, component in expert.components.items():
                component.state_dict = extract_expert(getattr(self, name), k)

    def save_experts(self, directory) -> list[Path]:
        """Write every expert as its own folder under ``directory``."""
        self.sync_experts()
        return [e.save(Path(directory) / e.degradation) for e in self.expert_list.experts]

    def save_pretrained(self, save_directory, push_to_hub: bool = False, repo_id: str | None = None,
                        token: str | None = None, private: bool | None = None, **kwargs):
        """Save components, this pipeline's code as ``pipeline.py`` (for ``trust_remote_code``
        loading) and a model card; with ``push_to_hub``, upload the folder to ``repo_id``."""
        self.sync_experts()
        for name in self.adapted_components:  # the base models are saved plain; experts go to experts/
            remove_mixture(getattr(self, name))
        try:
            super().save_pretrained(save_directory, **kwargs)
        finally:
            self._install_experts()
        target = Path(save_directory)
        shutil.copyfile(Path(inspect.getfile(type(self))), target / "pipeline.py")
        config = self.load_config(target)
        config["_class_name"] = ["pipeline", type(self).__name__]
        (target / self.config_name).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        write_model_card(target, self.card_title, self.expert_list.base_model, self.expert_list.names,
                         self.card_description)
        if push_to_hub:
            upload_folder(target, repo_id or target.name, token=token, private=private)
