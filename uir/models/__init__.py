"""Models (``ModelMixin`` + ``ConfigMixin``, saved as safetensors)."""

from .skip_vae import SkipAutoencoderKL, skip_channel_plan

__all__ = ["SkipAutoencoderKL", "skip_channel_plan"]
