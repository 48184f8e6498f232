"""Pipeline-level oracles: each pipeline's call against its method written out by hand from
diffusers and PEFT parts (no uir code on the reference side but the skip VAE's modules).

UIR-LoRA's one step (sec. 3, 4.2): VAE encode keeping each down block's input, the latent's
mode, the UNet's noise at t = 999 under the prompt embedding, x0 from the DDPM formula,
decode with ``gamma * S_j(skip)`` before each up block, with PEFT adapters on the UNet and the
VAE weighted by ``set_adapters`` for one shared weight vector. A pipeline that returned the
noise, ran another timestep, dropped the skips or left the VAE experts out fails here.
"""

import copy

import pytest
import torch
from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution
from peft import LoraConfig
from peft.utils import set_peft_model_state_dict

from uir import UIRLoRAPipeline
from uir.testing import random_expert, save_tiny_sd_turbo, tiny_restorer_pipeline, tiny_router

NAMES = ("noisy", "hazy")
WEIGHTS = (0.7, 0.3)


@pytest.fixture(scope="module")
def pipe_and_reference(tmp_path_factory):
    base_dir = save_tiny_sd_turbo(tmp_path_factory.mktemp("sd-turbo"))
    pipe = UIRLoRAPipeline.from_sd_turbo(str(base_dir), router=tiny_router(list(NAMES)))
    with torch.no_grad():  # skips strong enough that dropping them shows
        for conv in pipe.vae.skip_convs:
            conv.weight.normal_(std=0.2, generator=torch.Generator().manual_seed(5))
    unet, vae = copy.deepcopy(pipe.unet), copy.deepcopy(pipe.vae)  # the plain base, before any expert
    for i, name in enumerate(NAMES):
        expert = random_expert(name, pipe.unet, pipe.vae, seed=i, scale=3.0)
        pipe.load_expert(expert)
        for model, part in ((unet, "unet"), (vae, "vae")):
            component = expert.components[part]
            config = LoraConfig(r=component.config["r"], lora_alpha=component.config["lora_alpha"],
                                target_modules=list(component.config["target_modules"]))
            model.add_adapter(config, adapter_name=name)
            set_peft_model_state_dict(model, component.state_dict, adapter_name=name)
    for model in (unet, vae):
        model.set_adapters(list(NAMES), weights=list(WEIGHTS))
    return pipe, unet, vae


@torch.no_grad()
def _reference(pipe, unet, vae, x):
    """UIR-LoRA's one-step restoration, by hand."""
    encoder, decoder = vae.encoder, vae.decoder
    h = encoder.conv_in(x * 2 - 1)
    skips = []
    for block in encoder.down_blocks:
        skips.append(h)
        h = block(h)
    h = encoder.conv_out(encoder.conv_act(encoder.conv_norm_out(encoder.mid_block(h))))
    latent = DiagonalGaussianDistribution(vae.quant_conv(h)).mode() * vae.config.scaling_factor
    tokens = pipe.tokenizer(pipe.config.prompt, padding="max_length", return_tensors="pt",
                            max_length=pipe.text_encoder.config.max_position_embeddings).input_ids
    context = pipe.text_encoder(tokens)[0].expand(x.shape[0], -1, -1)
    noise = unet(latent, torch.full((x.shape[0],), 999), encoder_hidden_states=context).sample
    alpha_bar = pipe.scheduler.alphas_cumprod[999]
    x0 = (latent - (1 - alpha_bar).sqrt() * noise) / alpha_bar.sqrt()
    sample = decoder.mid_block(decoder.conv_in(vae.post_quant_conv(x0 / vae.config.scaling_factor)))
    for j, up_block in enumerate(decoder.up_blocks):
        sample = up_block(sample + vae.config.skip_gamma * vae.skip_convs[j](skips[len(skips) - 1 - j]))
    decoded = decoder.conv_out(decoder.conv_act(decoder.conv_norm_out(sample)))
    return ((decoded + 1) / 2).clamp(0, 1)


def test_uir_lora_call_equals_the_hand_written_one_step(pipe_and_reference):
    pipe, unet, vae = pipe_and_reference
    x = torch.rand(2, 3, 32, 40, generator=torch.Generator().manual_seed(0))
    ours = pipe(x, weights=dict(zip(NAMES, WEIGHTS)), output_type="pt").images
    torch.testing.assert_close(ours, _reference(pipe, unet, vae, x), atol=1e-5, rtol=0)


def test_the_oracle_sees_the_vae_experts_and_the_skips(pipe_and_reference):
    """The reference is sharp enough: without the VAE experts, or without skips, it moves."""
    pipe, unet, vae = pipe_and_reference
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    full = _reference(pipe, unet, vae, x)
    no_vae_experts = copy.deepcopy(vae)
    no_vae_experts.set_adapters(list(NAMES), weights=[0.0, 0.0])
    assert (full - _reference(pipe, unet, no_vae_experts, x)).abs().max() > 1e-3
    no_skips = copy.deepcopy(vae)
    no_skips.register_to_config(skip_gamma=0.0)
    assert (full - _reference(pipe, unet, no_skips, x)).abs().max() > 1e-3


def test_router_columns_follow_the_vocabulary_not_the_expert_order():
    """Permuting the router's vocabulary moves the weight with the name."""
    pipe = tiny_restorer_pipeline(names=("noisy", "hazy", "rainy"))
    x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    routed = pipe(x, output_type="pt", top_k=1)
    verdict = pipe.router(x)
    for row in range(3):
        chosen = pipe.experts.names[int(routed.weights[row].argmax())]
        assert chosen == verdict.names[row]
    permuted = tiny_router(["rainy", "noisy", "hazy"])
    with torch.no_grad():  # the same router, its vocabulary rows reordered
        permuted.load_state_dict({**pipe.router.state_dict(),
                                  "degradation_bank": pipe.router.degradation_bank[[2, 0, 1]]})
    pipe.register_modules(router=permuted)
    again = pipe(x, output_type="pt", top_k=1)
    torch.testing.assert_close(again.weights, routed.weights)
    assert again.degradations == routed.degradations


def test_restorer_call_equals_peft_on_the_plain_base():
    """RestorerPipeline: the restorer with PEFT adapters weighted by set_adapters, by hand."""
    pipe = tiny_restorer_pipeline(names=("noisy", "hazy"), router=False)
    reference = tiny_restorer_pipeline(names=(), router=False).restorer
    for expert in pipe.experts.experts:
        component = expert.components["restorer"]
        reference.add_adapter(LoraConfig(r=component.config["r"], lora_alpha=component.config["lora_alpha"],
                                         target_modules=list(component.config["target_modules"])),
                              adapter_name=expert.degradation)
        set_peft_model_state_dict(reference, component.state_dict, adapter_name=expert.degradation)
    reference.set_adapters(["noisy", "hazy"], weights=[0.4, 0.6])
    x = torch.rand(2, 3, 32, 40, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():  # reflect-padded by the pipeline's border margin, cropped back (uir.tiling)
        margin = pipe.border_margin
        padded = torch.nn.functional.pad(x, (margin, margin, margin, margin), mode="reflect")
        expected = reference(padded)[..., margin:margin + 32, margin:margin + 40].clamp(0, 1)
    ours = pipe(x, weights={"noisy": 0.4, "hazy": 0.6}, output_type="pt").images
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=0)
