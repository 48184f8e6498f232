"""NAFNet as a diffusers model: the plain torch :class:`uir.networks.nafnet.NAFNet` with
diffusers' config, ``from_pretrained``/``save_pretrained`` and PEFT adapters.

The 1x1 convolutions (``expand``, ``project``, ``ffn_expand``, ``ffn_project``) and the
``intro``/``ending`` convs are where uir's LoRA experts go (:data:`EXPERT_TARGETS`).
"""

from __future__ import annotations

from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from diffusers.loaders import PeftAdapterMixin

from uir.networks import nafnet as core
from uir.networks.nafnet import EXPERT_TARGETS, LayerNorm2d, NAFBlock


class NAFNet(core.NAFNet, ModelMixin, ConfigMixin, PeftAdapterMixin):
    """A NAFNet image restorer; inputs and outputs are (B,C,H,W) in [0, 1]. The arguments are
    :class:`uir.networks.nafnet.NAFNet`'s, recorded in the config.

    ``PeftAdapterMixin`` gives it diffusers' ``add_adapter``/``set_adapter``, which
    ``train/train_uir_lora.py`` uses to train one expert per degradation.
    """

    @register_to_config
    def __init__(self, in_channels: int = 3, width: int = 16, encoder_blocks: tuple = (1, 1, 2),
                 middle_blocks: int = 2, decoder_blocks: tuple = (1, 1, 1), upsampling: str = "pixel-shuffle"):
        super().__init__(in_channels, width, encoder_blocks, middle_blocks, decoder_blocks, upsampling)

    def use_bilinear_upsampling(self) -> None:
        """:meth:`uir.networks.nafnet.NAFNet.use_bilinear_upsampling`, recorded in the config, so
        ``save_pretrained`` writes ``"upsampling": "bilinear"`` and the folder loads back as converted."""
        super().use_bilinear_upsampling()
        self.register_to_config(upsampling="bilinear")


__all__ = ["EXPERT_TARGETS", "LayerNorm2d", "NAFBlock", "NAFNet"]
