"""``AutoencoderKL`` with encoder-to-decoder skip connections (UIR-LoRA sec. 4.2).

UIR-LoRA adds skip connections to SD-turbo's VAE, as img2img-turbo does, so that the decoder
sees the degraded input's fine detail that the 8x latent loses. The activations that enter
each encoder down block are kept; before decoder up block ``j`` we add::

    h_j <- h_j + gamma * S_j(e_{n-1-j})

where ``e_i`` is the input of encoder down block ``i``, ``S_j`` a 1x1 convolution and ``n`` the
number of blocks. The channel plan comes from the VAE config, not from fixed numbers: ``S_j``
maps ``channels(e_{n-1-j})`` to ``channels(h_j)``, and both sit at the same resolution. For
SD's VAE this gives 512->512, 256->512, 128->512 and 128->256.

The skip convs start near zero (weights ~ N(0, 1e-5^2) from a fixed seed, zero bias), so a fresh model behaves
like the plain VAE; ``gamma`` scales the skips on their output, so ``gamma = 0`` reproduces the
plain VAE exactly. The skip convs are ordinary ``nn.Conv2d`` (``skip_convs.{j}``), so PEFT
LoRA can target them.
"""

from __future__ import annotations

import torch
from diffusers import AutoencoderKL, ModelMixin  # noqa: F401  (diffusers finds the loader of a component
# declared as ["uir.models.skip_vae", "SkipAutoencoderKL"] through the names of this module)
from diffusers.configuration_utils import register_to_config
from diffusers.models.autoencoders.vae import DecoderOutput, DiagonalGaussianDistribution
from torch import nn

SKIP_INIT_STD = 1e-5
#: fresh skips are drawn from their own seeded generator: the same VAE always gets the same
#: skips, so experts trained on fresh skips fit the base again (same fingerprint), and no global
#: random state is touched
SKIP_INIT_SEED = 0


def skip_channel_plan(block_out_channels) -> list[tuple[int, int]]:
    """``(in, out)`` channels of each skip conv, decoder up block order."""
    channels = list(block_out_channels)
    encoder_inputs = [channels[0]] + channels[:-1]  # input of down block i
    reversed_channels = channels[::-1]
    decoder_inputs = [reversed_channels[0]] + reversed_channels[:-1]  # input of up block j
    return [(encoder_inputs[len(channels) - 1 - j], decoder_inputs[j]) for j in range(len(channels))]


class SkipAutoencoderKL(AutoencoderKL):
    """An ``AutoencoderKL`` whose decoder can use the encoder's activations (see module docs)."""

    @register_to_config
    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        down_block_types: tuple = ("DownEncoderBlock2D",),
        up_block_types: tuple = ("UpDecoderBlock2D",),
        block_out_channels: tuple = (64,),
        layers_per_block: int = 1,
        act_fn: str = "silu",
        latent_channels: int = 4,
        norm_num_groups: int = 32,
        sample_size: int = 32,
        scaling_factor: float = 0.18215,
        shift_factor: float | None = None,
        latents_mean: tuple | None = None,
        latents_std: tuple | None = None,
        force_upcast: bool = True,
        use_quant_conv: bool = True,
        use_post_quant_conv: bool = True,
        mid_block_add_attention: bool = True,
        skip_gamma: float = 1.0,
    ):
        super().__init__(
            in_channels=in_channels, out_channels=out_channels, down_block_types=down_block_types,
            up_block_types=up_block_types, block_out_channels=block_out_channels, layers_per_block=layers_per_block,
            act_fn=act_fn, latent_channels=latent_channels, norm_num_groups=norm_num_groups, sample_size=sample_size,
            scaling_factor=scaling_factor, shift_factor=shift_factor, latents_mean=latents_mean, latents_std=latents_std,
            force_upcast=force_upcast, use_quant_conv=use_quant_conv, use_post_quant_conv=use_post_quant_conv,
            mid_block_add_attention=mid_block_add_attention,
        )
        self.skip_convs = nn.ModuleList(nn.Conv2d(c_in, c_out, 1) for c_in, c_out in skip_channel_plan(block_out_channels))
        generator = torch.Generator().manual_seed(SKIP_INIT_SEED)
        for conv in self.skip_convs:
            nn.init.normal_(conv.weight, std=SKIP_INIT_STD, generator=generator)
            nn.init.zeros_(conv.bias)

    @classmethod
    def from_vae(cls, vae: AutoencoderKL, skip_gamma: float = 1.0) -> "SkipAutoencoderKL":
        """Wrap a plain pretrained VAE: same config and weights, fresh near-zero skips."""
        config = {k: v for k, v in vae.config.items() if not k.startswith("_")}
        model = cls(**config, skip_gamma=skip_gamma)
        missing, unexpected = model.load_state_dict(vae.state_dict(), strict=False)
        if unexpected or any(not key.startswith("skip_convs.") for key in missing):
            raise ValueError(f"VAE weights do not fit: missing {missing[:3]}, unexpected {unexpected[:3]}")
        if (model.device, model.dtype) != (vae.device, vae.dtype):
            model = model.to(device=vae.device, dtype=vae.dtype)
        return model

    def encode_with_skips(self, x: torch.Tensor) -> tuple[DiagonalGaussianDistribution, list[torch.Tensor]]:
        """The latent distribution and the inputs of each encoder down block."""
        encoder = self.encoder
        sample = encoder.conv_in(x)
        skips = []
        for down_block in encoder.down_blocks:
            skips.append(sample)
            sample = down_block(sample)
        sample = encoder.mid_block(sample)
        sample = encoder.conv_out(encoder.conv_act(encoder.conv_norm_out(sample)))
        if self.quant_conv is not None:
            sample = self.quant_conv(sample)
        return DiagonalGaussianDistribution(sample), skips

    def decode_with_skips(self, z: torch.Tensor, skips: list[torch.Tensor] | None) -> torch.Tensor:
        """Decode ``z``, adding ``gamma * S_j(skip)`` before each up block when skips are given."""
        if self.post_quant_conv is not None:
            z = self.post_quant_conv(z)
        decoder = self.decoder
        sample = decoder.mid_block(decoder.conv_in(z), None)
        gamma = self.config.skip_gamma
        for j, up_block in enumerate(decoder.up_blocks):
            if skips is not None and gamma != 0:
                sample = sample + gamma * self.skip_convs[j](skips[len(skips) - 1 - j])
            sample = up_block(sample, None)
        sample = decoder.conv_norm_out(sample)
        return decoder.conv_out(decoder.conv_act(sample))

    def forward(self, sample, sample_posterior: bool = False, return_dict: bool = True, generator=None):
        posterior, skips = self.encode_with_skips(sample)
        z = posterior.sample(generator=generator) if sample_posterior else posterior.mode()
        decoded = self.decode_with_skips(z, skips)
        return DecoderOutput(sample=decoded) if return_dict else (decoded,)
