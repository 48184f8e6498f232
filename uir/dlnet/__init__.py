"""DL-Net, the deep likelihood network (Guo et al.): an unrolled fidelity module wrapped around
any restorer, and the context-encoder reference it was published with. Trained by
``train/train_dlnet.py``."""

from .network import ChannelwiseFC, ContextEncoder, DLNet

__all__ = ["ChannelwiseFC", "ContextEncoder", "DLNet"]
