"""DL-Net, the deep likelihood network (Guo et al.): an unrolled fidelity module wrapped around
any restorer, and the references it was published with (a context encoder for inpainting and
interpolation, a VDSR-like network for super-resolution). Trained by
``train/train_dlnet.py``."""

from .network import VARIANTS, VDSR, ChannelwiseFC, ContextEncoder, DLNet, variant_settings

__all__ = ["VARIANTS", "VDSR", "ChannelwiseFC", "ContextEncoder", "DLNet", "variant_settings"]
