"""Models (``ModelMixin`` + ``ConfigMixin``, saved as safetensors)."""

from .nafnet import NAFNet
from .skip_vae import SkipAutoencoderKL, skip_channel_plan
from .srresnet import SRResNet

__all__ = ["NAFNet", "SRResNet", "SkipAutoencoderKL", "skip_channel_plan"]
