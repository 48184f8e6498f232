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

from pathlib import Path

import torch
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
from transformers import CLIPTextModel, CLIPTokenizer

from uir.hub import require_hub
from uir.lora.targets import UNET_RANK, UNET_TARGETS, VAE_RANK, VAE_TARGETS
from uir.models.experts import ExpertListModel
from uir.models.router import DegradationRouter
from uir.models.skip_vae import SkipAutoencoderKL
from uir.pipelines.base import ExpertMixturePipeline, UIRPipelineOutput

RESTORE_TIMESTEP = 999


class UIRLoRAPipeline(ExpertMixturePipeline):
    """Frozen SD-turbo + per-degradation LoRA experts mixed in output space + CLIP router.

    Components: ``unet``, ``vae`` (:class:`~uir.models.SkipAutoencoderKL`), ``text_encoder``,
    ``tokenizer``, ``scheduler``, ``router`` (:class:`~uir.models.router.DegradationRouter`, optional)
    and ``experts`` (:class:`~uir.models.experts.ExpertListModel`). Expert handling, saving, loading and
    the call are shared with the regression pipeline (:class:`uir.pipelines.base.ExpertMixturePipeline`).
    """

    model_cpu_offload_seq = "text_encoder->router->vae->unet"
    _optional_components = ["router", "experts"]
    adapted_components = ("unet", "vae")
    #: what a new expert adapts: ``{component: (target module suffixes, rank)}`` (sec. 4.2)
    expert_targets = {"unet": (UNET_TARGETS, UNET_RANK), "vae": (VAE_TARGETS, VAE_RANK)}
    size_multiple = 8
    card_title = "UIR-LoRA restoration pipeline"
    card_description = ("One-step universal image restoration: a frozen SD-turbo with one LoRA expert per "
                        "degradation, mixed per image by a CLIP degradation router (UIR-LoRA).")

    def __init__(self, unet: UNet2DConditionModel, vae: SkipAutoencoderKL, text_encoder: CLIPTextModel,
                 tokenizer: CLIPTokenizer, scheduler: DDPMScheduler, router: DegradationRouter | None = None,
                 experts: ExpertListModel | None = None, prompt: str = ""):
        super().__init__()
        if not isinstance(vae, SkipAutoencoderKL):
            raise TypeError("vae must be a SkipAutoencoderKL; wrap a plain VAE with SkipAutoencoderKL.from_vae(vae)")
        self.register_modules(unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                              scheduler=scheduler, router=router, experts=experts)
        self.register_to_config(prompt=prompt)
        for module in (unet, vae, text_encoder):
            module.requires_grad_(False)
        self.scheduler.set_timesteps(1)
        self._prompt_cache: dict = {}
        self._set_up_experts()

    # --- construction ------------------------------------------------------------------------
    @classmethod
    def from_sd_turbo(cls, model_id: str = "stabilityai/sd-turbo", experts=(), router=None, skip_gamma: float = 1.0,
                      vae=None, dtype=None, **kwargs) -> "UIRLoRAPipeline":
        """Assemble the pipeline from an SD-turbo checkpoint (Hub id or folder), expert folders
        or Hub ids, and a router (a ``DegradationRouter`` or a path to one).

        ``vae``: a trained :class:`SkipAutoencoderKL` or its folder (``train/train_vae_skips.py``
        writes one); by default SD-turbo's VAE gets fresh skip connections.
        """
        require_hub(str(model_id))
        load = dict(dtype=dtype, **kwargs)
        unet = UNet2DConditionModel.from_pretrained(model_id, subfolder="unet", **load)
        if isinstance(vae, (str, Path)):
            vae = SkipAutoencoderKL.from_pretrained(vae, **load)
        elif vae is None:
            vae = SkipAutoencoderKL.from_vae(AutoencoderKL.from_pretrained(model_id, subfolder="vae", **load), skip_gamma)
        text_encoder = CLIPTextModel.from_pretrained(model_id, subfolder="text_encoder", **load)
        hub = {k: v for k, v in kwargs.items() if k != "use_safetensors"}
        tokenizer = CLIPTokenizer.from_pretrained(model_id, subfolder="tokenizer", **hub)
        scheduler = DDPMScheduler.from_pretrained(model_id, subfolder="scheduler", timestep_spacing="trailing", **hub)
        if isinstance(router, (str, Path)):
            router = DegradationRouter.from_pretrained(router, **load)
        pipe = cls(unet, vae, text_encoder, tokenizer, scheduler, router=router, experts=ExpertListModel(base_model=str(model_id)))
        for expert in experts:
            pipe.load_expert(expert)
        return pipe

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
        sample = (x * 2 - 1).to(device=self.vae.device, dtype=self.vae.dtype)
        with self.mixture_scope(weights):
            posterior, skips = self.vae.encode_with_skips(sample)
            latent = posterior.sample(generator=generator) if sample_posterior else posterior.mode()
            latent = (latent * self.vae.config.scaling_factor).to(self.unet.dtype)
            t = torch.full((latent.shape[0],), RESTORE_TIMESTEP, device=latent.device, dtype=torch.long)
            states = self.prompt_embedding().expand(latent.shape[0], -1, -1)
            noise = self.unet(latent, t, encoder_hidden_states=states).sample
            x0 = self.scheduler.step(noise, RESTORE_TIMESTEP, latent, generator=generator).pred_original_sample
            decoded = self.vae.decode_with_skips((x0 / self.vae.config.scaling_factor).to(self.vae.dtype), skips)
        return ((decoded.float() + 1) / 2).clamp(0, 1)


__all__ = ["UIRLoRAPipeline", "UIRPipelineOutput"]
