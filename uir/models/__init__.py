"""Models (``ModelMixin`` + ``ConfigMixin``, saved as safetensors)."""

from .nafnet import NAFNet
from .skip_vae import SkipAutoencoderKL, skip_channel_plan

__all__ = ["NAFNet", "SkipAutoencoderKL", "skip_channel_plan"]
