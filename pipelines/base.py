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
from typing import Callable, Iterable, Iterator

import numpy as np
import torch
from diffusers import DiffusionPipeline
from diffusers.pipelines.pipeline_utils import ImagePipelineOutput
from tqdm.auto import tqdm

from uir.hub import upload_folder, write_model_card
from uir.images import to_pil, to_tensor
from uir.lora import (FINGERPRINT_KEY, ExpertError, LoRAExpert, base_fingerprint, extract_expert, install_experts,
                      mixture_layers)
from uir.lora.mixture import mixture_weights, remove_mixture
from uir.lora.strategies import DEFAULT_TOP_K, expert_weights
from uir.tiling import restore_tiled


def postprocess(images: torch.Tensor, output_type: str):
    """(B,3,H,W) in [0, 1] to ``pil`` (list), ``np`` (B,H,W,3 float32) or ``pt``."""
    if output_type == "pt":
        return images
    if output_type == "np":
        return images.permute(0, 2, 3, 1).float().cpu().numpy().astype(np.float32)
    if output_type == "pil":
        return to_pil(images)
    raise ValueError(f"unknown output_type {output_type!r}; valid choices: pil, np, pt")


def shape_batches(items: Iterable, batch_size: int, shape: Callable) -> Iterator[list]:
    """uir's batching rule for images of any sizes: consecutive ``items`` of the same ``shape``, at
    most ``batch_size`` per batch. ``uir restore`` batches its stream of files with it and calls
    the pipeline once per batch (whose own ``batch_size`` then only chunks one shape)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    batch: list = []
    for item in items:
        if batch and (len(batch) == batch_size or shape(batch[0]) != shape(item)):
            yield batch
            batch = []
        batch.append(item)
    if batch:
        yield batch


def route(pipe, images: torch.Tensor, weights, top_k: int, strategy: str, generator):
    """``(expert weights (B,K), clean weight (B,), the router's output)`` for a batch; the
    output is ``None`` when the router is not asked (:func:`uir.lora.strategies.expert_weights`)."""
    router, routed, options = pipe.router, None, {}
    if router is not None:
        options = {"vocabulary": router.vocabulary, "low_confidence": router.config.low_confidence}
        if strategy == "router" and weights is None:
            routed = router(images.to(device=router.device, dtype=router.dtype))
            options.update(probabilities=routed.probabilities, known=routed.known)
    chosen, clean = expert_weights(strategy, pipe.experts.names, images.shape[0], weights=weights, top_k=top_k,
                                   generator=generator, **options)
    return chosen, clean, routed


def keep_clean(restore: Callable, x: torch.Tensor, weights: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """The identity expert of the ``clean`` class: ``c x + (1 - c) restore(x, weights / (1 - c))``
    per image (:mod:`uir.lora.strategies`); images with ``c = 1`` are not restored at all."""
    if not bool((clean > 0).any()):
        return restore(x, weights)
    out = x.clone()
    todo = (clean < 1).nonzero().flatten().tolist()
    if todo:
        c = clean[todo].to(x)[:, None, None, None]
        share = (1 - clean[todo]).clamp(min=1e-12)[:, None]
        out[todo] = c * x[todo] + (1 - c) * restore(x[todo], weights[todo] / share.to(weights)).to(x)
    return out


@dataclass
class UIRPipelineOutput(ImagePipelineOutput):
    """Restored ``images`` plus, per image, the expert ``weights`` (B,K) over ``expert_names``,
    the ``clean_weight`` (B,) of the input kept unchanged (the router's ``clean`` class), and what the router said: the top ``degradations``, their ``confidence`` and whether the
    degradation is ``known`` (confidence >= the router's ``min_confidence``); these three are
    None when no router ran."""

    weights: torch.Tensor = None
    expert_names: list = None
    clean_weight: torch.Tensor = None
    degradations: list = None
    confidence: torch.Tensor = None
    known: torch.Tensor = None


class ExpertMixturePipeline(DiffusionPipeline):
    """Base of uir's pipelines; see the module docstring.

    Subclasses set ``adapted_components`` (names of the components experts adapt),
    ``size_multiple`` (inputs are reflect-padded to it), ``card_title`` and
    ``card_description``, and register ``router`` and ``experts`` components.
    """

    adapted_components: tuple[str, ...] = ()
    size_multiple = 8
    #: with ``tile_size="auto"``, images with a side above this are restored in equal tiles of at
    #: most this size: memory stays bounded (a 12 Mpx photo untiled needs ~9 GB), and feature
    #: maps stay near the CPU's cache (a 1024 px image untiled ran 9.8x the time of a 512 px one,
    #: in tiles 3.6x; ``benchmarks/restore.py``)
    auto_tile_size = 512
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
    def _set_up_experts(self) -> None:
        """Called by subclasses once the components are registered: fingerprint the base (before
        any mixture is installed), check the bank's experts against it and install them."""
        self.base_fingerprint = base_fingerprint({name: getattr(self, name) for name in self.adapted_components})
        for expert in self.experts.experts:
            self._check_expert(expert)
        if self.experts.experts:
            self._install_experts()

    def _check_expert(self, expert: LoRAExpert) -> None:
        """One-line :class:`ExpertError` for an expert that does not belong on this base."""
        unknown = sorted(set(expert.components) - set(self.adapted_components))
        if unknown:
            raise ExpertError(f"expert {expert.degradation!r} adapts {unknown}; this pipeline adapts "
                              f"{list(self.adapted_components)}")
        theirs = expert.extra.get(FINGERPRINT_KEY)
        if theirs and theirs != self.base_fingerprint:
            raise ExpertError(f"expert {expert.degradation!r} was trained on base {theirs} ({expert.base_model or '?'}), "
                              f"but this pipeline's base is {self.base_fingerprint} "
                              f"({self.experts.config.base_model or '?'})")
        for name, component in expert.components.items():
            component.check(getattr(self, name), where=f"expert {expert.degradation!r}, {name}: ")

    def _install_experts(self) -> None:
        for name in self.adapted_components:
            install_experts(getattr(self, name), [e.components.get(name) for e in self.experts.experts])

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
        self.sync_experts()
        names = self.experts.names if names is None else list(names)
        self.experts.set_experts([e for e in self.experts.experts if e.degradation not in names])
        self._install_experts()

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
        """Per-image expert weights on every adapted component that holds experts.

        When every image of the batch has the same weights (top-1 routing to one expert, manual
        weights), the layers get that one row: each then merges ``W + sum_k s_k c_k B_k A_k``
        for the call or runs the stacked experts, whichever its cost model finds cheaper at the
        input's size (:class:`uir.lora.LoRAMixtureLayer`). Fusing the whole model instead cost a
        full-size SD-turbo UNet 2.55 s a call at 64 px on CPU, against 0.60 s this way and 0.52 s
        for the base alone (``benchmarks/sd_turbo.py``). All-zero weights (the base alone, e.g.
        the router's low-confidence policy) enter no mixture at all.
        """
        stack = ExitStack()
        if weights is not None and not bool(weights.any()):
            return stack
        if weights is not None and weights.shape[0] > 1 and bool((weights == weights[:1]).all()):
            weights = weights[:1]
        for name in self.adapted_components:
            model = getattr(self, name)
            if mixture_layers(model):
                stack.enter_context(mixture_weights(model, weights))
        return stack

    # --- inference ---------------------------------------------------------------------------
    def restore_tensor(self, x: torch.Tensor, weights: torch.Tensor, generator=None, sample_posterior: bool = False):
        raise NotImplementedError

    @torch.no_grad()
    def __call__(self, image, weights=None, top_k: int = DEFAULT_TOP_K, strategy: str = "router", output_type: str = "pil",
                 generator: torch.Generator | None = None, return_dict: bool = True, sample_posterior: bool = False,
                 tile_size: int | str | None = "auto", tile_overlap: int = 32, batch_size: int = 4):
        """Restore one image or a batch of same-size images.

        Args:
            image: a PIL image, a numpy array ((H,W,C) or (B,H,W,C); uint8, uint16 or float in
                [0, 1]), a torch tensor ((C,H,W) or (B,C,H,W) in [0, 1]) or a list of these.
            weights: expert weights given by the caller instead of the router: a
                ``{degradation: weight}`` dict, or a (K,)/(B,K) tensor over ``self.experts.names``.
            top_k: experts the router keeps per image (eq. 4); :data:`~uir.lora.strategies.DEFAULT_TOP_K`.
            strategy: ``router``, ``manual``, ``average`` or ``random`` (UIR-LoRA Table 3).
            output_type: ``pil`` (list of images), ``np`` ((B,H,W,3) float32) or ``pt`` ((B,3,H,W)).
            generator: the ``random`` strategy's draws, and the VAE posterior sample.
            return_dict: return a :class:`UIRPipelineOutput` (else a one-element tuple of images).
            sample_posterior: sample the VAE latent instead of taking its mode (SD-turbo only).
            tile_size: restore in overlapping, blended tiles of this many pixels (bounded memory);
                ``"auto"``: tiles of at most ``auto_tile_size`` for images with a longer side;
                ``None``: whole images.
            tile_overlap: pixels shared by neighbouring tiles (at most a quarter of a tile).
            batch_size: images restored together.

        Returns:
            :class:`UIRPipelineOutput` with the images, the expert weights and the router's verdict.
        """
        images = to_tensor(image)
        if tile_size == "auto":
            tile_size = self.auto_tile_size if max(images.shape[-2:]) > self.auto_tile_size else None
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        chosen, clean, routed = route(self, images.to(self.device), weights, top_k, strategy, generator)
        chunks = list(zip(images.split(batch_size), chosen.split(batch_size), clean.split(batch_size)))
        outputs = []
        for x, rows, kept in tqdm(chunks, desc="restoring", disable=len(chunks) <= 1):
            restore = lambda t, w: restore_tiled(  # noqa: E731
                lambda tile: self.restore_tensor(tile, w, generator, sample_posterior).to(tile.dtype),
                t, tile_size, tile_overlap, multiple=self.size_multiple)
            outputs.append(keep_clean(restore, x.to(self.device), rows, kept))
        restored = postprocess(torch.cat(outputs), output_type)
        if not return_dict:
            return (restored,)
        verdict = {} if routed is None else {"degradations": routed.names, "confidence": routed.confidence,
                                             "known": routed.known}
        return UIRPipelineOutput(images=restored, weights=chosen, expert_names=self.experts.names,
                                 clean_weight=clean, **verdict)
