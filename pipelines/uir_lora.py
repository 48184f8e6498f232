"""UIR-LoRA: one-step universal image restoration on a frozen SD-turbo (UIR-LoRA sec. 3).

This file is the pipeline's definition. ``save_pretrained`` copies it into the saved folder as
``pipeline.py`` so that ``DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)``
finds the class; it imports everything else from the installed ``uir`` package.

Restoration, for an image ``x`` in [0, 1]:

1. The router gives the expert weights ``s`` (eq. 3-4), or the caller does (``weights=``).
2. The VAE encoder (with its LoRA mixture) maps ``2x - 1`` to a latent; its mode is used by
   default (deterministic), a sample with ``sample_posterior=True``. The encoder's down-block
   inputs are kept for the skip connections.
3. The UNet (with its LoRA mixture, eq. 5) predicts the noise at ``t = 999`` from the cached
   embedding of a fixed prompt.
4. The scheduler turns that into the ``x_0`` prediction, one step.
5. The decoder maps ``x_0`` back to pixels, with the encoder skips.

Images of any size are reflect-padded to a multiple of 8 and cropped back; with
``tile_size`` set, large images are restored in overlapping, blended tiles.
"""

from __future__ import annotations

import inspect
import json
import shutil
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import AutoencoderKL, DDPMScheduler, DiffusionPipeline, UNet2DConditionModel
from diffusers.pipelines.pipeline_utils import ImagePipelineOutput
from tqdm.auto import tqdm
from transformers import CLIPTextModel, CLIPTokenizer

from uir.hub import upload_folder, write_model_card
from uir.images import to_tensor
from uir.lora import LoRAExpert, extract_expert, install_experts, mixture_layers
from uir.lora.bank import ExpertBank
from uir.lora.mixture import mixture_weights, remove_mixture
from uir.pipeline_utils import postprocess, route
from uir.models.skip_vae import SkipAutoencoderKL
from uir.router import DegradationRouter
from uir.tiling import restore_tiled

RESTORE_TIMESTEP = 999
ADAPTED_COMPONENTS = ("unet", "vae")


@dataclass
class UIRPipelineOutput(ImagePipelineOutput):
    """Restored ``images`` plus, per image, the expert ``weights`` (B,K) over ``expert_names``,
    the router's top ``degradations`` and ``confidence`` (None without a router)."""

    weights: torch.Tensor = None
    expert_names: list = None
    degradations: list = None
    confidence: torch.Tensor = None


class UIRLoRAPipeline(DiffusionPipeline):
    """Frozen SD-turbo + per-degradation LoRA experts mixed in output space + CLIP router.

    Components: ``unet``, ``vae`` (:class:`~uir.models.SkipAutoencoderKL`), ``text_encoder``,
    ``tokenizer``, ``scheduler``, ``router`` (:class:`~uir.router.DegradationRouter`, optional)
    and ``experts`` (:class:`~uir.lora.bank.ExpertBank`).
    """

    model_cpu_offload_seq = "text_encoder->router->vae->unet"
    _optional_components = ["router", "experts"]

    def __init__(self, unet: UNet2DConditionModel, vae: SkipAutoencoderKL, text_encoder: CLIPTextModel,
                 tokenizer: CLIPTokenizer, scheduler: DDPMScheduler, router: DegradationRouter | None = None,
                 experts: ExpertBank | None = None, prompt: str = ""):
        super().__init__()
        if not isinstance(vae, SkipAutoencoderKL):
            raise TypeError("vae must be a SkipAutoencoderKL; wrap a plain VAE with SkipAutoencoderKL.from_vae(vae)")
        experts = experts if experts is not None else ExpertBank()
        self.register_modules(unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                              scheduler=scheduler, router=router, experts=experts)
        self.register_to_config(prompt=prompt)
        for module in (unet, vae, text_encoder):
            module.requires_grad_(False)
        self.scheduler.set_timesteps(1)
        self._prompt_cache: dict = {}
        if experts.experts:
            self._install_experts()

    # --- construction ------------------------------------------------------------------------
    @classmethod
    def from_sd_turbo(cls, model_id: str = "stabilityai/sd-turbo", experts=(), router=None, skip_gamma: float = 1.0,
                      vae=None, torch_dtype=None, **kwargs) -> "UIRLoRAPipeline":
        """Assemble the pipeline from an SD-turbo checkpoint (Hub id or folder), expert folders
        or Hub ids, and a router (a ``DegradationRouter`` or a path to one).

        ``vae``: a trained :class:`SkipAutoencoderKL` or its folder (``train/train_vae_skips.py``
        writes one); by default SD-turbo's VAE gets fresh skip connections.
        """
        load = dict(torch_dtype=torch_dtype, **kwargs)
        unet = UNet2DConditionModel.from_pretrained(model_id, subfolder="unet", **load)
        if isinstance(vae, (str, Path)):
            vae = SkipAutoencoderKL.from_pretrained(vae, torch_dtype=torch_dtype)
        elif vae is None:
            vae = SkipAutoencoderKL.from_vae(AutoencoderKL.from_pretrained(model_id, subfolder="vae", **load), skip_gamma)
        text_encoder = CLIPTextModel.from_pretrained(model_id, subfolder="text_encoder", **load)
        tokenizer = CLIPTokenizer.from_pretrained(model_id, subfolder="tokenizer", **kwargs)
        scheduler = DDPMScheduler.from_pretrained(model_id, subfolder="scheduler", timestep_spacing="trailing", **kwargs)
        if isinstance(router, (str, Path)):
            router = DegradationRouter.from_pretrained(router, torch_dtype=torch_dtype)
        pipe = cls(unet, vae, text_encoder, tokenizer, scheduler, router=router, experts=ExpertBank(base_model=str(model_id)))
        for expert in experts:
            pipe.load_expert(expert)
        return pipe

    @classmethod
    def load_config(cls, *args, **kwargs):
        """As diffusers', but ``_class_name = ["pipeline", NAME]`` reads as ``NAME``: loading through
        this installed class uses its own code and never runs the folder's ``pipeline.py`` copy
        (which ``DiffusionPipeline.from_pretrained(..., trust_remote_code=True)`` uses)."""
        loaded = super().load_config(*args, **kwargs)
        config = loaded[0] if isinstance(loaded, tuple) else loaded
        if isinstance(config.get("_class_name"), (list, tuple)):
            config["_class_name"] = config["_class_name"][1]
        return loaded

    # --- experts -----------------------------------------------------------------------------
    def _install_experts(self) -> None:
        for name in ADAPTED_COMPONENTS:
            install_experts(getattr(self, name), [e.components.get(name) for e in self.experts.experts])

    def load_expert(self, expert, **hub_kwargs) -> None:
        """Add an expert (a :class:`LoRAExpert`, a folder or a Hub id) and rebuild the mixture.

        A degradation missing from the router's vocabulary is added to its bank.
        """
        if not isinstance(expert, LoRAExpert):
            expert = LoRAExpert.load(expert, **hub_kwargs)
        unknown = sorted(set(expert.components) - set(ADAPTED_COMPONENTS))
        if unknown:
            raise ValueError(f"expert {expert.degradation!r} adapts {unknown}; this pipeline adapts {ADAPTED_COMPONENTS}")
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
        for name in ADAPTED_COMPONENTS:  # the base models are saved plain; experts go to experts/
            remove_mixture(getattr(self, name))
        try:
            super().save_pretrained(save_directory, **kwargs)
        finally:
            self._install_experts()
        target = Path(save_directory)
        source = Path(inspect.getfile(type(self)))
        shutil.copyfile(source, target / "pipeline.py")
        config = self.load_config(target)
        config["_class_name"] = ["pipeline", type(self).__name__]
        (target / self.config_name).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        write_model_card(target, "UIR-LoRA restoration pipeline", self.experts.config.base_model, self.experts.names,
                         "One-step universal image restoration: a frozen SD-turbo with one LoRA expert per "
                         "degradation, mixed per image by a CLIP degradation router (UIR-LoRA).")
        if push_to_hub:
            upload_folder(target, repo_id or target.name, token=token, private=private)

    # --- inference ---------------------------------------------------------------------------
    def prompt_embedding(self) -> torch.Tensor:
        """The fixed prompt's text-encoder states, computed once per device and dtype."""
        key = (self.unet.device, self.unet.dtype)
        if key not in self._prompt_cache:
            length = self.text_encoder.config.max_position_embeddings
            tokens = self.tokenizer(self.config.prompt, padding="max_length", max_length=length,
                                    truncation=True, return_tensors="pt").input_ids.to(self.text_encoder.device)
            with torch.no_grad():
                states = self.text_encoder(tokens)[0]
            self._prompt_cache[key] = states.to(device=self.unet.device, dtype=self.unet.dtype)
        return self._prompt_cache[key]

    def restore_tensor(self, x: torch.Tensor, weights: torch.Tensor, generator=None, sample_posterior: bool = False):
        """One-step restoration of (B,3,H,W) images in [0, 1] with sizes that are multiples of 8."""
        has_mixture = {name: bool(mixture_layers(getattr(self, name))) for name in ADAPTED_COMPONENTS}

        def scope(name):
            return mixture_weights(getattr(self, name), weights) if has_mixture[name] else nullcontext()

        sample = (x * 2 - 1).to(device=self.vae.device, dtype=self.vae.dtype)
        with scope("vae"), scope("unet"):
            posterior, skips = self.vae.encode_with_skips(sample)
            latent = posterior.sample(generator=generator) if sample_posterior else posterior.mode()
            latent = (latent * self.vae.config.scaling_factor).to(self.unet.dtype)
            t = torch.full((latent.shape[0],), RESTORE_TIMESTEP, device=latent.device, dtype=torch.long)
            states = self.prompt_embedding().expand(latent.shape[0], -1, -1)
            noise = self.unet(latent, t, encoder_hidden_states=states).sample
            x0 = self.scheduler.step(noise, RESTORE_TIMESTEP, latent, generator=generator).pred_original_sample
            decoded = self.vae.decode_with_skips((x0 / self.vae.config.scaling_factor).to(self.vae.dtype), skips)
        return ((decoded.float() + 1) / 2).clamp(0, 1)

    @torch.no_grad()
    def __call__(self, image, weights=None, top_k: int = 2, strategy: str = "router", output_type: str = "pil",
                 generator: torch.Generator | None = None, return_dict: bool = True, sample_posterior: bool = False,
                 tile_size: int | None = None, tile_overlap: int = 64, batch_size: int = 4):
        """Restore PIL, numpy or torch images (single or batch).

        Args:
            weights: ``{degradation: weight}`` or a (B,K)/(K,) tensor over ``self.experts.names``.
            top_k: experts kept per image by the router (eq. 4).
            strategy: ``router``, ``manual``, ``average`` or ``random`` (paper Table 3).
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
                images[start:stop].to(self.device), tile_size, tile_overlap, multiple=8,
            ))
        restored = postprocess(torch.cat(outputs), output_type)
        if not return_dict:
            return (restored,)
        return UIRPipelineOutput(images=restored, weights=chosen, expert_names=self.experts.names,
                                 degradations=degradations, confidence=confidence)
