"""What uir's restoration pipelines share: experts, routing, saving, loading and the call.

:class:`ExpertMixturePipeline` is a ``DiffusionPipeline`` whose adapted components (the
SD-turbo UNet and VAE, or a regression restorer) carry a per-image mixture of LoRA experts
(:mod:`uir.lora`, eq. 5), weighted by a :class:`~uir.router.DegradationRouter` (eq. 3-4) or
by the caller. A subclass names its adapted components and implements
``restore_tensor(x, weights, generator, sample_posterior)``; everything else is here, so the
SD-turbo pipeline and the regression pipeline behave the same way.
"""

from __future__ import annotations

import inspect
import json
import shutil
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from diffusers import DiffusionPipeline
from diffusers.pipelines.pipeline_utils import ImagePipelineOutput
from tqdm.auto import tqdm

from .hub import upload_folder, write_model_card
from .images import to_pil, to_tensor
from .lora import LoRAExpert, extract_expert, install_experts, mixture_layers
from .lora.mixture import mixture_weights, remove_mixture
from .lora.strategies import expert_weights
from .tiling import restore_tiled


def postprocess(images: torch.Tensor, output_type: str):
    """(B,3,H,W) in [0, 1] to ``pil`` (list), ``np`` (B,H,W,3 float32) or ``pt``."""
    if output_type == "pt":
        return images
    if output_type == "np":
        return images.permute(0, 2, 3, 1).float().cpu().numpy().astype(np.float32)
    if output_type == "pil":
        return to_pil(images)
    raise ValueError(f"unknown output_type {output_type!r}; valid choices: pil, np, pt")


def route(pipe, images: torch.Tensor, weights, top_k: int, strategy: str, generator):
    """Expert weights (B,K) and router verdicts for a batch."""
    names = pipe.experts.names
    probabilities, degradations, confidence = None, None, None
    if pipe.router is not None and strategy == "router" and weights is None:
        routed = pipe.router(images.to(device=pipe.router.device, dtype=pipe.router.dtype), top_k=1)
        probabilities, degradations, confidence = routed.probabilities, routed.names, routed.confidence
    vocabulary = pipe.router.vocabulary if pipe.router is not None else None
    chosen = expert_weights(strategy, names, images.shape[0], probabilities=probabilities, vocabulary=vocabulary,
                            weights=weights, top_k=top_k, generator=generator)
    return chosen, degradations, confidence


@dataclass
class UIRPipelineOutput(ImagePipelineOutput):
    """Restored ``images`` plus, per image, the expert ``weights`` (B,K) over ``expert_names``,
    the router's top ``degradations`` and ``confidence`` (None without a router)."""

    weights: torch.Tensor = None
    expert_names: list = None
    degradations: list = None
    confidence: torch.Tensor = None


class ExpertMixturePipeline(DiffusionPipeline):
    """Base of uir's pipelines; see the module docstring.

    Subclasses set ``adapted_components`` (names of the components experts adapt),
    ``size_multiple`` (inputs are reflect-padded to it), ``card_title`` and
    ``card_description``, and register ``router`` and ``experts`` components.
    """

    adapted_components: tuple[str, ...] = ()
    size_multiple = 8
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

    # --- experts -----------------------------------------------------------------------------
    def _install_experts(self) -> None:
        for name in self.adapted_components:
            install_experts(getattr(self, name), [e.components.get(name) for e in self.experts.experts])

    def load_expert(self, expert, **hub_kwargs) -> None:
        """Add an expert (a :class:`LoRAExpert`, a folder or a Hub id) and rebuild the mixture.

        A degradation missing from the router's vocabulary is added to its bank.
        """
        if not isinstance(expert, LoRAExpert):
            expert = LoRAExpert.load(expert, **hub_kwargs)
        unknown = sorted(set(expert.components) - set(self.adapted_components))
        if unknown:
            raise ValueError(f"expert {expert.degradation!r} adapts {unknown}; this pipeline adapts "
                             f"{self.adapted_components}")
        self.experts.add(expert)
        try:
            self._install_experts()
        except Exception:
            self.experts.experts.pop()
            self.experts.register_to_config(names=self.experts.names)
            self._install_experts()
            raise
        if self.router is not None and expert.degradation not in self.router.vocabulary:
            self.router.add_degradation(expert.degradation, expert.text)

    def sync_experts(self) -> None:
        """Copy the (possibly trained) mixture weights back into the expert objects."""
        for k, expert in enumerate(self.experts.experts):
            for name, component in expert.components.items():
                component.state_dict = extract_expert(getattr(self, name), k)

    def save_experts(self, directory) -> list[Path]:
        """Write every expert as its own folder under ``directory``."""
        self.sync_experts()
        return [e.save(Path(directory) / e.degradation) for e in self.experts.experts]

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
        write_model_card(target, self.card_title, self.experts.config.base_model, self.experts.names,
                         self.card_description)
        if push_to_hub:
            upload_folder(target, repo_id or target.name, token=token, private=private)

    def mixture_scope(self, weights: torch.Tensor) -> ExitStack:
        """Per-image expert weights on every adapted component that holds experts."""
        stack = ExitStack()
        for name in self.adapted_components:
            model = getattr(self, name)
            if mixture_layers(model):
                stack.enter_context(mixture_weights(model, weights))
        return stack

    # --- inference ---------------------------------------------------------------------------
    def restore_tensor(self, x: torch.Tensor, weights: torch.Tensor, generator=None, sample_posterior: bool = False):
        raise NotImplementedError

    @torch.no_grad()
    def __call__(self, image, weights=None, top_k: int = 2, strategy: str = "router", output_type: str = "pil",
                 generator: torch.Generator | None = None, return_dict: bool = True, sample_posterior: bool = False,
                 tile_size: int | None = None, tile_overlap: int = 64, batch_size: int = 4):
        """Restore PIL, numpy or torch images (single or batch).

        Args:
            weights: ``{degradation: weight}`` or a (B,K)/(K,) tensor over ``self.experts.names``.
            top_k: experts kept per image by the router (eq. 4).
            strategy: ``router``, ``manual``, ``average`` or ``random`` (UIR-LoRA Table 3).
            tile_size: restore in overlapping tiles of this size (pixels) to bound memory.
        """
        images = to_tensor(image)
        chosen, degradations, confidence = route(self, images.to(self.device), weights, top_k, strategy, generator)
        outputs = []
        starts = range(0, images.shape[0], batch_size)
        for start in tqdm(starts, desc="restoring", disable=len(starts) <= 1):
            stop = start + batch_size
            rows = chosen[start:stop]
            outputs.append(restore_tiled(
                lambda t, rows=rows: self.restore_tensor(t, rows, generator, sample_posterior).to(t.dtype),
                images[start:stop].to(self.device), tile_size, tile_overlap, multiple=self.size_multiple,
            ))
        restored = postprocess(torch.cat(outputs), output_type)
        if not return_dict:
            return (restored,)
        return UIRPipelineOutput(images=restored, weights=chosen, expert_names=self.experts.names,
                                 degradations=degradations, confidence=confidence)
